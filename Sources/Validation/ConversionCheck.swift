public import ModelFormats
public import TensorCore
internal import CPURuntime
internal import GraphIR
internal import Foundation

/// Checks a conversion before it is written: runs the original and the converted model on the
/// same inputs and refuses a conversion that gives inf or NaN where the original gives finite
/// values, or whose outputs drift beyond a tolerance. A failure names the output and the first
/// node whose values go wrong.
public enum ConversionCheck {
  /// What the check found.
  public struct Outcome: Sendable, Codable {
    /// The signatures checked, sorted (one of those running the same graph endpoints).
    public var checked: [String] = []
    /// Why signatures could not be checked (the runtime cannot run them, or no inputs).
    public var skipped: [String] = []
    /// The first failure, if any.
    public var failure: Failure?
    /// The wall time of the check, in seconds.
    public var seconds = 0.0

    /// One line for `tfmp convert`'s summary.
    public var summary: String {
      var parts: [String] = []
      if !checked.isEmpty {
        parts.append(
          "verified \(checked.joined(separator: ", ")) in \(String(format: "%.2f", seconds)) s")
      }
      parts += skipped.map { "not verified: \($0)" }
      return parts.joined(separator: "; ")
    }
  }

  /// A conversion whose outputs go wrong.
  public struct Failure: Sendable, Codable, CustomStringConvertible {
    /// The signature.
    public var signature: String
    /// The output.
    public var output: String
    /// What is wrong with the output.
    public var problem: String
    /// The first node whose values go wrong, when it was found.
    public var node: WrongNode?

    /// The first node whose values go wrong.
    public struct WrongNode: Sendable, Codable {
      /// Its name.
      public var name: String
      /// Its op type.
      public var op: String
      /// Its function, `<graph>` for the top level.
      public var function: String
    }

    /// The failure, as `tfmp convert` reports it.
    public var description: String {
      var text = "output '\(output)' of signature '\(signature)' \(problem)"
      if let node {
        let place =
          node.function == "<graph>" ? "the top-level graph" : "function '\(node.function)'"
        text += "; the values first go wrong at node '\(node.name)' (\(node.op)) in \(place)"
      }
      return text
    }
  }

  /// Runs every signature of `original` and `converted` on `inputs` (keyed by input name; `nil`
  /// draws `samples` seeded random rows as ``ModelComparison`` does) and compares the outputs.
  /// An output fails when the converted model gives inf or NaN where the original gives a
  /// finite value, or when an element differs by more than `tolerance` times the output's scale
  /// (its largest finite magnitude, at least 1). The runs stay within `limits`.
  ///
  /// - Throws: ``ModelFormatError`` when a model's graph cannot be read. A signature the runtime
  ///   cannot run is reported in ``Outcome/skipped``, not thrown.
  public static func check(
    original: GraphModel, converted: GraphModel, inputs: [String: Tensor]?, samples: Int = 2,
    seed: UInt64 = 0, tolerance: Double, limits: ResourceLimits = .standard
  ) throws -> Outcome {
    let start = ContinuousClock.now
    let models = (try original.module(), try converted.module())
    let runners = (
      Interpreter(module: models.0, checkpoint: original.checkpoint, limits: limits),
      Interpreter(module: models.1, checkpoint: converted.checkpoint, limits: limits)
    )
    var outcome = Outcome()
    for key in models.0.distinctSignatureKeys {
      do {
        let specs = try runners.0.inputSpecs(signature: key)
        let given =
          try inputs
          ?? ModelComparison.random(
            specs, samples: samples, seed: seed, words: runners.0.vocabulary())
        let fed = ModelComparison.rounded(given, for: try runners.1.inputSpecs(signature: key))
        let expected = try runners.0.run(signature: key, inputs: given)
        let actual = try runners.1.run(signature: key, inputs: fed)
        outcome.checked.append(key)
        for name in expected.keys.sorted() {
          guard let reference = expected[name], let candidate = actual[name],
            let problem = problem(reference, candidate, tolerance: tolerance)
          else { continue }
          var failure = Failure(signature: key, output: name, problem: problem)
          failure.node = try firstWrongNode(
            models, original, converted, key, given, fed, tolerance: tolerance, limits: limits)
          outcome.failure = failure
          outcome.seconds = (ContinuousClock.now - start).seconds
          return outcome
        }
      } catch let error as RuntimeError {
        outcome.skipped.append("signature '\(key)': \(error)")
      } catch let error as ModelFormatError where error.code == .unsupported {
        outcome.skipped.append("signature '\(key)': \(error.message)")
      }
    }
    outcome.seconds = (ContinuousClock.now - start).seconds
    return outcome
  }

  /// What is wrong with `candidate` against `reference`, or `nil` when nothing is.
  static func problem(_ reference: Tensor, _ candidate: Tensor, tolerance: Double) -> String? {
    guard reference.shape == candidate.shape, let x = reference.floatLikeValues,
      let y = candidate.floatLikeValues
    else { return nil }
    var (nonFinite, finite, scale, worst) = (0, 0, 1.0, 0.0)
    for (r, c) in zip(x, y) where r.isFinite {
      finite += 1
      scale = max(scale, abs(r))
      if c.isFinite { worst = max(worst, abs(c - r)) } else { nonFinite += 1 }
    }
    if nonFinite > 0 {
      return "is inf or NaN in \(nonFinite) of \(finite) elements where the original's is finite"
    }
    if worst > tolerance * scale {
      return "differs from the original's by up to \(String(format: "%.3g", worst)), more than "
        + "\(tolerance) of its scale \(String(format: "%.3g", scale))"
    }
    return nil
  }

  /// Runs both models again, observing every node, and returns the first node of the converted
  /// model (in evaluation order) whose first output goes wrong against the same node of the
  /// original, by ``problem(_:_:tolerance:)``.
  private static func firstWrongNode(
    _ models: (GraphIR.Module, GraphIR.Module), _ original: GraphModel, _ converted: GraphModel,
    _ key: String, _ given: [String: Tensor], _ fed: [String: Tensor], tolerance: Double,
    limits: ResourceLimits
  ) throws -> Failure.WrongNode? {
    let recorders = (Recorder(), Recorder())
    _ = try Interpreter(
      module: models.0, checkpoint: original.checkpoint, observer: recorders.0, limits: limits
    ).run(signature: key, inputs: given)
    _ = try Interpreter(
      module: models.1, checkpoint: converted.checkpoint, observer: recorders.1, limits: limits
    ).run(signature: key, inputs: fed)
    let originals = Dictionary(
      recorders.0.values.map { ("\($0.function)|\($0.node)", $0.tensor) },
      uniquingKeysWith: { first, _ in first })
    for value in recorders.1.values {
      guard let reference = originals["\(value.function)|\(value.node)"],
        problem(reference, value.tensor, tolerance: tolerance) != nil
      else { continue }
      return Failure.WrongNode(name: value.node, op: value.op, function: value.function)
    }
    return nil
  }
}

/// Keeps every node's first float output, in evaluation order.
private final class Recorder: RunObserver, @unchecked Sendable {
  // Sendable: runs are sequential here; `lock` guards `values` all the same.
  private(set) var values: [(function: String, node: String, op: String, tensor: Tensor)] = []
  private let lock = NSLock()

  func observe(
    function: String, node: String, op: String, inputs: [Tensor?], outputs: [Tensor?]
  ) {
    guard let tensor = outputs.first ?? nil, tensor.floatLikeValues != nil,
      [.float32, .float16, .bfloat16].contains(tensor.dtype)
    else { return }
    lock.withLock { values.append((function, node, op, tensor)) }
  }
}
