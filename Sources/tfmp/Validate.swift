import ArgumentParser
import CPURuntime
import Foundation
import ModelFormats
import TensorCore
import Validation

struct Validate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Runs two models (SavedModels or frozen graphs) on the same inputs and compares "
      + "their outputs.",
    discussion: """
      Typically the float32 model and its converted form. Reports per output the max absolute \
      and relative error, mean relative error, cosine similarity and top-1 agreement for \
      classifier-shaped outputs. Exits 0 when every element is within atol + rtol * |reference|, \
      2 when not.
      """)

  @Argument(help: "The reference model (usually float32).")
  var reference: String

  @Argument(help: "The candidate model (usually converted).")
  var candidate: String

  @Option(help: "Inputs as a .npz keyed by signature input name (default: random samples).")
  var inputs: String?

  @Option(help: "The batch size of random inputs.")
  var samples = 8

  @Option(help: "The seed of random inputs.")
  var seed: UInt64 = 0

  @Option(help: "Relative tolerance.")
  var rtol = 1e-2

  @Option(help: "Absolute tolerance.")
  var atol = 1e-3

  @Option(help: "The signature to compare.")
  var signature = "serving_default"

  @Flag(help: "Print JSON instead of text.")
  var json = false

  @OptionGroup var limits: LimitOptions
  @OptionGroup var reporting: ErrorReporting

  func run() throws {
    Interpreter.keepFreedMemoryForReuse()
    let report = try reporting.reportingErrors {
      try ModelComparison.compare(
        reference: GraphModel(contentsOf: reference), candidate: GraphModel(contentsOf: candidate),
        signature: signature, inputs: try inputs.map { try NumPyFile.readArchive(at: $0) },
        samples: samples, seed: seed, rtol: rtol, atol: atol, limits: limits.limits)
    }
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try encoder.encode(report), as: UTF8.self))
    } else {
      print(report.text, terminator: "")
    }
    if !report.passed { throw ExitCode(2) }
  }
}
