internal import TensorCore

/// Reads the subset of HDF5 that h5py writes for Keras's `model.weights.h5` (superblock version
/// 0, version-1 object headers, old-style groups, contiguous datasets, variable-length string
/// attributes). Everything is read from a byte buffer with every offset checked, so a corrupt
/// file gives an error, never a crash.
package struct HDF5File {
  /// A dataset: its path, element type, shape and where its bytes are in the buffer.
  struct Dataset {
    var path: String
    var dtype: DType?
    /// The datatype as a short description when it is not a tensor dtype tfmp knows.
    var typeDescription: String
    var shape: Shape
    var dataRange: Range<Int>?
  }

  /// A group: its path and its string attributes (Keras stores the layer name as `name`).
  struct Group {
    var path: String
    var attributes: [String: String]
  }

  private(set) var datasets: [Dataset] = []
  private(set) var groups: [Group] = []
  private let bytes: [UInt8]
  private let path: String

  /// Parses the file in `bytes`; `path` names it in errors.
  package init(_ bytes: [UInt8], path: String) throws(ModelFormatError) {
    self.bytes = bytes
    self.path = path
    let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
    guard bytes.count >= 96, Array(bytes[0..<8]) == signature else {
      throw failure("Expected the HDF5 signature at offset 0", location: "superblock")
    }
    guard bytes[8] == 0, bytes[13] == 8, bytes[14] == 8 else {
      throw ModelFormatError(
        code: .unsupported, path: path, location: "superblock",
        message:
          "The file uses HDF5 superblock version \(bytes[8]) with \(bytes[13])-byte offsets; "
          + "tfmp reads the version-0, 8-byte layout h5py writes for Keras. Re-save the model.")
    }
    // The root group's symbol table entry: its object header address is at 56 + 8.
    var visited = Set<Int>()
    try readObject(at: try fileAddress(at: 64), path: "", visited: &visited)
  }

  private func failure(_ message: String, location: String) -> ModelFormatError {
    ModelFormatError(
      code: .malformed, path: path, location: location,
      message: "\(message). The weights file is corrupt; re-save the model.")
  }

  private func integer(at offset: Int, size: Int) throws(ModelFormatError) -> Int {
    guard offset >= 0, size <= 8, offset <= bytes.count - size else {
      throw failure(
        "A \(size)-byte field at offset \(offset) lies outside the \(bytes.count)-byte file",
        location: "offset \(offset)")
    }
    var value: UInt64 = 0
    for index in (0..<size).reversed() { value = value << 8 | UInt64(bytes[offset + index]) }
    guard value <= UInt64(Int.max) else { return Int.max }
    return Int(value)
  }

  /// An 8-byte address or length, checked to lie within the file so that sums of two cannot
  /// overflow.
  private func fileAddress(at offset: Int) throws(ModelFormatError) -> Int {
    let value = try integer(at: offset, size: 8)
    guard value <= bytes.count else {
      throw failure(
        "The address or length \(value) at offset \(offset) exceeds the \(bytes.count)-byte file",
        location: "offset \(offset)")
    }
    return value
  }

  private func signature(at offset: Int, _ text: String) -> Bool {
    let expected = Array(text.utf8)
    return offset >= 0 && offset <= bytes.count - 4
      && Array(bytes[offset..<(offset + 4)]) == expected
  }

  /// The header messages of the object at `address`: (type, body range).
  private func messages(at address: Int) throws(ModelFormatError) -> [(type: Int, body: Range<Int>)]
  {
    guard try integer(at: address, size: 1) == 1 else {
      throw ModelFormatError(
        code: .unsupported, path: path, location: "object header at \(address)",
        message: "The object header is not version 1; tfmp reads the version-1 headers h5py "
          + "writes for Keras. Re-save the model.")
    }
    let count = try integer(at: address + 2, size: 2)
    var blocks = [(address + 16, try integer(at: address + 8, size: 4))]
    var result: [(type: Int, body: Range<Int>)] = []
    while let (start, length) = blocks.first, result.count < count {
      blocks.removeFirst()
      var position = start
      while position + 8 <= start + length && result.count < count {
        let type = try integer(at: position, size: 2)
        let size = try integer(at: position + 2, size: 2)
        let body = (position + 8)..<(position + 8 + size)
        guard body.upperBound <= bytes.count else {
          throw failure(
            "A header message at \(position) runs past the end of the file",
            location: "object header at \(address)")
        }
        result.append((type, body))
        if type == 0x10 {  // continuation: more messages elsewhere
          blocks.append(
            (try fileAddress(at: body.lowerBound), try fileAddress(at: body.lowerBound + 8)))
        }
        position = body.upperBound
      }
    }
    return result
  }

  private mutating func readObject(
    at address: Int, path objectPath: String, visited: inout Set<Int>
  ) throws(ModelFormatError) {
    guard visited.insert(address).inserted, visited.count < 100_000 else { return }
    let headerMessages = try messages(at: address)
    var attributes: [String: String] = [:]
    var dtype: (DType?, String)?
    var shape: Shape?
    var dataRange: Range<Int>?
    var symbolTable: (tree: Int, heap: Int)?
    for (type, body) in headerMessages {
      switch type {
      case 0x01: shape = try dataspace(body)
      case 0x03: dtype = try datatype(body)
      case 0x08: dataRange = try layout(body)
      case 0x0C:
        if let (name, value) = try stringAttribute(body) { attributes[name] = value }
      case 0x11:
        symbolTable = (
          try fileAddress(at: body.lowerBound), try fileAddress(at: body.lowerBound + 8)
        )
      default: break
      }
    }
    if let symbolTable {
      groups.append(Group(path: objectPath.isEmpty ? "/" : objectPath, attributes: attributes))
      for (name, child) in try groupMembers(tree: symbolTable.tree, heap: symbolTable.heap) {
        try readObject(at: child, path: objectPath + "/" + name, visited: &visited)
      }
    } else if let (known, description) = dtype, let shape {
      datasets.append(
        Dataset(
          path: objectPath, dtype: known, typeDescription: description, shape: shape,
          dataRange: dataRange))
    }
  }

  /// The (name, object header address) pairs of an old-style group.
  private func groupMembers(tree: Int, heap: Int) throws(ModelFormatError) -> [(String, Int)] {
    guard signature(at: heap, "HEAP") else {
      throw failure("Expected a local heap at \(heap)", location: "group")
    }
    let heapData = try fileAddress(at: heap + 24)
    var members: [(String, Int)] = []
    var pending = [tree]
    var seen = Set<Int>()
    while let node = pending.popLast() {
      guard seen.insert(node).inserted else { continue }
      guard signature(at: node, "TREE") else {
        throw failure("Expected a B-tree node at \(node)", location: "group")
      }
      let level = try integer(at: node + 5, size: 1)
      let entries = try integer(at: node + 6, size: 2)
      for index in 0..<entries {
        let child = try fileAddress(at: node + 24 + 8 + index * 16)
        if level > 0 {
          pending.append(child)
          continue
        }
        guard signature(at: child, "SNOD") else {
          throw failure("Expected a symbol node at \(child)", location: "group")
        }
        let symbols = try integer(at: child + 6, size: 2)
        for symbol in 0..<symbols {
          let entry = child + 8 + symbol * 40
          let nameOffset = try fileAddress(at: entry)
          members.append((try cString(at: heapData + nameOffset), try fileAddress(at: entry + 8)))
        }
      }
    }
    return members
  }

  private func cString(at offset: Int) throws(ModelFormatError) -> String {
    guard offset >= 0, offset < bytes.count, let end = bytes[offset...].firstIndex(of: 0) else {
      throw failure("A name at offset \(offset) is not terminated", location: "local heap")
    }
    return String(decoding: bytes[offset..<end], as: UTF8.self)
  }

  private func dataspace(_ body: Range<Int>) throws(ModelFormatError) -> Shape {
    let version = try integer(at: body.lowerBound, size: 1)
    let rank = try integer(at: body.lowerBound + 1, size: 1)
    let start = body.lowerBound + (version == 1 ? 8 : 4)
    var dimensions: [Int] = []
    for index in 0..<rank { dimensions.append(try integer(at: start + 8 * index, size: 8)) }
    return Shape(dimensions)
  }

  /// The tensor dtype of a datatype message, with a description for the report.
  private func datatype(_ body: Range<Int>) throws(ModelFormatError) -> (DType?, String) {
    let classAndVersion = try integer(at: body.lowerBound, size: 1)
    let bits = try integer(at: body.lowerBound + 1, size: 1)
    let size = try integer(at: body.lowerBound + 4, size: 4)
    let bigEndian = bits & 1 == 1
    switch classAndVersion & 0x0F {
    case 0:  // fixed-point
      let signed = bits & 0x08 != 0
      let dtype: DType? =
        switch (size, signed) {
        case (1, true): .int8
        case (1, false): .uint8
        case (2, true): .int16
        case (2, false): .uint16
        case (4, true): .int32
        case (4, false): .uint32
        case (8, true): .int64
        case (8, false): .uint64
        default: nil
        }
      return (bigEndian ? nil : dtype, "\(signed ? "int" : "uint")\(8 * size)")
    case 1:  // floating point
      let dtype: DType? = size == 2 ? .float16 : size == 4 ? .float32 : size == 8 ? .float64 : nil
      return (bigEndian ? nil : dtype, "float\(8 * size)")
    case 5:  // opaque: Keras marks bfloat16 with a "bfloat16" tag
      let tagLength = bits
      let tag = tagLength > 0 ? try cString(at: body.lowerBound + 8) : ""
      return (size == 2 && tag.hasPrefix("bfloat16") ? .bfloat16 : nil, "opaque(\(tag))")
    default:
      return (nil, "HDF5 class \(classAndVersion & 0x0F)")
    }
  }

  /// The byte range of a contiguous dataset, or `nil` for another layout.
  private func layout(_ body: Range<Int>) throws(ModelFormatError) -> Range<Int>? {
    guard try integer(at: body.lowerBound, size: 1) == 3,
      try integer(at: body.lowerBound + 1, size: 1) == 1
    else { return nil }
    let start = try integer(at: body.lowerBound + 2, size: 8)
    let size = try fileAddress(at: body.lowerBound + 10)
    if start == Int.max && size == 0 { return 0..<0 }  // the undefined address: never written
    guard start <= bytes.count, size <= bytes.count - start else {
      throw failure(
        "A dataset's \(size) bytes at \(start) lie outside the \(bytes.count)-byte file",
        location: "data layout")
    }
    return start..<(start + size)
  }

  /// A scalar variable-length string attribute (version 1), as h5py writes them; other
  /// attributes are skipped.
  private func stringAttribute(_ body: Range<Int>) throws(ModelFormatError) -> (String, String)? {
    guard try integer(at: body.lowerBound, size: 1) == 1 else { return nil }
    let nameSize = try integer(at: body.lowerBound + 2, size: 2)
    let typeSize = try integer(at: body.lowerBound + 4, size: 2)
    let spaceSize = try integer(at: body.lowerBound + 6, size: 2)
    func padded(_ size: Int) -> Int { (size + 7) / 8 * 8 }
    let name = try cString(at: body.lowerBound + 8)
    let typeStart = body.lowerBound + 8 + padded(nameSize)
    let dataStart = typeStart + padded(typeSize) + padded(spaceSize)
    guard try integer(at: typeStart, size: 1) & 0x0F == 9 else { return nil }  // variable-length
    // A global heap ID: collection address and object index, after the 4-byte length.
    let collection = try fileAddress(at: dataStart + 4)
    let index = try integer(at: dataStart + 12, size: 4)
    guard signature(at: collection, "GCOL") else { return nil }
    let collectionEnd = collection + (try fileAddress(at: collection + 8))
    var position = collection + 16
    while position + 16 <= min(collectionEnd, bytes.count) {
      let objectIndex = try integer(at: position, size: 2)
      let size = try fileAddress(at: position + 8)
      if objectIndex == 0 { break }
      if objectIndex == index {
        guard size <= bytes.count - position - 16 else { return nil }
        return (
          name, String(decoding: bytes[(position + 16)..<(position + 16 + size)], as: UTF8.self)
        )
      }
      position += 16 + padded(size)
    }
    return nil
  }

  /// The bytes of a dataset.
  func data(of dataset: Dataset) -> ArraySlice<UInt8>? {
    dataset.dataRange.map { bytes[$0] }
  }
}
