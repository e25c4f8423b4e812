import Foundation
import Testing
import _TestSupport

/// The fuzz targets' seeds and every input a fuzzer found a crash with (Tests/Fuzz/Regressions),
/// replayed through the targets by the `tfmp-fuzz` binary built without the fuzzer: each must be
/// read or refused without a trap.
@Suite("Fuzz inputs replayed")
struct FuzzReplayTests {
  static let fuzzFolder = Fixtures.repositoryRoot.appendingPathComponent("Tests/Fuzz")

  static var binary: String {
    let productsFolder = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
    return productsFolder.appendingPathComponent("tfmp-fuzz").path
  }

  @Test(
    "Every seed and regression input goes through its target",
    arguments: [
      "checkpoint-index", "checkpoint-tensor", "saved-model", "graphdef", "keras", "json", "hdf5",
      "npy", "npz", "graph",
    ])
  func replay(target: String) throws {
    var files: [String] = []
    for kind in ["Corpus", "Regressions"] {
      let folder = Self.fuzzFolder.appendingPathComponent("\(kind)/\(target)").path
      let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
      files += names.sorted().map { folder + "/" + $0 }
    }
    #expect(!files.isEmpty)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Self.binary)
    process.arguments = [target] + files
    let output = Pipe()
    process.standardOutput = output
    process.standardError = Pipe()
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "\(target): \(text)")
    #expect(text == "replayed \(files.count) inputs through \(target)\n")
  }
}
