public import TensorCore
internal import Foundation

/// Reads and writes NumPy `.npy` arrays and `.npz` archives (as `np.save` and `np.savez` write
/// them: C order, little-endian, uncompressed).
public enum NumPyFile {
  /// Reads a `.npy` file.
  /// - Throws: ``ModelFormatError`` naming the file and what is wrong.
  public static func readArray(at path: String) throws -> Tensor {
    let bytes = try MappedFile(path: path).withBytes { Array($0) }
    return try decode(bytes, path: path, location: "")
  }

  /// The `.npy` in `bytes`, as if read from `path`.
  package static func readArray(bytes: [UInt8], path: String) throws -> Tensor {
    try decode(bytes, path: path, location: "")
  }

  /// Reads every array of a `.npz` file, keyed by name (without `.npy`).
  public static func readArchive(at path: String) throws -> [String: Tensor] {
    try readArchive(try MappedFile(path: path))
  }

  /// The arrays of the `.npz` in `bytes`, as if read from `path`.
  package static func readArchive(bytes: [UInt8], path: String) throws -> [String: Tensor] {
    try readArchive(MappedFile(bytes: bytes, path: path))
  }

  private static func readArchive(_ file: MappedFile) throws -> [String: Tensor] {
    let path = file.path
    let zip = try ZipArchive(file)
    var arrays: [String: Tensor] = [:]
    for entry in zip.entries where entry.name.hasSuffix(".npy") {
      arrays[String(entry.name.dropLast(4))] = try decode(
        try zip.contents(of: entry), path: path, location: "array '\(entry.name)'")
    }
    return arrays
  }

  /// Writes `arrays` as a `.npz` file (uncompressed, names sorted; bfloat16 as float32).
  public static func writeArchive(_ arrays: [String: Tensor], to path: String) throws {
    let entries = try arrays.sorted { $0.key < $1.key }.map { name, tensor in
      (name + ".npy", try encode(tensor, path: path))
    }
    let output = try FileOutput(path: path)
    try ZipArchive.create(entries, to: output)
  }

  /// Writes `tensor` as a `.npy` file.
  public static func writeArray(_ tensor: Tensor, to path: String) throws {
    let output = try FileOutput(path: path)
    try output.write(try encode(tensor, path: path))
    try output.flush()
  }

  private static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

  static func decode(_ bytes: [UInt8], path: String, location: String) throws(ModelFormatError)
    -> Tensor
  {
    func failure(_ message: String, _ code: ModelFormatError.Code = .malformed) -> ModelFormatError
    {
      ModelFormatError(code: code, path: path, location: location, message: message)
    }
    guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
      throw failure(
        "Expected the NumPy magic '\\x93NUMPY' at the start. Save the array with np.save.",
        .notAModel)
    }
    let major = bytes[6]
    let headerStart = major == 1 ? 10 : 12
    guard bytes.count >= headerStart else { throw failure("The header is cut off.") }
    let headerLength =
      major == 1
      ? Int(bytes[8]) | Int(bytes[9]) << 8
      : Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
    guard headerLength <= bytes.count - headerStart else { throw failure("The header is cut off.") }
    let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
    guard let descr = value(of: "descr", in: header)?.trimmingQuotes,
      let shapeText = value(of: "shape", in: header)
    else { throw failure("The header \(header) lacks 'descr' or 'shape'.") }
    if value(of: "fortran_order", in: header) == "True" {
      throw failure(
        "The array is in Fortran order; save it with np.ascontiguousarray.", .unsupported)
    }
    var dimensions: [Int] = []
    for part in shapeText.dropFirst().dropLast().split(separator: ",") {
      let text = part.trimming(" ")
      guard !text.isEmpty else { continue }
      guard let dimension = Int(text), dimension >= 0 else {
        throw failure("The shape \(shapeText) is not a shape.")
      }
      dimensions.append(dimension)
    }
    let shape = Shape(dimensions)
    guard let count = shape.elementCount else {
      throw failure("The shape \(shape) has too many elements.")
    }
    let data = Array(bytes[(headerStart + headerLength)...])
    func expect(_ size: Int) throws(ModelFormatError) {
      let (needed, overflow) = count.multipliedReportingOverflow(by: size)
      guard !overflow, data.count == needed else {
        throw failure(
          "A \(descr) array of shape \(shape) needs \(overflow ? "too many" : String(needed)) bytes but the file has \(data.count).",
          .truncated)
      }
    }
    func load<T: FixedWidthInteger>(_ type: T.Type) -> [T] {
      data.withUnsafeBytes { raw in
        (0..<count).map {
          T(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self))
        }
      }
    }
    switch descr {
    case "<f4":
      try expect(4)
      return Tensor(shape: shape, floats: load(UInt32.self).map(Float.init(bitPattern:)))
    case "<f2":
      try expect(2)
      return Tensor(
        dtype: .float16, shape: shape,
        storage: .float(load(UInt16.self).map { Float(Float16(bitPattern: $0)) }))
    case "<f8":
      try expect(8)
      return Tensor(
        dtype: .float64, shape: shape,
        storage: .double(load(UInt64.self).map(Double.init(bitPattern:))))
    case "<i4":
      try expect(4)
      return Tensor(dtype: .int32, shape: shape, storage: .int32(load(Int32.self)))
    case "<i8":
      try expect(8)
      return Tensor(dtype: .int64, shape: shape, storage: .int64(load(Int64.self)))
    case "|b1":
      try expect(1)
      return Tensor(dtype: .bool, shape: shape, storage: .bool(data.map { $0 != 0 }))
    case "|u1":
      try expect(1)
      return Tensor(dtype: .uint8, shape: shape, storage: .int32(data.map(Int32.init)))
    case "|i1":
      try expect(1)
      return Tensor(
        dtype: .int8, shape: shape, storage: .int32(data.map { Int32(Int8(bitPattern: $0)) }))
    case "<u2":
      try expect(2)
      return Tensor(
        dtype: .uint16, shape: shape, storage: .int32(load(UInt16.self).map(Int32.init)))
    case "<i2":
      try expect(2)
      return Tensor(dtype: .int16, shape: shape, storage: .int32(load(Int16.self).map(Int32.init)))
    case _ where descr.hasPrefix("|S") || descr.hasPrefix("<U"):
      // Fixed-width strings, NUL-padded: bytes (|Sn) or UTF-32 code points (<Un); NumPy drops
      // the trailing NULs of each element, and so does this.
      let unicode = descr.hasPrefix("<U")
      guard let width = Int(descr.dropFirst(2)), width >= 0,
        case (let size, false) = width.multipliedReportingOverflow(by: unicode ? 4 : 1)
      else { throw failure("The element type '\(descr)' has no valid width.") }
      try expect(size)
      let elements = (0..<count).map { index -> [UInt8] in
        if unicode {
          let start = index * width * 4
          var text = String.UnicodeScalarView()
          for offset in stride(from: start, to: start + width * 4, by: 4) {
            let code =
              UInt32(data[offset]) | UInt32(data[offset + 1]) << 8 | UInt32(data[offset + 2]) << 16
              | UInt32(data[offset + 3]) << 24
            text.append(Unicode.Scalar(code) ?? "\u{FFFD}")
          }
          return Array(String(text).utf8).droppingTrailingNULs
        }
        return Array(data[(index * width)..<((index + 1) * width)]).droppingTrailingNULs
      }
      return Tensor(dtype: .string, shape: shape, storage: .string(elements))
    case "|O":
      throw failure(
        "The array holds Python objects, which tfmp does not unpickle; save strings as "
          + "np.array(values, dtype=bytes) or dtype=str.",
        .unsupported)
    default:
      throw failure(
        "The element type '\(descr)' is not one tfmp reads (<f4, <f2, <f8, <i4, <i8, |b1, |u1, "
          + "|i1, <u2, <i2, |Sn, <Un).",
        .unsupported)
    }
  }

  static func encode(_ tensor: Tensor, path: String) throws -> [UInt8] {
    var data: [UInt8] = []
    let descr: String
    switch (tensor.dtype, tensor.storage) {
    case (.float16, .float(let values)):
      descr = "<f2"
      for value in values { data.appendUInt16(Float16(value).bitPattern) }
    case (_, .float(let values)) where tensor.dtype == .float32 || tensor.dtype == .bfloat16:
      // NumPy has no bfloat16: its values are written as the float32 values they are exactly.
      descr = "<f4"
      for value in values { data.appendUInt32LittleEndian(value.bitPattern) }
    case (_, .double(let values)):
      descr = "<f8"
      for value in values { data.appendUInt64LittleEndian(value.bitPattern) }
    case (.uint8, .int32(let values)), (.int8, .int32(let values)):
      descr = tensor.dtype == .uint8 ? "|u1" : "|i1"
      data = values.map { UInt8(truncatingIfNeeded: $0) }
    case (.uint16, .int32(let values)), (.int16, .int32(let values)):
      descr = tensor.dtype == .uint16 ? "<u2" : "<i2"
      for value in values { data.appendUInt16(UInt16(truncatingIfNeeded: value)) }
    case (_, .int32(let values)):
      descr = "<i4"
      for value in values { data.appendUInt32LittleEndian(UInt32(bitPattern: value)) }
    case (_, .int64(let values)):
      descr = "<i8"
      for value in values { data.appendUInt64LittleEndian(UInt64(bitPattern: value)) }
    case (_, .bool(let values)):
      descr = "|b1"
      data = values.map { $0 ? 1 : 0 }
    case (_, .string(let values)):
      // NumPy's fixed-width bytes, as wide as the longest element (at least 1), NUL-padded.
      let width = max(1, values.map(\.count).max() ?? 0)
      descr = "|S\(width)"
      for value in values { data += value + [UInt8](repeating: 0, count: width - value.count) }
    default:
      throw ModelFormatError(
        code: .unsupported, path: path,
        message: "A \(tensor.dtype) tensor cannot be written as a NumPy array by tfmp.")
    }
    let dimensions = tensor.shape.dimensions.map(String.init)
    let shape =
      dimensions.count == 1 ? "(\(dimensions[0]),)" : "(\(dimensions.joined(separator: ", ")))"
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
    // Pad with spaces so that the data starts on a 64-byte boundary, then a newline.
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var bytes = magic + [1, 0]
    bytes.appendUInt16(UInt16(header.utf8.count))
    return bytes + Array(header.utf8) + data
  }

  /// The text of `key`'s value in a NumPy header dict (up to the next top-level comma).
  private static func value(of key: String, in header: String) -> String? {
    guard let range = header.range(of: "'\(key)':") else { return nil }
    var depth = 0
    var value = ""
    for character in header[range.upperBound...] {
      if character == "(" { depth += 1 }
      if character == ")" { depth -= 1 }
      if (character == "," || character == "}") && depth == 0 { break }
      value.append(character)
    }
    return value.trimming(" ")
  }
}

extension String {
  fileprivate var trimmingQuotes: String { trimming("'\"") }

  fileprivate func trimming(_ set: String) -> String {
    var text = Substring(self)
    while let first = text.first, set.contains(first) { text = text.dropFirst() }
    while let last = text.last, set.contains(last) { text = text.dropLast() }
    return String(text)
  }
}

extension Substring {
  fileprivate func trimming(_ set: String) -> String { String(self).trimming(set) }
}

extension Array where Element == UInt8 {
  fileprivate var droppingTrailingNULs: [UInt8] {
    var bytes = self
    while bytes.last == 0 { bytes.removeLast() }
    return bytes
  }

  mutating func appendUInt16(_ value: UInt16) {
    append(UInt8(truncatingIfNeeded: value))
    append(UInt8(truncatingIfNeeded: value >> 8))
  }
}
