import Foundation
import GraphIR
import TensorCore
import Testing
import _TestSupport

@testable import CPURuntime

@Suite("Fast kernels against their scalar references")
struct KernelTests {
  private func random(_ count: Int, _ generator: inout SeededGenerator) -> [Float] {
    (0..<count).map { _ in Float.random(in: -1...1, using: &generator) }
  }

  /// Each available implementation with the operand types it takes (`nil`: float32).
  static let implementations: [(Gemm.Implementation, ReducedPrecision?)] = Gemm.Implementation
    .allCases.filter(\.isAvailable)
    .flatMap { implementation in
      implementation.takesFloat32
        ? [(implementation, nil)] : ReducedPrecision.allCases.map { (implementation, $0) }
    }

  @Test(
    "Each matrix product this CPU runs equals the triple loop",
    arguments: implementations, [1, 2, 3] as [UInt64])
  func gemm(implementation: (Gemm.Implementation, ReducedPrecision?), seed: UInt64) {
    let (implementation, precision) = implementation
    var generator = SeededGenerator(seed: seed)
    let sizes = [0, 1, 3, 4, 5, 8, 11, 12, 13, 15, 16, 17, 31, 32, 33, 70, 257]
    for _ in 0..<40 {
      let (m, k, n) = (
        sizes.randomElement(using: &generator)!, sizes.randomElement(using: &generator)!,
        sizes.randomElement(using: &generator)!
      )
      let (transposeA, transposeB) = (
        Bool.random(using: &generator), Bool.random(using: &generator)
      )
      var (a, b) = (random(m * k, &generator), random(k * n, &generator))
      if let precision { (a, b) = (a.map(precision.rounded), b.map(precision.rounded)) }
      let fast = Gemm.multiply(
        a, b, m: m, k: k, n: n, transposeA: transposeA, transposeB: transposeB,
        precision: precision,
        implementation: implementation)
      let reference = Gemm.reference(
        transposeA ? transpose(a, rows: k, columns: m) : a,
        transposeB ? transpose(b, rows: n, columns: k) : b,
        m: m, k: k, n: n)
      #expect(fast.count == m * n)
      // Each product is exact (float16 and bfloat16 products too) and the sums round at other
      // steps than the loop's: within k float32 ulps of 1.
      let error = zip(fast, reference).map { abs($0 - $1) }.max() ?? 0
      #expect(
        error <= Float(max(k, 1)) * 1.2e-7,
        "\(implementation) \(precision?.rawValue ?? "float32"), seed \(seed): \(m)x\(k)x\(n), transposed \(transposeA), \(transposeB), error \(error)"
      )
    }
  }

  @Test(
    "On AMX, each product of two float16 values is exact, and operands that are not finite take the float32 kernel",
    .enabled(if: Gemm.Implementation.amx.isAvailable))
  func amxFloat16Products() {
    var generator = SeededGenerator(seed: 31)
    // Every finite float16 value is as likely: subnormals, the largest, both signs.
    func value() -> Float {
      var bits: UInt16
      repeat {
        bits = UInt16.random(in: 0...UInt16.max, using: &generator)
      } while bits & 0x7c00 == 0x7c00
      return Float(Float16(bitPattern: bits))
    }
    let (m, n) = (40, 37)
    let (a, b) = ((0..<m).map { _ in value() }, (0..<n).map { _ in value() })
    let outer = Gemm.multiply(a, b, m: m, k: 1, n: n, precision: .float16, implementation: .amx)
    let exact = a.flatMap { x in b.map { x * $0 } }
    let inexact = zip(outer, exact).filter { $0.bitPattern != $1.bitPattern }.count
    #expect(
      inexact == 0,
      "seed 31: \(inexact) of \(m * n) products of float16 values differ from float32's")
    // Infinities and NaN, in A or in B, give what float32 arithmetic gives (inf x 0 = NaN only
    // where a real product is one).
    let k = 5
    var (left, right) = (
      random(m * k, &generator).map(ReducedPrecision.float16.rounded),
      random(k * n, &generator).map(ReducedPrecision.float16.rounded)
    )
    for (aValue, bValue) in [
      (Float.infinity, nil), (nil, -Float.infinity), (Float.nan, nil),
      (Float.infinity, Float.infinity),
    ] as [(Float?, Float?)] {
      if let aValue { left[7] = aValue; left[40] = 0 }
      if let bValue { right[3] = bValue; right[100] = 0; right[3 + n] = 1 }
      let amx = Gemm.multiply(
        left, right, m: m, k: k, n: n, precision: .float16, implementation: .amx)
      let float32 = Gemm.multiply(left, right, m: m, k: k, n: n, implementation: .avx512)
      let differing = zip(amx, float32).filter { $0.bitPattern != $1.bitPattern }.count
      #expect(
        differing == 0,
        "seed 31: with \(String(describing: aValue)) in A, \(String(describing: bValue)) in B")
      #expect(amx.contains { $0.isInfinite } || amx.contains { $0.isNaN })
    }
  }

  @Test(
    "A weight's AMX packing is reused, and a changed copy of the weight is packed anew",
    .enabled(if: Gemm.Implementation.amx.isAvailable))
  func amxPackedWeights() {
    var generator = SeededGenerator(seed: 32)
    let (m, k, n) = (64, 48, 80)
    let a = random(m * k, &generator).map(ReducedPrecision.bfloat16.rounded)
    var weight = random(k * n, &generator).map(ReducedPrecision.bfloat16.rounded)
    let packs = PackedWeights()
    func product(_ b: [Float], packs: PackedWeights?) -> [Float] {
      Gemm.multiply(
        a, b, m: m, k: k, n: n, precision: .bfloat16, packs: packs, implementation: .amx)
    }
    let first = product(weight, packs: packs)
    let kept = weight
    weight[0] = 100  // a copy: `kept` and the cache still hold the packed elements
    let changed = product(weight, packs: packs)
    let (reused, repacked, differs) = (
      product(kept, packs: packs) == first, changed == product(weight, packs: nil), changed != first
    )
    #expect(reused && repacked && differs, "seed 32")
    #expect(packs.count == 2)
  }

  private func transpose(_ x: [Float], rows: Int, columns: Int) -> [Float] {
    (0..<(rows * columns)).map { x[$0 % rows * columns + $0 / rows] }
  }

  @Test(
    "Big products split over both cores, by columns, rows or batch, or stack a batch sharing B, without changing a value",
    arguments: [
      (1, 203, 67, 129, false), (1, 37, 300, 1000, false), (1, 500, 40, 40, false),
      (5, 30, 64, 50, false),
      (4, 50, 33, 70, true),
    ])
  func gemmTwoCores(batch: Int, m: Int, k: Int, n: Int, sharedB: Bool) {
    var generator = SeededGenerator(seed: 7)
    let (a, b) = (
      random(batch * m * k, &generator), random((sharedB ? 1 : batch) * k * n, &generator)
    )
    let offsets = (0..<batch).map { ($0 * m * k, sharedB ? 0 : $0 * k * n) }
    let fast = Gemm.multiply(a, b, offsets: offsets, m: m, k: k, n: n)
    let reference = offsets.flatMap { offsetA, offsetB in
      Gemm.reference(
        Array(a[offsetA..<(offsetA + m * k)]), Array(b[offsetB..<(offsetB + k * n)]), m: m, k: k,
        n: n)
    }
    #expect(fast.count == reference.count)
    #expect(
      zip(fast, reference).allSatisfy { abs($0 - $1) <= Float(k) * 1.2e-7 },
      "seed 7, \(batch)x\(m)x\(k)x\(n)")
  }

  @Test(
    "Float16 weights read as their bits give exactly the product of their float values",
    arguments: Gemm.Implementation.allCases.filter {
      $0 != .reference && $0.takesFloat32 && $0.isAvailable
    })
  func gemmHalfWeights(implementation: Gemm.Implementation) {
    var generator = SeededGenerator(seed: 21)
    for (m, k, n, transposeB) in [
      (1, 70, 33, false), (5, 300, 100, false), (40, 257, 65, true), (128, 64, 1000, false),
    ] {
      let a = random(m * k, &generator)
      let bits = random(k * n, &generator).map { Float16($0).bitPattern }
      let weights = Tensor(
        shape: Shape([transposeB ? n : k, transposeB ? k : n]), float16Bits: bits)
      let b = weights.floats ?? []
      #expect(b == bits.map { Float(Float16(bitPattern: $0)) })
      let fromBits = Gemm.multiply(
        a, b, m: m, k: k, n: n, transposeB: transposeB, halfB: bits, implementation: implementation)
      let fromFloats = Gemm.multiply(
        a, b, m: m, k: k, n: n, transposeB: transposeB, implementation: implementation)
      #expect(
        fromBits == fromFloats,
        "\(implementation), seed 21: \(m)x\(k)x\(n), transposed \(transposeB)")
    }
  }

  @Test(
    "The vectorized exp, erf and erfc are within their stated errors",
    arguments: [5, 6] as [UInt64])
  func vectorMath(seed: UInt64) {
    var generator = SeededGenerator(seed: seed)
    let wide = (0..<20_000).map { _ in Float.random(in: -110...90, using: &generator) }
    let narrow =
      (0..<20_000).map { _ in Float.random(in: -6...6, using: &generator) }
      + [0, -0, 0.49999, -0.5, 0.5, 1e-30, -1e-30, .infinity, -.infinity]
    let exp = UnaryFunction.exp.apply(wide)
    for (x, y) in zip(wide, exp) {
      let exact = Foundation.exp(Double(x))
      if exact > Double(Float.greatestFiniteMagnitude) {
        #expect(y == .infinity, "seed \(seed): exp(\(x))")
      } else if exact < Double(Float.leastNormalMagnitude) {
        #expect(
          y == 0 || abs(Double(y) - exact) <= Double(Float.leastNormalMagnitude),
          "seed \(seed): exp(\(x)) = \(y)")
      } else {
        #expect(
          abs(Double(y) - exact) <= 2 * exact * 0x1p-23,
          "seed \(seed): exp(\(x)) = \(y), not \(exact)")
      }
    }
    for (function, exact) in [
      (UnaryFunction.erf, { Foundation.erf($0) }), (.erfc, { Foundation.erfc($0) }),
    ] as [(UnaryFunction, (Double) -> Double)] {
      for (x, y) in zip(narrow, function.apply(narrow)) {
        #expect(abs(Double(y) - exact(Double(x))) <= 3e-7, "seed \(seed): \(function)(\(x)) = \(y)")
      }
    }
    #expect(
      UnaryFunction.exp.apply([Float.nan])[0].isNaN && UnaryFunction.erf.apply([Float.nan])[0].isNaN
    )
  }

  private func node(padding: String, strides: [Int], dilations: [Int], explicit: [Int] = []) -> Node
  {
    func list(_ values: [Int]) -> AttrValue {
      var list = AttrList()
      list.ints = values.map(Int64.init)
      return .list(list)
    }
    var node = Node(name: "conv", op: "Conv2D", attributes: ["T": .type(.float32)])
    node.attributes["padding"] = .bytes(Data(padding.utf8))
    node.attributes["strides"] = list([1] + strides + [1])
    node.attributes["dilations"] = list([1] + dilations + [1])
    if !explicit.isEmpty { node.attributes["explicit_paddings"] = list(explicit) }
    return node
  }

  @Test("Convolution by patches equals the direct loops", arguments: [4, 5] as [UInt64])
  func convolution(seed: UInt64) throws {
    var generator = SeededGenerator(seed: seed)
    for _ in 0..<30 {
      let (batch, height, width, channels, outputs) = (
        Int.random(in: 1...2, using: &generator), Int.random(in: 1...9, using: &generator),
        Int.random(in: 1...9, using: &generator), Int.random(in: 1...5, using: &generator),
        Int.random(in: 1...6, using: &generator)
      )
      let (kh, kw) = (
        Int.random(in: 1...3, using: &generator), Int.random(in: 1...3, using: &generator)
      )
      let strides = [
        Int.random(in: 1...3, using: &generator), Int.random(in: 1...3, using: &generator),
      ]
      let dilations = [
        Int.random(in: 1...2, using: &generator), Int.random(in: 1...2, using: &generator),
      ]
      let padding = ["SAME", "VALID", "EXPLICIT"].randomElement(using: &generator)!
      let explicit =
        padding == "EXPLICIT"
        ? [0, 0] + (0..<4).map { _ in Int.random(in: 0...2, using: &generator) } + [0, 0] : []
      let x = Tensor(
        shape: Shape([batch, height, width, channels]),
        floats: random(batch * height * width * channels, &generator))
      let filter = Tensor(
        shape: Shape([kh, kw, channels, outputs]),
        floats: random(kh * kw * channels * outputs, &generator))
      let context = try KernelContext(
        planned: node(padding: padding, strides: strides, dilations: dilations, explicit: explicit))
      let fast = try ConvolutionKernels.convolutionByMatrixProduct(context, [x, filter])
      let reference = try ConvolutionKernels.convolution(context, [x, filter], depthwise: false)
      #expect(fast.shape == reference.shape, "seed \(seed)")
      let error = zip(fast.floats ?? [], reference.floats ?? []).map { abs($0 - $1) }.max() ?? 0
      #expect(
        error <= 1e-5,
        "seed \(seed): \(x.shape) * \(filter.shape) \(padding) \(strides) \(dilations): \(error)")
    }
  }
}

@Suite("Einsum by matrix products")
struct EinsumTests {
  @Test(
    "Equals the reference loop on Keras's attention forms and others",
    arguments: [
      "abc,cd->abd", "abc,cde->abde", "aecd,abcd->acbe", "acbe,aecd->abcd", "abcd,cde->abe",
      "ij,jk->ik", "bij,bjk->bik", "ij,kj->ik", "i,i->", "ij,j->i", "ij,jk->ki", "bij,bkj->ikb",
    ])
  func matchesReference(equation: String) throws {
    try check(equation, sizes: [:], precision: nil)
  }

  @Test(
    "Keras's attention forms on float16 and bfloat16 values, wide enough for AMX where the CPU has it",
    arguments: [
      ("BTNH,BSNH->BNTS", ["B": 1, "T": 32, "S": 520, "N": 2, "H": 20]),
      ("BNTS,BSNH->BTNH", ["B": 1, "T": 32, "S": 33, "N": 2, "H": 520]),
    ] as [(String, [Character: Int])], ReducedPrecision.allCases)
  func reducedPrecision(form: (String, [Character: Int]), precision: ReducedPrecision) throws {
    try check(form.0, sizes: form.1, precision: precision)
  }

  /// Compares the fast path with the reference loop on random operands, sizes 1 to 5 where not
  /// given, values rounded to `precision`.
  private func check(
    _ equation: String, sizes given: [Character: Int], precision: ReducedPrecision?
  ) throws {
    var generator = SeededGenerator(seed: 11)
    let context = try KernelContext(
      planned: Node(
        name: "einsum", op: "Einsum",
        attributes: [
          "equation": .bytes(Data(equation.utf8)), "T": .type(.float32),
          "N": .int(Int64(equation.split(separator: ",").count)),
        ]))
    let sides = equation.split(separator: "-")[0].split(
      separator: ",", omittingEmptySubsequences: false)
    var sizes = given
    for label in equation where label.isLetter {
      sizes[label] = sizes[label] ?? Int.random(in: 1...5, using: &generator)
    }
    let inputs = sides.map { side -> Tensor in
      let shape = side.map { sizes[$0] ?? 1 }
      let values = (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &generator) }
      guard let precision else { return Tensor(shape: Shape(shape), floats: values) }
      return Tensor(
        dtype: precision.dtype, shape: Shape(shape), storage: .float(values.map(precision.rounded)))
    }
    let fast = try #require(
      try LinearAlgebraKernels.einsumByMatrixProducts(context, inputs),
      "\(equation) has a fast path")
    let reference = try LinearAlgebraKernels.einsum(context, inputs)
    #expect(fast.shape == reference.shape, "\(equation)")
    let error = zip(fast.floats ?? [], reference.floats ?? []).map { abs($0 - $1) }.max() ?? 0
    #expect(error <= 1e-5, "seed 11, \(equation): \(error)")
  }
}
