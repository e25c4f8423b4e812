public import TensorCore

/// One tensor recorded in a checkpoint's index: where its bytes are and what they hold.
public struct CheckpointEntry: Sendable, Hashable {
  /// The checkpoint key, such as `dense/kernel/.ATTRIBUTES/VARIABLE_VALUE`.
  public var key: String
  /// The element type.
  public var dtype: DType
  /// The tensor's shape.
  public var shape: Shape
  /// The data shard holding the bytes (0 for single-shard checkpoints).
  public var shard: Int
  /// The offset of the first byte in the shard file.
  public var offset: Int
  /// The number of bytes in the shard file.
  public var byteCount: Int
  /// The masked CRC32C recorded in the index.
  public var recordedChecksum: UInt32

  /// The byte range in the shard file.
  public var byteRange: Range<Int> { offset..<(offset + byteCount) }
}
