/// A 16-bit brain floating-point number: the upper half of an IEEE float32.
///
/// Eight exponent bits (the range of `Float`) and seven stored significand bits. The stored
/// ``bitPattern`` is what TensorFlow writes in checkpoints and in `TensorProto.half_val`.
public struct BFloat16: Sendable, Hashable {
  /// The 16 raw bits: sign, 8 exponent bits, 7 significand bits.
  public var bitPattern: UInt16

  /// Creates a value from its raw bits.
  public init(bitPattern: UInt16) {
    self.bitPattern = bitPattern
  }

  /// Rounds `value` to the nearest representable value, ties to even.
  ///
  /// NaN stays NaN (quieted, sign kept); finite values whose rounding exceeds the largest finite
  /// bfloat16 (about 3.39e38) become infinity, as in TensorFlow's `Cast` op. Float32 subnormals
  /// round like any other value, so tiny values can flush to zero.
  public init(_ value: Float) {
    let bits = value.bitPattern
    if value.isNaN {
      bitPattern = UInt16(truncatingIfNeeded: bits >> 16) | 0x0040
      return
    }
    // Round to nearest even on the 16 discarded bits; a carry into the exponent is correct
    // rounding (it reaches infinity only from values beyond the largest finite bfloat16).
    let roundingBias: UInt32 = 0x7FFF + ((bits >> 16) & 1)
    bitPattern = UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
  }

  /// The exact float32 value (every bfloat16 is a float32).
  public var floatValue: Float { Float(bitPattern: UInt32(bitPattern) << 16) }
}

extension Float {
  /// The exact value of `value` (every bfloat16 is representable as a float32).
  public init(_ value: BFloat16) {
    self = value.floatValue
  }
}

extension BFloat16: CustomStringConvertible {
  /// The value printed as a float32.
  public var description: String { floatValue.description }
}
