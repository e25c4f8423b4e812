internal import Foundation
internal import GraphIR
internal import TensorCore

/// The text family, as Keras's TextVectorization layer emits it: lower-casing, regular
/// expression replacement (its punctuation stripping), splitting into tokens, and the padding
/// of the ragged token rows into a dense tensor (`RaggedTensorToTensor`). The tokens are then
/// looked up in a table (``TableKernels``).
enum TextKernels {
  static func register(in registry: inout OpRegistry) {
    let text = OpSchema.Argument.fixed("input", .string)
    let output = OpSchema.Argument.fixed("output", .string)
    registry.add(
      "StringLower", inputs: [text], outputs: [output], attributes: [.string("encoding", "")]
    ) { context, inputs in
      let encoding = try context.string("encoding")
      return [
        try mapped(try Kernels.input(inputs, 0)) { bytes in
          switch encoding {
          // ASCII letters only, as TensorFlow does without an encoding.
          case "": return bytes.map { (65...90).contains($0) ? $0 + 32 : $0 }
          case "utf-8", "UTF-8":
            return Array(String(decoding: bytes, as: UTF8.self).lowercased().utf8)
          default:
            throw KernelError("The encoding must be '' or 'utf-8', but it is '\(encoding)'.")
          }
        }
      ]
    }
    registry.add(
      "StaticRegexReplace", inputs: [text], outputs: [output],
      attributes: [.string("pattern"), .string("rewrite"), .bool("replace_global", true)]
    ) { context, inputs in
      let pattern = try context.string("pattern")
      let regex: Regex<AnyRegexOutput>
      do {
        // Code points, as RE2 matches UTF-8 text, and RE2's ASCII-only \d, \s, \w.
        regex = try Regex(pattern).matchingSemantics(.unicodeScalar).asciiOnlyCharacterClasses()
      } catch {
        throw KernelError(
          code: .unsupported, "The pattern '\(pattern)' is not one tfmp can compile: \(error).")
      }
      let rewrite = try Rewrite(try context.string("rewrite"))
      let global = try context.bool("replace_global")
      return [
        try mapped(try Kernels.input(inputs, 0)) { bytes in
          let string = String(decoding: bytes, as: UTF8.self)
          var result = ""
          var rest = string.unicodeScalars.startIndex
          for match in string.matches(of: regex) {
            result.unicodeScalars += string.unicodeScalars[rest..<match.range.lowerBound]
            result += rewrite.text(for: match)
            rest = match.range.upperBound
            if !global { break }
          }
          result.unicodeScalars += string.unicodeScalars[rest...]
          return Array(result.utf8)
        }
      ]
    }
    registry.add(
      "StringSplitV2", inputs: [text, .fixed("sep", .string)],
      outputs: [.fixed("indices", .int64), .fixed("values", .string), .fixed("shape", .int64)],
      attributes: [.int("maxsplit", -1)]
    ) { context, inputs in
      let input = try Kernels.input(inputs, 0)
      guard input.shape.rank == 1, case .string(let strings) = input.storage,
        case .string(let separators) = try Kernels.input(inputs, 1).storage,
        separators.count == 1
      else { throw KernelError("StringSplitV2 splits a vector of strings by a scalar separator.") }
      let limit = try context.int("maxsplit")
      var indices: [Int64] = []
      var values: [[UInt8]] = []
      var widest = 0
      for (row, string) in strings.enumerated() {
        let tokens = split(string, by: separators[0], limit: limit)
        for (column, token) in tokens.enumerated() {
          indices += [Int64(row), Int64(column)]
          values.append(token)
        }
        widest = max(widest, tokens.count)
      }
      return [
        Tensor(dtype: .int64, shape: Shape([values.count, 2]), storage: .int64(indices)),
        Tensor(dtype: .string, shape: Shape([values.count]), storage: .string(values)),
        Tensor(
          dtype: .int64, shape: Shape([2]), storage: .int64([Int64(strings.count), Int64(widest)])),
      ]
    }
    registry.add(
      "RaggedTensorToTensor",
      inputs: [
        .init("shape", type: "Tshape"), .init("values", type: "T"),
        .init("default_value", type: "T"),
        .init("row_partition_tensors", .number("num_row_partition_tensors"), type: "Tindex"),
      ],
      outputs: [.init("result", type: "T")], attributes: [.strings("row_partition_types")],
      traits: .movesElements, .tensors(densified))
  }

  /// `input` with each string replaced by `transform` of it.
  private static func mapped(_ input: Tensor, _ transform: ([UInt8]) throws -> [UInt8]) throws
    -> Tensor
  {
    guard case .string(let strings) = input.storage else {
      throw KernelError("Expected a string tensor, got \(input.dtype).")
    }
    return Tensor(dtype: .string, shape: input.shape, storage: .string(try strings.map(transform)))
  }

  /// `string` split as Python's `str.split` does: by `separator` (empty tokens kept), or with an
  /// empty one at runs of ASCII whitespace (none kept); at most `limit` splits when it is positive.
  static func split(_ string: [UInt8], by separator: [UInt8], limit: Int) -> [[UInt8]] {
    var tokens: [[UInt8]] = []
    var start = 0
    var position = 0
    func canSplit() -> Bool { limit <= 0 || tokens.count < limit }
    if separator.isEmpty {
      let space: Set<UInt8> = [32, 9, 10, 11, 12, 13]
      while position < string.count {
        while position < string.count, space.contains(string[position]) { position += 1 }
        guard position < string.count else { break }
        guard canSplit() else {
          tokens.append(Array(string[position...]))
          break
        }
        start = position
        while position < string.count, !space.contains(string[position]) { position += 1 }
        tokens.append(Array(string[start..<position]))
      }
      return tokens
    }
    while position + separator.count <= string.count, canSplit() {
      if string[position..<(position + separator.count)].elementsEqual(separator) {
        tokens.append(Array(string[start..<position]))
        position += separator.count
        start = position
      } else {
        position += 1
      }
    }
    tokens.append(Array(string[start...]))
    return tokens
  }

  /// A rewrite string: text, and `\0` to `\9` for the whole match and its groups (`\\` is a
  /// backslash).
  private struct Rewrite {
    enum Part {
      case text(String)
      case group(Int)
    }
    var parts: [Part] = []

    init(_ rewrite: String) throws {
      var text = ""
      var scalars = rewrite.unicodeScalars.makeIterator()
      while let scalar = scalars.next() {
        guard scalar == "\\" else {
          text.unicodeScalars.append(scalar)
          continue
        }
        guard let next = scalars.next() else {
          throw KernelError("The rewrite '\(rewrite)' ends with a lone backslash.")
        }
        if next == "\\" {
          text.unicodeScalars.append(next)
        } else if let digit = Int(String(next)) {
          parts.append(.text(text))
          parts.append(.group(digit))
          text = ""
        } else {
          throw KernelError("The rewrite '\(rewrite)' has an invalid escape '\\\(next)'.")
        }
      }
      parts.append(.text(text))
    }

    func text(for match: Regex<AnyRegexOutput>.Match) -> String {
      parts.map { part in
        switch part {
        case .text(let text): return text
        case .group(let index):
          // A group the match did not take part in gives nothing.
          return index < match.output.count ? String(match.output[index].substring ?? "") : ""
        }
      }.joined()
    }
  }

  /// `RaggedTensorToTensor` with one ragged dimension: the rows of `values` (given by their row
  /// ids and the number of rows, or by row splits) padded with the default into the shape asked
  /// for (a dimension of -1: as the rows need), longer rows cut.
  private static func densified(_ context: KernelContext, _ inputs: [Tensor]) throws -> [Tensor] {
    guard inputs.count >= 4 else {
      throw KernelError("Expected a shape, values, a default and row partitions.")
    }
    let (values, defaultValue) = (inputs[1], inputs[2])
    let types = try context.strings("row_partition_types")
    let partitions = Array(inputs.dropFirst(3))
    // Each value's row, and the number of rows.
    let rows: [Int]
    let rowCount: Int
    switch types {
    case ["FIRST_DIM_SIZE", "VALUE_ROWIDS"] where partitions.count == 2:
      guard let count = try partitions[0].requireIntegers().first else {
        throw KernelError("FIRST_DIM_SIZE must be a scalar.")
      }
      rowCount = count
      rows = try partitions[1].requireIntegers()
    case ["ROW_SPLITS"] where partitions.count == 1:
      let splits = try partitions[0].requireIntegers()
      guard let first = splits.first, first == 0,
        zip(splits, splits.dropFirst()).allSatisfy({ $0 <= $1 })
      else { throw KernelError("ROW_SPLITS must start at 0 and not decrease.") }
      rowCount = splits.count - 1
      rows = (0..<rowCount).flatMap { row in
        [Int](repeating: row, count: splits[row + 1] - splits[row])
      }
    default:
      throw KernelError(
        code: .unsupported,
        "Row partitions \(types) are not run yet: tfmp pads one ragged dimension, given by "
          + "FIRST_DIM_SIZE and VALUE_ROWIDS or by ROW_SPLITS.")
    }
    let inner = Array(values.shape.dimensions.dropFirst())
    let innerCount = inner.reduce(1, *)
    guard rowCount >= 0, values.shape.rank >= 1, rows.count == values.shape.dimensions[0],
      rows.allSatisfy({ (0..<rowCount).contains($0) }),
      zip(rows, rows.dropFirst()).allSatisfy({ $0 <= $1 })
    else {
      throw KernelError(
        "The row partition does not fit the \(values.shape.dimensions.first ?? 0) values.")
    }
    guard defaultValue.shape.elementCount == 1 || Array(defaultValue.shape.dimensions) == inner
    else {
      throw KernelError(
        "The default value must be a scalar or of the values' inner shape \(inner).")
    }
    // Each value's place in its row.
    var columns = [Int](repeating: 0, count: rows.count)
    for index in rows.indices.dropFirst() where rows[index] == rows[index - 1] {
      columns[index] = columns[index - 1] + 1
    }
    let asked = try inputs[0].requireIntegers()
    func dimension(_ axis: Int, else natural: Int) -> Int {
      axis < asked.count && asked[axis] >= 0 ? asked[axis] : natural
    }
    let (height, width) = (
      dimension(0, else: rowCount), dimension(1, else: (columns.max() ?? -1) + 1)
    )
    let shape = try context.allocating([height, width] + inner, values.dtype)
    // Element e of the result from the values (source 0) or the default (source 1).
    var order = (0..<(height * width * innerCount)).map {
      (1, defaultValue.shape.elementCount == 1 ? 0 : $0 % innerCount)
    }
    for (index, (row, column)) in zip(rows, columns).enumerated()
    where row < height && column < width {
      for element in 0..<innerCount {
        order[(row * width + column) * innerCount + element] = (0, index * innerCount + element)
      }
    }
    return [
      try ShapeKernels.gather([values, defaultValue], order, dtype: values.dtype, shape: shape)
    ]
  }
}
