internal import TensorCore

/// Shape kernels: Shape, Reshape, Squeeze, ExpandDims, Pack, StridedSlice, Cast.
enum ShapeKernels {
  static func register(in table: inout [String: Kernels.Kernel]) {
    table["Shape"] = { context, inputs in
      let dimensions = try Kernels.input(inputs, 0).shape.dimensions
      let shape = Shape([dimensions.count])
      return context.type("out_type") == .int64
        ? [Tensor(dtype: .int64, shape: shape, storage: .int64(dimensions.map(Int64.init)))]
        : [Tensor(dtype: .int32, shape: shape, storage: .int32(dimensions.map(Int32.init)))]
    }
    table["Reshape"] = { _, inputs in
      let x = try Kernels.input(inputs, 0)
      var target = try Kernels.input(inputs, 1).requireIntegers()
      let count = x.shape.elementCount ?? 0
      if let unknown = target.firstIndex(of: -1) {
        let known = target.enumerated().filter { $0.offset != unknown }.map(\.element).reduce(1, *)
        guard known > 0, count % known == 0 else { throw KernelError("Cannot reshape \(x.shape) to \(target).") }
        target[unknown] = count / known
      }
      guard Shape(target).elementCount == count else { throw KernelError("Cannot reshape \(x.shape) to \(target).") }
      return [Tensor(dtype: x.dtype, shape: Shape(target), storage: x.storage)]
    }
    table["Squeeze"] = { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let rank = x.shape.rank
      let axes = Set(context.ints("squeeze_dims").map { $0 < 0 ? $0 + rank : $0 })
      let kept = x.shape.dimensions.enumerated().filter { axis, size in
        axes.isEmpty ? size != 1 : !axes.contains(axis)
      }.map(\.element)
      return [Tensor(dtype: x.dtype, shape: Shape(kept), storage: x.storage)]
    }
    table["ExpandDims"] = { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let rank = x.shape.rank
      guard var axis = try Kernels.input(inputs, 1).requireIntegers().first else { throw KernelError("No axis.") }
      if axis < 0 { axis += rank + 1 }
      guard (0...rank).contains(axis) else { throw KernelError("Axis \(axis) is out of range.") }
      var dimensions = x.shape.dimensions
      dimensions.insert(1, at: axis)
      return [Tensor(dtype: x.dtype, shape: Shape(dimensions), storage: x.storage)]
    }
    table["Pack"] = { context, inputs in
      guard let first = inputs.first else { throw KernelError("Pack needs inputs.") }
      guard inputs.allSatisfy({ $0.shape == first.shape && $0.dtype == first.dtype }) else {
        throw KernelError("Pack needs inputs of one shape and dtype.")
      }
      var axis = context.int("axis")
      if axis < 0 { axis += first.shape.rank + 1 }
      let outer = first.shape.dimensions.prefix(axis).reduce(1, *)
      let inner = first.shape.dimensions.dropFirst(axis).reduce(1, *)
      var dimensions = first.shape.dimensions
      dimensions.insert(inputs.count, at: axis)
      let order = (0..<outer).flatMap { o in inputs.indices.flatMap { i in (0..<inner).map { (i, o * inner + $0) } } }
      return [try gather(inputs, order, dtype: first.dtype, shape: Shape(dimensions))]
    }
    table["StridedSlice"] = { context, inputs in [try stridedSlice(context, inputs)] }
    table["Transpose"] = { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let permutation = try Kernels.input(inputs, 1).requireIntegers()
      let dimensions = x.shape.dimensions
      guard permutation.sorted() == Array(dimensions.indices) else {
        throw KernelError("The permutation \(permutation) does not fit shape \(x.shape).")
      }
      let output = permutation.map { dimensions[$0] }
      let (sx, so) = (Kernels.strides(dimensions), Kernels.strides(output))
      let order = (0..<(x.shape.elementCount ?? 0)).map { element -> (Int, Int) in
        var (rest, source) = (element, 0)
        for axis in output.indices {
          source += rest / so[axis] * sx[permutation[axis]]
          rest %= so[axis]
        }
        return (0, source)
      }
      return [try gather([x], order, dtype: x.dtype, shape: Shape(output))]
    }
    table["ConcatV2"] = { _, inputs in
      guard inputs.count >= 2 else { throw KernelError("ConcatV2 needs values and an axis.") }
      let values = Array(inputs.dropLast())
      let rank = values[0].shape.rank
      guard var axis = try inputs[inputs.count - 1].requireIntegers().first else { throw KernelError("No axis.") }
      if axis < 0 { axis += rank }
      guard (0..<rank).contains(axis),
        values.allSatisfy({ $0.shape.rank == rank && $0.dtype == values[0].dtype })
      else { throw KernelError("ConcatV2 inputs do not fit together along axis \(axis).") }
      let outer = values[0].shape.dimensions.prefix(axis).reduce(1, *)
      var order: [(Int, Int)] = []
      for o in 0..<outer {
        for (index, value) in values.enumerated() {
          let block = value.shape.dimensions.dropFirst(axis).reduce(1, *)
          order += (0..<block).map { (index, o * block + $0) }
        }
      }
      var dimensions = values[0].shape.dimensions
      dimensions[axis] = values.map { $0.shape.dimensions[axis] }.reduce(0, +)
      return [try gather(values, order, dtype: values[0].dtype, shape: Shape(dimensions))]
    }
    table["GatherV2"] = { context, inputs in
      let (params, indicesTensor) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
      let indices = try indicesTensor.requireIntegers()
      let rank = params.shape.rank
      guard context.int("batch_dims") == 0 else { throw KernelError("GatherV2 with batch_dims is not supported yet.") }
      guard var axis = try Kernels.input(inputs, 2).requireIntegers().first else { throw KernelError("No axis.") }
      if axis < 0 { axis += rank }
      guard (0..<rank).contains(axis) else { throw KernelError("Axis \(axis) is out of range.") }
      let dimensions = params.shape.dimensions
      let outer = dimensions.prefix(axis).reduce(1, *)
      let inner = dimensions.dropFirst(axis + 1).reduce(1, *)
      var order: [(Int, Int)] = []
      for o in 0..<outer {
        for index in indices {
          guard (0..<dimensions[axis]).contains(index) else {
            throw KernelError("Index \(index) is outside [0, \(dimensions[axis])).")
          }
          order += (0..<inner).map { (0, (o * dimensions[axis] + index) * inner + $0) }
        }
      }
      let shape = Array(dimensions.prefix(axis)) + indicesTensor.shape.dimensions + Array(dimensions.dropFirst(axis + 1))
      return [try gather([params], order, dtype: params.dtype, shape: Shape(shape))]
    }
    table["SelectV2"] = { _, inputs in
      let (condition, a, b) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), try Kernels.input(inputs, 2))
      guard case .bool(let flags) = condition.storage, a.dtype == b.dtype else {
        throw KernelError("SelectV2 needs a bool condition and two values of one dtype.")
      }
      let (shape, indices) = try Kernels.broadcastIndices([condition.shape, a.shape, b.shape])
      let order = (0..<(shape.elementCount ?? 0)).map { flags[indices[0][$0]] ? (0, indices[1][$0]) : (1, indices[2][$0]) }
      return [try gather([a, b], order, dtype: a.dtype, shape: shape)]
    }
    table["Split"] = { context, inputs in
      let x = try Kernels.input(inputs, 1)
      let pieces = context.int("num_split", default: 1)
      guard var axis = try Kernels.input(inputs, 0).requireIntegers().first else { throw KernelError("No axis.") }
      if axis < 0 { axis += x.shape.rank }
      guard (0..<x.shape.rank).contains(axis), pieces > 0, x.shape.dimensions[axis] % pieces == 0 else {
        throw KernelError("Cannot split \(x.shape) into \(pieces) along axis \(axis).")
      }
      let dimensions = x.shape.dimensions
      let size = dimensions[axis] / pieces
      let outer = dimensions.prefix(axis).reduce(1, *)
      let inner = dimensions.dropFirst(axis + 1).reduce(1, *)
      var shape = dimensions
      shape[axis] = size
      return try (0..<pieces).map { piece in
        let order = (0..<outer).flatMap { o in
          (0..<(size * inner)).map { (0, (o * dimensions[axis] + piece * size) * inner + $0) }
        }
        return try gather([x], order, dtype: x.dtype, shape: Shape(shape))
      }
    }
    table["Fill"] = { _, inputs in
      let dimensions = try Kernels.input(inputs, 0).requireIntegers()
      let value = try Kernels.input(inputs, 1)
      guard value.shape.elementCount == 1, let count = Shape(dimensions).elementCount else {
        throw KernelError("Fill needs a scalar value and a valid shape.")
      }
      return [try gather([value], Array(repeating: (0, 0), count: count), dtype: value.dtype, shape: Shape(dimensions))]
    }
    table["Range"] = { _, inputs in
      let (start, limit, delta) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), try Kernels.input(inputs, 2))
      let (a, b, d) = (try Kernels.doubles(start)[0], try Kernels.doubles(limit)[0], try Kernels.doubles(delta)[0])
      guard d != 0 else { throw KernelError("Range needs a nonzero delta.") }
      let values = Array(stride(from: a, to: b, by: d))
      return [try Kernels.tensor(values, like: start, shape: Shape([values.count]))]
    }
    table["Cast"] = { context, inputs in
      let x = try Kernels.input(inputs, 0)
      guard let target = context.type("DstT") else { throw KernelError("Cast needs DstT.") }
      let doubles: [Double]
      switch x.storage {
      case .float(let values): doubles = values.map(Double.init)
      case .int32(let values): doubles = values.map(Double.init)
      case .int64(let values): doubles = values.map(Double.init)
      case .bool(let values): doubles = values.map { $0 ? 1 : 0 }
      default: throw KernelError("Cast from \(x.dtype) is not supported yet.")
      }
      switch target {
      case .float32, .float16, .bfloat16:
        // The interpreter rounds float16 and bfloat16 results to DstT.
        return [Tensor(dtype: target, shape: x.shape, storage: .float(doubles.map(Float.init)))]
      case .int32: return [Tensor(dtype: .int32, shape: x.shape, storage: .int32(doubles.map { Int32(clamping: Int64($0.rounded(.towardZero))) }))]
      case .int64: return [Tensor(dtype: .int64, shape: x.shape, storage: .int64(doubles.map { Int64($0.rounded(.towardZero)) }))]
      case .bool: return [Tensor(dtype: .bool, shape: x.shape, storage: .bool(doubles.map { $0 != 0 }))]
      default: throw KernelError("Cast to \(target) is not supported yet.")
      }
    }
  }

  /// Elements picked from `inputs` by (input, index) pairs.
  static func gather(_ inputs: [Tensor], _ order: [(Int, Int)], dtype: DType, shape: Shape) throws -> Tensor {
    switch inputs[0].storage {
    case .float:
      let arrays = inputs.map { $0.floats ?? [] }
      return Tensor(dtype: dtype, shape: shape, storage: .float(order.map { arrays[$0.0][$0.1] }))
    case .int32:
      let arrays: [[Int32]] = inputs.map { if case .int32(let v) = $0.storage { v } else { [] } }
      return Tensor(dtype: dtype, shape: shape, storage: .int32(order.map { arrays[$0.0][$0.1] }))
    case .int64:
      let arrays: [[Int64]] = inputs.map { if case .int64(let v) = $0.storage { v } else { [] } }
      return Tensor(dtype: dtype, shape: shape, storage: .int64(order.map { arrays[$0.0][$0.1] }))
    case .bool:
      let arrays: [[Bool]] = inputs.map { if case .bool(let v) = $0.storage { v } else { [] } }
      return Tensor(dtype: dtype, shape: shape, storage: .bool(order.map { arrays[$0.0][$0.1] }))
    default:
      throw KernelError("\(dtype) tensors cannot be rearranged yet.")
    }
  }

  /// TensorFlow's StridedSlice without ellipsis or new axes.
  static func stridedSlice(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let x = try Kernels.input(inputs, 0)
    let begin = try Kernels.input(inputs, 1).requireIntegers()
    let end = try Kernels.input(inputs, 2).requireIntegers()
    let steps = try Kernels.input(inputs, 3).requireIntegers()
    guard context.int("ellipsis_mask") == 0, context.int("new_axis_mask") == 0 else {
      throw KernelError("StridedSlice with an ellipsis or new axes is not supported yet.")
    }
    let (beginMask, endMask, shrinkMask) = (context.int("begin_mask"), context.int("end_mask"), context.int("shrink_axis_mask"))
    let dimensions = x.shape.dimensions
    var ranges: [[Int]] = []
    var output: [Int] = []
    for axis in dimensions.indices {
      let size = dimensions[axis]
      guard axis < begin.count else {
        ranges.append(Array(0..<size))
        output.append(size)
        continue
      }
      let step = steps[axis]
      guard step != 0 else { throw KernelError("A stride is zero.") }
      func clamp(_ value: Int) -> Int {
        let index = value < 0 ? value + size : value
        return step > 0 ? Swift.min(Swift.max(index, 0), size) : Swift.min(Swift.max(index, -1), size - 1)
      }
      if shrinkMask & (1 << axis) != 0 {
        let index = begin[axis] < 0 ? begin[axis] + size : begin[axis]
        guard (0..<size).contains(index) else { throw KernelError("Index \(begin[axis]) is out of range for size \(size).") }
        ranges.append([index])
        continue
      }
      let start = beginMask & (1 << axis) != 0 ? (step > 0 ? 0 : size - 1) : clamp(begin[axis])
      let stop = endMask & (1 << axis) != 0 ? (step > 0 ? size : -1) : clamp(end[axis])
      let indices = Array(stride(from: start, to: stop, by: step))
      ranges.append(indices)
      output.append(indices.count)
    }
    let sx = Kernels.strides(dimensions)
    var order: [(Int, Int)] = [(0, 0)]
    for axis in dimensions.indices {
      order = order.flatMap { _, offset in ranges[axis].map { (0, offset + $0 * sx[axis]) } }
    }
    return try gather([x], order, dtype: x.dtype, shape: Shape(output))
  }
}
