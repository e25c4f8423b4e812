public import MixedPrecision
internal import TensorCore
internal import CPURuntime
internal import ModelFormats
internal import Foundation
internal import GraphIR
internal import Validation

/// How much one node of a converted model errs by itself, measured by ``Sensitivity``.
public struct NodeSensitivity: Sendable, Codable, Hashable {
  /// The node.
  public var node: QualifiedNodeName
  /// Its op type.
  public var op: String
  /// The largest |computed - original| over its float outputs and evaluations, relative to the
  /// original's largest magnitude (at least the smallest normal float), when it is fed the
  /// original's values (rounded to the types it reads): its own error, apart from what flows in.
  public var ownError: Double = 0
  /// The largest magnitude of the original's values of its outputs.
  public var magnitude: Double = 0
  /// The largest magnitude of the original's values of its float inputs.
  public var inputMagnitude: Double = 0
  /// Whether those output values overflow the reduced type.
  public var overflows = false
  /// The share of the original's nonzero output values that the reduced type flushes to zero.
  public var flushedShare: Double = 0
  /// The share of the conversion's output error that this node's own error explains, to first
  /// order (``ErrorAttribution``): 1 for a node that would make all of it, 0 for one whose
  /// error the outputs do not feel, below 0 for one whose error cancels some; `nil` when the
  /// model could not be differentiated. The own error counts the rounding of what the node
  /// reads, so a value rounded between two reduced-precision nodes counts in both: neighbours'
  /// shares overlap, and all shares add up to more than 1.
  public var errorShare: Double?

  /// A node not yet measured.
  init(node: QualifiedNodeName, op: String) {
    self.node = node
    self.op = op
  }

  /// The worst of both measurements of the same node (on two signatures).
  func worst(with other: NodeSensitivity) -> NodeSensitivity {
    var worst = self
    worst.ownError = max(ownError, other.ownError)
    worst.magnitude = max(magnitude, other.magnitude)
    worst.inputMagnitude = max(inputMagnitude, other.inputMagnitude)
    worst.overflows = overflows || other.overflows
    worst.flushedShare = max(flushedShare, other.flushedShare)
    if let share = other.errorShare { worst.errorShare = max(errorShare ?? share, share) }
    return worst
  }
}

/// The dimensions of one matrix op as the original model ran it: Tensor Cores run float16 and
/// bfloat16 matrix products fastest when the dimensions a model fixes (a dense layer's input
/// and output sizes, a convolution's channels) are multiples of 8.
public struct MatrixShape: Sendable, Codable, Hashable {
  /// The node.
  public var node: QualifiedNodeName
  /// Its op type.
  public var op: String
  /// The shapes of its inputs.
  public var inputShapes: [[Int]]
  /// The dimensions the model fixes, by name (`k`, `n` for products; `in`, `out` channels for
  /// convolutions), with their sizes.
  public var dimensions: [Dimension]

  /// One named dimension.
  public struct Dimension: Sendable, Codable, Hashable {
    /// Its name.
    public var name: String
    /// Its size.
    public var size: Int
  }

  /// The dimensions that are not multiples of 8.
  public var misaligned: [Dimension] { dimensions.filter { $0.size % 8 != 0 } }

  /// The model-fixed dimensions of an `op` node with `inputs` and `outputs`, or `nil` for other
  /// ops and shapes not known.
  init?(node: QualifiedNodeName, op: String, inputs: [[Int]], outputs: [[Int]]) {
    self.node = node
    self.op = op
    self.inputShapes = inputs
    switch op {
    case "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3":
      // The second operand holds k and n; n is the output's last dimension.
      guard inputs.count >= 2, inputs[1].count >= 2, let n = outputs.first?.last else {
        return nil
      }
      let (first, second) = (inputs[1][inputs[1].count - 2], inputs[1][inputs[1].count - 1])
      let k = first == n ? second : first
      dimensions = [Dimension(name: "k", size: k), Dimension(name: "n", size: n)]
    case "Conv2D", "Conv3D", "Conv2DBackpropInput":
      // The filter, [spatial..., in, out], is the second input of all three.
      guard inputs.count >= 2, inputs[1].count >= 3 else { return nil }
      let shape = inputs[1]
      dimensions = [
        Dimension(name: "in", size: shape[shape.count - 2]),
        Dimension(name: "out", size: shape[shape.count - 1]),
      ]
    case "Einsum":
      // The second operand (a layer's kernel, or the other side of an attention product).
      guard inputs.count >= 2, !inputs[1].isEmpty else { return nil }
      dimensions = inputs[1].enumerated().map { Dimension(name: "b\($0.offset)", size: $0.element) }
    default:
      return nil
    }
  }
}

/// What one instrumented pass measures: each node's sensitivity, the magnitudes of the
/// original's values, and the matrix ops' dimensions.
struct Measurement: Sendable {
  /// Each measured node's sensitivity.
  var sensitivities: [QualifiedNodeName: NodeSensitivity] = [:]
  /// The original's float values of every node but the weights, over every evaluation.
  var activations = MagnitudeHistogram()
  /// The original's variables (as read) and float constants, each node once.
  var weights = MagnitudeHistogram()
  /// The matrix ops, in evaluation order.
  var matrixShapes: [MatrixShape] = []
  /// The nodes in the order the converted model first evaluated them.
  var order: [QualifiedNodeName] = []

  /// Adds `other`, measured on another signature: a node's sensitivity is its worst.
  mutating func merge(_ other: Measurement) {
    sensitivities.merge(other.sensitivities) { $0.worst(with: $1) }
    activations.merge(other.activations)
    weights.merge(other.weights)
    let known = Set(matrixShapes.map(\.node))
    matrixShapes += other.matrixShapes.filter { !known.contains($0.node) }
    let seen = Set(order)
    order += other.order.filter { !seen.contains($0) }
  }
}

/// The instrumented pass of the accuracy search: the original model runs once, recording every
/// node's values; the converted model runs once with each node fed the original's values
/// instead of its producers' (rounded to the type it reads), so that each node's own error is
/// measured in one pass, not its upstream's.
enum Sensitivity {
  /// Every node of `converted` that has a counterpart of the same name in `original`, measured on
  /// signature `key` with `inputs`, and the original's outputs; two model runs. Given the
  /// converted model's outputs (`attributing`), also each of `candidates`' share of their
  /// error (``NodeSensitivity/errorShare``), by a backward pass between the two runs; the
  /// reason when there is none.
  static func measure(
    original: GraphModel, converted: GraphModel, signature key: String,
    inputs: [String: Tensor], convertedInputs: [String: Tensor], precision: ReducedPrecision,
    limits: ResourceLimits, attributing actual: [String: Tensor]? = nil,
    candidates: Set<QualifiedNodeName> = []
  ) throws -> (measurement: Measurement, outputs: [String: Tensor], unattributed: String?) {
    let recorder = ReferenceRecorder()
    let module = try original.module()
    let outputs = try Interpreter(
      module: module, checkpoint: original.checkpoint, observer: recorder, limits: limits
    ).run(signature: key, inputs: inputs)
    var attribution: ErrorAttribution?
    var unattributed: String?
    if let actual {
      do {
        attribution = try ErrorAttribution.measure(
          module: module, checkpoint: original.checkpoint, signature: key, inputs: inputs,
          expected: outputs, actual: actual,
          recorded: recorder.values.filter { candidates.contains($0.key) }, limits: limits)
      } catch {
        unattributed = error.reason
      }
    }
    let feeder = ReferenceFeeder(
      recorder: recorder, precision: precision, attribution: attribution)
    _ = try Interpreter(
      module: try converted.module(), checkpoint: converted.checkpoint,
      storedReduced: converted.storedReduced, observer: feeder, limits: limits
    ).run(signature: key, inputs: convertedInputs)
    var measurement = Measurement()
    measurement.sensitivities = feeder.sensitivities
    measurement.order = feeder.order
    measurement.activations = recorder.activations
    measurement.weights = recorder.weights
    measurement.matrixShapes = recorder.matrixShapes
    return (measurement, outputs, unattributed)
  }
}

/// Keeps every node's outputs, per evaluation, in order, with the magnitudes of its values and
/// the matrix ops' shapes.
private final class ReferenceRecorder: RunObserver, @unchecked Sendable {
  // Sendable: runs are sequential here; `lock` guards the state all the same.
  private(set) var values: [QualifiedNodeName: [[Tensor?]]] = [:]
  private(set) var inputMagnitudes: [QualifiedNodeName: Double] = [:]
  private(set) var activations = MagnitudeHistogram()
  private(set) var weights = MagnitudeHistogram()
  private(set) var matrixShapes: [MatrixShape] = []
  private let lock = NSLock()

  /// Ops whose outputs are weights: read once per evaluation, counted once per node.
  private static let weightOps: Set<String> = ["Const", "ReadVariableOp", "VariableV2", "Variable"]

  func observe(
    function: String, node: String, op: String, inputs: [Tensor?], outputs: [Tensor?]
  ) {
    lock.withLock {
      let name = QualifiedNodeName(function: function, node: node)
      let first = values[name] == nil
      values[name, default: []].append(outputs)
      let floats = outputs.compactMap { $0?.dtype.isFloatingPoint == true ? $0?.floats : nil }
      if Self.weightOps.contains(op) {
        if first { for values in floats { weights.add(values) } }
      } else {
        for values in floats { activations.add(values) }
      }
      var largest = inputMagnitudes[name, default: 0]
      for input in inputs {
        guard let input, input.dtype.isFloatingPoint, let values = input.floats else { continue }
        for value in values where value.isFinite { largest = max(largest, Double(abs(value))) }
      }
      inputMagnitudes[name] = largest
      if first,
        let shape = MatrixShape(
          node: name, op: op, inputs: inputs.map { $0?.shape.dimensions ?? [] },
          outputs: outputs.map { $0?.shape.dimensions ?? [] })
      {
        matrixShapes.append(shape)
      }
    }
  }
}

/// Measures each node's outputs against the original's and hands its readers the original's.
private final class ReferenceFeeder: RunObserver, @unchecked Sendable {
  // Sendable: runs are sequential here; `lock` guards the state all the same.
  private let reference: [QualifiedNodeName: [[Tensor?]]]
  private let inputMagnitudes: [QualifiedNodeName: Double]
  private let precision: ReducedPrecision
  private let attribution: ErrorAttribution?
  private var evaluations: [QualifiedNodeName: Int] = [:]
  private(set) var sensitivities: [QualifiedNodeName: NodeSensitivity] = [:]
  private(set) var order: [QualifiedNodeName] = []
  private var ops: [QualifiedNodeName: String] = [:]
  private let lock = NSLock()

  init(recorder: ReferenceRecorder, precision: ReducedPrecision, attribution: ErrorAttribution?) {
    self.reference = recorder.values
    self.inputMagnitudes = recorder.inputMagnitudes
    self.precision = precision
    self.attribution = attribution
  }

  func observe(
    function: String, node: String, op: String, inputs: [Tensor?], outputs: [Tensor?]
  ) {
    lock.withLock {
      let name = QualifiedNodeName(function: function, node: node)
      if ops.updateValue(op, forKey: name) == nil { order.append(name) }
    }
  }

  func replacement(function: String, node: String, outputs: [Tensor?]) -> [Tensor?]? {
    lock.withLock {
      let name = QualifiedNodeName(function: function, node: node)
      let evaluation = evaluations[name, default: 0]
      evaluations[name] = evaluation + 1
      guard let recorded = reference[name], evaluation < recorded.count else { return nil }
      let originals = recorded[evaluation]
      var replacements: [Tensor?] = []
      for (position, (computed, original)) in zip(outputs, originals).enumerated() {
        guard let computed, let original, computed.shape == original.shape,
          let values = original.floats, case .float = computed.storage
        else {
          replacements.append(nil)
          continue
        }
        record(name, computed: computed, original: values)
        if let attribution, let floats = computed.floats,
          let share = attribution.share(
            of: name, evaluation: evaluation, position: position, computed: floats,
            original: values)
        {
          let sum = (sensitivities[name]?.errorShare ?? 0) + share
          sensitivities[name]?.errorShare = sum
        }
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
    var entry = sensitivities[name] ?? NodeSensitivity(node: name, op: ops[name] ?? "?")
    entry.ownError = max(entry.ownError, worst / max(magnitude, Double(Float.leastNormalMagnitude)))
    entry.magnitude = max(entry.magnitude, magnitude)
    entry.inputMagnitude = inputMagnitudes[name] ?? 0
    entry.overflows = entry.overflows || counts.overflow > 0
    if nonzero > 0 {
      entry.flushedShare = max(entry.flushedShare, Double(counts.flushToZero) / Double(nonzero))
    }
    sensitivities[name] = entry
  }
}
