/// The byte layout of a `DT_STRING` tensor in a checkpoint data file (TensorFlow's
/// `tensor_bundle.cc`): varint64 lengths, the masked CRC32C of the lengths (each as a
/// little-endian uint32, or uint64 when larger), then the concatenated string bytes.
///
/// The entry's checksum covers the lengths as fixed-width integers (not their varint bytes),
/// the four length-checksum bytes and the string bytes.
enum StringTensorCoding {
  /// Encodes `strings` and returns the bytes and the entry's masked checksum.
  static func encode(_ strings: [[UInt8]]) -> (bytes: [UInt8], maskedChecksum: UInt32) {
    var bytes: [UInt8] = []
    var lengthsChecksum = CRC32C()
    for string in strings {
      bytes.appendVarint(UInt64(string.count))
      updateWithLength(&lengthsChecksum, string.count)
    }
    var entryChecksum = lengthsChecksum
    let storedLengthsChecksum = lengthsChecksum.masked
    bytes.appendUInt32LittleEndian(storedLengthsChecksum)
    entryChecksum.update(littleEndian: storedLengthsChecksum)
    for string in strings {
      bytes += string
      string.withUnsafeBytes { entryChecksum.update($0) }
    }
    return (bytes, entryChecksum.masked)
  }

  /// Decodes `elementCount` strings from `data` and returns them with the entry's masked
  /// checksum as computed from the data.
  static func decode(
    _ data: UnsafeRawBufferPointer, elementCount: Int, path: String, location: String
  ) throws(ModelFormatError) -> (strings: [[UInt8]], maskedChecksum: UInt32) {
    var reader = ByteReader(data, path: path, location: location)
    var lengths: [Int] = []
    var checksum = CRC32C()
    for _ in 0..<elementCount {
      let length = try reader.readLength()
      guard length <= data.count else {
        throw reader.malformed(
          "A string of \(length) bytes cannot fit in a tensor of \(data.count) bytes. "
            + "The shard is corrupt; re-export the checkpoint.")
      }
      lengths.append(length)
      updateWithLength(&checksum, length)
    }
    let storedLengthsChecksum = try reader.readUInt32LittleEndian()
    guard storedLengthsChecksum == checksum.masked else {
      throw ModelFormatError(
        code: .checksumMismatch, path: path, location: location,
        message: "The string lengths have CRC32C 0x\(String(checksum.masked, radix: 16)) "
          + "(masked) but the data records 0x\(String(storedLengthsChecksum, radix: 16)). "
          + "The shard is corrupt; re-export the checkpoint.")
    }
    checksum.update(littleEndian: storedLengthsChecksum)
    var strings: [[UInt8]] = []
    strings.reserveCapacity(elementCount)
    for length in lengths {
      let bytes = try reader.readBytes(length)
      checksum.update(bytes)
      strings.append(Array(bytes))
    }
    guard reader.isAtEnd else {
      throw reader.malformed(
        "The strings end at byte \(reader.position) of the \(data.count)-byte tensor. "
          + "The shard is corrupt; re-export the checkpoint.")
    }
    return (strings, checksum.masked)
  }

  private static func updateWithLength(_ checksum: inout CRC32C, _ length: Int) {
    if length <= Int(UInt32.max) {
      checksum.update(littleEndian: UInt32(length))
    } else {
      checksum.update(littleEndian: UInt64(length))
    }
  }
}
