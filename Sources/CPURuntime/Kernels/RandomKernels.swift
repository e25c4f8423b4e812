internal import Foundation
internal import GraphIR
internal import TensorCore

/// The stateless random family, as Keras's random layers emit it (RandomFlip, RandomRotation,
/// RandomContrast and the other augmentation layers compute their random factors even at
/// inference, where they leave the images alone): a key and counter from a seed, then
/// uniform, normal and integer draws from TensorFlow's Philox-4x32-10 generator, bit for bit
/// (normal draws to the last bit of `sin`, `cos` and `log`).
enum RandomKernels {
  static func register(in registry: inout OpRegistry) {
    registry.add(
      "StatelessRandomGetKeyCounter",
      inputs: [.init("seed", type: .attribute("Tseed", defaultType: .int64))],
      outputs: [.fixed("key", .uint64), .fixed("counter", .uint64)]
    ) { _, inputs in
      let seed = try Kernels.input(inputs, 0).requireIntegers()
      guard seed.count == 2 else {
        throw KernelError("The seed must hold two integers, not \(seed.count).")
      }
      let (key, counter) = Philox.keyAndCounter(
        seed: UInt64(bitPattern: Int64(seed[0])), UInt64(bitPattern: Int64(seed[1])))
      return [
        Tensor(dtype: .uint64, shape: Shape([1]), storage: .int64([Int64(bitPattern: key)])),
        Tensor(
          dtype: .uint64, shape: Shape([2]), storage: .int64(counter.map { Int64(bitPattern: $0) })),
      ]
    }
    let drawn: [OpSchema.Argument] = [
      .init("shape", type: .attribute("Tshape", defaultType: .int32)), .fixed("key", .uint64),
      .fixed("counter", .uint64), .fixed("alg", .int32),
    ]
    let output = OpSchema.Argument("output", type: .attribute("dtype", defaultType: .float32))
    for (op, normal) in [("StatelessRandomUniformV2", false), ("StatelessRandomNormalV2", true)] {
      registry.add(op, inputs: drawn, outputs: [output]) { context, inputs in
        let (shape, generator) = try prepared(context, inputs)
        let type = try context.type("dtype")
        switch (type, normal) {
        case (.float64, false):
          return [
            Tensor(
              dtype: type, shape: shape,
              storage: .double(generator.values(shape, perCall: 2) { $0.doubles }))
          ]
        case (.float64, true):
          return [
            Tensor(
              dtype: type, shape: shape,
              storage: .double(generator.values(shape, perCall: 2) { $0.normalDoubles }))
          ]
        case (.float32, _), (.float16, _), (.bfloat16, _):
          let values = generator.values(shape, perCall: 4) { bits in
            normal ? bits.normalFloats : bits.words.map { Philox.unit($0, type) }
          }
          // A reduced type's normal draws are computed in float32 and rounded (the executor
          // rounds every float16 and bfloat16 result).
          return [Tensor(dtype: type, shape: shape, storage: .float(values))]
        default:
          throw KernelError("\(op) draws floats, not \(type).")
        }
      }
    }
    registry.add(
      "StatelessRandomUniformIntV2",
      inputs: drawn + [.init("minval", type: "dtype"), .init("maxval", type: "dtype")],
      outputs: [output]
    ) { context, inputs in
      let (shape, generator) = try prepared(context, inputs)
      let bounds = (
        try Kernels.input(inputs, 4).requireIntegers(),
        try Kernels.input(inputs, 5).requireIntegers()
      )
      guard bounds.0.count == 1, bounds.1.count == 1, bounds.0[0] < bounds.1[0] else {
        throw KernelError("minval and maxval must be scalars with minval < maxval.")
      }
      let (low, high) = (Int64(bounds.0[0]), Int64(bounds.1[0]))
      let range = UInt64(bitPattern: high &- low)
      switch try context.type("dtype") {
      case .int32:
        let (start, span) = (Int32(truncatingIfNeeded: low), UInt32(truncatingIfNeeded: range))
        let values = generator.values(shape, perCall: 4) { bits in
          bits.words.map { start &+ Int32(bitPattern: $0 % span) }
        }
        return [Tensor(dtype: .int32, shape: shape, storage: .int32(values))]
      case .int64:
        let values = generator.values(shape, perCall: 2) { bits in
          [bits.wide(0), bits.wide(1)].map { low &+ Int64(bitPattern: $0 % range) }
        }
        return [Tensor(dtype: .int64, shape: shape, storage: .int64(values))]
      case let type:
        throw KernelError(
          code: .unsupported, "StatelessRandomUniformIntV2 of \(type) is not run yet.")
      }
    }
  }

  /// The output shape (checked against the limits) and the generator of a draw's inputs.
  private static func prepared(_ context: KernelContext, _ inputs: [Tensor]) throws -> (
    Shape, Philox
  ) {
    let shape = try context.allocating(
      try Kernels.input(inputs, 0).requireIntegers(), try context.type("dtype"))
    let key = try Kernels.input(inputs, 1).requireIntegers()
    let counter = try Kernels.input(inputs, 2).requireIntegers()
    let algorithm = try Kernels.input(inputs, 3).requireIntegers()
    // 1 is Philox; 3, "auto select", is Philox on a CPU.
    guard algorithm.count == 1, [1, 3].contains(algorithm[0]) else {
      throw KernelError(
        code: .unsupported,
        "Only the Philox algorithm (1, or 3 for auto select) is run, not \(algorithm).")
    }
    guard key.count == 1, counter.count >= 2 else {
      throw KernelError("A Philox draw needs a key of one uint64 and a counter of two.")
    }
    let bits = { (value: Int) in UInt64(bitPattern: Int64(value)) }
    return (shape, Philox(key: bits(key[0]), counter: [bits(counter[0]), bits(counter[1])]))
  }
}

/// TensorFlow's Philox-4x32-10 counter-based generator: each call maps the 128-bit counter under
/// the 64-bit key to four 32-bit words, and the n-th call of a draw uses the counter plus n.
struct Philox {
  let key: UInt64
  let counter: [UInt64]

  /// Four words of one call.
  struct Bits {
    var words: [UInt32]

    /// Word pair `index` as one 64-bit integer (low word first).
    func wide(_ index: Int) -> UInt64 {
      UInt64(words[2 * index]) | UInt64(words[2 * index + 1]) << 32
    }

    /// Two doubles in [0, 1), 52 random mantissa bits each (of a word pair, the first word
    /// giving the high bits).
    var doubles: [Double] { [0, 2].map { Philox.unitDouble(words[$0], words[$0 + 1]) } }

    /// Four standard normal floats: Box-Muller on word pairs.
    var normalFloats: [Float] {
      stride(from: 0, to: 4, by: 2).flatMap { index -> [Float] in
        let u1 = max(Philox.unit(words[index], .float32), 1e-7)
        let angle = 2 * Float.pi * Philox.unit(words[index + 1], .float32)
        let radius = (-2 * Foundation.log(u1)).squareRoot()
        return [Foundation.sin(angle) * radius, Foundation.cos(angle) * radius]
      }
    }

    /// Two standard normal doubles: Box-Muller on the two 64-bit halves.
    var normalDoubles: [Double] {
      let u1 = max(doubles[0], 1e-7)
      let angle = 2 * Double.pi * doubles[1]
      let radius = (-2 * Foundation.log(u1)).squareRoot()
      return [Foundation.sin(angle) * radius, Foundation.cos(angle) * radius]
    }
  }

  /// The key and counter TensorFlow's stateless ops derive from a seed: the seed scrambled by
  /// one Philox call under a fixed key.
  static func keyAndCounter(seed first: UInt64, _ second: UInt64) -> (
    key: UInt64, counter: [UInt64]
  ) {
    let mixed = Philox(key: 0x0246_1e29_3ec8_f720, counter: [first, second]).call(0).words
    return (
      UInt64(mixed[0]) | UInt64(mixed[1]) << 32, [0, UInt64(mixed[2]) | UInt64(mixed[3]) << 32]
    )
  }

  /// A float of `type` in [0, 1) from a word: its low mantissa bits under the exponent of 1,
  /// minus 1 (float16 and bfloat16 from the low 16 bits, as TensorFlow's).
  static func unit(_ word: UInt32, _ type: DType) -> Float {
    switch type {
    case .float16: return Float(Float16(bitPattern: UInt16(15 << 10) | UInt16(word & 0x3ff))) - 1
    case .bfloat16: return Float(bitPattern: (UInt32(127 << 7) | (word & 0x7f)) << 16) - 1
    default: return Float(bitPattern: 127 << 23 | (word & 0x7f_ffff)) - 1
    }
  }

  static func unitDouble(_ high: UInt32, _ low: UInt32) -> Double {
    Double(bitPattern: 1023 << 52 | UInt64(high & 0xf_ffff) << 32 | UInt64(low)) - 1
  }

  /// The call `index` calls after the first.
  func call(_ index: UInt64) -> Bits {
    let (low, carry) = counter[0].addingReportingOverflow(index)
    let high = counter[1] &+ (carry ? 1 : 0)
    var c = [
      UInt32(truncatingIfNeeded: low), UInt32(truncatingIfNeeded: low >> 32),
      UInt32(truncatingIfNeeded: high), UInt32(truncatingIfNeeded: high >> 32),
    ]
    var k = (UInt32(truncatingIfNeeded: key), UInt32(truncatingIfNeeded: key >> 32))
    for round in 0..<10 {
      let a = UInt64(0xD251_1F53) * UInt64(c[0])
      let b = UInt64(0xCD9E_8D57) * UInt64(c[2])
      c = [
        UInt32(truncatingIfNeeded: b >> 32) ^ c[1] ^ k.0, UInt32(truncatingIfNeeded: b),
        UInt32(truncatingIfNeeded: a >> 32) ^ c[3] ^ k.1, UInt32(truncatingIfNeeded: a),
      ]
      if round < 9 { k = (k.0 &+ 0x9E37_79B9, k.1 &+ 0xBB67_AE85) }
    }
    return Bits(words: c)
  }

  /// The `shape.elementCount` values of a draw, `perCall` from each call by `values`.
  func values<T>(_ shape: Shape, perCall: Int, _ values: (Bits) -> [T]) -> [T] {
    let count = shape.elementCount ?? 0
    var result: [T] = []
    result.reserveCapacity(count)
    var index: UInt64 = 0
    while result.count < count {
      result += values(call(index)).prefix(count - result.count)
      index += 1
    }
    return result
  }
}
