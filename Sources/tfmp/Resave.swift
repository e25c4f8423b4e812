import ArgumentParser
import ModelFormats

struct Resave: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Reads a SavedModel whole (every checksum verified) and writes it back unchanged.",
    discussion: """
      The checkpoint is rewritten tensor by tensor and comes out byte-identical to \
      TensorFlow's; the output is written to a temporary folder and renamed into place.
      """)

  @Argument(help: "The SavedModel folder to read.")
  var input: String

  @Argument(help: "The folder to write.")
  var output: String

  @Flag(help: "Replace the output if it exists.")
  var force = false

  @OptionGroup var reporting: ErrorReporting

  func run() throws {
    try reporting.reportingErrors {
      let model = try SavedModel(contentsOf: input)
      try model.write(to: output, overwrite: force)
      print("wrote \(output)")
    }
  }
}
