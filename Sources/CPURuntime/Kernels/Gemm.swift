internal import CTFMPKernels
internal import Foundation
internal import TensorCore

/// Row-major single-precision matrix products.
enum Gemm {
  /// The implementations of the product: C kernels for x86-64 vector extensions and the scalar
  /// reference loop.
  enum Implementation: CaseIterable {
    case avx512, avx2, reference

    /// Whether this CPU can run it (asked once).
    var isAvailable: Bool {
      switch self {
      case .avx512: Self.hasAVX512
      case .avx2: Self.hasAVX2
      case .reference: true
      }
    }

    private static let hasAVX512 = tfmp_has_avx512() != 0
    private static let hasAVX2 = tfmp_has_avx2_fma() != 0

    /// The fastest implementation this CPU runs.
    static let best = allCases.first { $0.isAvailable } ?? .reference
  }

  /// C[m, n] = A[m, k] x B[k, n] with float32 accumulation, where `transposeA` means `a` holds
  /// A's transpose ([k, m]) and `transposeB` B's ([n, k]). `halfB`, when given, holds B's
  /// elements as float16 bits (a float16 weight's ``Tensor/float16Bits``): the vector kernels then
  /// read it instead of `b`, half the bytes, with the same result.
  static func multiply(
    _ a: [Float], _ b: [Float], m: Int, k: Int, n: Int, transposeA: Bool = false, transposeB: Bool = false,
    halfB: [UInt16]? = nil, implementation: Implementation = .best
  ) -> [Float] {
    multiply(
      a, b, offsets: [(0, 0)], m: m, k: k, n: n, transposeA: transposeA, transposeB: transposeB, halfB: halfB,
      implementation: implementation)
  }

  /// A batch of products: for each (offset into `a`, offset into `b`) pair, the product of the
  /// matrices starting there, concatenated into a [pairs, m, n] result. Large batches are spread
  /// over the cores, and a single large product is split by columns (or rows when it is narrow).
  static func multiply(
    _ a: [Float], _ b: [Float], offsets: [(Int, Int)], m: Int, k: Int, n: Int, transposeA: Bool = false,
    transposeB: Bool = false, halfB: [UInt16]? = nil, implementation: Implementation = .best
  ) -> [Float] {
    guard m > 0, n > 0 else { return [] }
    guard k > 0 else { return [Float](repeating: 0, count: offsets.count * m * n) }
    // Consecutive matrices of A times one B (a dense layer on a batch of sequences) are one
    // product with their rows stacked.
    if offsets.count > 1, !transposeA, let first = offsets.first,
      offsets.enumerated().allSatisfy({ $1.0 == first.0 + $0 * m * k && $1.1 == first.1 })
    {
      return multiply(
        a, b, offsets: [first], m: offsets.count * m, k: k, n: n, transposeB: transposeB, halfB: halfB,
        implementation: implementation)
    }
    let (rsa, csa) = transposeA ? (1, m) : (k, 1)
    let (rsb, csb) = transposeB ? (1, k) : (n, 1)
    let kernel: @convention(c) (
      Int, Int, Int, UnsafePointer<Float>?, Int, Int, UnsafeRawPointer?, Int32, Int, Int, UnsafeMutablePointer<Float>?, Int
    ) -> Int32
    switch implementation {
    case .avx512: kernel = tfmp_sgemm_avx512
    case .avx2: kernel = tfmp_sgemm_avx2
    case .reference:
      return offsets.flatMap { offsetA, offsetB in
        let left = (0..<(m * k)).map { a[offsetA + $0 / k * rsa + $0 % k * csa] }
        let right = (0..<(k * n)).map { b[offsetB + $0 / n * rsb + $0 % n * csb] }
        return reference(left, right, m: m, k: k, n: n)
      }
    }
    precondition(implementation.isAvailable, "This CPU cannot run the \(implementation) matrix product.")
    // Work items: (pair, first row, row count, first column, column count).
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let large = m * n * k >= 1 << 18
    var items: [(pair: Int, row: Int, rows: Int, column: Int, columns: Int)] = []
    if offsets.count >= cores || !large || cores == 1 {
      items = offsets.indices.map { ($0, 0, m, 0, n) }
    } else if m < n || m < 12 * cores {
      // Each core reads all of A and its share of B: for the short, wide products of a
      // transformer's dense layers. Tall products (convolutions) split A instead.
      let step = (n / cores + 31) / 32 * 32
      for pair in offsets.indices {
        for column in stride(from: 0, to: n, by: step) { items.append((pair, 0, m, column, Swift.min(step, n - column))) }
      }
    } else {
      let step = (m / cores + 11) / 12 * 12
      for pair in offsets.indices {
        for row in stride(from: 0, to: m, by: step) { items.append((pair, row, Swift.min(step, m - row), 0, n)) }
      }
    }
    let work = items
    let parts = large ? Swift.min(cores, work.count) : 1
    // The work items together write every element of C.
    return [Float](unsafeUninitializedCapacity: offsets.count * m * n) { c, initialized in
      let half = ReducedPrecision.hasVectorConversion && halfB?.count == b.count ? halfB : nil
      a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
          (half ?? []).withUnsafeBufferPointer { halfB in
            // Each work item writes its own block of C and only reads A and B.
            nonisolated(unsafe) let (left, output) = (a.baseAddress!, c.baseAddress!)
            nonisolated(unsafe) let right = half == nil ? UnsafeRawPointer(b.baseAddress!) : UnsafeRawPointer(halfB.baseAddress!)
            let (elementSize, isHalf): (Int, Int32) = half == nil ? (4, 0) : (2, 1)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
              for item in stride(from: part, to: work.count, by: parts) {
                let (pair, row, rows, column, columns) = work[item]
                let (offsetA, offsetB) = offsets[pair]
                let status = kernel(
                  rows, columns, k, left + offsetA + row * rsa, rsa, csa, right + (offsetB + column * csb) * elementSize,
                  isHalf, rsb, csb, output + pair * m * n + row * n + column, n)
                precondition(status == 0, "Out of memory for a \(m)x\(k)x\(n) matrix product.")
              }
            }
          }
        }
      }
      initialized = offsets.count * m * n
    }
  }

  /// The scalar triple loop: the reference the vector kernel is tested against.
  static func reference(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    for row in 0..<m {
      for column in 0..<n {
        var sum: Float = 0
        for inner in 0..<k { sum += a[row * k + inner] * b[inner * n + column] }
        c[row * n + column] = sum
      }
    }
    return c
  }
}
