internal import CTFMPKernels
internal import GraphIR
internal import TensorCore
internal import Foundation

/// The reduction family: Sum, Max, Min, Prod, All, Any, Mean, ArgMax, ArgMin, Softmax,
/// LogSoftmax, Cumsum, Cumprod, L2Loss, UnsortedSegmentSum, DenseBincount.
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
      ) { context, inputs in
        // Over every axis (a whole gradient checked for finiteness): one pass over the flags.
        let x = try Kernels.input(inputs, 0)
        let axes = Set(
          try Kernels.input(inputs, 1).requireIntegers().map { $0 < 0 ? $0 + x.shape.rank : $0 })
        guard case .bool(let flags) = x.storage, axes == Set(0..<x.shape.rank),
          try !context.bool("keep_dims")
        else { return [try reduce(context, inputs, reduction)] }
        let value = op == "All" ? !flags.contains(false) : flags.contains(true)
        return [Tensor(dtype: .bool, shape: Shape([]), storage: .bool([value]))]
      }
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
    // The position of the largest (smallest) element along an axis; the first on ties.
    for (op, largest) in [("ArgMax", true), ("ArgMin", false)] {
      registry.add(op, inputs: argumentIndices, outputs: [position], precision: .clear) {
        context, inputs in
        [try argumentPosition(context, inputs, largest: largest)]
      }
    }
    // Softmax and LogSoftmax are infer, as in TensorFlow; the one at a model's output is kept
    // float32 by the converter, as TensorFlow's mixed precision guide advises.
    registry.add("Softmax", inputs: ["logits"], outputs: ["softmax"], precision: .infer) {
      _, inputs in [try softmax(try Kernels.input(inputs, 0), logarithm: false)]
    }
    registry.add("LogSoftmax", inputs: ["logits"], outputs: ["logsoftmax"], precision: .infer) {
      _, inputs in [try softmax(try Kernels.input(inputs, 0), logarithm: true)]
    }
    for (op, product) in [("Cumsum", false), ("Cumprod", true)] {
      registry.add(
        op, inputs: ["x", .init("axis", type: .index("Tidx"))], outputs: ["out"],
        attributes: [.bool("exclusive", false), .bool("reverse", false)]
      ) { context, inputs in
        [
          try cumulative(
            try Kernels.input(inputs, 0), axis: try Kernels.input(inputs, 1), product: product,
            context)
        ]
      }
    }
    registry.add("L2Loss", inputs: ["t"], outputs: ["output"], precision: .deny) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let total = try x.requireFloats().reduce(0.0) { $0 + Double($1) * Double($1) }
      return [Tensor(dtype: x.dtype, shape: Shape([]), storage: .float([Float(total / 2)]))]
    }
    registry.add(
      "DenseBincount",
      inputs: [.init("input", type: "Tidx"), .init("size", type: "Tidx"), "weights"],
      outputs: ["output"], attributes: [.bool("binary_output", false)]
    ) { context, inputs in
      [try bincount(inputs, binary: try context.bool("binary_output"))]
    }
    registry.add(
      "UnsortedSegmentSum",
      inputs: [
        "data", .init("segment_ids", type: "Tindices"),
        .init("num_segments", type: .index("Tnumsegments")),
      ],
      outputs: ["output"]
    ) { context, inputs in [try unsortedSegmentSum(context, inputs)] }
  }

  /// ArgMax or ArgMin: the position of the largest (smallest) element along the axis input 1
  /// names, the first of equal ones, typed by `output_type`.
  static func argumentPosition(_ context: KernelContext, _ inputs: [Tensor], largest: Bool) throws
    -> Tensor
  {
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
    indices.reserveCapacity(outer * inner)
    for o in 0..<outer {
      for i in 0..<inner {
        var best = 0
        for candidate in 1..<Swift.max(size, 1) {
          let (value, current) = (
            values[(o * size + candidate) * inner + i], values[(o * size + best) * inner + i]
          )
          if largest ? value > current : value < current { best = candidate }
        }
        indices.append(Int64(best))
      }
    }
    let shape = Shape(dimensions.enumerated().filter { $0.offset != axis }.map(\.element))
    return try context.type("output_type") == .int32
      ? Tensor(dtype: .int32, shape: shape, storage: .int32(indices.map { Int32($0) }))
      : Tensor(dtype: .int64, shape: shape, storage: .int64(indices))
  }

  /// DenseBincount: per row of a 1-D or 2-D input, how often each value in [0, size) occurs
  /// (or the sum of the weights at its positions, or 1 where it occurs with `binary`); values
  /// outside are not counted.
  static func bincount(_ inputs: [Tensor], binary: Bool) throws -> Tensor {
    let (x, weights) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 2))
    guard let size = try Kernels.input(inputs, 1).requireIntegers().first, size >= 0,
      (1...2).contains(x.shape.rank)
    else { throw KernelError("DenseBincount needs a 1-D or 2-D input and a non-negative size.") }
    let values = try x.requireIntegers()
    let weighted = (weights.shape.elementCount ?? 0) > 0
    guard !weighted || weights.shape == x.shape else {
      throw KernelError(
        "The weights \(weights.shape) must be empty or of the input's shape \(x.shape).")
    }
    let given = weighted ? try Kernels.doubles(weights) : []
    let width = x.shape.dimensions.last ?? 0
    let rows = x.shape.rank == 2 ? x.shape.dimensions[0] : 1
    var counts = [Double](repeating: 0, count: rows * size)
    for (position, value) in values.enumerated() where (0..<size).contains(value) {
      let bin = position / Swift.max(width, 1) * size + value
      counts[bin] = binary ? 1 : counts[bin] + (weighted ? given[position] : 1)
    }
    let shape = Shape(x.shape.rank == 2 ? [rows, size] : [size])
    return try Kernels.tensor(counts, like: weights, shape: shape)
  }

  /// Sums of `data`'s rows by segment: row i (of the leading dimensions segment_ids covers)
  /// adds into segment `segment_ids[i]`; rows with a negative id are dropped, as in TensorFlow.
  static func unsortedSegmentSum(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let data = try Kernels.input(inputs, 0)
    let ids = try Kernels.input(inputs, 1)
    guard let count = try Kernels.input(inputs, 2).requireIntegers().first, count >= 0 else {
      throw KernelError("num_segments must be a non-negative scalar.")
    }
    let segments = try ids.requireIntegers()
    guard data.shape.dimensions.starts(with: ids.shape.dimensions) else {
      throw KernelError(
        "The segment ids \(ids.shape) do not prefix the data's shape \(data.shape).")
    }
    if let bad = segments.first(where: { $0 >= count }) {
      throw KernelError("Segment id \(bad) is not below num_segments \(count).")
    }
    let rest = Array(data.shape.dimensions.dropFirst(ids.shape.rank))
    let width = rest.reduce(1, *)
    let shape = try context.allocating([count] + rest, data.dtype)
    func sum<T>(_ values: [T], zero: T, _ add: (T, T) -> T) -> [T] {
      var result = [T](repeating: zero, count: count * width)
      for (row, segment) in segments.enumerated() where segment >= 0 {
        for j in 0..<width {
          result[segment * width + j] = add(result[segment * width + j], values[row * width + j])
        }
      }
      return result
    }
    switch data.storage {
    case .float(let values):
      return Tensor(dtype: data.dtype, shape: shape, storage: .float(sum(values, zero: 0, +)))
    case .double(let values):
      return Tensor(dtype: data.dtype, shape: shape, storage: .double(sum(values, zero: 0, +)))
    case .int32(let values):
      return Tensor(dtype: data.dtype, shape: shape, storage: .int32(sum(values, zero: 0, &+)))
    case .int64(let values):
      return Tensor(dtype: data.dtype, shape: shape, storage: .int64(sum(values, zero: 0, &+)))
    default: throw KernelError("UnsortedSegmentSum of \(data.dtype) is not supported.")
    }
  }

  /// Running sums (or products) along `axis` (attributes `exclusive`: each leaves its own element
  /// out; `reverse`: from the end), accumulated in the element type as TensorFlow does (float32
  /// for float types, wrapping for integers).
  static func cumulative(_ x: Tensor, axis: Tensor, product: Bool, _ context: KernelContext)
    throws -> Tensor
  {
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
      let result = product ? scan(values, zero: 1, *) : scan(values, zero: 0, +)
      return Tensor(dtype: x.dtype, shape: x.shape, storage: .float(result))
    case .double(let values):
      let result = product ? scan(values, zero: 1, *) : scan(values, zero: 0, +)
      return Tensor(dtype: x.dtype, shape: x.shape, storage: .double(result))
    case .int32(let values):
      let result = product ? scan(values, zero: 1, &*) : scan(values, zero: 0, &+)
      return Tensor(dtype: x.dtype, shape: x.shape, storage: .int32(result))
    case .int64(let values):
      let result = product ? scan(values, zero: 1, &*) : scan(values, zero: 0, &+)
      return Tensor(dtype: x.dtype, shape: x.shape, storage: .int64(result))
    default:
      throw KernelError("A running \(product ? "product" : "sum") of \(x.dtype) is not supported.")
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
