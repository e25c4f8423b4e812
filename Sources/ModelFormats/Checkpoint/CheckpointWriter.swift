public import TensorCore
internal import TFProtos
internal import SwiftProtobuf
internal import Foundation

/// Writes a TensorFlow checkpoint (tensor bundle) whose bytes are what TensorFlow writes for the
/// same tensors added in the same order.
///
/// Each shard's data file holds its tensors in the order they were added, without padding; the
/// index (written by ``finish()``) lists them sorted by key. Tensor data streams to disk as it is
/// added, so writing a large checkpoint holds only the index in memory.
public final class CheckpointWriter {
  /// The path prefix being written.
  public let prefix: String
  private let outputs: [FileOutput]
  private var entries: [(key: [UInt8], proto: Tensorflow_BundleEntryProto)] = []
  private var keys: Set<String> = []
  private var finished = false

  /// Creates the data files of a checkpoint at `prefix`.
  ///
  /// - Parameters:
  ///   - prefix: The path without `.index`, such as `out/variables/variables`. Its folder must exist.
  ///   - shardCount: The number of data shards (TensorFlow writes 1 unless asked to shard).
  /// - Throws: ``ModelFormatError`` when a file cannot be created.
  public init(prefix: String, shardCount: Int = 1) throws {
    precondition(shardCount >= 1, "a checkpoint has at least one shard")
    self.prefix = prefix
    outputs = try (0..<shardCount).map { shard in
      try FileOutput(
        path: CheckpointReader.dataPath(prefix: prefix, shard: shard, of: shardCount))
    }
  }

  /// Appends a fixed-size tensor's little-endian, row-major bytes.
  ///
  /// - Precondition: `key` is new, `dtype` has a fixed size, and `bytes.count` matches `shape`.
  /// - Throws: ``ModelFormatError`` when the data file cannot be written.
  public func add(
    key: String, dtype: DType, shape: Shape, shard: Int = 0, bytes: UnsafeRawBufferPointer
  ) throws {
    precondition(
      shape.byteCount(of: dtype) == bytes.count, "\(key): byte count does not match \(shape)")
    try append(
      key: key, dtype: dtype, shape: shape, shard: shard, maskedChecksum: CRC32C(bytes).masked,
      bytes: bytes)
  }

  /// Appends a string tensor.
  ///
  /// - Precondition: `key` is new and `strings.count` matches `shape`.
  public func add(key: String, shape: Shape, shard: Int = 0, strings: [[UInt8]]) throws {
    precondition(shape.elementCount == strings.count, "\(key): string count does not match shape")
    let (bytes, checksum) = StringTensorCoding.encode(strings)
    try bytes.withUnsafeBytes { raw in
      try append(
        key: key, dtype: .string, shape: shape, shard: shard, maskedChecksum: checksum,
        bytes: raw)
    }
  }

  /// Copies the tensor of `entry` from `reader`, checking its checksum on the way.
  public func copy(_ entry: CheckpointEntry, from reader: CheckpointReader) throws {
    if entry.dtype == .string {
      try add(
        key: entry.key, shape: entry.shape, shard: entry.shard, strings: reader.strings(of: entry))
    } else {
      try reader.withBytes(of: entry) { bytes in
        try append(
          key: entry.key, dtype: entry.dtype, shape: entry.shape, shard: entry.shard,
          maskedChecksum: entry.recordedChecksum, bytes: bytes)
      }
    }
  }

  /// Writes the remaining data and the index. Call exactly once, after the last tensor.
  public func finish() throws {
    precondition(!finished, "finish() called twice")
    finished = true
    for output in outputs { try output.flush() }
    var header = Tensorflow_BundleHeaderProto()
    header.numShards = Int32(outputs.count)
    header.version.producer = 1
    var table = SortedTable.Builder()
    let headerBytes: [UInt8] = try header.serializedBytes()
    table.add(key: [], value: headerBytes)
    for entry in entries.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
      let value: [UInt8] = try entry.proto.serializedBytes()
      table.add(key: entry.key, value: value)
    }
    let index = try FileOutput(path: prefix + ".index")
    try index.write(table.finish())
    try index.flush()
  }

  private func append(
    key: String, dtype: DType, shape: Shape, shard: Int, maskedChecksum: UInt32,
    bytes: UnsafeRawBufferPointer
  ) throws {
    precondition(!finished, "add after finish()")
    precondition(keys.insert(key).inserted, "duplicate checkpoint key '\(key)'")
    precondition(outputs.indices.contains(shard), "no shard \(shard)")
    let output = outputs[shard]
    var proto = Tensorflow_BundleEntryProto()
    proto.dtype = Tensorflow_DataType(rawValue: dtype.rawValue) ?? .dtInvalid
    proto.shape.dim = shape.dimensions.map { size in
      var dimension = Tensorflow_TensorShapeProto.Dim()
      dimension.size = Int64(size)
      return dimension
    }
    proto.shardID = Int32(shard)
    proto.offset = Int64(output.offset)
    proto.size = Int64(bytes.count)
    proto.crc32C = maskedChecksum
    entries.append((Array(key.utf8), proto))
    try output.write(bytes)
  }
}
