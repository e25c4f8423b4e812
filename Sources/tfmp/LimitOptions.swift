import ArgumentParser
import Foundation
import TensorCore

/// The ceilings on what running a model may create (``TensorCore/ResourceLimits``), for the
/// commands that run one.
struct LimitOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "The largest tensor running the model may create: a number of bytes, or with K, M, G "
        + "(powers of 1024).",
      valueName: "BYTES"))
  var maxTensorBytes: ByteCount = ByteCount(ResourceLimits.standard.maxTensorBytes)

  @Option(help: "The most iterations of one While loop.")
  var maxLoopIterations = ResourceLimits.standard.maxLoopIterations

  var limits: ResourceLimits {
    var limits = ResourceLimits.standard
    limits.maxTensorBytes = maxTensorBytes.bytes
    limits.maxLoopIterations = maxLoopIterations
    return limits
  }

  func validate() throws {
    guard maxLoopIterations > 0 else {
      throw ValidationError("--max-loop-iterations must be positive, got \(maxLoopIterations).")
    }
  }
}

/// A size in bytes, written as a number with an optional K, M or G (powers of 1024).
struct ByteCount: ExpressibleByArgument, CustomStringConvertible {
  var bytes: Int

  init(_ bytes: Int) { self.bytes = bytes }

  init?(argument: String) {
    let text = argument.uppercased().replacingOccurrences(of: "IB", with: "")
      .replacingOccurrences(of: "B", with: "")
    let shifts: [Character: Int] = ["K": 10, "M": 20, "G": 30]
    let shift = text.last.flatMap { shifts[$0] } ?? 0
    guard let number = Int(shift == 0 ? text : String(text.dropLast())), number > 0,
      number <= Int.max >> shift
    else { return nil }
    bytes = number << shift
  }

  var description: String {
    for (suffix, shift) in [("G", 30), ("M", 20), ("K", 10)]
    where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
      return "\(bytes >> shift)\(suffix)"
    }
    return String(bytes)
  }
}
