package import TensorCore
internal import TFProtos
internal import SwiftProtobuf
internal import Foundation
internal import Synchronization

/// A TensorFlow checkpoint (a "tensor bundle": `<prefix>.index` plus `<prefix>.data-*-of-*`),
/// opened for reading.
///
/// Opening reads and checks the whole index (block checksums, key order, every entry's dtype,
/// shape, size and extent in its shard) and maps the data shards without reading them. Tensor
/// bytes are checked against their recorded CRC32C when read.
public final class CheckpointReader: Sendable {
  /// The path prefix, such as `model/variables/variables`.
  public let prefix: String
  /// Every tensor entry, sorted by key (the header entry excluded).
  public let entries: [CheckpointEntry]
  private let entryIndex: [String: Int]
  private let shards: [MappedFile]
  /// Keys whose data already passed its checksum: a tensor read twice (range check, then
  /// rewrite) is verified once.
  private let verifiedKeys = Mutex<Set<String>>([])
  /// Range counts taken, by type and key: a conversion's passes, and every conversion an
  /// accuracy search tries, ask about the same tensors.
  private let rangeCountsTaken = Mutex<[ReducedPrecision: [String: RangeCounts]]>([:])

  /// The key of the serialized `TrackableObjectGraph` in TF2 checkpoints.
  public static let objectGraphKey = "_CHECKPOINTABLE_OBJECT_GRAPH"

  /// Opens the checkpoint at `prefix`.
  ///
  /// - Parameter prefix: The path without `.index`, such as `model/variables/variables`.
  /// - Throws: ``ModelFormatError`` naming the file and what is wrong when the index or a shard
  ///   is missing, truncated or corrupt.
  public convenience init(prefix: String) throws {
    try self.init(prefix: prefix) { path throws(ModelFormatError) in try MappedFile(path: path) }
  }

  /// Opens the checkpoint at `prefix` from `files` (the index and shards by path) in memory.
  package convenience init(prefix: String, files: [String: [UInt8]]) throws {
    try self.init(prefix: prefix) { path throws(ModelFormatError) in
      guard let bytes = files[path] else {
        throw ModelFormatError(code: .missingInput, path: path, message: "No such file.")
      }
      return MappedFile(bytes: bytes, path: path)
    }
  }

  /// Opens the checkpoint at `prefix`, each file opened by `open`.
  private init(prefix: String, open: (String) throws(ModelFormatError) -> MappedFile) throws {
    self.prefix = prefix
    let indexPath = prefix + ".index"
    let index = try open(indexPath)
    let tableEntries = try SortedTable.entries(of: index)
    guard let headerEntry = tableEntries.first, headerEntry.key.isEmpty else {
      throw ModelFormatError(
        code: .malformed, path: indexPath, location: "first entry",
        message: "Expected the bundle header under the empty key but found "
          + (tableEntries.first.map { "'\(String(decoding: $0.key, as: UTF8.self))'" }
            ?? "no entries")
          + ". The index is corrupt; re-export the checkpoint.")
    }
    let header: Tensorflow_BundleHeaderProto = try Self.decode(
      index, range: headerEntry.valueRange, location: "bundle header")
    guard header.endianness == .little else {
      throw ModelFormatError(
        code: .unsupported, path: indexPath, location: "bundle header",
        message: "The checkpoint was written big-endian; tfmp reads little-endian checkpoints. "
          + "Re-save it on a little-endian machine.")
    }
    guard header.numShards >= 1 else {
      throw ModelFormatError(
        code: .malformed, path: indexPath, location: "bundle header",
        message: "Expected at least 1 data shard but the header records \(header.numShards). "
          + "The index is corrupt; re-export the checkpoint.")
    }
    let shardCount = Int(header.numShards)
    shards = try (0..<shardCount).map { shard in
      try open(Self.dataPath(prefix: prefix, shard: shard, of: shardCount))
    }
    var entries: [CheckpointEntry] = []
    for tableEntry in tableEntries.dropFirst() {
      let key = String(decoding: tableEntry.key, as: UTF8.self)
      let proto: Tensorflow_BundleEntryProto = try Self.decode(
        index, range: tableEntry.valueRange, location: "entry '\(key)'")
      entries.append(try Self.entry(key: key, proto: proto, indexPath: indexPath, shards: shards))
    }
    self.entries = entries
    entryIndex = Dictionary(
      entries.enumerated().map { ($1.key, $0) }, uniquingKeysWith: { first, _ in first })
  }

  /// The path of data shard `shard` of `count`: `<prefix>.data-00000-of-00001`.
  public static func dataPath(prefix: String, shard: Int, of count: Int) -> String {
    func fiveDigits(_ value: Int) -> String {
      let digits = String(value)
      return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }
    return "\(prefix).data-\(fiveDigits(shard))-of-\(fiveDigits(count))"
  }

  /// The number of data shards.
  public var shardCount: Int { shards.count }

  /// The entry for `key`, or `nil` if the checkpoint has none.
  public func entry(forKey key: String) -> CheckpointEntry? {
    entryIndex[key].map { entries[$0] }
  }

  /// Calls `body` with the stored bytes of a fixed-size tensor, after checking their CRC32C.
  ///
  /// The bytes are the mapped file itself: nothing is copied. They are little-endian, row-major,
  /// and valid only inside `body`: afterwards their pages are released, so a pass over every
  /// tensor holds about one tensor in memory.
  /// - Throws: ``ModelFormatError`` with code `checksumMismatch` when the bytes do not match the
  ///   recorded checksum, or whatever `body` throws.
  public func withBytes<R>(
    of entry: CheckpointEntry, _ body: (UnsafeRawBufferPointer) throws -> R
  ) throws -> R {
    let shard = shards[entry.shard]
    defer { shard.release(entry.byteRange) }
    return try shard.withBytes(in: entry.byteRange) { bytes in
      if entry.dtype != .string && !verifiedKeys.withLock({ $0.contains(entry.key) }) {
        let computed = CRC32C(bytes).masked
        guard computed == entry.recordedChecksum else {
          throw Self.checksumError(entry, computed: computed, path: shard.path)
        }
        verifiedKeys.withLock { _ = $0.insert(entry.key) }
      }
      return try body(bytes)
    }
  }

  /// How the float32 tensor `entry`'s values fare when rounded to `precision` (read once per
  /// key and type).
  ///
  /// - Precondition: `entry` is float32.
  /// - Throws: ``ModelFormatError`` when its bytes cannot be read.
  package func rangeCounts(of entry: CheckpointEntry, in precision: ReducedPrecision) throws
    -> RangeCounts
  {
    precondition(entry.dtype == .float32, "only float32 tensors are range-checked")
    if let taken = rangeCountsTaken.withLock({ $0[precision]?[entry.key] }) { return taken }
    let counts = try withBytes(of: entry) {
      RangeCounts(float32LittleEndian: $0, roundedTo: precision)
    }
    rangeCountsTaken.withLock { $0[precision, default: [:]][entry.key] = counts }
    return counts
  }

  /// The elements of a `DT_STRING` tensor, after checking their checksums.
  public func strings(of entry: CheckpointEntry) throws -> [[UInt8]] {
    precondition(entry.dtype == .string, "strings(of:) needs a string tensor")
    let shard = shards[entry.shard]
    defer { shard.release(entry.byteRange) }
    return try shard.withBytes(in: entry.byteRange) { (bytes) throws -> [[UInt8]] in
      let location = "tensor '\(entry.key)'"
      let (strings, computed) = try StringTensorCoding.decode(
        bytes, elementCount: entry.shape.elementCount ?? 0, path: shard.path, location: location)
      guard computed == entry.recordedChecksum else {
        throw Self.checksumError(entry, computed: computed, path: shard.path)
      }
      return strings
    }
  }

  /// The path of the shard file holding `entry`.
  public func shardPath(of entry: CheckpointEntry) -> String { shards[entry.shard].path }

  private static func checksumError(
    _ entry: CheckpointEntry, computed: UInt32, path: String
  ) -> ModelFormatError {
    ModelFormatError(
      code: .checksumMismatch, path: path, location: "tensor '\(entry.key)'",
      message: "The data has CRC32C 0x\(String(computed, radix: 16)) (masked) but the index "
        + "records 0x\(String(entry.recordedChecksum, radix: 16)). The shard is corrupt; "
        + "re-export the checkpoint.")
  }

  private static func decode<M: Message>(
    _ file: MappedFile, range: Range<Int>, location: String
  ) throws(ModelFormatError) -> M {
    do {
      return try M(serializedBytes: file.withBytes(in: range) { Data($0) })
    } catch {
      throw ModelFormatError(
        code: .malformed, path: file.path, location: location,
        message: "The value is not a valid \(M.protoMessageName) protobuf. The index is "
          + "corrupt; re-export the checkpoint.", underlyingError: error)
    }
  }

  private static func entry(
    key: String, proto: Tensorflow_BundleEntryProto, indexPath: String, shards: [MappedFile]
  ) throws(ModelFormatError) -> CheckpointEntry {
    func failure(_ code: ModelFormatError.Code, _ message: String) -> ModelFormatError {
      ModelFormatError(code: code, path: indexPath, location: "entry '\(key)'", message: message)
    }
    guard let dtype = DType(rawValue: proto.dtype.rawValue) else {
      throw failure(
        .unsupported,
        "The dtype number \(proto.dtype.rawValue) is not a TensorFlow dtype tfmp knows.")
    }
    guard proto.slices.isEmpty else {
      throw failure(
        .unsupported,
        "The tensor is saved as \(proto.slices.count) slices (a partitioned variable); tfmp "
          + "reads whole tensors only. Re-save the model without variable partitioning.")
    }
    let dimensions = proto.shape.dim.map { Int($0.size) }
    let shape = Shape(dimensions)
    guard !proto.shape.unknownRank, dimensions.allSatisfy({ $0 >= 0 }) else {
      throw failure(
        .malformed,
        "Expected a fully known shape but found \(shape). The index is corrupt; re-export the "
          + "checkpoint.")
    }
    guard let elementCount = shape.elementCount else {
      throw failure(
        .malformed,
        "The shape \(shape) has more elements than can be addressed. The index is corrupt; "
          + "re-export the checkpoint.")
    }
    guard proto.shardID >= 0, Int(proto.shardID) < shards.count else {
      throw failure(
        .malformed,
        "The entry names data shard \(proto.shardID) but the checkpoint has \(shards.count). "
          + "The index is corrupt; re-export the checkpoint.")
    }
    guard proto.offset >= 0, proto.size >= 0 else {
      throw failure(
        .malformed,
        "Expected a non-negative offset and size but found \(proto.offset) and \(proto.size). "
          + "The index is corrupt; re-export the checkpoint.")
    }
    if let size = dtype.byteSize {
      let (expected, overflow) = elementCount.multipliedReportingOverflow(by: size)
      guard !overflow, Int64(expected) == proto.size else {
        throw failure(
          .malformed,
          "A \(dtype) tensor of shape \(shape) needs \(overflow ? "more than Int.max" : String(expected)) "
            + "bytes but the entry records \(proto.size). The index is corrupt; re-export the "
            + "checkpoint.")
      }
    }
    let shard = shards[Int(proto.shardID)]
    let offset = Int(proto.offset)
    let byteCount = Int(proto.size)
    guard offset <= shard.count, byteCount <= shard.count - offset else {
      throw ModelFormatError(
        code: .truncated, path: shard.path, location: "tensor '\(key)'",
        message: "The tensor needs bytes \(offset)..<\(offset + byteCount) but the file has "
          + "\(shard.count) bytes. The shard is truncated; re-export the checkpoint.")
    }
    return CheckpointEntry(
      key: key, dtype: dtype, shape: shape, shard: Int(proto.shardID), offset: offset,
      byteCount: byteCount, recordedChecksum: proto.crc32C)
  }
}
