import Foundation
import SwiftProtobuf
import TFProtos
import TensorCore
import Testing
import _TestSupport

@testable import ModelFormats

@Suite("SavedModel reading and writing")
struct SavedModelTests {
  @Test("Read then write gives the same graph and checkpoint", arguments: Fixtures.savedModels)
  func roundTrip(fixture: String) throws {
    let folder = TemporaryFolder()
    let model = try SavedModel(contentsOf: Fixtures.path(fixture))
    let output = folder.child("out")
    try model.write(to: output)
    let reread = try SavedModel(contentsOf: output)
    #expect(reread.proto == model.proto)
    #expect(reread.fingerprint == model.fingerprint)
    // TensorFlow writes map entries in no fixed order, so the graph's bytes may be permuted;
    // the same size shows that nothing, unknown fields included, was dropped or added.
    let graphSizes = try ["\(Fixtures.path(fixture))/saved_model.pb", "\(output)/saved_model.pb"]
      .map {
        try Data(contentsOf: URL(fileURLWithPath: $0)).count
      }
    #expect(graphSizes[0] == graphSizes[1])
    for file in ["fingerprint.pb", "variables/variables.index"] {
      let original = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture) + "/" + file))
      let written = try Data(contentsOf: URL(fileURLWithPath: output + "/" + file))
      #expect(original == written, "\(fixture): \(file) differs")
    }
  }

  @Test("Fields tfmp does not declare survive a read-modify-write")
  func unknownFieldsSurvive() throws {
    var node = Tensorflow_NodeDef()
    node.name = "x"
    node.op = "Const"
    var bytes: [UInt8] = try node.serializedBytes()
    // NodeDef field 7 (experimental_type, a FullTypeDef) is not in our .proto files.
    bytes += [0x3A, 0x02, 0x08, 0x05]
    var decoded = try Tensorflow_NodeDef(serializedBytes: bytes)
    decoded.name = "renamed"
    let rewritten: [UInt8] = try decoded.serializedBytes()
    #expect(Array(rewritten.suffix(4)) == [0x3A, 0x02, 0x08, 0x05])
  }

  @Test("An existing output is refused unless overwriting, and the input is never the output")
  func outputSafety() throws {
    let folder = TemporaryFolder()
    let input = try folder.copyFixture("mlp")
    let model = try SavedModel(contentsOf: input)
    let output = folder.child("out")
    try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: false)
    let exists = #expect(throws: ModelFormatError.self) { try model.write(to: output) }
    #expect(
      exists?.description
        == "\(output): The output already exists. Choose another path, or pass --force to replace it."
    )
    try model.write(to: output, overwrite: true)
    #expect(FileManager.default.fileExists(atPath: output + "/saved_model.pb"))
    let same = #expect(throws: ModelFormatError.self) {
      try model.write(to: input, overwrite: true)
    }
    #expect(
      same?.description
        == "\(input): The output would replace the input model '\(input)'. tfmp never modifies its "
        + "input; choose another output path.")
    let inside = #expect(throws: ModelFormatError.self) {
      try model.write(to: input + "/nested", overwrite: true)
    }
    #expect(inside?.code == .outputExists)
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() == ["mlp", "out"])
  }

  @Test("A failed write leaves neither output nor temporary folder")
  func failedWriteLeavesNothing() throws {
    let folder = TemporaryFolder()
    let input = try folder.copyFixture("mlp")
    let model = try SavedModel(contentsOf: input)
    let entry = try #require(model.checkpoint?.entries.first { $0.dtype == .float32 })
    try corrupt(input + "/variables/variables.data-00000-of-00001", at: entry.offset)
    #expect(throws: ModelFormatError.self) { try model.write(to: folder.child("out")) }
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["mlp"])
  }
}

@Suite("Bad input gives a one-line error naming the file")
struct BadInputTests {
  private func error(_ body: () throws -> Void) -> ModelFormatError? {
    #expect(throws: ModelFormatError.self) { try body() }
  }

  @Test("A missing path")
  func missingPath() {
    let path = "/nonexistent/tfmp/model"
    let failure = error { _ = try SavedModel(contentsOf: path) }
    #expect(failure?.code == .missingInput)
    #expect(
      failure?.description
        == "\(path): Nothing exists at this path. Check the spelling, or export the model with "
        + "tf.saved_model.save first.")
  }

  @Test("A folder or file that is not a SavedModel")
  func notASavedModel() throws {
    let folder = TemporaryFolder()
    let failure = error { _ = try SavedModel(contentsOf: folder.path) }
    #expect(failure?.code == .notAModel)
    #expect(
      failure?.description
        == "\(folder.path): The folder has no saved_model.pb, so it is not a SavedModel. Pass the "
        + "folder that tf.saved_model.save or model.export wrote.")
    let file = folder.child("model.txt")
    try Data("hello".utf8).write(to: URL(fileURLWithPath: file))
    #expect(
      error { _ = try SavedModel(contentsOf: file) }?.description
        == "\(file): Expected a SavedModel folder (containing saved_model.pb) but found a file. "
        + "Pass the folder that tf.saved_model.save or model.export wrote.")
  }

  @Test("A truncated saved_model.pb")
  func truncatedGraph() throws {
    let folder = TemporaryFolder()
    let model = try folder.copyFixture("mlp")
    let path = model + "/saved_model.pb"
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
    let failure = error { _ = try SavedModel(contentsOf: model) }
    #expect(failure?.code == .malformed)
    #expect(
      failure?.description
        == "\(path): The file is not a valid SavedModel protobuf (the data ends in the middle of "
        + "a field). It is truncated or corrupt; re-export the model.")
  }

  @Test("A garbage saved_model.pb")
  func garbageGraph() throws {
    let folder = TemporaryFolder()
    let model = try folder.copyFixture("mlp")
    let path = model + "/saved_model.pb"
    try Data(repeating: 0xFF, count: 64).write(to: URL(fileURLWithPath: path))
    #expect(
      error { _ = try SavedModel(contentsOf: model) }?.description
        == "\(path): The file is not a valid SavedModel protobuf (malformed protobuf data). It is "
        + "truncated or corrupt; re-export the model.")
    try Data().write(to: URL(fileURLWithPath: path))
    #expect(
      error { _ = try SavedModel(contentsOf: model) }?.description
        == "\(path): The SavedModel contains no MetaGraphDef (0 bytes read). It is truncated or "
        + "corrupt; re-export the model.")
  }

  @Test("An index with a bad magic number")
  func badMagic() throws {
    let folder = TemporaryFolder()
    let model = try folder.copyFixture("mlp")
    let path = model + "/variables/variables.index"
    let size = try Data(contentsOf: URL(fileURLWithPath: path)).count
    try corrupt(path, at: size - 1)
    #expect(
      error { _ = try SavedModel(contentsOf: model) }?.description
        == "\(path) (footer at offset \(size - 48)): Expected the table magic 0xdb4775248b80fb57 "
        + "but found 0x244775248b80fb57. This is not a TensorFlow checkpoint index, or it is "
        + "corrupt; re-export the checkpoint.")
  }

  @Test("An index block whose checksum does not match")
  func badBlockChecksum() throws {
    let folder = TemporaryFolder()
    let model = try folder.copyFixture("mlp")
    let path = model + "/variables/variables.index"
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    // Zero the stored CRC in the trailer of data block 0 (mlp's index has one data block).
    let blockSize = try firstBlockSize(path)
    let stored = bytes[(blockSize + 1)..<(blockSize + 5)].reversed().reduce(UInt32(0)) {
      $0 << 8 | UInt32($1)
    }
    for offset in (blockSize + 1)..<(blockSize + 5) { bytes[offset] = 0 }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let failure = error { _ = try SavedModel(contentsOf: model) }
    #expect(failure?.code == .checksumMismatch)
    #expect(
      failure?.description
        == "\(path) (data block at offset 0): The block has CRC32C 0x\(String(stored, radix: 16)) "
        + "(masked) but its trailer records 0x0. The index is corrupt; re-export the checkpoint.")
  }

  @Test("A truncated data shard")
  func truncatedShard() throws {
    let folder = TemporaryFolder()
    let model = try folder.copyFixture("mlp")
    let reader = try CheckpointReader(prefix: model + "/variables/variables")
    let first = try #require(reader.entries.first)
    let shard = model + "/variables/variables.data-00000-of-00001"
    try Data(count: 10).write(to: URL(fileURLWithPath: shard))
    #expect(
      error { _ = try SavedModel(contentsOf: model) }?.description
        == "\(shard) (tensor '\(first.key)'): The tensor needs bytes "
        + "\(first.offset)..<\(first.offset + first.byteCount) but the file has 10 bytes. The "
        + "shard is truncated; re-export the checkpoint.")
  }

  @Test("A tensor whose checksum does not match")
  func tensorChecksum() throws {
    let folder = TemporaryFolder()
    let model = try folder.copyFixture("mlp")
    let shard = model + "/variables/variables.data-00000-of-00001"
    let reader = try CheckpointReader(prefix: model + "/variables/variables")
    let entry = try #require(reader.entries.first { $0.dtype == .float32 })
    try corrupt(shard, at: entry.offset)
    let bytes = try Data(contentsOf: URL(fileURLWithPath: shard))[entry.byteRange]
    let computed = bytes.withUnsafeBytes { CRC32C($0).masked }
    let failure = error {
      try CheckpointReader(prefix: model + "/variables/variables").withBytes(of: entry) { _ in }
    }
    #expect(failure?.code == .checksumMismatch)
    #expect(
      failure?.description
        == "\(shard) (tensor '\(entry.key)'): The data has CRC32C 0x\(String(computed, radix: 16)) "
        + "(masked) but the index records 0x\(String(entry.recordedChecksum, radix: 16)). The "
        + "shard is corrupt; re-export the checkpoint.")
  }

  @Test("A shape whose element count overflows")
  func shapeOverflow() throws {
    let folder = TemporaryFolder()
    let prefix = folder.child("huge")
    var header = Tensorflow_BundleHeaderProto()
    header.numShards = 1
    var entry = Tensorflow_BundleEntryProto()
    entry.dtype = .dtFloat
    entry.shape = GraphProtos.shape([1 << 40, 1 << 40])
    var table = SortedTable.Builder()
    table.add(key: [], value: try header.serializedBytes())
    table.add(key: Array("w".utf8), value: try entry.serializedBytes())
    try Data(table.finish()).write(to: URL(fileURLWithPath: prefix + ".index"))
    try Data().write(to: URL(fileURLWithPath: prefix + ".data-00000-of-00001"))
    #expect(
      error { _ = try CheckpointReader(prefix: prefix) }?.description
        == "\(prefix).index (entry 'w'): The shape [1099511627776, 1099511627776] has more "
        + "elements than can be addressed. The index is corrupt; re-export the checkpoint.")
  }

  /// The size of data block 0 in a single-block index: it ends 5 trailer bytes before the
  /// metaindex block, whose offset is the footer's first varint.
  private func firstBlockSize(_ indexPath: String) throws -> Int {
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: indexPath)))
    let footer = Array(bytes.suffix(48))
    return try footer.withUnsafeBytes { raw in
      var reader = ByteReader(raw, path: indexPath, location: "footer")
      return try reader.readLength() - SortedTable.blockTrailerSize
    }
  }
}

/// Flips every bit of the byte at `offset` in the file at `path`.
func corrupt(_ path: String, at offset: Int) throws {
  var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
  bytes[offset] ^= 0xFF
  try Data(bytes).write(to: URL(fileURLWithPath: path))
}

@Suite("Corrupted model files give errors, never crashes")
struct CorruptionTests {
  @Test("Flipped bytes in a checkpoint index", arguments: [1, 2] as [UInt64])
  func flippedIndex(seed: UInt64) throws {
    let folder = TemporaryFolder()
    let model = try folder.copyFixture("attention")
    let path = model + "/variables/variables.index"
    let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    var random = SeededGenerator(seed: seed)
    var rejected = 0
    for _ in 0..<200 {
      var bytes = original
      for _ in 0..<3 {
        bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(
          in: 0...255, using: &random)
      }
      try Data(bytes).write(to: URL(fileURLWithPath: path))
      do {
        _ = try CheckpointReader(prefix: model + "/variables/variables")
      } catch is ModelFormatError {
        rejected += 1
      }
    }
    // Every block is checksummed, so nearly every corruption is caught.
    #expect(rejected >= 190, "seed \(seed): \(rejected) of 200 rejected")
  }
}
