internal import CTFMPKernels
internal import Foundation
internal import TensorCore

/// Row-major single-precision matrix products.
enum Gemm {
  /// The implementations of the product: C kernels for x86-64 vector extensions and AMX, and
  /// the scalar reference loop.
  enum Implementation: CaseIterable {
    case amx, avx512, avx2, reference

    /// Whether this CPU can run it (asked once).
    var isAvailable: Bool {
      switch self {
      case .amx: Self.hasAMX
      case .avx512: Self.hasAVX512
      case .avx2: Self.hasAVX2
      case .reference: true
      }
    }

    /// Whether it multiplies any float32 values. AMX multiplies float16 and bfloat16 values only
    /// (``multiply(_:_:offsets:m:k:n:transposeA:transposeB:halfB:precision:packs:implementation:)``'s
    /// `precision`).
    var takesFloat32: Bool { self != .amx }

    private static let hasAMX = tfmp_has_amx() != 0
    private static let hasAVX512 = tfmp_has_avx512() != 0
    private static let hasAVX2 = tfmp_has_avx2_fma() != 0

    /// The fastest implementation this CPU runs for float32 operands.
    static let best = allCases.first { $0.isAvailable && $0.takesFloat32 } ?? .reference

    /// The fastest implementation for a product of `rows` x `columns` whose operands hold
    /// `precision` values (float32 when `nil`). AMX works on blocks of 32 rows and packs every
    /// row of A (split float16 values take twice its bytes): below about 512 columns the packing
    /// costs what AMX saves (measured on ResNet50's convolutions and attention's products), so
    /// narrower products take the vector kernel.
    static func best(for precision: ReducedPrecision?, rows: Int, columns: Int) -> Implementation {
      precision != nil && rows >= 32 && columns >= 512 && amx.isAvailable ? .amx : best
    }
  }

  /// C[m, n] = A[m, k] x B[k, n] with float32 accumulation, where `transposeA` means `a` holds
  /// A's transpose ([k, m]) and `transposeB` B's ([n, k]).
  ///
  /// - `halfB`, when given, holds B's elements as float16 bits (a float16 weight's
  ///   ``Tensor/float16Bits``): the float32 vector kernels then read it instead of `b`, half the
  ///   bytes, with the same result.
  /// - `precision`, when given, says that both operands hold values of that type (float16 or
  ///   bfloat16 tensors). The product may then run on AMX: bfloat16 values as they are, float16
  ///   values each split exactly into two bfloat16 halves; either way every product of two
  ///   elements is exact and the sums are float32, as on a GPU's Tensor Cores.
  /// - `packs`, when given, keeps B's AMX packing for the next call: for a weight, whose
  ///   elements never change.
  /// - `implementation`: by default the fastest for the operands.
  static func multiply(
    _ a: [Float], _ b: [Float], m: Int, k: Int, n: Int, transposeA: Bool = false,
    transposeB: Bool = false,
    halfB: [UInt16]? = nil, precision: ReducedPrecision? = nil, packs: PackedWeights? = nil,
    implementation: Implementation? = nil
  ) -> [Float] {
    multiply(
      a, b, offsets: [(0, 0)], m: m, k: k, n: n, transposeA: transposeA, transposeB: transposeB,
      halfB: halfB,
      precision: precision, packs: packs, implementation: implementation)
  }

  /// A batch of products: for each (offset into `a`, offset into `b`) pair, the product of the
  /// matrices starting there, concatenated into a [pairs, m, n] result. Large batches are spread
  /// over the cores, and a single large product is split by columns (or rows when it is narrow).
  /// The other arguments are those of ``multiply(_:_:m:k:n:transposeA:transposeB:halfB:precision:packs:implementation:)``.
  static func multiply(
    _ a: [Float], _ b: [Float], offsets: [(Int, Int)], m: Int, k: Int, n: Int,
    transposeA: Bool = false,
    transposeB: Bool = false, halfB: [UInt16]? = nil, precision: ReducedPrecision? = nil,
    packs: PackedWeights? = nil, implementation: Implementation? = nil
  ) -> [Float] {
    guard m > 0, n > 0 else { return [] }
    guard k > 0 else { return [Float](repeating: 0, count: offsets.count * m * n) }
    // Consecutive matrices of A times one B (a dense layer on a batch of sequences) are one
    // product with their rows stacked.
    if offsets.count > 1, !transposeA, let first = offsets.first,
      offsets.enumerated().allSatisfy({ $1.0 == first.0 + $0 * m * k && $1.1 == first.1 })
    {
      return multiply(
        a, b, offsets: [first], m: offsets.count * m, k: k, n: n, transposeB: transposeB,
        halfB: halfB,
        precision: precision, packs: packs, implementation: implementation)
    }
    let layout = Layout(
      rsa: transposeA ? 1 : k, csa: transposeA ? m : 1, rsb: transposeB ? 1 : n,
      csb: transposeB ? k : 1, ldc: n)
    return multiply(
      a, b, pairs: offsets.enumerated().map { ($1.0, $1.1, $0 * m * n) }, m: m, k: k, n: n,
      layout: layout,
      count: offsets.count * m * n, halfB: halfB, precision: precision, packs: packs,
      implementation: implementation)
  }

  /// Where the elements of a batch's matrices are, from each pair's offsets: element (i, p) of A
  /// at `i * rsa + p * csa`, (p, j) of B at `p * rsb + j * csb`, (i, j) of C at `i * ldc + j`.
  struct Layout {
    var rsa: Int
    var csa: Int
    var rsb: Int
    var csb: Int
    var ldc: Int
  }

  /// The general form: for each pair of offsets into `a`, `b` and the result, C = A x B laid out
  /// as `layout` says, in a result of `count` elements that the pairs' C matrices cover. The
  /// other arguments are those of
  /// ``multiply(_:_:m:k:n:transposeA:transposeB:halfB:precision:packs:implementation:)``.
  static func multiply(
    _ a: [Float], _ b: [Float], pairs: [(a: Int, b: Int, c: Int)], m: Int, k: Int, n: Int,
    layout: Layout,
    count: Int, halfB: [UInt16]? = nil, precision: ReducedPrecision? = nil,
    packs: PackedWeights? = nil,
    implementation: Implementation? = nil
  ) -> [Float] {
    guard m > 0, n > 0, k > 0 else { return [Float](repeating: 0, count: count) }
    let implementation = implementation ?? .best(for: precision, rows: m, columns: n)
    let (rsa, csa, rsb, csb, ldc) = (layout.rsa, layout.csa, layout.rsb, layout.csb, layout.ldc)
    if implementation == .reference {
      var c = [Float](repeating: 0, count: count)
      for (offsetA, offsetB, offsetC) in pairs {
        let left = (0..<(m * k)).map { a[offsetA + $0 / k * rsa + $0 % k * csa] }
        let right = (0..<(k * n)).map { b[offsetB + $0 / n * rsb + $0 % n * csb] }
        for (index, value) in reference(left, right, m: m, k: k, n: n).enumerated() {
          c[offsetC + index / n * ldc + index % n] = value
        }
      }
      return c
    }
    precondition(
      implementation.isAvailable, "This CPU cannot run the \(implementation) matrix product.")
    precondition(
      implementation.takesFloat32 || precision != nil,
      "AMX multiplies float16 or bfloat16 values only.")
    // Work items: (pair, first row, row count, first column, column count).
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let large = m * n * k >= 1 << 18
    let rowBlock = implementation == .amx ? 32 : 12
    var items: [(pair: Int, row: Int, rows: Int, column: Int, columns: Int)] = []
    if pairs.count >= cores || !large || cores == 1 {
      items = pairs.indices.map { ($0, 0, m, 0, n) }
    } else if m < n || m < rowBlock * cores {
      // Each core reads all of A and its share of B: for the short, wide products of a
      // transformer's dense layers. Tall products (convolutions) split A instead.
      let step = (n / cores + 31) / 32 * 32
      for pair in pairs.indices {
        for column in stride(from: 0, to: n, by: step) {
          items.append((pair, 0, m, column, Swift.min(step, n - column)))
        }
      }
    } else {
      let step = (m / cores + rowBlock - 1) / rowBlock * rowBlock
      for pair in pairs.indices {
        for row in stride(from: 0, to: m, by: step) {
          items.append((pair, row, Swift.min(step, m - row), 0, n))
        }
      }
    }
    let work = items
    let parts = large ? Swift.min(cores, work.count) : 1
    let packed =
      implementation == .amx
      ? packedB(
        b, offsets: pairs.map(\.b), k: k, n: n, rsb: rsb, csb: csb, split: precision == .float16,
        packs: packs, parts: parts)
      : []
    // The work items together write every element of C.
    return [Float](unsafeUninitializedCapacity: count) { c, initialized in
      let half = ReducedPrecision.hasVectorConversion && halfB?.count == b.count ? halfB : nil
      a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
          (half ?? []).withUnsafeBufferPointer { halfB in
            // Each work item writes its own block of C and only reads A and B.
            nonisolated(unsafe) let (left, output) = (a.start, c.start)
            nonisolated(unsafe) let right =
              half == nil ? UnsafeRawPointer(b.start) : UnsafeRawPointer(halfB.start)
            let (elementSize, isHalf): (Int, Int32) = half == nil ? (4, 0) : (2, 1)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
              for item in stride(from: part, to: work.count, by: parts) {
                let (pair, row, rows, column, columns) = work[item]
                let (offsetA, offsetB, offsetC) = pairs[pair]
                let (first, target) = (
                  left + offsetA + row * rsa, output + offsetC + row * ldc + column
                )
                // AMX declines operands that are not all finite (status 1); the float32 kernel
                // (AVX-512, which every AMX CPU has) then computes the item.
                var status: Int32 = 1
                if implementation == .amx, let tiles = packed[packed.count == 1 ? 0 : pair] {
                  let split: Int32 = precision == .float16 ? 1 : 0
                  status = tiles.withUnsafeBufferPointer {
                    tfmp_gemm_amx(
                      rows, columns, k, first, rsa, csa,
                      $0.start + tfmp_amx_packed_b_count(k, column, split), split, target,
                      ldc)
                  }
                }
                if status == 1 {
                  status = (implementation == .avx2 ? tfmp_sgemm_avx2 : tfmp_sgemm_avx512)(
                    rows, columns, k, first, rsa, csa,
                    right + (offsetB + column * csb) * elementSize, isHalf, rsb, csb,
                    target, ldc)
                }
                precondition(status == 0, "Out of memory for a \(m)x\(k)x\(n) matrix product.")
              }
            }
          }
        }
      }
      initialized = count
    }
  }

  /// B packed for AMX: one packing per pair (a single one when every pair has the same B), taken
  /// from `packs` when given, packed on `parts` cores otherwise; `nil` for a B AMX cannot take.
  private static func packedB(
    _ b: [Float], offsets: [Int], k: Int, n: Int, rsb: Int, csb: Int, split: Bool,
    packs: PackedWeights?, parts: Int
  ) -> [[UInt16]?] {
    let distinct = offsets.allSatisfy { $0 == offsets[0] } ? [offsets[0]] : offsets
    let layouts = distinct.map {
      PackedWeights.Layout(offset: $0, k: k, n: n, rsb: rsb, csb: csb, split: split)
    }
    if let packs { return layouts.map { packs.packing(of: b, $0) } }
    return [[UInt16]?](unsafeUninitializedCapacity: distinct.count) { packings, initialized in
      // Each part initializes its own elements.
      nonisolated(unsafe) let target = packings.start
      DispatchQueue.concurrentPerform(iterations: Swift.min(parts, distinct.count)) { part in
        for index in stride(from: part, to: distinct.count, by: parts) {
          (target + index).initialize(to: PackedWeights.pack(b, layouts[index]))
        }
      }
      initialized = distinct.count
    }
  }

  /// The reduced type both `a` and `b` hold, when they hold the same one.
  static func sharedPrecision(_ a: Tensor, _ b: Tensor) -> ReducedPrecision? {
    a.dtype == b.dtype ? ReducedPrecision(a.dtype) : nil
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
