internal import CTFMPKernels
internal import GraphIR
internal import TensorCore
internal import Foundation

/// The reduction family: Sum, Max, Min, Prod, All, Any, Mean, ArgMax, Softmax, LogSoftmax,
/// Cumsum.
enum ReductionKernels {
  static func register(in registry: inout OpRegistry) {
    let reduced: [OpSchema.Argument] = ["input", .init("reduction_indices", type: .index("Tidx"))]
    let keepDims = OpSchema.Attribute.bool("keep_dims", false)
    // TensorFlow's lists; for bfloat16 (oneDNN lists) sums and means are infer: bfloat16 has
    // float32's range, so they cannot overflow.
    let sums = OpSchema.Precision(.deny, bfloat16: .infer)
    let reductions: [(String, Reduction, OpSchema.Precision)] = [
      ("Sum", .sum, sums), ("Max", .max, .clear), ("Min", .min, .clear),
      ("Prod", .product, .infer),
    ]
    for (op, reduction, precision) in reductions {
      registry.add(
        op, inputs: reduced, outputs: ["output"], attributes: [keepDims], precision: precision
      ) { context, inputs in
        [try reduce(context, inputs, reduction)]
      }
    }
    // Over booleans as 0 and 1: all is the minimum (true when empty), any the sum (false when
    // empty) being nonzero.
    for (op, reduction) in [("All", Reduction.min), ("Any", .sum)] {
      registry.add(
        op, inputs: [.fixed("input", .bool), reduced[1]], outputs: [.fixed("output", .bool)],
        attributes: [keepDims]
      ) { context, inputs in [try reduce(context, inputs, reduction)] }
    }
    registry.add(
      "Mean", inputs: reduced, outputs: ["output"], attributes: [keepDims], precision: sums
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let sum = try reduce(context, inputs, .sum)
      let divisor = Double((x.shape.elementCount ?? 0) / Swift.max(1, sum.shape.elementCount ?? 1))
      return [
        try Kernels.tensor(
          try Kernels.doubles(sum).map { $0 / Swift.max(divisor, 1) }, like: x, shape: sum.shape)
      ]
    }
    let argumentIndices: [OpSchema.Argument] = ["input", .init("dimension", type: .index("Tidx"))]
    let position = OpSchema.Argument(
      "output", type: .attribute("output_type", defaultType: .int64))
    registry.add(
      "ArgMax", inputs: argumentIndices, outputs: [position], precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let values = try Kernels.doubles(x)
      let rank = x.shape.rank
      guard var axis = try Kernels.input(inputs, 1).requireIntegers().first else {
        throw KernelError("No axis.")
      }
      if axis < 0 { axis += rank }
      guard (0..<rank).contains(axis) else { throw KernelError("Axis \(axis) is out of range.") }
      let dimensions = x.shape.dimensions
      let (outer, size) = (dimensions.prefix(axis).reduce(1, *), dimensions[axis])
      let inner = dimensions.dropFirst(axis + 1).reduce(1, *)
      var indices: [Int64] = []
      for o in 0..<outer {
        for i in 0..<inner {
          let candidates = (0..<size).map { values[(o * size + $0) * inner + i] }
          indices.append(
            Int64(
              candidates.indices.max {
                candidates[$0] < candidates[$1] || (candidates[$0] == candidates[$1] && $0 > $1)
              } ?? 0))
        }
      }
      let shape = Shape(dimensions.enumerated().filter { $0.offset != axis }.map(\.element))
      return try context.type("output_type") == .int32
        ? [Tensor(dtype: .int32, shape: shape, storage: .int32(indices.map { Int32($0) }))]
        : [Tensor(dtype: .int64, shape: shape, storage: .int64(indices))]
    }
    // Softmax and LogSoftmax are infer, as in TensorFlow; the one at a model's output is kept
    // float32 by the converter, as TensorFlow's mixed precision guide advises.
    registry.add("Softmax", inputs: ["logits"], outputs: ["softmax"], precision: .infer) {
      _, inputs in [try softmax(try Kernels.input(inputs, 0), logarithm: false)]
    }
    registry.add("LogSoftmax", inputs: ["logits"], outputs: ["logsoftmax"], precision: .infer) {
      _, inputs in [try softmax(try Kernels.input(inputs, 0), logarithm: true)]
    }
    registry.add(
      "Cumsum", inputs: ["x", .init("axis", type: .index("Tidx"))], outputs: ["out"],
      attributes: [.bool("exclusive", false), .bool("reverse", false)]
    ) { context, inputs in
      [try cumulativeSum(try Kernels.input(inputs, 0), axis: try Kernels.input(inputs, 1), context)]
    }
    // Not run yet.
    registry.declare("ArgMin", inputs: argumentIndices, outputs: [position], precision: .clear)
    registry.declare("L2Loss", inputs: ["t"], outputs: ["output"], precision: .deny)
  }

  /// Running sums along `axis` (attributes `exclusive`: each sum leaves its own element out;
  /// `reverse`: from the end), accumulated in the element type as TensorFlow does (float32 for
  /// float types, wrapping for integers).
  static func cumulativeSum(_ x: Tensor, axis: Tensor, _ context: KernelContext) throws -> Tensor {
    let rank = x.shape.rank
    guard axis.shape.rank == 0, var dimension = try axis.requireIntegers().first else {
      throw KernelError("The axis must be a scalar, got shape \(axis.shape).")
    }
    if dimension < 0 { dimension += rank }
    guard (0..<rank).contains(dimension) else {
      throw KernelError("Axis \(dimension) is out of range for rank \(rank).")
    }
    let dimensions = x.shape.dimensions
    let (outer, size) = (dimensions.prefix(dimension).reduce(1, *), dimensions[dimension])
    let inner = dimensions.dropFirst(dimension + 1).reduce(1, *)
    let (exclusive, reverse) = (try context.bool("exclusive"), try context.bool("reverse"))
    func scan<T>(_ values: [T], zero: T, _ add: (T, T) -> T) -> [T] {
      var result = values
      for o in 0..<outer {
        for i in 0..<inner {
          var total = zero
          for step in 0..<size {
            let position = (o * size + (reverse ? size - 1 - step : step)) * inner + i
            let value = values[position]
            if exclusive {
              result[position] = total
              total = add(total, value)
            } else {
              total = add(total, value)
              result[position] = total
            }
          }
        }
      }
      return result
    }
    switch x.storage {
    case .float(let values):
      return Tensor(dtype: x.dtype, shape: x.shape, storage: .float(scan(values, zero: 0, +)))
    case .int32(let values):
      return Tensor(dtype: x.dtype, shape: x.shape, storage: .int32(scan(values, zero: 0, &+)))
    case .int64(let values):
      return Tensor(dtype: x.dtype, shape: x.shape, storage: .int64(scan(values, zero: 0, &+)))
    default: throw KernelError("Cumsum of \(x.dtype) is not supported yet.")
    }
  }

  /// Softmax (or its logarithm) over the last dimension: exponentials of the differences from
  /// the row's largest value, summed in float32.
  static func softmax(_ x: Tensor, logarithm: Bool) throws -> Tensor {
    let values = try x.requireFloats()
    let width = x.shape.dimensions.last ?? 1
    let rows = width > 0 ? values.count / width : 0
    let result = [Float](unsafeUninitializedCapacity: values.count) { result, initialized in
      values.withUnsafeBufferPointer { values in
        guard rows > 0, let source = values.baseAddress, let target = result.baseAddress else {
          return
        }
        // Rows are independent: large inputs (attention scores) are spread over the cores.
        nonisolated(unsafe) let (input, output) = (source, target)
        let parts = values.count >= 1 << 16 ? ProcessInfo.processInfo.activeProcessorCount : 1
        DispatchQueue.concurrentPerform(iterations: parts) { part in
          let first = part * rows / parts
          tfmp_softmax_f32(
            input + first * width, output + first * width, (part + 1) * rows / parts - first, width,
            logarithm ? 1 : 0)
        }
      }
      initialized = values.count
    }
    return Tensor(shape: x.shape, floats: result)
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
      _ source: UnsafePointer<T>, stride: Int, _ length: Int,
      into target: UnsafeMutablePointer<Double>, along: Bool
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
  static func reduce(_ context: KernelContext, _ inputs: [Tensor], _ reduction: Reduction) throws
    -> Tensor
  {
    let x = try Kernels.input(inputs, 0)
    let rank = x.shape.rank
    let axes = Set(try Kernels.input(inputs, 1).requireIntegers().map { $0 < 0 ? $0 + rank : $0 })
    guard axes.allSatisfy({ (0..<rank).contains($0) }) else {
      throw KernelError("A reduction axis is out of range.")
    }
    let dimensions = x.shape.dimensions
    let kept = dimensions.enumerated().map { axes.contains($0) ? 1 : $1 }
    // The input walked in order; each element lands on its kept coordinates in the result.
    let targets = zip(kept, StridedWalk.contiguous(kept)).map { size, stride in
      size == 1 ? 0 : stride
    }
    let walk = StridedWalk(
      dimensions: dimensions, strides: [StridedWalk.contiguous(dimensions), targets])
    let (length, step) = (walk.runLength, walk.runStrides)
    var result = [Double](repeating: reduction.initial, count: kept.reduce(1, *))
    func accumulate<T: BinaryFloatingPoint>(_ values: [T]) {
      values.withUnsafeBufferPointer { values in
        result.withUnsafeMutableBufferPointer { result in
          walk.forEachRun { offsets in
            reduction.combine(
              values.start + offsets[0], stride: step[0], length,
              into: result.start + offsets[1],
              along: step[1] == 0)
          }
        }
      }
    }
    // Rows reduced each to its own result (the last axes reduced: a mean over channels), when
    // there are many, are spread over the cores.
    let rows =
      walk.dimensions.count == 2 && walk.strides == [[length, 1], [1, 0]] ? walk.dimensions[0] : 0
    if case .float(let values) = x.storage, rows > 1, values.count >= 1 << 18 {
      values.withUnsafeBufferPointer { values in
        result.withUnsafeMutableBufferPointer { result in
          nonisolated(unsafe) let (source, target) = (values.start, result.start)
          let parts = ProcessInfo.processInfo.activeProcessorCount
          DispatchQueue.concurrentPerform(iterations: parts) { part in
            for row in (part * rows / parts)..<((part + 1) * rows / parts) {
              reduction.combine(
                source + row * length, stride: 1, length, into: target + row, along: true)
            }
          }
        }
      }
    } else if case .float(let values) = x.storage {
      accumulate(values)
    } else {
      accumulate(try Kernels.doubles(x))
    }
    let shape = Shape(
      try context.bool("keep_dims")
        ? kept : dimensions.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
    return try Kernels.tensor(result, like: x, shape: shape)
  }
}
