/// The subset of the ZIP format Keras archives use: entries listed in a central directory,
/// stored (uncompressed) data. Rewriting copies every untouched entry's bytes as they are.
struct ZipArchive: Sendable {
  struct Entry: Sendable {
    var name: String
    /// The central directory record, as in the file.
    var centralRecord: [UInt8]
    var localHeaderOffset: Int
    /// The local header and data (and data descriptor, if any), as in the file.
    var localRange: Range<Int>
    var dataRange: Range<Int>
    var method: UInt16
  }

  let file: MappedFile
  let entries: [Entry]
  /// The end-of-central-directory record, comment included.
  let endRecord: [UInt8]

  init(_ file: MappedFile) throws(ModelFormatError) {
    self.file = file
    let path = file.path
    func notZip(_ detail: String) -> ModelFormatError {
      ModelFormatError(
        code: .notAModel, path: path,
        message: "Expected a Keras archive (a zip file holding config.json) but \(detail). Pass a "
          + "file written by model.save('model.keras').")
    }
    let (entries, endRecord) = try file.withBytes {
      (bytes) throws(ModelFormatError) -> ([Entry], [UInt8]) in
      guard bytes.count >= 22 else { throw notZip("the file has only \(bytes.count) bytes") }
      var end = bytes.count - 22
      let lowest = max(0, bytes.count - 22 - 65_535)
      while end >= lowest && Self.uint32(bytes, end) != 0x0605_4B50 { end -= 1 }
      guard end >= lowest else { throw notZip("it has no zip end record") }
      let count = Int(Self.uint16(bytes, end + 10))
      let directorySize = Int(Self.uint32(bytes, end + 12))
      let directoryOffset = Int(Self.uint32(bytes, end + 16))
      if count == 0xFFFF || directoryOffset == 0xFFFF_FFFF {
        throw ModelFormatError(
          code: .unsupported, path: path, location: "zip end record",
          message: "The archive uses zip64 (over 65,535 entries or 4 GiB); tfmp reads archives "
            + "below those limits.")
      }
      guard directoryOffset + directorySize <= end else {
        throw ModelFormatError(
          code: .malformed, path: path, location: "zip end record",
          message: "The central directory (\(directorySize) bytes at offset \(directoryOffset)) "
            + "overlaps the end record at \(end). The archive is corrupt; re-save the model.")
      }
      var entries: [Entry] = []
      var position = directoryOffset
      for index in 0..<count {
        guard position + 46 <= end, Self.uint32(bytes, position) == 0x0201_4B50 else {
          throw ModelFormatError(
            code: .malformed, path: path, location: "central directory entry \(index)",
            message: "Expected a central directory record at offset \(position). The archive is "
              + "truncated or corrupt; re-save the model.")
        }
        let flags = Self.uint16(bytes, position + 8)
        let method = Self.uint16(bytes, position + 10)
        let compressedSize = Int(Self.uint32(bytes, position + 20))
        let nameLength = Int(Self.uint16(bytes, position + 28))
        let recordLength =
          46 + nameLength + Int(Self.uint16(bytes, position + 30))
          + Int(Self.uint16(bytes, position + 32))
        let localOffset = Int(Self.uint32(bytes, position + 42))
        guard position + recordLength <= end, localOffset + 30 <= directoryOffset else {
          throw ModelFormatError(
            code: .malformed, path: path, location: "central directory entry \(index)",
            message:
              "The record points outside the archive. The archive is corrupt; re-save the model.")
        }
        let name = String(
          decoding: UnsafeRawBufferPointer(
            rebasing: bytes[(position + 46)..<(position + 46 + nameLength)]), as: UTF8.self)
        guard flags & 1 == 0 else {
          throw ModelFormatError(
            code: .unsupported, path: path, location: "entry '\(name)'",
            message: "The entry is encrypted; Keras archives are not. Re-save the model.")
        }
        let dataStart =
          localOffset + 30 + Int(Self.uint16(bytes, localOffset + 26))
          + Int(Self.uint16(bytes, localOffset + 28))
        var localEnd = dataStart + compressedSize
        if flags & 8 != 0 {  // a data descriptor follows the data, with or without its signature
          localEnd +=
            localEnd + 4 <= directoryOffset && Self.uint32(bytes, localEnd) == 0x0807_4B50 ? 16 : 12
        }
        guard localEnd <= directoryOffset else {
          throw ModelFormatError(
            code: .truncated, path: path, location: "entry '\(name)'",
            message: "The entry's data ends at \(localEnd), past the central directory at "
              + "\(directoryOffset). The archive is truncated or corrupt; re-save the model.")
        }
        entries.append(
          Entry(
            name: name, centralRecord: Array(bytes[position..<(position + recordLength)]),
            localHeaderOffset: localOffset, localRange: localOffset..<localEnd,
            dataRange: dataStart..<(dataStart + compressedSize), method: method))
        position += recordLength
      }
      return (entries, Array(bytes[end...]))
    }
    self.entries = entries
    self.endRecord = endRecord
  }

  func entry(named name: String) -> Entry? { entries.first { $0.name == name } }

  /// The contents of a stored entry.
  func contents(of entry: Entry) throws(ModelFormatError) -> [UInt8] {
    guard entry.method == 0 else {
      throw ModelFormatError(
        code: .unsupported, path: file.path, location: "entry '\(entry.name)'",
        message: "The entry is compressed (method \(entry.method)); Keras stores its entries "
          + "uncompressed and tfmp reads only those. Re-save the model with model.save.")
    }
    return file.withBytes(in: entry.dataRange) { Array($0) }
  }

  /// Writes the archive to `output` with the data of the entries in `replacements` (stored,
  /// uncompressed) changed; every other entry's bytes are copied unchanged.
  func write(to output: FileOutput, replacing replacements: [String: [UInt8]]) throws {
    var directory: [UInt8] = []
    for entry in entries.sorted(by: { $0.localHeaderOffset < $1.localHeaderOffset }) {
      var record = entry.centralRecord
      let offset = output.offset
      if let data = replacements[entry.name] {
        var header = file.withBytes(in: entry.localHeaderOffset..<entry.dataRange.lowerBound) {
          Array($0)
        }
        let checksum = CRC32.checksum(data)
        Self.put(UInt16(0), into: &header, at: 8)  // stored
        Self.put(Self.uint16(header, 6) & ~8, into: &header, at: 6)  // no data descriptor
        Self.put(checksum, into: &header, at: 14)
        Self.put(UInt32(data.count), into: &header, at: 18)
        Self.put(UInt32(data.count), into: &header, at: 22)
        try output.write(header)
        try output.write(data)
        Self.put(Self.uint16(record, 8) & ~8, into: &record, at: 8)
        Self.put(UInt16(0), into: &record, at: 10)
        Self.put(checksum, into: &record, at: 16)
        Self.put(UInt32(data.count), into: &record, at: 20)
        Self.put(UInt32(data.count), into: &record, at: 24)
      } else {
        try file.withBytes(in: entry.localRange) { try output.write($0) }
      }
      Self.put(UInt32(offset), into: &record, at: 42)
      directory += record
    }
    var end = endRecord
    Self.put(UInt32(directory.count), into: &end, at: 12)
    Self.put(UInt32(output.offset), into: &end, at: 16)
    try output.write(directory)
    try output.write(end)
    try output.flush()
  }

  /// Writes a new archive of stored entries, in order, to `output`.
  static func create(_ entries: [(name: String, data: [UInt8])], to output: FileOutput) throws {
    var directory: [UInt8] = []
    for (name, data) in entries {
      let offset = output.offset
      let checksum = CRC32.checksum(data)
      let nameBytes = Array(name.utf8)
      // Version 2.0, no flags, stored, time 0, date 1980-01-01, CRC, sizes, name, no extra.
      var common: [UInt8] = [20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]
      common.appendUInt32LittleEndian(checksum)
      common.appendUInt32LittleEndian(UInt32(data.count))
      common.appendUInt32LittleEndian(UInt32(data.count))
      common += [UInt8(nameBytes.count & 0xFF), UInt8(nameBytes.count >> 8), 0, 0]
      var local: [UInt8] = [0x50, 0x4B, 0x03, 0x04] + common + nameBytes
      try output.write(local)
      try output.write(data)
      local.removeAll()
      directory += [0x50, 0x4B, 0x01, 0x02, 20, 0] + common + [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
      directory.appendUInt32LittleEndian(UInt32(offset))
      directory += nameBytes
    }
    var end: [UInt8] = [0x50, 0x4B, 0x05, 0x06, 0, 0, 0, 0]
    let count = UInt16(entries.count)
    end += [UInt8(count & 0xFF), UInt8(count >> 8), UInt8(count & 0xFF), UInt8(count >> 8)]
    end.appendUInt32LittleEndian(UInt32(directory.count))
    end.appendUInt32LittleEndian(UInt32(output.offset))
    end += [0, 0]
    try output.write(directory)
    try output.write(end)
    try output.flush()
  }

  private static func uint16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
    UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
  }

  private static func uint32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
    UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
  }

  private static func uint16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
  }

  private static func put<T: FixedWidthInteger>(
    _ value: T, into bytes: inout [UInt8], at offset: Int
  ) {
    for index in 0..<(T.bitWidth / 8) {
      bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index))
    }
  }
}

/// The CRC-32 of zip files (reflected polynomial 0xEDB88320).
enum CRC32 {
  static func checksum(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
    }
    return ~crc
  }

  private static let table: [UInt32] = (0..<256).map { index in
    var crc = UInt32(index)
    for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    return crc
  }
}
