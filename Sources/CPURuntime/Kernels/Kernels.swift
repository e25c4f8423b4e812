internal import CTFMPKernels
internal import TensorCore
internal import Foundation

/// The CPU kernels by op type. Each is a scalar reference implementation in float32.
enum Kernels {
  typealias Kernel = @Sendable (KernelContext, [Tensor]) throws -> [Tensor]

  static let table: [String: Kernel] = {
    var table: [String: Kernel] = [:]
    for function in UnaryFunction.allCases {
      table[function.rawValue] = { _, inputs in
        let x = try input(inputs, 0)
        return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(function.apply(try x.requireFloats())))]
      }
    }
    for function in BinaryFunction.allCases {
      table[function.rawValue] = { _, inputs in [try function.apply(try input(inputs, 0), try input(inputs, 1))] }
    }
    table["Add"] = table["AddV2"]
    let comparisons: [(String, @Sendable (Double, Double) -> Bool)] = [
      ("Less", { $0 < $1 }), ("LessEqual", { $0 <= $1 }), ("Greater", { $0 > $1 }),
      ("GreaterEqual", { $0 >= $1 }), ("Equal", { $0 == $1 }), ("NotEqual", { $0 != $1 }),
    ]
    for (op, predicate) in comparisons {
      table[op] = { _, inputs in [try compare(try input(inputs, 0), try input(inputs, 1), predicate)] }
    }
    let logical: [(String, @Sendable (Bool, Bool) -> Bool)] = [("LogicalAnd", { $0 && $1 }), ("LogicalOr", { $0 || $1 })]
    for (op, function) in logical {
      table[op] = { _, inputs in
        let (a, b) = (try input(inputs, 0), try input(inputs, 1))
        guard case .bool(let x) = a.storage, case .bool(let y) = b.storage else { throw KernelError("Expected bool inputs.") }
        let (shape, walk) = try StridedWalk.broadcast([a.shape, b.shape])
        return [Tensor(dtype: .bool, shape: shape, storage: .bool(walk.map(x, y, function)))]
      }
    }
    table["LogicalNot"] = { _, inputs in
      let a = try input(inputs, 0)
      guard case .bool(let x) = a.storage else { throw KernelError("Expected a bool input.") }
      return [Tensor(dtype: .bool, shape: a.shape, storage: .bool(x.map { !$0 }))]
    }
    table["Sum"] = { context, inputs in [try reduce(context, inputs, .sum)] }
    table["Max"] = { context, inputs in [try reduce(context, inputs, .max)] }
    table["Min"] = { context, inputs in [try reduce(context, inputs, .min)] }
    table["Prod"] = { context, inputs in [try reduce(context, inputs, .product)] }
    table["Mean"] = { context, inputs in
      let x = try input(inputs, 0)
      let sum = try reduce(context, inputs, .sum)
      let divisor = Double((x.shape.elementCount ?? 0) / Swift.max(1, sum.shape.elementCount ?? 1))
      return [try tensor(try doubles(sum).map { $0 / Swift.max(divisor, 1) }, like: x, shape: sum.shape)]
    }
    table["MatMul"] = { context, inputs in [try matmul(context, inputs)] }
    table["BiasAdd"] = { _, inputs in
      let (x, bias) = (try input(inputs, 0), try input(inputs, 1))
      guard bias.shape.rank == 1, x.shape.rank >= 1, bias.shape.dimensions[0] == x.shape.dimensions.last else {
        throw KernelError("The bias \(bias.shape) does not fit the last dimension of \(x.shape).")
      }
      return [try BinaryFunction.add.apply(x, bias)]
    }
    table["LeakyRelu"] = { context, inputs in
      let x = try input(inputs, 0)
      let alpha = context.float("alpha", default: 0.2)
      return [Tensor(shape: x.shape, floats: try x.requireFloats().map { $0 > 0 ? $0 : alpha * $0 })]
    }
    table["LogSoftmax"] = { _, inputs in [try softmax(try input(inputs, 0), logarithm: true)] }
    table["ArgMax"] = { context, inputs in
      let x = try input(inputs, 0)
      let values = try doubles(x)
      let rank = x.shape.rank
      guard var axis = try input(inputs, 1).requireIntegers().first else { throw KernelError("No axis.") }
      if axis < 0 { axis += rank }
      guard (0..<rank).contains(axis) else { throw KernelError("Axis \(axis) is out of range.") }
      let dimensions = x.shape.dimensions
      let (outer, size) = (dimensions.prefix(axis).reduce(1, *), dimensions[axis])
      let inner = dimensions.dropFirst(axis + 1).reduce(1, *)
      var indices: [Int64] = []
      for o in 0..<outer {
        for i in 0..<inner {
          let candidates = (0..<size).map { values[(o * size + $0) * inner + i] }
          indices.append(Int64(candidates.indices.max { candidates[$0] < candidates[$1] || (candidates[$0] == candidates[$1] && $0 > $1) } ?? 0))
        }
      }
      let shape = Shape(dimensions.enumerated().filter { $0.offset != axis }.map(\.element))
      return context.type("output_type") == .int32
        ? [Tensor(dtype: .int32, shape: shape, storage: .int32(indices.map { Int32($0) }))]
        : [Tensor(dtype: .int64, shape: shape, storage: .int64(indices))]
    }
    table["FusedBatchNormV3"] = { context, inputs in
      guard !context.bool("is_training") else { throw KernelError("FusedBatchNormV3 in training mode is not supported.") }
      try ConvolutionKernels.checkNHWC(context)
      let x = try input(inputs, 0)
      let values = try x.requireFloats()
      let (scale, offset, mean, variance) = try (1...4).map { try input(inputs, $0).requireFloats() }
        .withFour()
      let epsilon = context.float("epsilon", default: 1e-4)
      let channels = scale.count
      guard channels > 0, values.count % channels == 0, [offset, mean, variance].allSatisfy({ $0.count == channels })
      else { throw KernelError("The scale, offset, mean and variance do not fit the \(x.shape) input's channels.") }
      let multipliers = (0..<channels).map { scale[$0] / (variance[$0] + epsilon).squareRoot() }
      let result = [Float](unsafeUninitializedCapacity: values.count) { output, initialized in
        for row in stride(from: 0, to: values.count, by: channels) {
          for c in 0..<channels { output[row + c] = (values[row + c] - mean[c]) * multipliers[c] + offset[c] }
        }
        initialized = values.count
      }
      let statistics = Tensor(shape: Shape([channels]), floats: mean)
      return [Tensor(shape: x.shape, floats: result), statistics, Tensor(shape: Shape([channels]), floats: variance),
              statistics, statistics, statistics]
    }
    table["Softmax"] = { _, inputs in [try softmax(try input(inputs, 0), logarithm: false)] }
    ShapeKernels.register(in: &table)
    ConvolutionKernels.register(in: &table)
    LinearAlgebraKernels.register(in: &table)
    return table
  }()

  /// The names of each output argument, in order, of ops with several: a function body refers
  /// to `node:batch_mean:0`, which is output 1 of FusedBatchNormV3.
  static let outputArguments: [String: [String]] = [
    "FusedBatchNormV3": ["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2", "reserve_space_3"],
    "FusedBatchNormV2": ["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"],
    "TopKV2": ["values", "indices"],
  ]

  static func input(_ inputs: [Tensor], _ index: Int) throws -> Tensor {
    guard index < inputs.count else { throw KernelError("Expected at least \(index + 1) inputs, got \(inputs.count).") }
    return inputs[index]
  }

  /// Softmax (or its logarithm) over the last dimension: exponentials of the differences from
  /// the row's largest value, summed in float32.
  static func softmax(_ x: Tensor, logarithm: Bool) throws -> Tensor {
    let values = try x.requireFloats()
    let width = x.shape.dimensions.last ?? 1
    let rows = width > 0 ? values.count / width : 0
    let result = [Float](unsafeUninitializedCapacity: values.count) { result, initialized in
      values.withUnsafeBufferPointer { values in
        guard rows > 0, let source = values.baseAddress, let target = result.baseAddress else { return }
        // Rows are independent: large inputs (attention scores) are spread over the cores.
        nonisolated(unsafe) let (input, output) = (source, target)
        let parts = values.count >= 1 << 16 ? ProcessInfo.processInfo.activeProcessorCount : 1
        DispatchQueue.concurrentPerform(iterations: parts) { part in
          let first = part * rows / parts
          tfmp_softmax_f32(input + first * width, output + first * width, (part + 1) * rows / parts - first, width, logarithm ? 1 : 0)
        }
      }
      initialized = values.count
    }
    return Tensor(shape: x.shape, floats: result)
  }

  /// Compares elementwise with broadcasting; the result is bool.
  static func compare(_ a: Tensor, _ b: Tensor, _ predicate: (Double, Double) -> Bool) throws -> Tensor {
    let (shape, walk) = try StridedWalk.broadcast([a.shape, b.shape])
    return Tensor(dtype: .bool, shape: shape, storage: .bool(walk.map(try doubles(a), try doubles(b), predicate)))
  }

  /// The elements of a numeric tensor as doubles (exact for float32 and 32-bit integers).
  static func doubles(_ tensor: Tensor) throws -> [Double] {
    switch tensor.storage {
    case .float(let values): return values.map(Double.init)
    case .double(let values): return values
    case .int32(let values): return values.map(Double.init)
    case .int64(let values): return values.map(Double.init)
    case .bool(let values): return values.map { $0 ? 1 : 0 }
    case .string: throw KernelError("Expected a numeric tensor, got strings.")
    }
  }

  /// How a reduction combines elements.
  enum Reduction {
    case sum, max, min, product

    var initial: Double {
      switch self {
      case .sum: 0
      case .max: -.infinity
      case .min: .infinity
      case .product: 1
      }
    }

    /// Combines `length` elements at `source` (step `stride`) into `target[0]` when `along`,
    /// else into `target[0..<length]` element by element; each case's loop written out.
    @inline(__always)
    func combine<T: BinaryFloatingPoint>(
      _ source: UnsafePointer<T>, stride: Int, _ length: Int, into target: UnsafeMutablePointer<Double>, along: Bool
    ) {
      if along, stride == 1, self == .sum, T.self == Float.self {
        // Eight partial sums, so the additions do not wait for each other.
        var lanes = SIMD8<Double>()
        let raw = UnsafeRawPointer(source)
        var i = 0
        while i + 8 <= length {
          lanes += SIMD8<Double>(raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
          i += 8
        }
        var total = target.pointee + lanes.sum()
        while i < length {
          total += Double(source[i])
          i += 1
        }
        target.pointee = total
        return
      }
      @inline(__always)
      func run(_ function: (Double, Double) -> Double) {
        if along {
          var total = target.pointee
          for i in 0..<length { total = function(total, Double(source[i &* stride])) }
          target.pointee = total
        } else {
          for i in 0..<length { target[i] = function(target[i], Double(source[i &* stride])) }
        }
      }
      switch self {
      case .sum: run { $0 + $1 }
      case .max: run { Swift.max($0, $1) }
      case .min: run { Swift.min($0, $1) }
      case .product: run { $0 * $1 }
      }
    }
  }

  /// Reduces input 0 over the axes in input 1 (attribute `keep_dims`), accumulating in double
  /// precision and storing the result in the input's type.
  static func reduce(_ context: KernelContext, _ inputs: [Tensor], _ reduction: Reduction) throws -> Tensor {
    let x = try input(inputs, 0)
    let rank = x.shape.rank
    let axes = Set(try input(inputs, 1).requireIntegers().map { $0 < 0 ? $0 + rank : $0 })
    guard axes.allSatisfy({ (0..<rank).contains($0) }) else { throw KernelError("A reduction axis is out of range.") }
    let dimensions = x.shape.dimensions
    let kept = dimensions.enumerated().map { axes.contains($0) ? 1 : $1 }
    // The input walked in order; each element lands on its kept coordinates in the result.
    let targets = zip(kept, StridedWalk.contiguous(kept)).map { size, stride in size == 1 ? 0 : stride }
    let walk = StridedWalk(dimensions: dimensions, strides: [StridedWalk.contiguous(dimensions), targets])
    let (length, step) = (walk.runLength, walk.runStrides)
    var result = [Double](repeating: reduction.initial, count: kept.reduce(1, *))
    func accumulate<T: BinaryFloatingPoint>(_ values: [T]) {
      values.withUnsafeBufferPointer { values in
        result.withUnsafeMutableBufferPointer { result in
          walk.forEachRun { offsets in
            reduction.combine(
              values.baseAddress! + offsets[0], stride: step[0], length, into: result.baseAddress! + offsets[1],
              along: step[1] == 0)
          }
        }
      }
    }
    // Rows reduced each to its own result (the last axes reduced: a mean over channels), when
    // there are many, are spread over the cores.
    let rows = walk.dimensions.count == 2 && walk.strides == [[length, 1], [1, 0]] ? walk.dimensions[0] : 0
    if case .float(let values) = x.storage, rows > 1, values.count >= 1 << 18 {
      values.withUnsafeBufferPointer { values in
        result.withUnsafeMutableBufferPointer { result in
          nonisolated(unsafe) let (source, target) = (values.baseAddress!, result.baseAddress!)
          let parts = ProcessInfo.processInfo.activeProcessorCount
          DispatchQueue.concurrentPerform(iterations: parts) { part in
            for row in (part * rows / parts)..<((part + 1) * rows / parts) {
              reduction.combine(source + row * length, stride: 1, length, into: target + row, along: true)
            }
          }
        }
      }
    } else if case .float(let values) = x.storage {
      accumulate(values)
    } else {
      accumulate(try doubles(x))
    }
    let shape = Shape(
      context.bool("keep_dims") ? kept : dimensions.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
    return try tensor(result, like: x, shape: shape)
  }

  /// `values` stored in the type of `prototype`.
  static func tensor(_ values: [Double], like prototype: Tensor, shape: Shape) throws -> Tensor {
    switch prototype.storage {
    case .float: return Tensor(dtype: prototype.dtype, shape: shape, storage: .float(values.map { Float($0) }))
    case .double: return Tensor(dtype: prototype.dtype, shape: shape, storage: .double(values))
    case .int32: return Tensor(dtype: .int32, shape: shape, storage: .int32(values.map(ShapeKernels.truncated)))
    case .int64: return Tensor(dtype: .int64, shape: shape, storage: .int64(values.map(ShapeKernels.truncated)))
    default: throw KernelError("\(prototype.dtype) values cannot be reduced.")
    }
  }

  /// A matrix product with float32 accumulation (attributes `transpose_a`, `transpose_b`).
  static func matmul(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let (a, b) = (try input(inputs, 0), try input(inputs, 1))
    guard a.shape.rank == 2, b.shape.rank == 2 else { throw KernelError("MatMul needs matrices, got \(a.shape) and \(b.shape).") }
    let (x, y) = (try a.requireFloats(), try b.requireFloats())
    let (ta, tb) = (context.bool("transpose_a"), context.bool("transpose_b"))
    let (ra, ca, rb, cb) = (a.shape.dimensions[0], a.shape.dimensions[1], b.shape.dimensions[0], b.shape.dimensions[1])
    let (m, k) = ta ? (ca, ra) : (ra, ca)
    let (k2, n) = tb ? (cb, rb) : (rb, cb)
    guard k == k2 else { throw KernelError("MatMul inner dimensions differ: \(a.shape) and \(b.shape).") }
    return Tensor(shape: Shape([m, n]), floats: Gemm.multiply(
        x, y, m: m, k: k, n: n, transposeA: ta, transposeB: tb, halfB: b.float16Bits,
        precision: Gemm.sharedPrecision(a, b), packs: context.weightPacks))
  }
}

extension Array {
  /// The first four elements (the caller guarantees four).
  fileprivate func withFour() -> (Element, Element, Element, Element) { (self[0], self[1], self[2], self[3]) }
}
