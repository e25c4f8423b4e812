internal import CTFMPKernels
internal import Foundation

/// Row-major single-precision matrix products.
enum Gemm {
  /// Whether ``multiply(_:_:m:k:n:)`` uses the AVX2/FMA kernel.
  static let hasVectorKernel = tfmp_has_avx2_fma() != 0

  /// C[m, n] = A[m, k] x B[k, n]: the AVX2/FMA kernel with rows split over both cores when the
  /// product is large, else ``reference(_:_:m:k:n:)``. Float32 accumulation in both.
  static func multiply(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Float] {
    guard hasVectorKernel, m > 0, n > 0, k > 0 else { return reference(a, b, m: m, k: k, n: n) }
    var c = [Float](repeating: 0, count: m * n)
    let parts = m * n * k >= 1 << 18 && m >= 8 ? 2 : 1
    let rowsPerPart = (m / parts + 5) / 6 * 6
    a.withUnsafeBufferPointer { a in
      b.withUnsafeBufferPointer { b in
        c.withUnsafeMutableBufferPointer { c in
          // The parts only read A and B and each writes its own rows of C.
          nonisolated(unsafe) let (input, weights, output) = (a, b, c)
          DispatchQueue.concurrentPerform(iterations: parts) { part in
            let begin = min(part * rowsPerPart, m)
            let end = part == parts - 1 ? m : min(begin + rowsPerPart, m)
            if begin < end, let aBase = input.baseAddress, let bBase = weights.baseAddress,
              let cBase = output.baseAddress
            {
              tfmp_sgemm_avx2(aBase, bBase, cBase, k, n, begin, end)
            }
          }
        }
      }
    }
    return c
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

  /// The transpose of a row-major [rows, columns] matrix.
  static func transpose(_ x: [Float], rows: Int, columns: Int) -> [Float] {
    var result = [Float](repeating: 0, count: x.count)
    for row in 0..<rows {
      for column in 0..<columns { result[column * rows + row] = x[row * columns + column] }
    }
    return result
  }
}
