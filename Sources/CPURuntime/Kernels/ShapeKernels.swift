internal import GraphIR
internal import TensorCore

/// The shape family: ops that reshape, slice, join, gather, pad, fill and cast.
enum ShapeKernels {
  static func register(in registry: inout OpRegistry) {
    registerShapes(in: &registry)
    registerJoinsAndSplits(in: &registry)
    registerSelections(in: &registry)
    registerFills(in: &registry)
  }

  /// Ops that give a tensor another shape or order of its elements: Shape, Reshape, Squeeze, ExpandDims, Transpose, BroadcastTo.
  private static func registerShapes(in registry: inout OpRegistry) {
    registry.add("Shape", inputs: ["input"], outputs: ["output"]) { context, inputs in
      let dimensions = try Kernels.input(inputs, 0).shape.dimensions
      let shape = Shape([dimensions.count])
      return context.type("out_type") == .int64
        ? [Tensor(dtype: .int64, shape: shape, storage: .int64(dimensions.map(Int64.init)))]
        : [Tensor(dtype: .int32, shape: shape, storage: .int32(dimensions.map(Int32.init)))]
    }
    registry.add(
      "Reshape", inputs: ["tensor", "shape"], outputs: ["output"],
      traits: [.movesElements, .sharesInput]
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      var target = try Kernels.input(inputs, 1).requireIntegers()
      let count = x.shape.elementCount ?? 0
      if let unknown = target.firstIndex(of: -1) {
        let known = target.enumerated().filter { $0.offset != unknown }.map(\.element).reduce(1, *)
        guard known > 0, count % known == 0 else {
          throw KernelError("Cannot reshape \(x.shape) to \(target).")
        }
        target[unknown] = count / known
      }
      guard Shape(target).elementCount == count else {
        throw KernelError("Cannot reshape \(x.shape) to \(target).")
      }
      return [Tensor(dtype: x.dtype, shape: Shape(target), storage: x.storage)]
    }
    registry.add(
      "Squeeze", inputs: ["input"], outputs: ["output"], traits: [.movesElements, .sharesInput]
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let rank = x.shape.rank
      let axes = Set(context.ints("squeeze_dims").map { $0 < 0 ? $0 + rank : $0 })
      let kept = x.shape.dimensions.enumerated().filter { axis, size in
        axes.isEmpty ? size != 1 : !axes.contains(axis)
      }.map(\.element)
      return [Tensor(dtype: x.dtype, shape: Shape(kept), storage: x.storage)]
    }
    registry.add(
      "ExpandDims", inputs: ["input", "dim"], outputs: ["output"],
      traits: [.movesElements, .sharesInput]
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let rank = x.shape.rank
      guard var axis = try Kernels.input(inputs, 1).requireIntegers().first else {
        throw KernelError("No axis.")
      }
      if axis < 0 { axis += rank + 1 }
      guard (0...rank).contains(axis) else { throw KernelError("Axis \(axis) is out of range.") }
      var dimensions = x.shape.dimensions
      dimensions.insert(1, at: axis)
      return [Tensor(dtype: x.dtype, shape: Shape(dimensions), storage: x.storage)]
    }
    registry.add("Transpose", inputs: ["x", "perm"], outputs: ["y"], traits: .movesElements) {
      _, inputs in
      let x = try Kernels.input(inputs, 0)
      let permutation = try Kernels.input(inputs, 1).requireIntegers()
      let dimensions = x.shape.dimensions
      guard permutation.sorted() == Array(dimensions.indices) else {
        throw KernelError("The permutation \(permutation) does not fit shape \(x.shape).")
      }
      // The identity permutation (Tensordot's, for one) moves nothing.
      if permutation == Array(dimensions.indices) { return [x] }
      let shape = Shape(permutation.map { dimensions[$0] })
      switch x.storage {
      case .float(let values):
        return [
          Tensor(
            dtype: x.dtype, shape: shape,
            storage: .float(transpose(values, dimensions, permutation)))
        ]
      case .int32(let values):
        return [
          Tensor(
            dtype: x.dtype, shape: shape,
            storage: .int32(transpose(values, dimensions, permutation)))
        ]
      case .int64(let values):
        return [
          Tensor(
            dtype: x.dtype, shape: shape,
            storage: .int64(transpose(values, dimensions, permutation)))
        ]
      case .bool(let values):
        return [
          Tensor(
            dtype: x.dtype, shape: shape, storage: .bool(transpose(values, dimensions, permutation))
          )
        ]
      default: throw KernelError("\(x.dtype) tensors cannot be transposed yet.")
      }
    }
    registry.add(
      "BroadcastTo", inputs: ["input", "shape"], outputs: ["output"], traits: .movesElements
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let target = try Kernels.input(inputs, 1).requireIntegers()
      guard target.allSatisfy({ $0 >= 0 }), target.count >= x.shape.rank,
        let broadcast = try? StridedWalk.broadcast([x.shape, Shape(target)]),
        broadcast.shape.dimensions == target
      else {
        throw KernelError("Shape \(x.shape) cannot be broadcast to \(target).")
      }
      let shape = Shape(target)
      // Dimensions added on the left and dimensions of 1 repeat element 0.
      let sizes = Array(repeating: 1, count: target.count - x.shape.rank) + x.shape.dimensions
      let ranges = zip(sizes, target).map { size, wanted in
        size == wanted ? Array(0..<wanted) : Array(repeating: 0, count: wanted)
      }
      let source = Tensor(dtype: x.dtype, shape: Shape(sizes), storage: x.storage)
      return [try take(source, ranges: ranges, shape: shape)]
    }
  }

  /// Ops that join tensors or split one: Pack, ConcatV2, Split, SplitV, Unpack.
  private static func registerJoinsAndSplits(in registry: inout OpRegistry) {
    registry.add(
      "Pack", inputs: [.init("values", .number("N"))], outputs: ["output"], traits: .movesElements
    ) { context, inputs in
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
      let order = (0..<outer).flatMap { o in
        inputs.indices.flatMap { i in (0..<inner).map { (i, o * inner + $0) } }
      }
      return [try gather(inputs, order, dtype: first.dtype, shape: Shape(dimensions))]
    }
    registry.add(
      "ConcatV2", inputs: [.init("values", .number("N")), "axis"], outputs: ["output"],
      traits: .movesElements
    ) { _, inputs in
      guard inputs.count >= 2 else { throw KernelError("ConcatV2 needs values and an axis.") }
      let values = Array(inputs.dropLast())
      let rank = values[0].shape.rank
      guard var axis = try inputs[inputs.count - 1].requireIntegers().first else {
        throw KernelError("No axis.")
      }
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
    registry.add(
      "Split", inputs: ["split_dim", "value"], outputs: [.init("output", .number("num_split"))],
      traits: .movesElements
    ) { context, inputs in
      let x = try Kernels.input(inputs, 1)
      let pieces = context.int("num_split", default: 1)
      guard var axis = try Kernels.input(inputs, 0).requireIntegers().first else {
        throw KernelError("No axis.")
      }
      if axis < 0 { axis += x.shape.rank }
      guard (0..<x.shape.rank).contains(axis), pieces > 0, x.shape.dimensions[axis] % pieces == 0
      else {
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
    registry.add(
      "SplitV", inputs: ["value", "size_splits", "split_dim"],
      outputs: [.init("output", .number("num_split"))], traits: .movesElements
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      var sizes = try Kernels.input(inputs, 1).requireIntegers()
      guard var axis = try Kernels.input(inputs, 2).requireIntegers().first else {
        throw KernelError("No axis.")
      }
      if axis < 0 { axis += x.shape.rank }
      guard (0..<x.shape.rank).contains(axis) else {
        throw KernelError("Axis \(axis) is out of range.")
      }
      let total = x.shape.dimensions[axis]
      if let unknown = sizes.firstIndex(of: -1) {
        sizes[unknown] =
          total - sizes.enumerated().filter { $0.offset != unknown }.map(\.element).reduce(0, +)
      }
      guard sizes.reduce(0, +) == total, sizes.allSatisfy({ $0 >= 0 }) else {
        throw KernelError("Split sizes \(sizes) do not add up to \(total).")
      }
      var start = 0
      return try sizes.map { size in
        var ranges = x.shape.dimensions.map { Array(0..<$0) }
        ranges[axis] = Array(start..<(start + size))
        start += size
        return try take(x, ranges: ranges, shape: Shape(ranges.map(\.count)))
      }
    }
    registry.add(
      "Unpack", inputs: ["value"], outputs: [.init("output", .number("num"))],
      traits: .movesElements
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      var axis = context.int("axis")
      if axis < 0 { axis += x.shape.rank }
      guard (0..<x.shape.rank).contains(axis) else {
        throw KernelError("Axis \(axis) is out of range.")
      }
      var shape = x.shape.dimensions
      shape.remove(at: axis)
      return try (0..<x.shape.dimensions[axis]).map { index in
        var ranges = x.shape.dimensions.map { Array(0..<$0) }
        ranges[axis] = [index]
        return try take(x, ranges: ranges, shape: Shape(shape))
      }
    }
  }

  /// Ops that pick elements: StridedSlice, Slice, GatherV2, SelectV2.
  private static func registerSelections(in registry: inout OpRegistry) {
    registry.add(
      "StridedSlice", inputs: ["input", "begin", "end", "strides"], outputs: ["output"],
      traits: .movesElements
    ) { context, inputs in [try stridedSlice(context, inputs)] }
    registry.add(
      "Slice", inputs: ["input", "begin", "size"], outputs: ["output"], traits: .movesElements
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let begin = try Kernels.input(inputs, 1).requireIntegers()
      let size = try Kernels.input(inputs, 2).requireIntegers()
      let dimensions = x.shape.dimensions
      guard begin.count == dimensions.count, size.count == dimensions.count else {
        throw KernelError("Slice needs one begin and size per dimension.")
      }
      let ranges = try dimensions.indices.map { axis -> [Int] in
        let length = size[axis] == -1 ? dimensions[axis] - begin[axis] : size[axis]
        guard begin[axis] >= 0, length >= 0, begin[axis] + length <= dimensions[axis] else {
          throw KernelError(
            "Slice [\(begin[axis]), +\(length)) leaves dimension \(axis) of size \(dimensions[axis])."
          )
        }
        return Array(begin[axis]..<(begin[axis] + length))
      }
      return [try take(x, ranges: ranges, shape: Shape(ranges.map(\.count)))]
    }
    registry.add(
      "GatherV2", inputs: ["params", "indices", "axis"], outputs: ["output"], traits: .movesElements
    ) { context, inputs in
      let (params, indicesTensor) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
      let indices = try indicesTensor.requireIntegers()
      let rank = params.shape.rank
      guard context.int("batch_dims") == 0 else {
        throw KernelError("GatherV2 with batch_dims is not supported yet.")
      }
      guard var axis = try Kernels.input(inputs, 2).requireIntegers().first else {
        throw KernelError("No axis.")
      }
      if axis < 0 { axis += rank }
      guard (0..<rank).contains(axis) else { throw KernelError("Axis \(axis) is out of range.") }
      let dimensions = params.shape.dimensions
      let outer = dimensions.prefix(axis).reduce(1, *)
      let inner = dimensions.dropFirst(axis + 1).reduce(1, *)
      if let index = indices.first(where: { !(0..<dimensions[axis]).contains($0) }) {
        throw KernelError("Index \(index) is outside [0, \(dimensions[axis])).")
      }
      let shape = Shape(
        Array(dimensions.prefix(axis)) + indicesTensor.shape.dimensions
          + Array(dimensions.dropFirst(axis + 1)))
      // Float rows (an embedding lookup) are copied whole.
      if case .float(let values) = params.storage {
        var result: [Float] = []
        result.reserveCapacity(outer * indices.count * inner)
        for o in 0..<outer {
          for index in indices {
            let start = (o * dimensions[axis] + index) * inner
            result.append(contentsOf: values[start..<(start + inner)])
          }
        }
        return [Tensor(dtype: params.dtype, shape: shape, storage: .float(result))]
      }
      let order = (0..<outer).flatMap { o in
        indices.flatMap { index in
          (0..<inner).map { (0, (o * dimensions[axis] + index) * inner + $0) }
        }
      }
      return [try gather([params], order, dtype: params.dtype, shape: shape)]
    }
    registry.add(
      "SelectV2", inputs: ["condition", "t", "e"], outputs: ["output"], traits: .movesElements
    ) { _, inputs in
      let (condition, a, b) = (
        try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), try Kernels.input(inputs, 2)
      )
      guard case .bool(let flags) = condition.storage, a.dtype == b.dtype else {
        throw KernelError("SelectV2 needs a bool condition and two values of one dtype.")
      }
      let (shape, walk) = try StridedWalk.broadcast([condition.shape, a.shape, b.shape])
      let indices = walk.indices()
      let order = (0..<(shape.elementCount ?? 0)).map {
        flags[indices[0][$0]] ? (0, indices[1][$0]) : (1, indices[2][$0])
      }
      return [try gather([a, b], order, dtype: a.dtype, shape: shape)]
    }
  }

  /// Ops that repeat, pad, fill or convert elements: Tile, Pad, PadV2, Fill, Range, Cast.
  private static func registerFills(in registry: inout OpRegistry) {
    registry.add(
      "Tile", inputs: ["input", "multiples"], outputs: ["output"], traits: .movesElements
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let multiples = try Kernels.input(inputs, 1).requireIntegers()
      guard multiples.count == x.shape.rank, multiples.allSatisfy({ $0 >= 0 }) else {
        throw KernelError("Tile needs one multiple per dimension.")
      }
      let ranges = zip(x.shape.dimensions, multiples).map { size, times in
        (0..<(size * times)).map { $0 % size }
      }
      return [try take(x, ranges: ranges, shape: Shape(ranges.map(\.count)))]
    }
    let pads: [(String, [OpSchema.Argument], OpSchema.Traits)] = [
      ("Pad", ["input", "paddings"], .movesElements),
      ("PadV2", ["input", "paddings", "constant_values"], []),
    ]
    for (op, arguments, traits) in pads {
      registry.add(op, inputs: arguments, outputs: ["output"], traits: traits) { _, inputs in
        let x = try Kernels.input(inputs, 0)
        let paddings = try Kernels.input(inputs, 1).requireIntegers()
        guard paddings.count == 2 * x.shape.rank, paddings.allSatisfy({ $0 >= 0 }) else {
          throw KernelError("Pad needs two paddings per dimension.")
        }
        let fill = inputs.count > 2 ? inputs[2] : try zero(like: x)
        // Index -1 marks a padding element, taken from `fill`.
        let ranges = x.shape.dimensions.enumerated().map { axis, size in
          Array(repeating: -1, count: paddings[2 * axis]) + Array(0..<size)
            + Array(repeating: -1, count: paddings[2 * axis + 1])
        }
        return [try take(x, ranges: ranges, shape: Shape(ranges.map(\.count)), fill: fill)]
      }
    }
    registry.add("Fill", inputs: ["dims", "value"], outputs: ["output"]) { _, inputs in
      let dimensions = try Kernels.input(inputs, 0).requireIntegers()
      let value = try Kernels.input(inputs, 1)
      guard value.shape.elementCount == 1, let count = Shape(dimensions).elementCount else {
        throw KernelError("Fill needs a scalar value and a valid shape.")
      }
      return [
        try gather(
          [value], Array(repeating: (0, 0), count: count), dtype: value.dtype,
          shape: Shape(dimensions))
      ]
    }
    registry.add("Range", inputs: ["start", "limit", "delta"], outputs: ["output"]) { _, inputs in
      let (start, limit, delta) = (
        try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), try Kernels.input(inputs, 2)
      )
      let (a, b, d) = (
        try Kernels.doubles(start)[0], try Kernels.doubles(limit)[0], try Kernels.doubles(delta)[0]
      )
      guard d != 0 else { throw KernelError("Range needs a nonzero delta.") }
      let values = Array(stride(from: a, to: b, by: d))
      return [try Kernels.tensor(values, like: start, shape: Shape([values.count]))]
    }
    registry.add("Cast", inputs: ["x"], outputs: ["y"], fusion: .floatCast) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      guard let target = context.type("DstT") else { throw KernelError("Cast needs DstT.") }
      if case .float(let values) = x.storage, [.float32, .float16, .bfloat16].contains(target) {
        // The interpreter rounds float16 and bfloat16 results to DstT.
        return [Tensor(dtype: target, shape: x.shape, storage: .float(values))]
      }
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
        return [Tensor(dtype: target, shape: x.shape, storage: .float(doubles.map(Float.init)))]
      case .int32:
        return [Tensor(dtype: .int32, shape: x.shape, storage: .int32(doubles.map(truncated)))]
      case .int64:
        return [Tensor(dtype: .int64, shape: x.shape, storage: .int64(doubles.map(truncated)))]
      case .bool:
        return [Tensor(dtype: .bool, shape: x.shape, storage: .bool(doubles.map { $0 != 0 }))]
      default: throw KernelError("Cast to \(target) is not supported yet.")
      }
    }
  }

  /// `value` rounded toward zero, as x86-64's conversion instructions give it (and so TensorFlow
  /// on this CPU): NaN and values outside the integer type's range become its smallest value.
  static func truncated<T: FixedWidthInteger>(_ value: Double) -> T {
    T(exactly: value.rounded(.towardZero)) ?? T.min
  }

  /// The elements of a row-major array of `dimensions` with its axes reordered: axis i of the
  /// result is axis `permutation[i]` of the input.
  static func transpose<Element>(_ values: [Element], _ dimensions: [Int], _ permutation: [Int])
    -> [Element]
  {
    let strides = StridedWalk.contiguous(dimensions)
    let output = permutation.map { dimensions[$0] }
    let walk = StridedWalk(
      dimensions: output,
      strides: [StridedWalk.contiguous(output), permutation.map { strides[$0] }])
    let (length, step) = (walk.runLength, walk.runStrides[1])
    return [Element](unsafeUninitializedCapacity: values.count) { result, initialized in
      values.withUnsafeBufferPointer { values in
        guard let source = values.baseAddress, let target = result.baseAddress else { return }
        walk.forEachRun { offsets in
          let (output, input) = (target + offsets[0], source + offsets[1])
          if step == 1 {
            output.initialize(from: input, count: length)
          } else {
            for i in 0..<length { (output + i).initialize(to: input[i &* step]) }
          }
        }
      }
      initialized = values.count
    }
  }

  /// Elements picked from `inputs` by (input, index) pairs.
  static func gather(_ inputs: [Tensor], _ order: [(Int, Int)], dtype: DType, shape: Shape) throws
    -> Tensor
  {
    guard inputs.allSatisfy({ $0.dtype == inputs[0].dtype }) else {
      throw KernelError(
        "The inputs are of different types: \(inputs.map(\.dtype.description).joined(separator: ", "))."
      )
    }
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

  /// The elements of `x` at every combination of `ranges` (one index list per dimension; -1
  /// takes `fill`'s single element, zero without one).
  static func take(_ x: Tensor, ranges: [[Int]], shape: Shape, fill: Tensor? = nil) throws -> Tensor
  {
    let strides = StridedWalk.contiguous(x.shape.dimensions)
    // For each axis, the offset each output index adds, or -1 for padding.
    let offsets = ranges.enumerated().map { axis, indices in
      indices.map { $0 < 0 ? -1 : $0 * strides[axis] }
    }
    func padding<T>(_ values: (Tensor.Storage) -> [T]?, zero: T) throws -> T {
      guard let fill else { return zero }
      guard let value = values(fill.storage)?.first else {
        throw KernelError("The padding value must be a scalar of the input's type \(x.dtype).")
      }
      return value
    }
    let storage: Tensor.Storage
    switch x.storage {
    case .float(let values):
      storage = .float(
        pick(
          values, offsets,
          fill: try padding({ if case .float(let v) = $0 { v } else { nil } }, zero: 0)))
    case .double(let values):
      storage = .double(
        pick(
          values, offsets,
          fill: try padding({ if case .double(let v) = $0 { v } else { nil } }, zero: 0)))
    case .int32(let values):
      storage = .int32(
        pick(
          values, offsets,
          fill: try padding({ if case .int32(let v) = $0 { v } else { nil } }, zero: 0)))
    case .int64(let values):
      storage = .int64(
        pick(
          values, offsets,
          fill: try padding({ if case .int64(let v) = $0 { v } else { nil } }, zero: 0)))
    case .bool(let values):
      storage = .bool(
        pick(
          values, offsets,
          fill: try padding({ if case .bool(let v) = $0 { v } else { nil } }, zero: false)))
    case .string(let values):
      storage = .string(
        pick(
          values, offsets,
          fill: try padding({ if case .string(let v) = $0 { v } else { nil } }, zero: [])))
    }
    return Tensor(dtype: x.dtype, shape: shape, storage: storage)
  }

  /// The elements of `values` at the sums of one offset per axis (row-major over the offset
  /// lists), or `fill` where any of the offsets is -1.
  private static func pick<T>(_ values: [T], _ offsets: [[Int]], fill: T) -> [T] {
    let count = offsets.map(\.count).reduce(1, *)
    guard let last = offsets.last else { return values.isEmpty ? [] : [values[0]] }
    guard count > 0 else { return [] }
    return [T](unsafeUninitializedCapacity: count) { output, initialized in
      var counter = [Int](repeating: 0, count: offsets.count - 1)
      var position = 0
      while true {
        var (base, padded) = (0, false)
        for axis in counter.indices {
          let offset = offsets[axis][counter[axis]]
          padded = padded || offset < 0
          base += offset
        }
        for (i, offset) in last.enumerated() {
          (output.start + position + i).initialize(
            to: padded || offset < 0 ? fill : values[base + offset])
        }
        position += last.count
        var axis = counter.count - 1
        while axis >= 0 {
          counter[axis] += 1
          if counter[axis] < offsets[axis].count { break }
          counter[axis] = 0
          axis -= 1
        }
        if axis < 0 { break }
      }
      initialized = count
    }
  }

  /// A scalar zero of `x`'s type.
  static func zero(like x: Tensor) throws -> Tensor {
    try Kernels.tensor([0], like: x, shape: Shape([]))
  }

  /// TensorFlow's StridedSlice: an ellipsis stands for the dimensions the other entries leave
  /// out, a new axis inserts a dimension of size 1, a shrunk axis is indexed away.
  static func stridedSlice(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let x = try Kernels.input(inputs, 0)
    let begin = try Kernels.input(inputs, 1).requireIntegers()
    let end = try Kernels.input(inputs, 2).requireIntegers()
    let steps = try Kernels.input(inputs, 3).requireIntegers()
    let (beginMask, endMask, shrinkMask) = (
      context.int("begin_mask"), context.int("end_mask"), context.int("shrink_axis_mask")
    )
    let (ellipsisMask, newAxisMask) = (context.int("ellipsis_mask"), context.int("new_axis_mask"))
    guard begin.count == end.count, begin.count == steps.count else {
      throw KernelError("begin, end and strides differ in length.")
    }
    let dimensions = x.shape.dimensions
    // The dense spec: for each input dimension, the sparse entry that indexes it (nil: all of it),
    // and where new axes of size 1 go in the output.
    var entryForAxis: [Int?] = []
    var output: [Int] = []
    var outputFromAxis: [(axis: Int, newAxes: Int)] = []
    var pendingNewAxes = 0
    for entry in begin.indices {
      if ellipsisMask & (1 << entry) != 0 {
        let later = (entry + 1..<begin.count).filter { newAxisMask & (1 << $0) == 0 }.count
        let covered = Swift.max(0, dimensions.count - entryForAxis.count - later)
        entryForAxis += Array(repeating: nil, count: covered)
      } else if newAxisMask & (1 << entry) != 0 {
        pendingNewAxes += 1
        outputFromAxis.append((entryForAxis.count, pendingNewAxes))
      } else {
        entryForAxis.append(entry)
      }
    }
    guard entryForAxis.count <= dimensions.count else {
      throw KernelError("The slice has more entries than \(x.shape) has dimensions.")
    }
    entryForAxis += Array(repeating: nil, count: dimensions.count - entryForAxis.count)
    var ranges: [[Int]] = []
    for axis in dimensions.indices {
      output += Array(repeating: 1, count: outputFromAxis.filter { $0.axis == axis }.count)
      let size = dimensions[axis]
      guard let entry = entryForAxis[axis] else {
        ranges.append(Array(0..<size))
        output.append(size)
        continue
      }
      let step = steps[entry]
      guard step != 0 else { throw KernelError("A stride is zero.") }
      func clamp(_ value: Int) -> Int {
        let index = value < 0 ? value + size : value
        return step > 0
          ? Swift.min(Swift.max(index, 0), size) : Swift.min(Swift.max(index, -1), size - 1)
      }
      if shrinkMask & (1 << entry) != 0 {
        let index = begin[entry] < 0 ? begin[entry] + size : begin[entry]
        guard (0..<size).contains(index) else {
          throw KernelError("Index \(begin[entry]) is out of range for size \(size).")
        }
        ranges.append([index])
        continue
      }
      let start = beginMask & (1 << entry) != 0 ? (step > 0 ? 0 : size - 1) : clamp(begin[entry])
      let stop = endMask & (1 << entry) != 0 ? (step > 0 ? size : -1) : clamp(end[entry])
      let indices = Array(stride(from: start, to: stop, by: step))
      ranges.append(indices)
      output.append(indices.count)
    }
    output += Array(
      repeating: 1, count: outputFromAxis.filter { $0.axis == dimensions.count }.count)
    return try take(x, ranges: ranges, shape: Shape(output))
  }
}
