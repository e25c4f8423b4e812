internal import CTFMPKernels

/// A 16-bit floating-point type that mixed precision computes in.
public enum ReducedPrecision: String, Sendable, Hashable, CaseIterable, Codable {
  /// IEEE binary16: 5 exponent bits, largest finite 65504, smallest subnormal 2^-24.
  case float16
  /// Brain float: the exponent range of float32 with 7 significand bits.
  case bfloat16

  /// The tensor element type.
  public var dtype: DType { self == .float16 ? .float16 : .bfloat16 }

  /// The reduced precision of `dtype`, or `nil` for other types.
  public init?(_ dtype: DType) {
    switch dtype {
    case .float16: self = .float16
    case .bfloat16: self = .bfloat16
    default: return nil
    }
  }

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
  /// Whether ``encode(float32LittleEndian:)`` uses the F16C/AVX2 kernels.
  package static let hasVectorConversion = tfmp_has_f16c() != 0

  /// Rounds each of `values` to this type and back to float32, as ``rounded(_:)`` does, with
  /// F16C/AVX2 instructions when the CPU has them.
  public func round(_ values: inout [Float]) {
    values.withUnsafeMutableBufferPointer { round($0) }
  }

  /// Rounds each of `values` in place, as ``round(_:)-([Float])`` does.
  public func round(_ values: UnsafeMutableBufferPointer<Float>) {
    guard let base = values.baseAddress else { return }
    guard Self.hasVectorConversion else {
      for index in values.indices { values[index] = rounded(values[index]) }
      return
    }
    switch self {
    case .float16: tfmp_round_to_float16_f16c(base, values.count)
    case .bfloat16: tfmp_round_to_bfloat16_avx2(base, values.count)
    }
  }

  /// The float32 values of float16 `bits` (exact), with F16C when the CPU has it.
  public static func widen(float16Bits bits: [UInt16]) -> [Float] {
    guard hasVectorConversion else { return bits.map { Float(Float16(bitPattern: $0)) } }
    return [Float](unsafeUninitializedCapacity: bits.count) { output, initialized in
      bits.withUnsafeBufferPointer {
        tfmp_float16_to_float32_f16c($0.baseAddress, output.baseAddress, bits.count)
      }
      initialized = bits.count
    }
  }

  /// Rounds little-endian float32 values to this type and returns their little-endian bytes.
  ///
  /// Rounds to nearest, ties to even, as TensorFlow's `Cast`; values beyond the type's range
  /// become infinity; NaN stays NaN. Uses F16C/AVX2 instructions when the CPU has them (memory
  /// speed), else ``encodeScalar(float32LittleEndian:)``.
  /// - Precondition: `bytes.count` is a multiple of 4.
  /// - Complexity: O(n).
  public func encode(float32LittleEndian bytes: UnsafeRawBufferPointer) -> [UInt8] {
    precondition(bytes.count % 4 == 0, "float32 data must be a whole number of values")
    guard Self.hasVectorConversion, let source = bytes.baseAddress else {
      return encodeScalar(float32LittleEndian: bytes)
    }
    let count = bytes.count / 4
    return [UInt8](unsafeUninitializedCapacity: 2 * count) { output, initialized in
      if let destination = output.baseAddress {
        switch self {
        case .float16: tfmp_float32_to_float16_f16c(source, destination, count)
        case .bfloat16: tfmp_float32_to_bfloat16_avx2(source, destination, count)
        }
      }
      initialized = 2 * count
    }
  }

  /// The portable form of ``encode(float32LittleEndian:)``, one value at a time.
  package func encodeScalar(float32LittleEndian bytes: UnsafeRawBufferPointer) -> [UInt8] {
    let count = bytes.count / 4
    return [UInt8](unsafeUninitializedCapacity: 2 * count) { output, initialized in
      for index in 0..<count {
        let value = Float(
          bitPattern: UInt32(
            littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)))
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
  public init(_ values: UnsafeBufferPointer<Float>, roundedTo precision: ReducedPrecision) {
    self.init(float32LittleEndian: UnsafeRawBufferPointer(values), roundedTo: precision)
  }

  /// Counts what rounding each little-endian float32 in `bytes` to `precision` does.
  ///
  /// Classifies the raw bits against exact thresholds (see ``ReducedPrecision``'s
  /// `roundingThresholds`), with no conversion: several GB/s.
  /// - Precondition: `bytes.count` is a multiple of 4.
  public init(
    float32LittleEndian bytes: UnsafeRawBufferPointer, roundedTo precision: ReducedPrecision
  ) {
    precondition(bytes.count % 4 == 0, "float32 data must be a whole number of values")
    let thresholds = precision.roundingThresholds
    if ReducedPrecision.hasVectorConversion, let start = bytes.baseAddress {
      let counts = tfmp_range_counts_avx2(
        start, bytes.count / 4, thresholds.overflow, thresholds.flushToZero, thresholds.normal)
      self.init()
      total = bytes.count / 4
      overflow = Int(counts.overflow)
      flushToZero = Int(counts.flush_to_zero)
      subnormal = Int(counts.subnormal)
      nonFinite = Int(counts.non_finite)
      largestMagnitude = Float(bitPattern: counts.largest_magnitude_bits)
      return
    }
    self.init(scalarFloat32LittleEndian: bytes, roundedTo: precision)
  }

  /// The portable form of ``init(float32LittleEndian:roundedTo:)``, one value at a time.
  package init(
    scalarFloat32LittleEndian bytes: UnsafeRawBufferPointer, roundedTo precision: ReducedPrecision
  ) {
    self.init()
    let thresholds = precision.roundingThresholds
    var largest: UInt32 = 0
    for index in 0..<(bytes.count / 4) {
      let magnitude =
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self))
        & 0x7FFF_FFFF
      classify(magnitude, thresholds, count: 1, largest: &largest)
    }
    total = bytes.count / 4
    largestMagnitude = Float(bitPattern: largest)
  }

  /// Adds `count` copies of `value` rounded to `precision` to the counts.
  public mutating func add(_ value: Float, roundedTo precision: ReducedPrecision, count: Int = 1) {
    var largest = largestMagnitude.bitPattern
    classify(
      value.bitPattern & 0x7FFF_FFFF, precision.roundingThresholds, count: count, largest: &largest)
    total += count
    largestMagnitude = Float(bitPattern: largest)
  }

  private mutating func classify(
    _ magnitude: UInt32, _ thresholds: ReducedPrecision.RoundingThresholds, count: Int,
    largest: inout UInt32
  ) {
    if magnitude >= 0x7F80_0000 {
      nonFinite += count
      return
    }
    largest = max(largest, magnitude)
    if magnitude >= thresholds.overflow {
      overflow += count
    } else if magnitude <= thresholds.flushToZero {
      if magnitude != 0 { flushToZero += count }
    } else if magnitude < thresholds.normal {
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
  /// float32 magnitudes (bit patterns, sign cleared) at which rounding to this type, to nearest
  /// with ties to even, changes class. Exact: each is the midpoint between two neighbouring
  /// values of the type, and the tie goes to the one with the even significand.
  struct RoundingThresholds {
    /// At or above: the result is infinity.
    var overflow: UInt32
    /// At or below: the result is zero.
    var flushToZero: UInt32
    /// Below (and above `flushToZero`): the result is subnormal.
    var normal: UInt32
  }

  var roundingThresholds: RoundingThresholds {
    switch self {
    case .float16:
      // 65520 is midway between 65504 (odd significand) and 65536 (infinity); 2^-25 is midway
      // between 0 and 2^-24; 2^-14 - 2^-25 is midway between the largest subnormal (odd) and
      // 2^-14.
      RoundingThresholds(overflow: 0x477F_F000, flushToZero: 0x3300_0000, normal: 0x387F_E000)
    case .bfloat16:
      // The same midpoints one bfloat16 ulp (2^16 float32 ulps) apart.
      RoundingThresholds(overflow: 0x7F7F_8000, flushToZero: 0x0000_8000, normal: 0x007F_8000)
    }
  }
}
