/// A 16-bit floating-point type that mixed precision computes in.
public enum ReducedPrecision: String, Sendable, Hashable, CaseIterable, Codable {
  /// IEEE binary16: 5 exponent bits, largest finite 65504, smallest subnormal 2^-24.
  case float16
  /// Brain float: the exponent range of float32 with 7 significand bits.
  case bfloat16

  /// The tensor element type.
  public var dtype: DType { self == .float16 ? .float16 : .bfloat16 }

  /// Rounds `value` to this type (nearest, ties to even) and back to float32.
  ///
  /// This is the value a float32 tensor holds after TensorFlow casts it to this type.
  @inlinable
  public func rounded(_ value: Float) -> Float {
    switch self {
    case .float16: Float(Float16(value))
    case .bfloat16: BFloat16(value).floatValue
    }
  }
}

extension ReducedPrecision {
  /// Rounds little-endian float32 values to this type and returns their little-endian bytes.
  ///
  /// Rounds to nearest, ties to even, as TensorFlow's `Cast`; values beyond the type's range
  /// become infinity.
  /// - Precondition: `bytes.count` is a multiple of 4.
  /// - Complexity: O(n).
  public func encode(float32LittleEndian bytes: UnsafeRawBufferPointer) -> [UInt8] {
    precondition(bytes.count % 4 == 0, "float32 data must be a whole number of values")
    let count = bytes.count / 4
    return [UInt8](unsafeUninitializedCapacity: 2 * count) { output, initialized in
      for index in 0..<count {
        let value = Float(
          bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)))
        let bits = self == .float16 ? Float16(value).bitPattern : BFloat16(value).bitPattern
        output[2 * index] = UInt8(truncatingIfNeeded: bits)
        output[2 * index + 1] = UInt8(truncatingIfNeeded: bits >> 8)
      }
      initialized = 2 * count
    }
  }
}

/// How the values of a float tensor fare when rounded to a reduced-precision type.
///
/// Used by `tfmp inspect`'s range report and by the converter to keep tensors float32 when their
/// values do not fit.
public struct RangeCounts: Sendable, Hashable, Codable {
  /// Values examined.
  public var total = 0
  /// Finite values that become infinity.
  public var overflow = 0
  /// Nonzero values that become zero.
  public var flushToZero = 0
  /// Values that land in the subnormal range (nonzero, below the smallest normal), losing precision.
  public var subnormal = 0
  /// Values that were already NaN or infinite before rounding.
  public var nonFinite = 0
  /// The largest finite magnitude seen (0 for no values).
  public var largestMagnitude: Float = 0

  /// Creates empty counts.
  public init() {}

  /// Counts what rounding each of `values` to `precision` does.
  ///
  /// - Complexity: O(n), one rounding per value.
  public init(_ values: UnsafeBufferPointer<Float>, roundedTo precision: ReducedPrecision) {
    for value in values {
      add(value, roundedTo: precision)
    }
  }

  /// Adds `count` copies of `value` rounded to `precision` to the counts.
  @inlinable
  public mutating func add(_ value: Float, roundedTo precision: ReducedPrecision, count: Int = 1) {
    total += count
    guard value.isFinite else {
      nonFinite += count
      return
    }
    largestMagnitude = max(largestMagnitude, value.magnitude)
    let rounded = precision.rounded(value)
    if rounded.isInfinite {
      overflow += count
    } else if rounded == 0 {
      if value != 0 { flushToZero += count }
    } else if precision.isSubnormal(rounded) {
      subnormal += count
    }
  }

  /// Values that rounding damages: overflow, flush to zero, or subnormal.
  public var affected: Int { overflow + flushToZero + subnormal }

  /// Adds another tensor's counts to these.
  public mutating func merge(_ other: RangeCounts) {
    total += other.total
    overflow += other.overflow
    flushToZero += other.flushToZero
    subnormal += other.subnormal
    nonFinite += other.nonFinite
    largestMagnitude = max(largestMagnitude, other.largestMagnitude)
  }
}

extension ReducedPrecision {
  /// Whether `value`, already representable in this type, is subnormal in it.
  @usableFromInline
  func isSubnormal(_ value: Float) -> Bool {
    switch self {
    case .float16: Float16(value).isSubnormal
    case .bfloat16: value.isSubnormal
    }
  }
}
