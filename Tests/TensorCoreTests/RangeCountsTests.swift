import Testing
import TensorCore
import _TestSupport

@Suite("Range counts")
struct RangeCountsTests {
  private func counts(_ values: [Float], _ precision: ReducedPrecision) -> RangeCounts {
    values.withUnsafeBufferPointer { RangeCounts($0, roundedTo: precision) }
  }

  @Test("Float16 overflows from 65520 and flushes to zero at or below 2^-25")
  func float16Boundaries() {
    // 65519 rounds down to 65504; 65520 is the halfway point to 65536 and rounds to even (inf).
    #expect(counts([65504, 65519, -65519], .float16).overflow == 0)
    #expect(counts([65520, -1e5, 3e38], .float16).overflow == 3)
    #expect(counts([0x1p-25, -0x1p-26, 1e-30], .float16).flushToZero == 3)
    #expect(counts([0, -0], .float16).flushToZero == 0)
    let tiny = counts([0x1p-24, 0x1p-15, 6e-5], .float16)
    #expect(tiny.subnormal == 3)
    #expect(tiny.flushToZero == 0)
    #expect(counts([0x1p-14, 1, 100], .float16).affected == 0)
  }

  @Test("Bfloat16 keeps float32's range but not its subnormal precision")
  func bfloat16Boundaries() {
    #expect(counts([1e38, -3e38, 65520], .bfloat16).overflow == 0)
    #expect(counts([Float.greatestFiniteMagnitude], .bfloat16).overflow == 1)
    #expect(counts([0x1p-130], .bfloat16).subnormal == 1)
    #expect(counts([0x1p-140], .bfloat16).flushToZero == 1)
    #expect(counts([1e-30, 0x1p-126], .bfloat16).affected == 0)
  }

  @Test("Already non-finite values are counted apart, and counts merge")
  func nonFiniteAndMerge() {
    var total = counts([.infinity, .nan, 1], .float16)
    #expect(total.nonFinite == 2)
    #expect(total.overflow == 0)
    #expect(total.largestMagnitude == 1)
    total.merge(counts([7e4], .float16))
    #expect(total.total == 4)
    #expect(total.overflow == 1)
    #expect(total.largestMagnitude == 7e4)
  }
}

@Suite("Fast paths against their scalar references")
struct FastPathTests {
  /// What rounding does, by definition: round, then look at the result.
  private func referenceCounts(_ values: [Float], _ precision: ReducedPrecision) -> RangeCounts {
    var counts = RangeCounts()
    for value in values {
      counts.total += 1
      guard value.isFinite else {
        counts.nonFinite += 1
        continue
      }
      counts.largestMagnitude = max(counts.largestMagnitude, value.magnitude)
      let rounded = precision.rounded(value)
      let subnormal = precision == .float16 ? Float16(rounded).isSubnormal : rounded.isSubnormal
      if rounded.isInfinite {
        counts.overflow += 1
      } else if rounded == 0 {
        if value != 0 { counts.flushToZero += 1 }
      } else if subnormal {
        counts.subnormal += 1
      }
    }
    return counts
  }

  /// Random bit patterns plus every value within 3 ulps of each class boundary.
  private func samples(seed: UInt64) -> [Float] {
    var random = SeededGenerator(seed: seed)
    var values = (0..<20_000).map { _ in
      Float(bitPattern: UInt32.random(in: .min ... .max, using: &random))
    }
    let boundaries: [UInt32] = [
      0x477F_F000, 0x3300_0000, 0x387F_E000, 0x7F7F_8000, 0x0000_8000, 0x007F_8000, 0x7F80_0000, 0,
    ]
    for boundary in boundaries {
      for offset in -3...3 where Int64(boundary) + Int64(offset) >= 0 {
        let bits = UInt32(Int64(boundary) + Int64(offset))
        values += [Float(bitPattern: bits), -Float(bitPattern: bits)]
      }
    }
    return values
  }

  @Test(
    "Threshold classification equals rounding and looking", arguments: [1, 2, 3] as [UInt64],
    ReducedPrecision.allCases)
  func thresholdsMatchRounding(seed: UInt64, precision: ReducedPrecision) {
    let values = samples(seed: seed)
    let reference = referenceCounts(values, precision)
    // Every length up to 40 exercises the vector loop's scalar tail.
    for length in Array(0...40) + [values.count] {
      let prefix = Array(values.prefix(length))
      let fast = prefix.withUnsafeBytes {
        RangeCounts(float32LittleEndian: $0, roundedTo: precision)
      }
      let scalar = prefix.withUnsafeBytes {
        RangeCounts(scalarFloat32LittleEndian: $0, roundedTo: precision)
      }
      #expect(fast == scalar, "seed \(seed), length \(length)")
      if length == values.count { #expect(fast == reference, "seed \(seed)") }
    }
  }

  @Test(
    "Vector conversion equals scalar conversion bit for bit", arguments: [4, 5] as [UInt64],
    ReducedPrecision.allCases)
  func vectorConversionMatchesScalar(seed: UInt64, precision: ReducedPrecision) {
    // Odd lengths exercise the scalar tails of the vector loops.
    let values = samples(seed: seed) + [.nan, -.nan, .infinity, -.infinity, 65504, 3e38]
    for length in [0, 1, 7, 15, 17, values.count] {
      let prefix = Array(values.prefix(length))
      let fast = prefix.withUnsafeBytes { precision.encode(float32LittleEndian: $0) }
      let scalar = prefix.withUnsafeBytes { precision.encodeScalar(float32LittleEndian: $0) }
      #expect(fast.count == scalar.count)
      for index in stride(from: 0, to: fast.count, by: 2)
      where fast[index] != scalar[index] || fast[index + 1] != scalar[index + 1] {
        let value = prefix[index / 2]
        // NaN payloads may differ between the instruction and Swift; both must stay NaN.
        let fastBits = UInt16(fast[index]) | UInt16(fast[index + 1]) << 8
        let isNaN =
          precision == .float16
          ? Float16(bitPattern: fastBits).isNaN : BFloat16(bitPattern: fastBits).floatValue.isNaN
        #expect(
          value.isNaN && isNaN,
          "seed \(seed): \(value) (bits 0x\(String(value.bitPattern, radix: 16)))")
      }
    }
    #expect(ReducedPrecision.hasVectorConversion, "this machine has F16C and AVX2")
  }
}
