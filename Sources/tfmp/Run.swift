import ArgumentParser
import CPURuntime
import Foundation
import ModelFormats
import TensorCore

struct Run: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Runs a SavedModel signature or a frozen graph on the CPU and prints or saves its outputs.",
    discussion: """
      Kernels so far cover dense, convolutional and batch-normalized models and common math; an \
      op without a kernel is named in the error.
      """)

  @Argument(
    help: "The SavedModel folder, or a frozen graph .pb (inputs named by placeholder).")
  var model: String

  @Option(name: .customLong("input"), help: "An input as NAME=FILE.npy (repeatable).")
  var inputs: [String] = []

  @Option(help: "The signature to run.")
  var signature = "serving_default"

  @Option(help: "Write the outputs to this .npz file.")
  var output: String?

  @Option(
    name: .customLong("repeat"),
    help: "Run this many times and print the median time of one run (after one warm-up run).")
  var repetitions: Int = 1

  @Flag(help: "Print the time each op type's kernels take (summed over the timed runs).")
  var profile = false

  @OptionGroup var limits: LimitOptions
  @OptionGroup var reporting: ErrorReporting

  func run() throws {
    var tensors: [String: Tensor] = [:]
    for input in inputs {
      let parts = input.split(separator: "=", maxSplits: 1).map(String.init)
      guard parts.count == 2, !parts[0].isEmpty else {
        throw ValidationError("--input takes NAME=FILE.npy, got '\(input)'.")
      }
      tensors[parts[0]] = try reporting.reportingErrors { try NumPyFile.readArray(at: parts[1]) }
    }
    try reporting.reportingErrors {
      Interpreter.keepFreedMemoryForReuse()
      let interpreter = try Interpreter(
        model: try GraphModel(contentsOf: model), profiling: profile, limits: limits.limits)
      let outputs: [String: Tensor]
      do {
        outputs = try interpreter.run(signature: signature, inputs: tensors)
      } catch var error as RuntimeError where error.code == .missingInput {
        error.message += " Pass it with --input \(error.node)=FILE.npy."
        throw error
      }
      if repetitions > 1 {
        interpreter.profile?.reset()
        let clock = ContinuousClock()
        let times = try (0..<repetitions).map { _ in
          try clock.measure { _ = try interpreter.run(signature: signature, inputs: tensors) }
        }.sorted()
        let median = times[times.count / 2]
        print(
          "median of \(repetitions) runs: \(String(format: "%.3f", Double(median.components.attoseconds) / 1e15 + Double(median.components.seconds) * 1000)) ms"
        )
      }
      if let totals = interpreter.profile?.totals {
        print(profileTable(totals, runs: max(repetitions, 1)), terminator: "")
      }
      for (name, tensor) in outputs.sorted(by: { $0.key < $1.key }) {
        let preview = Self.preview(tensor.storage).joined(separator: " ")
        print(
          "\(name): \(tensor.dtype) \(tensor.shape)  \(preview)\(tensor.shape.elementCount ?? 0 > 6 ? " ..." : "")"
        )
      }
      if let output {
        try NumPyFile.writeArchive(outputs, to: output)
        print("wrote \(output)")
      }
    }
  }

  /// The first six elements, as `run` prints them.
  private static func preview(_ storage: Tensor.Storage) -> [String] {
    func numbers<T>(_ values: [T], _ text: (T) -> String) -> [String] { values.prefix(6).map(text) }
    return switch storage {
    case .float(let values): numbers(values) { String(format: "%.6g", Double($0)) }
    case .double(let values): numbers(values) { String(format: "%.6g", $0) }
    case .int32(let values): numbers(values) { "\($0)" }
    case .int64(let values): numbers(values) { "\($0)" }
    case .bool(let values): numbers(values) { "\($0)" }
    case .string(let values): numbers(values) { "\"\(String(decoding: $0, as: UTF8.self))\"" }
    }
  }
}
