import ArgumentParser
import Foundation
import ModelFormats

struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Describes a SavedModel, frozen graph or .keras model: signatures or layers and "
      + "policies, "
      + "functions and ops, variables, and a range report for float16 and bfloat16.")

  @Argument(help: "The SavedModel folder, frozen graph .pb or .keras file.")
  var model: String

  @Flag(help: "Print JSON instead of text.")
  var json = false

  @OptionGroup var reporting: ErrorReporting

  func run() throws {
    try reporting.reportingErrors {
      if model.hasSuffix(".keras") {
        let summary = try KerasArchive(contentsOf: model).summary()
        try show(summary, text: summary.text)
      } else {
        let summary = try GraphModel(contentsOf: model).summary()
        try show(summary, text: summary.text)
      }
    }
  }

  private func show(_ summary: some Encodable, text: String) throws {
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try encoder.encode(summary), as: UTF8.self))
    } else {
      print(text, terminator: "")
    }
  }
}
