import Foundation
import TensorCore
import Testing
import _TestSupport

@testable import ModelFormats

@Suite("Keras archives")
struct KerasArchiveTests {
  @Test(
    "config.json parses and serializes back to its exact bytes", arguments: Fixtures.kerasArchives)
  func jsonRoundTrip(name: String) throws {
    let zip = try ZipArchive(MappedFile(path: Fixtures.path(name + ".keras")))
    let bytes = try zip.contents(of: try #require(zip.entry(named: "config.json")))
    var parser = JSONParser(bytes)
    #expect(Array(try parser.parse().serialized().utf8) == bytes)
  }

  @Test("An archive written back unchanged is byte-identical", arguments: Fixtures.kerasArchives)
  func unchangedRewrite(name: String) throws {
    let folder = TemporaryFolder()
    let archive = try KerasArchive(contentsOf: Fixtures.path(name + ".keras"))
    #expect(archive.kerasVersion == "3.15.1")
    try archive.write(to: folder.child("copy.keras"))
    let original = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(name + ".keras")))
    #expect(try Data(contentsOf: URL(fileURLWithPath: folder.child("copy.keras"))) == original)
  }

  @Test("Writing an archive over itself is refused and leaves it intact")
  func neverOverwritesInput() throws {
    let folder = TemporaryFolder()
    let path = folder.child("model.keras")
    try FileManager.default.copyItem(atPath: Fixtures.path("keras_dense.keras"), toPath: path)
    let before = try Data(contentsOf: URL(fileURLWithPath: path))
    let archive = try KerasArchive(contentsOf: path)
    let error = #expect(throws: ModelFormatError.self) {
      try archive.write(to: path, overwrite: true)
    }
    #expect(error?.code == .outputExists)
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["model.keras"])
  }

  @Test("Strings with escapes and non-ASCII text keep their meaning")
  func jsonEscapes() throws {
    var parser = JSONParser(
      Array(#"{"a": "tab\there \u00e9\ud83d\ude00", "n": -1.5e-7, "x": [true, null]}"#.utf8))
    let value = try parser.parse()
    #expect(value["a"]?.stringValue == "tab\there é😀")
    #expect(value["n"] == .number("-1.5e-7"))
    #expect(JSONValue.string("é\n").serialized() == #""\u00e9\n""#)
  }

  @Test("A high surrogate not followed by a low one reads as U+FFFD (found by fuzzing)")
  func unpairedSurrogate() throws {
    for (text, expected) in [
      (#"["\ud83d\u00e9", "\ud83d", "\ude00x"]"#, ["\u{FFFD}é", "\u{FFFD}", "\u{FFFD}x"])
    ] {
      var parser = JSONParser(Array(text.utf8))
      guard case .array(let values) = try parser.parse() else {
        Issue.record("not an array")
        continue
      }
      #expect(values.map(\.stringValue) == expected)
    }
  }

  /// A copy of the dense fixture with one entry's contents replaced.
  private func archive(replacing entry: String, with text: String, in folder: TemporaryFolder)
    throws -> String
  {
    let zip = try ZipArchive(MappedFile(path: Fixtures.path("keras_dense.keras")))
    let path = folder.child("broken.keras")
    let output = try FileOutput(path: path)
    try zip.write(to: output, replacing: [entry: Array(text.utf8)])
    return path
  }

  private func error(_ path: String) -> ModelFormatError? {
    #expect(throws: ModelFormatError.self) { _ = try KerasArchive(contentsOf: path) }
  }

  @Test("A missing archive")
  func missing() {
    let path = "/nonexistent/model.keras"
    let failure = error(path)
    #expect(failure?.code == .missingInput)
    #expect(
      failure?.description
        == "\(path): The file cannot be opened (No such file or directory). Check the path and its permissions."
    )
  }

  @Test("A file that is not a zip archive")
  func notAZip() throws {
    let folder = TemporaryFolder()
    let path = folder.child("model.keras")
    try Data(repeating: 7, count: 100).write(to: URL(fileURLWithPath: path))
    #expect(
      error(path)?.description
        == "\(path): Expected a Keras archive (a zip file holding config.json) but it has no zip "
        + "end record. Pass a file written by model.save('model.keras').")
  }

  @Test("A config.json that does not parse")
  func badConfig() throws {
    let folder = TemporaryFolder()
    let path = try archive(
      replacing: "config.json", with: #"{"module": "keras", oops}"#, in: folder)
    let failure = error(path)
    #expect(failure?.code == .malformed)
    #expect(
      failure?.description
        == "\(path) (config.json, byte 20): The JSON does not parse: expected a quoted key. The archive is "
        + "corrupt; re-save the model.")
  }

  @Test("An archive from a Keras version tfmp does not know")
  func unknownVersion() throws {
    let folder = TemporaryFolder()
    let path = try archive(
      replacing: "metadata.json", with: #"{"keras_version": "2.15.0"}"#, in: folder)
    #expect(
      error(path)?.description
        == "\(path) (metadata.json): The archive was saved by Keras 2.15.0; tfmp knows the archives "
        + "of Keras 3.0 to 3.15. Re-save the model with one of those versions.")
  }

  @Test("A truncated archive")
  func truncated() throws {
    let folder = TemporaryFolder()
    let path = folder.child("cut.keras")
    let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("keras_dense.keras")))
    try bytes.prefix(bytes.count - 400).write(to: URL(fileURLWithPath: path))
    #expect(error(path)?.code == .notAModel)
  }
}

@Suite("Keras archive summaries")
struct KerasSummaryTests {
  @Test("Each archive's summary matches its snapshot", arguments: Fixtures.kerasArchives)
  func summarySnapshot(name: String) throws {
    var summary = try KerasArchive(contentsOf: Fixtures.path(name + ".keras")).summary()
    summary.path = "<fixtures>/\(name).keras"
    let mismatch = snapshotMismatch(summary.text, named: "inspect-\(name)")
    #expect(mismatch == nil, "\(mismatch ?? "")")
  }

  @Test("A weights file that is not HDF5 is reported, not trapped")
  func corruptWeights() throws {
    let folder = TemporaryFolder()
    let zip = try ZipArchive(MappedFile(path: Fixtures.path("keras_dense.keras")))
    let path = folder.child("bad-weights.keras")
    try zip.write(
      to: FileOutput(path: path), replacing: ["model.weights.h5": Array(repeating: 1, count: 200)])
    let error = #expect(throws: ModelFormatError.self) {
      _ = try KerasArchive(contentsOf: path).summary()
    }
    #expect(
      error?.description
        == "\(path) (model.weights.h5) (superblock): Expected the HDF5 signature at offset 0. The "
        + "weights file is corrupt; re-save the model.")
  }

  @Test("Every truncation of a weights file gives an error or a summary, never a crash")
  func truncatedWeights() throws {
    let zip = try ZipArchive(MappedFile(path: Fixtures.path("keras_nested.keras")))
    let bytes = try zip.contents(of: try #require(zip.entry(named: "model.weights.h5")))
    for length in stride(from: 0, to: bytes.count, by: 97) {
      _ = try? HDF5File(Array(bytes.prefix(length)), path: "cut")
    }
  }

  @Test(
    "Corrupted bytes in a weights file give an error or a summary, never a crash",
    arguments: [1, 2, 3] as [UInt64])
  func flippedWeights(seed: UInt64) throws {
    let zip = try ZipArchive(MappedFile(path: Fixtures.path("keras_nested.keras")))
    let original = try zip.contents(of: try #require(zip.entry(named: "model.weights.h5")))
    var random = SeededGenerator(seed: seed)
    var parsed = 0
    for _ in 0..<300 {
      var bytes = original
      // Structure lives in the first few KiB; flip bytes there, sometimes to 0xFF runs.
      for _ in 0..<4 {
        let offset = Int.random(in: 0..<min(bytes.count, 4096), using: &random)
        bytes[offset] =
          Bool.random(using: &random) ? 0xFF : UInt8.random(in: 0...255, using: &random)
      }
      if (try? HDF5File(bytes, path: "flipped")) != nil { parsed += 1 }
    }
    #expect(parsed > 0, "seed \(seed): some corruptions hit only data and still parse")
  }
}
