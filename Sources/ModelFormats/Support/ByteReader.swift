/// Reads little-endian integers and LevelDB varints from a byte buffer, throwing a located
/// ``ModelFormatError`` instead of reading past the end.
struct ByteReader {
  let bytes: UnsafeRawBufferPointer
  /// The offset of the next byte to read.
  var position: Int
  /// The file the bytes come from, for error messages.
  let path: String
  /// Where in the file the buffer lies, for error messages.
  let location: String
  /// The file offset of `bytes[0]`, so messages give file offsets.
  let baseOffset: Int

  init(
    _ bytes: UnsafeRawBufferPointer, path: String, location: String, baseOffset: Int = 0,
    position: Int = 0
  ) {
    self.bytes = bytes
    self.position = position
    self.path = path
    self.location = location
    self.baseOffset = baseOffset
  }

  var isAtEnd: Bool { position >= bytes.count }
  var remaining: Int { bytes.count - position }

  func malformed(_ message: String) -> ModelFormatError {
    ModelFormatError(code: .malformed, path: path, location: location, message: message)
  }

  mutating func readByte() throws(ModelFormatError) -> UInt8 {
    guard position < bytes.count else {
      throw malformed(
        "The data ends at offset \(baseOffset + bytes.count) in the middle of a value. "
          + "The file is truncated or corrupt; re-export the model.")
    }
    defer { position += 1 }
    return bytes[position]
  }

  /// Reads a LevelDB/protobuf base-128 varint of at most `maxBytes` bytes.
  mutating func readVarint(maxBytes: Int = 10) throws(ModelFormatError) -> UInt64 {
    let start = position
    var result: UInt64 = 0
    for index in 0..<maxBytes {
      let byte = try readByte()
      result |= UInt64(byte & 0x7F) << UInt64(7 * index)
      if byte & 0x80 == 0 { return result }
    }
    throw malformed(
      "The varint at offset \(baseOffset + start) is longer than \(maxBytes) bytes. "
        + "The file is corrupt; re-export the model.")
  }

  mutating func readVarint32() throws(ModelFormatError) -> UInt32 {
    UInt32(truncatingIfNeeded: try readVarint(maxBytes: 5))
  }

  /// Reads a varint that counts bytes or items and must fit in `Int`.
  mutating func readLength() throws(ModelFormatError) -> Int {
    let start = position
    let value = try readVarint()
    guard value <= UInt64(Int.max) else {
      throw malformed(
        "The length \(value) at offset \(baseOffset + start) is impossibly large. "
          + "The file is corrupt; re-export the model.")
    }
    return Int(value)
  }

  /// Reads a 32-bit little-endian unsigned integer.
  mutating func readUInt32LittleEndian() throws(ModelFormatError) -> UInt32 {
    guard remaining >= 4 else {
      throw malformed(
        "Expected 4 bytes at offset \(baseOffset + position) but the data ends at "
          + "\(baseOffset + bytes.count). The file is truncated or corrupt; re-export the model.")
    }
    let value = bytes.loadUnaligned(fromByteOffset: position, as: UInt32.self)
    position += 4
    return UInt32(littleEndian: value)
  }

  /// Returns the next `count` bytes as a slice of the buffer.
  mutating func readBytes(_ count: Int) throws(ModelFormatError) -> UnsafeRawBufferPointer {
    guard count >= 0, count <= remaining else {
      throw malformed(
        "Expected \(count) bytes at offset \(baseOffset + position) but only \(remaining) remain. "
          + "The file is truncated or corrupt; re-export the model.")
    }
    defer { position += count }
    return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
  }
}

/// Appends LevelDB encodings to a byte array.
extension Array where Element == UInt8 {
  mutating func appendVarint(_ value: UInt64) {
    var remaining = value
    while remaining >= 0x80 {
      append(UInt8(truncatingIfNeeded: remaining) | 0x80)
      remaining >>= 7
    }
    append(UInt8(remaining))
  }

  mutating func appendUInt32LittleEndian(_ value: UInt32) {
    Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
  }

  mutating func appendUInt64LittleEndian(_ value: UInt64) {
    Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
  }
}
