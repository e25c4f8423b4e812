internal import MixedPrecision
public import ModelFormats
public import TensorCore
public import Validation
internal import CPURuntime
internal import Foundation
internal import GraphIR

/// What the instrumented pass learns about a conversion, for `tfmp convert --report`: every
/// node's own error and magnitudes, the magnitudes of the original's activations and weights
/// against the reduced types' limits, the matrix ops' dimensions, and each output's accuracy.
public struct ConversionProfile: Sendable, Codable {
  /// The signatures run (one of each set over the same graph endpoints).
  public var signatures: [String] = []
  /// The signatures the runtime could not run, with why.
  public var skipped: [String] = []
  /// Where the inputs came from.
  public var inputs = ""
  /// The converted model's nodes that have a counterpart in the original, in the order they
  /// were first evaluated.
  public var nodes: [NodeSensitivity] = []
  /// The magnitudes of the original's float values of every node but the weights.
  public var activations = MagnitudeHistogram()
  /// The magnitudes of the original's variables and float constants.
  public var weights = MagnitudeHistogram()
  /// The matrix ops, in evaluation order.
  public var matrixShapes: [MatrixShape] = []
  /// Each signature's outputs, converted against original.
  public var accuracy: [AccuracyReport] = []
  /// Why the nodes have no share of the output error (``NodeSensitivity/errorShare``), when
  /// the original could not be differentiated.
  public var unattributed: String?
  /// Model runs used: four per signature (three when the backward pass cannot run).
  public var modelRuns = 0
  /// Wall time, in seconds.
  public var seconds = 0.0

  /// Profiles `converted` against `original` on every signature, with `inputs` (keyed by
  /// signature input name) or, where they do not cover a signature, `samples` seeded random
  /// rows: the original runs once observed, the conversion once as it is (for the outputs'
  /// accuracy), the original's backward pass once (for each reduced-precision node's share of
  /// the output error) and the conversion once fed the original's values (for each node's own
  /// error).
  ///
  /// - Throws: ``ModelFormatError`` when a model's graph cannot be read. A signature the runtime
  ///   cannot run is listed in ``skipped``.
  public static func measure(
    original: GraphModel, converted: GraphModel, inputs: [String: Tensor]?, samples: Int = 2,
    seed: UInt64 = 0, precision: ReducedPrecision, limits: ResourceLimits = .standard
  ) throws -> ConversionProfile {
    let start = ContinuousClock.now
    let module = try original.module()
    let runners = (
      Interpreter(module: module, checkpoint: original.checkpoint, limits: limits),
      try Interpreter(model: converted, limits: limits)
    )
    var profile = ConversionProfile()
    profile.inputs = inputs == nil ? "\(samples) random samples" : "calibration"
    var measurement = Measurement()
    // The nodes that compute in the reduced type, casts to it included: those whose share of
    // the output error is measured.
    let reduced = try converted.module().nodeNames {
      $0.attributes.values.contains(.type(precision.dtype))
    }
    for key in module.distinctSignatureKeys {
      do {
        let specs = try runners.0.inputSpecs(signature: key)
        let given =
          try inputs.flatMap { inputs in specs.keys.allSatisfy { inputs[$0] != nil } ? inputs : nil
          }
          ?? ModelComparison.random(
            specs, samples: samples, seed: seed, words: runners.0.vocabulary())
        let fed = ModelComparison.rounded(given, for: try runners.1.inputSpecs(signature: key))
        let actual = try runners.1.run(signature: key, inputs: fed)
        let (measured, expected, unattributed) = try Sensitivity.measure(
          original: original, converted: converted, signature: key, inputs: given,
          convertedInputs: fed, precision: precision, limits: limits, attributing: actual,
          candidates: reduced)
        measurement.merge(measured)
        if let unattributed { profile.unattributed = unattributed }
        profile.accuracy.append(
          ModelComparison.report(
            signature: key, expected: expected, actual: actual, rtol: 0, atol: 0,
            inputs: profile.inputs))
        profile.signatures.append(key)
        profile.modelRuns += unattributed == nil ? 4 : 3
      } catch let error as RuntimeError {
        profile.skipped.append("signature '\(key)': \(error)")
      } catch let error as ModelFormatError where error.code == .unsupported {
        profile.skipped.append("signature '\(key)': \(error.message)")
      }
    }
    profile.nodes = measurement.order.compactMap { measurement.sensitivities[$0] }
    profile.activations = measurement.activations
    profile.weights = measurement.weights
    profile.matrixShapes = measurement.matrixShapes
    profile.seconds = (ContinuousClock.now - start).seconds
    return profile
  }
}
