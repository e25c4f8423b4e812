/// The LevelDB table format of a checkpoint's `.index` file (TensorFlow's copy of LevelDB in
/// `tsl/lib/io/table_builder.cc`, `block_builder.cc`, `format.cc`), without compression or filters.
///
/// Layout: data blocks, an empty metaindex block, an index block, a 48-byte footer. Every block
/// is followed by a compression-type byte and the masked CRC32C of the block and that byte.
enum SortedTable {
  static let footerSize = 48
  static let blockTrailerSize = 5
  /// The table magic number, stored as two little-endian words, low word first.
  static let magic: UInt64 = 0xDB47_7524_8B80_FB57
  /// TensorFlow's `table::Options.block_size`.
  static let blockSize = 262_144
  /// TensorFlow's `table::Options.block_restart_interval` for data blocks.
  static let restartInterval = 16

  /// One key and where its value lies in the file.
  struct Entry {
    var key: [UInt8]
    var valueRange: Range<Int>
  }

  /// Reads every entry of the table in `file`, checking the footer, every block checksum and the
  /// key order.
  static func entries(of file: MappedFile) throws(ModelFormatError) -> [Entry] {
    let path = file.path
    guard file.count >= footerSize else {
      throw ModelFormatError(
        code: .truncated, path: path, location: "footer",
        message: "The file has \(file.count) bytes, fewer than the \(footerSize)-byte table "
          + "footer. The index is truncated; re-export the checkpoint.")
    }
    let footerStart = file.count - footerSize
    let (indexHandle, _) = try file.withBytes(in: footerStart..<file.count) {
      (footer) throws(ModelFormatError) -> (Range<Int>, Range<Int>) in
      let storedMagic =
        UInt64(UInt32(littleEndian: footer.loadUnaligned(fromByteOffset: 40, as: UInt32.self)))
        | UInt64(UInt32(littleEndian: footer.loadUnaligned(fromByteOffset: 44, as: UInt32.self)))
        << 32
      guard storedMagic == magic else {
        throw ModelFormatError(
          code: .malformed, path: path, location: "footer at offset \(footerStart)",
          message: "Expected the table magic 0x\(String(magic, radix: 16)) but found "
            + "0x\(String(storedMagic, radix: 16)). This is not a TensorFlow checkpoint index, "
            + "or it is corrupt; re-export the checkpoint.")
      }
      var reader = ByteReader(
        footer, path: path, location: "footer at offset \(footerStart)", baseOffset: footerStart)
      let metaindex = try readHandle(&reader, fileSize: footerStart)
      let index = try readHandle(&reader, fileSize: footerStart)
      return (index, metaindex)
    }
    var entries: [Entry] = []
    let indexEntries = try blockEntries(file, block: indexHandle, kind: "index block")
    for indexEntry in indexEntries {
      let dataHandle = try file.withBytes(in: indexEntry.valueRange) {
        (bytes) throws(ModelFormatError) -> Range<Int> in
        var reader = ByteReader(
          bytes, path: path, location: "index block entry",
          baseOffset: indexEntry.valueRange.lowerBound)
        return try readHandle(&reader, fileSize: footerStart)
      }
      entries += try blockEntries(file, block: dataHandle, kind: "data block")
    }
    for index in entries.indices.dropFirst()
    where !entries[index - 1].key.lexicographicallyPrecedes(entries[index].key) {
      throw ModelFormatError(
        code: .malformed, path: path,
        location: "key '\(String(decoding: entries[index].key, as: UTF8.self))'",
        message: "Keys must be strictly increasing but this key follows "
          + "'\(String(decoding: entries[index - 1].key, as: UTF8.self))'. "
          + "The index is corrupt; re-export the checkpoint.")
    }
    return entries
  }

  /// Reads a block handle (varint offset, varint size) and checks that the block and its trailer
  /// lie before `fileSize`.
  private static func readHandle(
    _ reader: inout ByteReader, fileSize: Int
  ) throws(ModelFormatError) -> Range<Int> {
    let offset = try reader.readLength()
    let size = try reader.readLength()
    guard offset <= fileSize, size <= fileSize - offset,
      blockTrailerSize <= fileSize - offset - size
    else {
      throw reader.malformed(
        "A block handle points at bytes \(offset)..<\(offset &+ size) plus its trailer, beyond "
          + "the table's \(fileSize) bytes. The index is truncated or corrupt; re-export the "
          + "checkpoint.")
    }
    return offset..<(offset + size)
  }

  /// Checks a block's trailer and decodes its entries.
  private static func blockEntries(
    _ file: MappedFile, block: Range<Int>, kind: String
  ) throws(ModelFormatError) -> [Entry] {
    let path = file.path
    let location = "\(kind) at offset \(block.lowerBound)"
    let trailer = block.upperBound..<(block.upperBound + blockTrailerSize)
    let (type, stored) = file.withBytes(in: trailer) { bytes in
      (bytes[0], UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 1, as: UInt32.self)))
    }
    var crc = file.withBytes(in: block) { CRC32C($0) }
    crc.update(littleEndian: type)
    guard crc.masked == stored else {
      throw ModelFormatError(
        code: .checksumMismatch, path: path, location: location,
        message: "The block has CRC32C 0x\(String(crc.masked, radix: 16)) (masked) but its "
          + "trailer records 0x\(String(stored, radix: 16)). The index is corrupt; re-export "
          + "the checkpoint.")
    }
    guard type == 0 else {
      throw ModelFormatError(
        code: .unsupported, path: path, location: location,
        message: "The block is compressed (type \(type)); TensorFlow writes checkpoint indexes "
          + "uncompressed and tfmp reads only those. Re-save the checkpoint with TensorFlow.")
    }
    return try file.withBytes(in: block) { (bytes) throws(ModelFormatError) -> [Entry] in
      var reader = ByteReader(bytes, path: path, location: location, baseOffset: block.lowerBound)
      guard bytes.count >= 4 else { throw reader.malformed("The block is shorter than 4 bytes.") }
      reader.position = bytes.count - 4
      let restartCount = Int(try reader.readUInt32LittleEndian())
      guard restartCount <= (bytes.count - 4) / 4 else {
        throw reader.malformed(
          "The block claims \(restartCount) restart points, more than its size allows. "
            + "The index is corrupt; re-export the checkpoint.")
      }
      let entriesEnd = bytes.count - 4 - 4 * restartCount
      reader = ByteReader(
        UnsafeRawBufferPointer(rebasing: bytes[0..<entriesEnd]), path: path, location: location,
        baseOffset: block.lowerBound)
      var entries: [Entry] = []
      var previousKey: [UInt8] = []
      while !reader.isAtEnd {
        let shared = Int(try reader.readVarint32())
        let unshared = Int(try reader.readVarint32())
        let valueLength = Int(try reader.readVarint32())
        guard shared <= previousKey.count else {
          throw reader.malformed(
            "An entry shares \(shared) key bytes with a previous key of \(previousKey.count) "
              + "bytes. The index is corrupt; re-export the checkpoint.")
        }
        var key = Array(previousKey[0..<shared])
        key += try reader.readBytes(unshared)
        let valueStart = block.lowerBound + reader.position
        _ = try reader.readBytes(valueLength)
        entries.append(Entry(key: key, valueRange: valueStart..<(valueStart + valueLength)))
        previousKey = key
      }
      return entries
    }
  }

  /// Builds a table from entries with strictly increasing keys, byte for byte as TensorFlow's
  /// `TableBuilder` does with `kNoCompression`.
  struct Builder {
    private(set) var output: [UInt8] = []
    private var dataBlock = BlockBuilder(restartInterval: SortedTable.restartInterval)
    private var indexBlock = BlockBuilder(restartInterval: 1)
    private var lastKey: [UInt8] = []
    private var entryCount = 0
    private var pendingHandle: Range<Int>?

    mutating func add(key: [UInt8], value: [UInt8]) {
      precondition(entryCount == 0 || lastKey.lexicographicallyPrecedes(key), "keys out of order")
      if entryCount > 0 && key.count + value.count >= 2 * SortedTable.blockSize {
        flush()
      }
      if let handle = pendingHandle {
        Self.shortenSeparator(&lastKey, limit: key)
        indexBlock.add(key: lastKey, value: Self.encode(handle))
        pendingHandle = nil
      }
      lastKey = key
      entryCount += 1
      dataBlock.add(key: key, value: value)
      if dataBlock.sizeEstimate >= SortedTable.blockSize {
        flush()
      }
    }

    /// Writes the remaining blocks and the footer and returns the whole file.
    mutating func finish() -> [UInt8] {
      flush()
      var metaindex = BlockBuilder(restartInterval: SortedTable.restartInterval)
      let metaindexHandle = Self.writeBlock(&metaindex, to: &output)
      if let handle = pendingHandle {
        Self.shortSuccessor(&lastKey)
        indexBlock.add(key: lastKey, value: Self.encode(handle))
        pendingHandle = nil
      }
      let indexHandle = Self.writeBlock(&indexBlock, to: &output)
      var footer = Self.encode(metaindexHandle) + Self.encode(indexHandle)
      footer += [UInt8](repeating: 0, count: 40 - footer.count)
      footer.appendUInt32LittleEndian(UInt32(truncatingIfNeeded: SortedTable.magic))
      footer.appendUInt32LittleEndian(UInt32(truncatingIfNeeded: SortedTable.magic >> 32))
      output += footer
      return output
    }

    private mutating func flush() {
      guard !dataBlock.isEmpty else { return }
      pendingHandle = Self.writeBlock(&dataBlock, to: &output)
    }

    private static func writeBlock(_ block: inout BlockBuilder, to output: inout [UInt8]) -> Range<
      Int
    > {
      let contents = block.finish()
      let start = output.count
      output += contents
      var crc = CRC32C()
      contents.withUnsafeBytes { crc.update($0) }
      crc.update(littleEndian: UInt8(0))
      output.append(0)
      output.appendUInt32LittleEndian(crc.masked)
      block.reset()
      return start..<(start + contents.count)
    }

    private static func encode(_ handle: Range<Int>) -> [UInt8] {
      var bytes: [UInt8] = []
      bytes.appendVarint(UInt64(handle.lowerBound))
      bytes.appendVarint(UInt64(handle.count))
      return bytes
    }

    /// LevelDB's bytewise `FindShortestSeparator`: a short key >= `start` and < `limit`.
    static func shortenSeparator(_ start: inout [UInt8], limit: [UInt8]) {
      let common = zip(start, limit).prefix { $0 == $1 }.count
      guard common < min(start.count, limit.count) else { return }
      let byte = start[common]
      if byte < 0xFF && byte + 1 < limit[common] {
        start[common] = byte + 1
        start.removeSubrange((common + 1)...)
      }
    }

    /// LevelDB's bytewise `FindShortSuccessor`: a short key >= `key`.
    static func shortSuccessor(_ key: inout [UInt8]) {
      guard let index = key.firstIndex(where: { $0 != 0xFF }) else { return }
      key[index] += 1
      key.removeSubrange((index + 1)...)
    }
  }

  /// LevelDB's `BlockBuilder`: prefix-compressed entries with a restart point every
  /// `restartInterval` entries.
  struct BlockBuilder {
    let restartInterval: Int
    private var buffer: [UInt8] = []
    private var restarts: [UInt32] = [0]
    private var counter = 0
    private var lastKey: [UInt8] = []

    init(restartInterval: Int) {
      self.restartInterval = restartInterval
    }

    var isEmpty: Bool { buffer.isEmpty }
    var sizeEstimate: Int { buffer.count + 4 * restarts.count + 4 }

    mutating func add(key: [UInt8], value: [UInt8]) {
      var shared = 0
      if counter < restartInterval {
        shared = zip(lastKey, key).prefix { $0 == $1 }.count
      } else {
        restarts.append(UInt32(buffer.count))
        counter = 0
      }
      buffer.appendVarint(UInt64(shared))
      buffer.appendVarint(UInt64(key.count - shared))
      buffer.appendVarint(UInt64(value.count))
      buffer += key[shared...]
      buffer += value
      lastKey = key
      counter += 1
    }

    func finish() -> [UInt8] {
      var contents = buffer
      for restart in restarts { contents.appendUInt32LittleEndian(restart) }
      contents.appendUInt32LittleEndian(UInt32(restarts.count))
      return contents
    }

    mutating func reset() {
      buffer = []
      restarts = [0]
      counter = 0
      lastKey = []
    }
  }
}
