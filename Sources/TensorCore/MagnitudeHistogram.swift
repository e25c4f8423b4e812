/// How many values have each binary order of magnitude: the counts behind a histogram of |x| on
/// a logarithmic axis, against which the reduced types' limits read directly (float16 overflows
/// at 2^16, flushes to zero below 2^-25; bfloat16 at 2^128 and 2^-134).
public struct MagnitudeHistogram: Sendable, Hashable, Codable {
  /// The binary exponent of the first bin: bin `i` counts the finite nonzero magnitudes in
  /// [2^(lowestExponent + i), 2^(lowestExponent + i + 1)).
  public static let lowestExponent = -149
  /// The bins, from 2^-149 (float32's smallest subnormal) to 2^127.
  public static let binCount = 277

  /// The count of each bin; see ``lowestExponent``.
  public private(set) var counts = [Int](repeating: 0, count: MagnitudeHistogram.binCount)
  /// Zeros.
  public private(set) var zeros = 0
  /// Infinities and NaNs.
  public private(set) var nonFinite = 0

  /// An empty histogram.
  public init() {}

  /// Finite nonzero values counted.
  public var nonzeroCount: Int { counts.reduce(0, +) }

  /// Counts `values`: a pass over their bits, in place (the instrumented pass counts every
  /// value a model computes).
  public mutating func add(_ values: [Float]) {
    var (zeros, nonFinite) = (0, 0)
    counts.withUnsafeMutableBufferPointer { counts in
      values.withUnsafeBufferPointer { values in
        for value in values {
          // The biased exponent: 0 for zeros and subnormals, 255 for infinities and NaNs.
          let bits = value.bitPattern & 0x7FFF_FFFF
          let biased = Int(bits >> 23)
          if bits == 0 {
            zeros += 1
          } else if biased == 255 {
            nonFinite += 1
          } else if biased == 0 {
            // A subnormal: 2^-149 times its significand, whose highest set bit is the exponent.
            counts[(31 - (bits.leadingZeroBitCount)) - 149 - Self.lowestExponent] += 1
          } else {
            counts[biased - 127 - Self.lowestExponent] += 1
          }
        }
      }
    }
    self.zeros += zeros
    self.nonFinite += nonFinite
  }

  /// Adds `other`'s counts.
  public mutating func merge(_ other: MagnitudeHistogram) {
    for index in counts.indices { counts[index] += other.counts[index] }
    zeros += other.zeros
    nonFinite += other.nonFinite
  }

  /// The exponents of the lowest and highest nonempty bins, or `nil` when every value is zero or
  /// not finite.
  public var exponentRange: ClosedRange<Int>? {
    guard let first = counts.firstIndex(where: { $0 > 0 }),
      let last = counts.lastIndex(where: { $0 > 0 })
    else { return nil }
    return (first + Self.lowestExponent)...(last + Self.lowestExponent)
  }

  /// The finite nonzero values whose magnitude is at least 2^`exponent`.
  public func count(atLeast exponent: Int) -> Int {
    let start = min(max(exponent - Self.lowestExponent, 0), Self.binCount)
    return counts[start...].reduce(0, +)
  }

  /// The finite nonzero values whose magnitude is below 2^`exponent`.
  public func count(below exponent: Int) -> Int {
    nonzeroCount - count(atLeast: exponent)
  }
}
