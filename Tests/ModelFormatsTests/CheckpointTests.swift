import Foundation
import TFProtos
import TensorCore
import Testing
import _TestSupport

@testable import ModelFormats

@Suite("Checkpoint bundles")
struct CheckpointTests {
  @Test("CRC32C has the Castagnoli check value and LevelDB masking round-trips")
  func crc32c() {
    let check = Array("123456789".utf8).withUnsafeBytes { CRC32C($0).value }
    #expect(check == 0xE306_9283)
    var random = SeededGenerator(seed: 7)
    for _ in 0..<1000 {
      let value = UInt32.random(in: .min ... .max, using: &random)
      #expect(CRC32C.unmask(CRC32C.mask(value)) == value, "seed 7: value \(value)")
    }
    // Slicing by 8 and the byte loop agree: checksum in one piece and in odd-sized pieces.
    let bytes = (0..<1000).map { _ in UInt8.random(in: 0...255, using: &random) }
    let whole = bytes.withUnsafeBytes { CRC32C($0).value }
    var pieces = CRC32C()
    for start in stride(from: 0, to: bytes.count, by: 13) {
      bytes[start..<min(start + 13, bytes.count)].withUnsafeBytes { pieces.update($0) }
    }
    #expect(pieces.value == whole)
  }

  @Test(
    "The CPU instruction and the portable tables agree", arguments: [3, 99, 0xC0FFEE] as [UInt64])
  func instructionMatchesTables(seed: UInt64) {
    var random = SeededGenerator(seed: seed)
    for _ in 0..<200 {
      let count = Int.random(in: 0..<300, using: &random)
      let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
      var tables = CRC32C()
      bytes.withUnsafeBytes { tables.updateWithTables($0) }
      let automatic = bytes.withUnsafeBytes { CRC32C($0) }
      #expect(automatic.value == tables.value, "seed \(seed): \(count) bytes")
    }
  }

  @Test("Index keys shorten as LevelDB's bytewise comparator does")
  func keyShortening() {
    var last = Array("w/.ATTRIBUTES/VARIABLE_VALUE".utf8)
    SortedTable.Builder.shortSuccessor(&last)
    #expect(last == Array("x".utf8))
    var separator = Array("variables/10/.ATTRIBUTES".utf8)
    SortedTable.Builder.shortenSeparator(&separator, limit: Array("variables/7/x".utf8))
    #expect(separator == Array("variables/2".utf8))
    var prefix = Array("abc".utf8)
    SortedTable.Builder.shortenSeparator(&prefix, limit: Array("abcd".utf8))
    #expect(prefix == Array("abc".utf8))
    var adjacent = Array("ab".utf8)
    SortedTable.Builder.shortenSeparator(&adjacent, limit: Array("ac".utf8))
    #expect(adjacent == Array("ab".utf8))
  }

  @Test(
    "Rewriting a fixture's checkpoint reproduces TensorFlow's files byte for byte",
    arguments: Fixtures.savedModels)
  func rewriteIsByteIdentical(fixture: String) throws {
    let prefix = Fixtures.path(fixture) + "/variables/variables"
    let reader = try CheckpointReader(prefix: prefix)
    let folder = TemporaryFolder()
    let writer = try CheckpointWriter(prefix: folder.child("ckpt"), shardCount: reader.shardCount)
    for entry in reader.entries.sorted(by: { ($0.shard, $0.offset) < ($1.shard, $1.offset) }) {
      try writer.copy(entry, from: reader)
    }
    try writer.finish()
    let files =
      ["index"]
      + (0..<reader.shardCount).map { shard in
        String(
          CheckpointReader.dataPath(prefix: "", shard: shard, of: reader.shardCount).dropFirst())
      }
    for file in files {
      let original = try Data(contentsOf: URL(fileURLWithPath: "\(prefix).\(file)"))
      let rewritten = try Data(contentsOf: URL(fileURLWithPath: folder.child("ckpt.\(file)")))
      #expect(original == rewritten, "\(fixture): \(file) differs")
    }
  }

  @Test("A checkpoint written from scratch reads back, across several index blocks and shards")
  func writeFromScratch() throws {
    let folder = TemporaryFolder()
    let prefix = folder.child("scratch")
    let writer = try CheckpointWriter(prefix: prefix, shardCount: 2)
    var random = SeededGenerator(seed: 42)
    var expected: [String: (DType, Shape, [UInt8])] = [:]
    func add(_ key: String, _ dtype: DType, _ shape: Shape, shard: Int = 0) throws {
      let count = shape.byteCount(of: dtype) ?? 0
      let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
      try bytes.withUnsafeBytes {
        try writer.add(key: key, dtype: dtype, shape: shape, shard: shard, bytes: $0)
      }
      expected[key] = (dtype, shape, bytes)
    }
    try add("half", .float16, Shape([3, 5]))
    try add("brain", .bfloat16, Shape([7]), shard: 1)
    try add("single", .float32, Shape([2, 2, 2]))
    try add("scalar", .int64, Shape([]))
    try add("empty", .float32, Shape([0, 4]), shard: 1)
    try add("flags", .bool, Shape([3]))
    // Enough keys for the index to need several 256 KiB data blocks.
    for index in 0..<6000 {
      try add("many/\(index)/.ATTRIBUTES/VARIABLE_VALUE_WITH_A_LONG_SUFFIX", .float32, Shape([1]))
    }
    let strings: [[UInt8]] = [Array("object graph".utf8), [], [0, 255, 7]]
    try writer.add(key: "text", shape: Shape([3]), strings: strings)
    try writer.finish()

    let reader = try CheckpointReader(prefix: prefix)
    #expect(reader.shardCount == 2)
    #expect(reader.entries.count == expected.count + 1)
    let indexSize =
      try FileManager.default.attributesOfItem(atPath: prefix + ".index")[.size] as? Int
    #expect((indexSize ?? 0) > SortedTable.blockSize)
    for (key, (dtype, shape, bytes)) in expected {
      let entry = try #require(reader.entry(forKey: key))
      #expect(entry.dtype == dtype && entry.shape == shape, "\(key)")
      try reader.withBytes(of: entry) { #expect(Array($0) == bytes, "\(key)") }
    }
    let text = try #require(reader.entry(forKey: "text"))
    #expect(try reader.strings(of: text) == strings)
  }
}
