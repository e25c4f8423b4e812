import Testing
import TensorCore

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
