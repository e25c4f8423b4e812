internal import Foundation
internal import GraphIR
internal import ModelFormats
internal import TensorCore

/// The value of a float32 `Const` node, and its conversion to a reduced type.
struct ConstantValues {
  let values: FloatValues
  let shape: ShapeValue

  /// Reads a float32 `Const` node's value; `nil` for any other node.
  init?(_ node: Node) {
    guard node.op == "Const", node.type("dtype") == .float32,
      case .tensor(let tensor)? = node.attributes["value"], tensor.dtype == .float32,
      let values = FloatValues.decode(tensor)
    else { return nil }
    self.values = values
    shape = tensor.shape
  }

  /// Whether the values survive rounding to `precision` (see ``RangeCounts/survive``).
  func fits(_ precision: ReducedPrecision) -> Bool {
    values.rangeCounts()[precision]?.survive ?? true
  }

  /// The `value` tensor of an equivalent `Const` in `precision`, encoded as TensorFlow encodes
  /// one: `tensor_content` for several explicit values, `half_val` (bit patterns) otherwise.
  func tensor(in precision: ReducedPrecision) -> TensorLiteral {
    var tensor = TensorLiteral(dtype: precision.dtype, shape: shape)
    let bits = values.explicitValues.map { value -> UInt16 in
      precision == .float16 ? Float16(value).bitPattern : BFloat16(value).bitPattern
    }
    if values.repeatedLastCount == 0 && bits.count > 1 {
      var content = Data(capacity: 2 * bits.count)
      for pattern in bits {
        withUnsafeBytes(of: pattern.littleEndian) { content.append(contentsOf: $0) }
      }
      tensor.content = content
    } else {
      tensor.halfValues = bits.map { Int32($0) }
    }
    return tensor
  }
}

extension RangeCounts {
  /// Whether values so counted survive rounding, for computing on them: nothing overflows, and
  /// no nonzero value becomes zero (in small tensors such as epsilons, where one lost value
  /// matters) or more than 0.1% of them do (in large ones). Values turning subnormal survive:
  /// their absolute error stays below half the smallest subnormal.
  var survive: Bool {
    if overflow > 0 { return false }
    if flushToZero == 0 { return true }
    return total > 16 && flushToZero * 1000 <= total
  }
}
