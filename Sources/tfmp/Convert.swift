import ArgumentParser
import Foundation
import MixedPrecision
import ModelFormats
import TensorCore

/// CLI spelling of ``ReducedPrecision``, as Keras names its policies.
enum PolicyArgument: String, CaseIterable, ExpressibleByArgument {
  case mixedFloat16 = "mixed_float16"
  case mixedBfloat16 = "mixed_bfloat16"

  var precision: ReducedPrecision { self == .mixedFloat16 ? .float16 : .bfloat16 }
}

/// CLI spelling of ``WeightStorage``.
enum WeightsArgument: String, CaseIterable, ExpressibleByArgument {
  case auto, float32

  var storage: WeightStorage { self == .auto ? .auto : .float32 }
}

struct Convert: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Converts a float32 SavedModel to mixed precision, written as a SavedModel.",
    discussion: """
      Matrix multiplications and convolutions compute in the reduced type; ops that are \
      numerically risky (exp, large sums, softmax at the output, constants that do not fit) stay \
      float32, with casts only where precision changes. Signatures and their dtypes are kept.
      """)

  @Argument(help: "The float32 SavedModel folder.")
  var input: String

  @Argument(help: "The folder to write.")
  var output: String

  @Option(help: "The mixed-precision policy.")
  var policy: PolicyArgument = .mixedFloat16

  @Option(
    help: ArgumentHelp(
      "How to store variables: 'float32' keeps float32 master weights (for fine-tuning), cast "
        + "after each read; 'auto' stores a variable in the reduced type when all its readers "
        + "compute in it and its values fit."))
  var weights: WeightsArgument = .auto

  @Flag(
    inversion: .prefixedNo,
    help: "Keep the signatures' float32 inputs and outputs (--no-keep-io-types: the reduced type).")
  var keepIoTypes = true

  @Option(name: .customLong("fp32-op"), help: "An op type to keep float32 (repeatable).")
  var float32Ops: [String] = []

  @Option(
    name: .customLong("fp32-node"),
    help: "A regular expression; nodes whose name matches stay float32 (repeatable).")
  var float32Nodes: [String] = []

  @Option(name: .customLong("lowp-op"), help: "An op type to always convert (repeatable).")
  var reducedOps: [String] = []

  @Option(help: "Write a JSON report of every node's precision and the reason to this file.")
  var report: String?

  @Flag(help: "Replace the output if it exists.")
  var force = false

  @OptionGroup var reporting: ErrorReporting

  func run() throws {
    try reporting.reportingErrors {
      var options = ConversionOptions()
      options.precision = policy.precision
      options.weights = weights.storage
      options.keepIOTypes = keepIoTypes
      options.float32Ops = float32Ops
      options.float32NodePatterns = float32Nodes
      options.reducedOps = reducedOps
      let (model, conversion) = try SavedModel(contentsOf: input).converted(with: options)
      try model.write(to: output, overwrite: force)
      if let report {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
          try encoder.encode(conversion).write(to: URL(fileURLWithPath: report), options: .atomic)
        } catch {
          throw ModelFormatError(
            code: .fileSystem, path: report, message: "The report cannot be written.",
            underlyingError: error)
        }
      }
      print(conversion.summary, terminator: "")
      print("wrote \(output)")
    }
  }
}
