import ArgumentParser
import Foundation
import ModelFormats

struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Describes a SavedModel: signatures, functions and ops, variables, and a range "
      + "report for float16 and bfloat16.")

  @Argument(help: "The SavedModel folder.")
  var model: String

  @Flag(help: "Print JSON instead of text.")
  var json = false

  @OptionGroup var reporting: ErrorReporting

  func run() throws {
    try reporting.reportingErrors {
      let summary = try SavedModel(contentsOf: model).summary()
      if json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(summary), as: UTF8.self))
      } else {
        print(summary.text, terminator: "")
      }
    }
  }
}
