internal import CTFMPKernels

/// CRC-32C (Castagnoli), as TensorFlow checksums checkpoint blocks and tensors.
///
/// Reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF; the check value of
/// "123456789" is 0xE3069283. Uses the SSE4.2 `crc32` instruction when the CPU has it (about 8
/// bytes per cycle), else a table-driven loop eight bytes per step ("slicing by 8") that is also
/// the reference the tests compare the instruction against.
package struct CRC32C: Sendable {
  /// Whether ``update(_:)`` uses the CPU instruction; tests flip it to compare the two paths.
  package static let hasInstruction = tfmp_has_crc32c_instruction() != 0

  /// The checksum of the bytes seen so far.
  package private(set) var value: UInt32 = 0

  /// Creates the checksum of no bytes.
  package init() {}

  /// Creates the checksum of `bytes`.
  package init(_ bytes: UnsafeRawBufferPointer) {
    update(bytes)
  }

  /// Extends the checksum with `bytes`, as if they followed the bytes already seen.
  package mutating func update(_ bytes: UnsafeRawBufferPointer) {
    if Self.hasInstruction, let start = bytes.baseAddress {
      value = ~tfmp_crc32c_update_sse42(~value, start, bytes.count)
    } else {
      updateWithTables(bytes)
    }
  }

  /// The portable path of ``update(_:)``: table lookups, eight bytes per step.
  package mutating func updateWithTables(_ bytes: UnsafeRawBufferPointer) {
    var crc = ~value
    let tables = CRC32C.tables
    var index = 0
    let count = bytes.count
    while count - index >= 8 {
      let low =
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self))
        ^ crc
      let high = UInt32(
        littleEndian: bytes.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self))
      crc =
        tables[7 * 256 + Int(low & 0xFF)] ^ tables[6 * 256 + Int((low >> 8) & 0xFF)]
        ^ tables[5 * 256 + Int((low >> 16) & 0xFF)] ^ tables[4 * 256 + Int(low >> 24)]
        ^ tables[3 * 256 + Int(high & 0xFF)] ^ tables[2 * 256 + Int((high >> 8) & 0xFF)]
        ^ tables[1 * 256 + Int((high >> 16) & 0xFF)] ^ tables[Int(high >> 24)]
      index += 8
    }
    while index < count {
      crc = tables[Int((crc ^ UInt32(bytes[index])) & 0xFF)] ^ (crc >> 8)
      index += 1
    }
    value = ~crc
  }

  /// Extends the checksum with the bytes of `value` in little-endian order.
  package mutating func update<T: FixedWidthInteger>(littleEndian value: T) {
    withUnsafeBytes(of: value.littleEndian) { update($0) }
  }

  /// The checksum in LevelDB's masked form, as stored in files (so that a CRC of data that
  /// itself contains CRCs stays well distributed).
  package var masked: UInt32 { CRC32C.mask(value) }

  /// Masks a CRC: rotate right by 15 bits, add 0xA282EAD8.
  package static func mask(_ crc: UInt32) -> UInt32 {
    ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
  }

  /// Undoes ``mask(_:)``.
  package static func unmask(_ masked: UInt32) -> UInt32 {
    let rotated = masked &- 0xA282_EAD8
    return (rotated >> 17) | (rotated << 15)
  }

  /// Eight 256-entry tables: table k maps a byte to its CRC after k further zero bytes.
  private static let tables: [UInt32] = {
    var tables = [UInt32](repeating: 0, count: 8 * 256)
    for byte in 0..<256 {
      var crc = UInt32(byte)
      for _ in 0..<8 {
        crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
      }
      tables[byte] = crc
    }
    for table in 1..<8 {
      for byte in 0..<256 {
        let previous = tables[(table - 1) * 256 + byte]
        tables[table * 256 + byte] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
      }
    }
    return tables
  }()
}
