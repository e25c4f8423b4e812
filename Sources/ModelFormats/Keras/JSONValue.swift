/// A JSON document that keeps its original text where it is not edited: object keys stay in
/// order, and numbers and strings keep their exact spelling (Keras writes 64-bit object ids and
/// float32 values printed to 17 digits, which a round trip through Double could change).
package indirect enum JSONValue: Sendable, Hashable {
  case null
  case bool(Bool)
  /// A number, as written.
  case number(String)
  /// A string: its decoded value and its text as written (with quotes and escapes).
  case string(String, raw: String)
  case array([JSONValue])
  /// An object's members in their order.
  case object([(key: String, value: JSONValue)])

  package static func == (left: JSONValue, right: JSONValue) -> Bool {
    switch (left, right) {
    case (.null, .null): true
    case (.bool(let a), .bool(let b)): a == b
    case (.number(let a), .number(let b)): a == b
    case (.string(let a, _), .string(let b, _)): a == b
    case (.array(let a), .array(let b)): a == b
    case (.object(let a), .object(let b)):
      a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    default: false
    }
  }

  package func hash(into hasher: inout Hasher) {
    hasher.combine(serialized())
  }

  /// A string value (its text escaped as Python's `json.dumps` does, ASCII only).
  package static func string(_ value: String) -> JSONValue {
    var raw = "\""
    for scalar in value.unicodeScalars {
      switch scalar {
      case "\"": raw += "\\\""
      case "\\": raw += "\\\\"
      case "\n": raw += "\\n"
      case "\r": raw += "\\r"
      case "\t": raw += "\\t"
      case _ where scalar.value < 0x20 || scalar.value > 0x7E:
        for unit in String(scalar).utf16 {
          let hex = String(unit, radix: 16)
          raw += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        }
      default: raw.unicodeScalars.append(scalar)
      }
    }
    return .string(value, raw: raw + "\"")
  }

  /// The member `key` of an object, or `nil`.
  package subscript(key: String) -> JSONValue? {
    guard case .object(let members) = self else { return nil }
    return members.first { $0.key == key }?.value
  }

  /// Sets (or appends) member `key` of an object; does nothing to other values.
  package mutating func set(_ key: String, _ value: JSONValue) {
    guard case .object(var members) = self else { return }
    if let index = members.firstIndex(where: { $0.key == key }) {
      members[index].value = value
    } else {
      members.append((key, value))
    }
    self = .object(members)
  }

  /// Removes member `key` of an object, if present.
  package mutating func remove(_ key: String) {
    guard case .object(let members) = self else { return }
    self = .object(members.filter { $0.key != key })
  }

  /// The string value, if this is a string.
  package var stringValue: String? {
    if case .string(let value, _) = self { return value }
    return nil
  }

  /// The text, with Python's `json.dumps` separators (`", "` and `": "`), as Keras writes it.
  package func serialized() -> String {
    var text = ""
    write(to: &text)
    return text
  }

  private func write(to text: inout String) {
    switch self {
    case .null: text += "null"
    case .bool(let value): text += value ? "true" : "false"
    case .number(let raw): text += raw
    case .string(_, let raw): text += raw
    case .array(let elements):
      text += "["
      for (index, element) in elements.enumerated() {
        if index > 0 { text += ", " }
        element.write(to: &text)
      }
      text += "]"
    case .object(let members):
      text += "{"
      for (index, member) in members.enumerated() {
        if index > 0 { text += ", " }
        JSONValue.string(member.key).write(to: &text)
        text += ": "
        member.value.write(to: &text)
      }
      text += "}"
    }
  }
}

/// Parses JSON text into a ``JSONValue``.
package struct JSONParser {
  private let bytes: [UInt8]
  private var position = 0
  private let maximumDepth = 512

  /// A parse failure: the byte offset and what was expected.
  package struct Failure: Error, Sendable {
    package var offset: Int
    package var message: String
  }

  package init(_ bytes: [UInt8]) {
    self.bytes = bytes
  }

  /// Parses one value that must fill the whole text (whitespace aside).
  package mutating func parse() throws(Failure) -> JSONValue {
    let value = try parseValue(depth: 0)
    skipWhitespace()
    guard position == bytes.count else { throw failure("expected the end of the text") }
    return value
  }

  private func failure(_ message: String) -> Failure {
    Failure(offset: position, message: message)
  }

  private mutating func skipWhitespace() {
    while position < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[position]) {
      position += 1
    }
  }

  private mutating func parseValue(depth: Int) throws(Failure) -> JSONValue {
    guard depth < maximumDepth else {
      throw failure("values nested more than \(maximumDepth) deep")
    }
    skipWhitespace()
    guard position < bytes.count else { throw failure("expected a value but the text ends") }
    switch bytes[position] {
    case UInt8(ascii: "{"):
      position += 1
      var members: [(key: String, value: JSONValue)] = []
      skipWhitespace()
      if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
        position += 1
        return .object(members)
      }
      while true {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
          throw failure("expected a quoted key")
        }
        guard case .string(let key, _) = try parseString() else {
          throw failure("expected a quoted key")
        }
        skipWhitespace()
        try expect(":")
        members.append((key, try parseValue(depth: depth + 1)))
        skipWhitespace()
        if try separatorEnds("}") { return .object(members) }
      }
    case UInt8(ascii: "["):
      position += 1
      var elements: [JSONValue] = []
      skipWhitespace()
      if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
        position += 1
        return .array(elements)
      }
      while true {
        elements.append(try parseValue(depth: depth + 1))
        skipWhitespace()
        if try separatorEnds("]") { return .array(elements) }
      }
    case UInt8(ascii: "\""):
      return try parseString()
    case UInt8(ascii: "t"):
      try expectWord("true")
      return .bool(true)
    case UInt8(ascii: "f"):
      try expectWord("false")
      return .bool(false)
    case UInt8(ascii: "n"):
      try expectWord("null")
      return .null
    case UInt8(ascii: "N"):
      try expectWord("NaN")  // Python's json writes NaN and Infinity for such floats.
      return .number("NaN")
    case UInt8(ascii: "I"):
      try expectWord("Infinity")
      return .number("Infinity")
    default:
      return try parseNumber()
    }
  }

  private mutating func separatorEnds(_ close: Character) throws(Failure) -> Bool {
    guard position < bytes.count else {
      throw failure("expected ',' or '\(close)' but the text ends")
    }
    if bytes[position] == UInt8(ascii: ",") {
      position += 1
      return false
    }
    if bytes[position] == UInt8(close.asciiValue ?? 0) {
      position += 1
      return true
    }
    throw failure("expected ',' or '\(close)'")
  }

  private mutating func expect(_ character: Character) throws(Failure) {
    guard position < bytes.count, bytes[position] == UInt8(character.asciiValue ?? 0) else {
      throw failure("expected '\(character)'")
    }
    position += 1
  }

  private mutating func expectWord(_ word: String) throws(Failure) {
    let utf8 = Array(word.utf8)
    guard position + utf8.count <= bytes.count,
      Array(bytes[position..<(position + utf8.count)]) == utf8
    else { throw failure("expected '\(word)'") }
    position += utf8.count
  }

  private mutating func parseNumber() throws(Failure) -> JSONValue {
    let start = position
    if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
    if position + 8 <= bytes.count,
      Array(bytes[position..<(position + 8)]) == Array("Infinity".utf8)
    {
      position += 8
      return .number(String(decoding: bytes[start..<position], as: UTF8.self))
    }
    let digitsStart = position
    while position < bytes.count,
      (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position])
        || [
          UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"), UInt8(ascii: "+"),
          UInt8(ascii: "-"),
        ]
        .contains(bytes[position])
    {
      position += 1
    }
    guard position > digitsStart else {
      position = start
      throw failure("expected a value")
    }
    return .number(String(decoding: bytes[start..<position], as: UTF8.self))
  }

  private mutating func parseString() throws(Failure) -> JSONValue {
    let start = position
    try expect("\"")
    var value: [UInt8] = []
    while true {
      guard position < bytes.count else {
        position = start
        throw failure("a string is not closed")
      }
      let byte = bytes[position]
      position += 1
      if byte == UInt8(ascii: "\"") { break }
      guard byte == UInt8(ascii: "\\") else {
        value.append(byte)
        continue
      }
      guard position < bytes.count else { throw failure("an escape is cut off") }
      let escaped = bytes[position]
      position += 1
      switch escaped {
      case UInt8(ascii: "n"): value.append(0x0A)
      case UInt8(ascii: "t"): value.append(0x09)
      case UInt8(ascii: "r"): value.append(0x0D)
      case UInt8(ascii: "b"): value.append(0x08)
      case UInt8(ascii: "f"): value.append(0x0C)
      case UInt8(ascii: "u"):
        var unit = try hexUnit()
        if (0xD800..<0xDC00).contains(unit), position + 1 < bytes.count,
          bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u")
        {
          position += 2
          let low = try hexUnit()
          if (0xDC00..<0xE000).contains(low) {
            unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
          } else {
            position -= 6  // not a pair: the high half alone, then that escape on its own
          }
        }
        value += Array(String(Unicode.Scalar(unit).map(Character.init) ?? "\u{FFFD}").utf8)
      default: value.append(escaped)
      }
    }
    return .string(
      String(decoding: value, as: UTF8.self),
      raw: String(decoding: bytes[start..<position], as: UTF8.self))
  }

  private mutating func hexUnit() throws(Failure) -> UInt32 {
    guard position + 4 <= bytes.count,
      let unit = UInt32(
        String(decoding: bytes[position..<(position + 4)], as: UTF8.self), radix: 16)
    else { throw failure("expected four hex digits after \\u") }
    position += 4
    return unit
  }
}
