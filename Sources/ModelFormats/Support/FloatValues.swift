package import TensorCore
package import TFProtos
package import GraphIR
internal import Foundation

/// The float values of a stored tensor, decoded lazily from little-endian bytes, with a count of
/// how often the last value repeats (TensorFlow's splat rule for constants).
package struct FloatValues {
  /// The element type of the stored values: float16, bfloat16, float32 or float64.
  package var dtype: DType
  /// The explicitly stored values.
  package var explicitValues: [Float]
  /// How many more times the last explicit value (or zero when there is none) repeats.
  package var repeatedLastCount: Int

  /// Every value, the repeated last one written out.
  package var allValues: [Float] {
    explicitValues + Array(repeating: explicitValues.last ?? 0, count: repeatedLastCount)
  }

  /// Counts what rounding these values to each reduced precision does.
  package func rangeCounts() -> [ReducedPrecision: RangeCounts] {
    var result: [ReducedPrecision: RangeCounts] = [:]
    for precision in ReducedPrecision.allCases {
      var counts = explicitValues.withUnsafeBufferPointer { RangeCounts($0, roundedTo: precision) }
      if repeatedLastCount > 0 {
        counts.add(explicitValues.last ?? 0, roundedTo: precision, count: repeatedLastCount)
      }
      result[precision] = counts
    }
    return result
  }

  /// Decodes little-endian `bytes` of a float `dtype`; `nil` for other dtypes.
  package static func decode(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> FloatValues? {
    guard let size = dtype.byteSize, dtype.isFloatingPoint else { return nil }
    let count = bytes.count / size
    var values = [Float](repeating: 0, count: count)
    values.withUnsafeMutableBufferPointer { output in
      switch dtype {
      case .float32:
        for index in 0..<count {
          output[index] = Float(
            bitPattern: UInt32(
              littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)))
        }
      case .float64:
        for index in 0..<count {
          output[index] = Float(
            Double(
              bitPattern: UInt64(
                littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * index, as: UInt64.self))))
        }
      case .float16:
        let bits = (0..<count).map {
          UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))
        }
        _ = output.initialize(from: ReducedPrecision.widen(float16Bits: bits))
      default:
        for index in 0..<count {
          output[index] =
            BFloat16(
              bitPattern: UInt16(
                littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self))
            ).floatValue
        }
      }
    }
    return FloatValues(dtype: dtype, explicitValues: values, repeatedLastCount: 0)
  }

  /// Decodes the value of a float `TensorProto` (a `Const` node's `value`); `nil` for other
  /// dtypes or when the proto is inconsistent (its size does not match its shape).
  package static func decode(_ proto: Tensorflow_TensorProto) -> FloatValues? {
    AttrValueCoding.decode(proto).flatMap(decode)
  }

  /// Decodes a float tensor literal; `nil` for other dtypes or when the literal is inconsistent
  /// (its size does not match its shape).
  package static func decode(_ literal: TensorLiteral) -> FloatValues? {
    let dtype = literal.dtype
    guard dtype.isFloatingPoint, let elementCount = literal.elementCount, let size = dtype.byteSize
    else { return nil }
    if !literal.content.isEmpty {
      guard literal.content.count == elementCount * size else { return nil }
      return literal.content.withUnsafeBytes { decode($0, dtype: dtype) }
    }
    let explicit: [Float] =
      switch dtype {
      case .float32: literal.floatValues
      case .float64: literal.doubleValues.map { Float($0) }
      case .float16:
        literal.halfValues.map { Float(Float16(bitPattern: UInt16(truncatingIfNeeded: $0))) }
      default:
        literal.halfValues.map { BFloat16(bitPattern: UInt16(truncatingIfNeeded: $0)).floatValue }
      }
    guard explicit.count <= elementCount else { return nil }
    return FloatValues(
      dtype: dtype, explicitValues: explicit, repeatedLastCount: elementCount - explicit.count)
  }
}
