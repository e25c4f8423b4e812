public import MixedPrecision
internal import TensorCore
internal import CPURuntime
internal import ModelFormats
internal import Foundation
internal import GraphIR
internal import Validation

/// How much one node of a converted model errs by itself, measured by ``Sensitivity``.
public struct NodeSensitivity: Sendable, Codable {
  /// The node.
  public var node: QualifiedNodeName
  /// Its op type.
  public var op: String
  /// The largest |computed - original| over its float outputs and evaluations, relative to the
  /// original's largest magnitude (at least the smallest normal float), when it is fed the
  /// original's values (rounded to the types it reads): its own error, apart from what flows in.
  public var ownError: Double
  /// The largest magnitude of the original's values of its outputs.
  public var magnitude: Double
  /// Whether those values overflow the reduced type.
  public var overflows: Bool
  /// The share of the original's nonzero values that the reduced type flushes to zero.
  public var flushedShare: Double
}

/// The instrumented pass of the accuracy search: the original model runs once, recording every
/// node's values; the converted model runs once with each node fed the original's values
/// instead of its producers' (rounded to the type it reads), so that each node's own error is
/// measured in one pass, not its upstream's.
enum Sensitivity {
  /// Every node of `converted` that has a counterpart of the same name in `original`, measured on
  /// signature `key` with `inputs`.
  static func measure(
    original: GraphModel, converted: GraphModel, signature key: String,
    inputs: [String: Tensor], convertedInputs: [String: Tensor], precision: ReducedPrecision
  ) throws -> [QualifiedNodeName: NodeSensitivity] {
    let recorder = ReferenceRecorder()
    _ = try Interpreter(
      module: try original.module(), checkpoint: original.checkpoint, observer: recorder
    ).run(signature: key, inputs: inputs)
    let feeder = ReferenceFeeder(reference: recorder.values, precision: precision)
    _ = try Interpreter(
      module: try converted.module(), checkpoint: converted.checkpoint, observer: feeder
    ).run(signature: key, inputs: convertedInputs)
    return feeder.sensitivities
  }
}

/// Keeps every node's outputs, per evaluation, in order.
private final class ReferenceRecorder: RunObserver, @unchecked Sendable {
  // Sendable: runs are sequential here; `lock` guards `values` all the same.
  private(set) var values: [QualifiedNodeName: [[Tensor?]]] = [:]
  private let lock = NSLock()

  func observe(function: String, node: String, op: String, outputs: [Tensor?]) {
    lock.withLock {
      values[QualifiedNodeName(function: function, node: node), default: []].append(outputs)
    }
  }
}

/// Measures each node's outputs against the original's and hands its readers the original's.
private final class ReferenceFeeder: RunObserver, @unchecked Sendable {
  // Sendable: runs are sequential here; `lock` guards the state all the same.
  private let reference: [QualifiedNodeName: [[Tensor?]]]
  private let precision: ReducedPrecision
  private var evaluations: [QualifiedNodeName: Int] = [:]
  private(set) var sensitivities: [QualifiedNodeName: NodeSensitivity] = [:]
  private var ops: [QualifiedNodeName: String] = [:]
  private let lock = NSLock()

  init(reference: [QualifiedNodeName: [[Tensor?]]], precision: ReducedPrecision) {
    self.reference = reference
    self.precision = precision
  }

  func observe(function: String, node: String, op: String, outputs: [Tensor?]) {
    lock.withLock { ops[QualifiedNodeName(function: function, node: node)] = op }
  }

  func replacement(function: String, node: String, outputs: [Tensor?]) -> [Tensor?]? {
    lock.withLock {
      let name = QualifiedNodeName(function: function, node: node)
      let evaluation = evaluations[name, default: 0]
      evaluations[name] = evaluation + 1
      guard let recorded = reference[name], evaluation < recorded.count else { return nil }
      let originals = recorded[evaluation]
      var replacements: [Tensor?] = []
      for (computed, original) in zip(outputs, originals) {
        guard let computed, let original, computed.shape == original.shape,
          let values = original.floats, case .float = computed.storage
        else {
          replacements.append(nil)
          continue
        }
        record(name, computed: computed, original: values)
        var fed = values
        if let reduced = ReducedPrecision(computed.dtype) { reduced.round(&fed) }
        replacements.append(
          Tensor(dtype: computed.dtype, shape: computed.shape, storage: .float(fed)))
      }
      return replacements
    }
  }

  private func record(_ name: QualifiedNodeName, computed: Tensor, original: [Float]) {
    guard let values = computed.floats else { return }
    var (worst, magnitude) = (0.0, 0.0)
    for (c, o) in zip(values, original) {
      let difference = abs(Double(c) - Double(o))
      worst = max(worst, difference.isNaN ? .infinity : difference)
      magnitude = max(magnitude, abs(Double(o)))
    }
    let counts = original.withUnsafeBufferPointer { RangeCounts($0, roundedTo: precision) }
    let nonzero = original.count { $0 != 0 }
    var entry =
      sensitivities[name]
      ?? NodeSensitivity(
        node: name, op: ops[name] ?? "?", ownError: 0, magnitude: 0, overflows: false,
        flushedShare: 0)
    entry.ownError = max(entry.ownError, worst / max(magnitude, Double(Float.leastNormalMagnitude)))
    entry.magnitude = max(entry.magnitude, magnitude)
    entry.overflows = entry.overflows || counts.overflow > 0
    if nonzero > 0 {
      entry.flushedShare = max(entry.flushedShare, Double(counts.flushToZero) / Double(nonzero))
    }
    sensitivities[name] = entry
  }
}
