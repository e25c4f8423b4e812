import Testing
import TensorCore
import _TestSupport

@Suite("BFloat16")
struct BFloat16Tests {
  @Test("Every non-NaN bit pattern round-trips through Float")
  func everyBitPatternRoundTrips() {
    for bits in 0...UInt16.max {
      let value = BFloat16(bitPattern: bits)
      guard !value.floatValue.isNaN else { continue }
      #expect(BFloat16(value.floatValue).bitPattern == bits, "bits 0x\(String(bits, radix: 16))")
    }
  }

  @Test("Rounding error is at most half an ulp", arguments: [0, 1, 0xDEAD_BEEF] as [UInt64])
  func roundingError(seed: UInt64) {
    var random = SeededGenerator(seed: seed)
    for _ in 0..<10_000 {
      let x = Float(bitPattern: UInt32.random(in: 0x0080_0000..<0x7F00_0000, using: &random))
      let rounded = BFloat16(x).floatValue
      // bfloat16 keeps 8 significant bits, so half an ulp is 2^-8 of the value's binade.
      #expect(abs(rounded - x) <= x.binade * 0x1p-8, "seed \(seed): x = \(x)")
    }
  }

  @Test("Ties round to even and values match TensorFlow's bit patterns")
  func tiesToEvenAndKnownPatterns() {
    #expect(BFloat16(Float(1.5)).bitPattern == 0x3FC0)
    #expect(BFloat16(Float(-2)).bitPattern == 0xC000)
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even significand (1).
    #expect(BFloat16(1 + 0x1p-8).bitPattern == 0x3F80)
    // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
    #expect(BFloat16(1 + 3 * 0x1p-8).bitPattern == 0x3F82)
  }

  @Test("Overflow gives infinity and NaN stays NaN with its sign")
  func overflowAndNaN() {
    #expect(BFloat16(Float.greatestFiniteMagnitude).floatValue == .infinity)
    #expect(BFloat16(-Float.greatestFiniteMagnitude).floatValue == -.infinity)
    #expect(BFloat16(Float.nan).floatValue.isNaN)
    #expect(BFloat16(-Float.nan).floatValue.sign == .minus)
    #expect(BFloat16(Float(bitPattern: 0x7F80_0001)).floatValue.isNaN)
  }
}
