internal import GraphIR
internal import TensorCore

/// The shape family's ops that select elements (StridedSlice, Slice, GatherV2, SelectV2,
/// ReverseV2) and that repeat, pad, fill or convert them (Tile, Pad, PadV2, MirrorPad, Fill,
/// Range, Cast).
extension ShapeKernels {
  /// Ops that pick elements: StridedSlice, Slice, GatherV2, SelectV2.
  static func registerSelections(in registry: inout OpRegistry) {
    let gathers = OpSchema.Precision(.clear, attribute: "Tparams")
    registry.add(
      "StridedSlice",
      inputs: [
        "input", .init("begin", type: "Index"), .init("end", type: "Index"),
        .init("strides", type: "Index"),
      ],
      outputs: ["output"],
      attributes: ["begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask"]
        .map { .int($0, 0) },
      traits: .movesElements, precision: .clear
    ) { context, inputs in [try stridedSlice(context, inputs)] }
    registry.add(
      "StridedSliceGrad",
      inputs: [
        .init("shape", type: "Index"), .init("begin", type: "Index"), .init("end", type: "Index"),
        .init("strides", type: "Index"), "dy",
      ],
      outputs: ["output"],
      attributes: ["begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask"]
        .map { .int($0, 0) }
    ) { context, inputs in [try stridedSliceGradient(context, inputs)] }
    registry.add(
      "Slice", inputs: ["input", .init("begin", type: "Index"), .init("size", type: "Index")],
      outputs: ["output"], traits: .movesElements, precision: .clear
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
      "GatherV2",
      inputs: [
        .init("params", type: "Tparams"), .init("indices", type: "Tindices"),
        .init("axis", type: "Taxis"),
      ],
      outputs: [.init("output", type: "Tparams")], attributes: [.int("batch_dims", 0)],
      traits: .movesElements, precision: gathers
    ) { context, inputs in
      guard let axis = try Kernels.input(inputs, 2).requireIntegers().first else {
        throw KernelError("No axis.")
      }
      return [
        try gathered(
          try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), axis: axis,
          batchDimensions: try context.int("batch_dims"), limits: context.limits)
      ]
    }
    let selected: [OpSchema.Argument] = [.fixed("condition", .bool), "t", "e"]
    registry.add(
      "SelectV2", inputs: selected, outputs: ["output"], traits: .movesElements, precision: .clear
    ) { context, inputs in
      [
        try select(
          try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), try Kernels.input(inputs, 2),
          limits: context.limits)
      ]
    }
    // TF1's Select: a vector condition picks whole rows (along the first dimension).
    registry.add(
      "Select", inputs: selected, outputs: ["output"], traits: .movesElements, precision: .clear
    ) { context, inputs in
      var condition = try Kernels.input(inputs, 0)
      let (a, b) = (try Kernels.input(inputs, 1), try Kernels.input(inputs, 2))
      guard a.shape == b.shape, condition.shape == a.shape || condition.shape.rank <= 1 else {
        throw KernelError("Select needs t and e of one shape, and a condition of it or a vector.")
      }
      if condition.shape.rank == 1 && a.shape.rank > 1 {
        condition.shape = Shape(
          condition.shape.dimensions + Array(repeating: 1, count: a.shape.rank - 1))
      }
      return [try select(condition, a, b, limits: context.limits)]
    }
    let reversed: [(String, OpSchema.Argument)] = [
      ("ReverseV2", .init("axis", type: .index("Tidx"))), ("Reverse", .fixed("dims", .bool)),
    ]
    for (op, axes) in reversed {
      registry.add(
        op, inputs: ["tensor", axes], outputs: ["output"], traits: .movesElements,
        precision: .clear
      ) { _, inputs in
        let x = try Kernels.input(inputs, 0)
        let rank = x.shape.rank
        let given = try Kernels.input(inputs, 1)
        // ReverseV2 lists the axes; Reverse flags each dimension.
        let axes: Set<Int> =
          if case .bool(let flags) = given.storage {
            Set(flags.indices.filter { flags[$0] })
          } else {
            Set(try given.requireIntegers().map { $0 < 0 ? $0 + rank : $0 })
          }
        guard axes.allSatisfy({ (0..<rank).contains($0) }) else {
          throw KernelError("A reversed axis is out of range for \(x.shape).")
        }
        let ranges = x.shape.dimensions.enumerated().map { axis, size in
          axes.contains(axis) ? Array((0..<size).reversed()) : Array(0..<size)
        }
        return [try take(x, ranges: ranges, shape: x.shape)]
      }
    }
  }

  /// The slices of `params` along `axis` that `indicesTensor` names, in its shape. With
  /// `batchDimensions` b, the first b dimensions of both are a batch: each batch entry gathers
  /// from its own params with its own indices.
  static func gathered(
    _ params: Tensor, _ indicesTensor: Tensor, axis given: Int, batchDimensions: Int = 0,
    limits: ResourceLimits
  ) throws -> Tensor {
    let indices = try indicesTensor.requireIntegers()
    let rank = params.shape.rank
    let axis = given < 0 ? given + rank : given
    let batch = batchDimensions < 0 ? batchDimensions + indicesTensor.shape.rank : batchDimensions
    let dimensions = params.shape.dimensions
    guard (0..<rank).contains(axis), (0...axis).contains(batch),
      batch <= indicesTensor.shape.rank,
      Array(dimensions.prefix(batch)) == Array(indicesTensor.shape.dimensions.prefix(batch))
    else {
      throw KernelError(
        "Axis \(given) and batch_dims \(batchDimensions) do not fit params \(params.shape) and "
          + "indices \(indicesTensor.shape).")
    }
    let batches = dimensions.prefix(batch).reduce(1, *)
    // Per batch entry: `outer` rows before the axis, `perBatch` indices, `inner` after it.
    let outer = dimensions[batch..<axis].reduce(1, *)
    let inner = dimensions.dropFirst(axis + 1).reduce(1, *)
    let perBatch = indices.count / Swift.max(batches, 1)
    if let index = indices.first(where: { !(0..<dimensions[axis]).contains($0) }) {
      throw KernelError("Index \(index) is outside [0, \(dimensions[axis])).")
    }
    let shape = Shape(
      Array(dimensions.prefix(axis)) + indicesTensor.shape.dimensions.dropFirst(batch)
        + Array(dimensions.dropFirst(axis + 1)))
    if let problem = limits.problem(creating: shape, of: params.dtype) {
      throw KernelError(code: .limitExceeded, "The gathered output: \(problem).")
    }
    var starts: [Int] = []
    starts.reserveCapacity(batches * outer * perBatch)
    for b in 0..<batches {
      for o in 0..<outer {
        for i in 0..<perBatch {
          starts.append(((b * outer + o) * dimensions[axis] + indices[b * perBatch + i]) * inner)
        }
      }
    }
    // Float rows (an embedding lookup) are copied whole.
    if case .float(let values) = params.storage {
      var result: [Float] = []
      result.reserveCapacity(starts.count * inner)
      for start in starts { result.append(contentsOf: values[start..<(start + inner)]) }
      return Tensor(dtype: params.dtype, shape: shape, storage: .float(result))
    }
    let order = starts.flatMap { start in (0..<inner).map { (0, start + $0) } }
    return try gather([params], order, dtype: params.dtype, shape: shape)
  }

  /// Ops that repeat, pad, fill or convert elements: Tile, Pad, PadV2, Fill, Range, Cast.
  static func registerFills(in registry: inout OpRegistry) {
    registry.add(
      "Tile", inputs: ["input", .init("multiples", type: .index("Tmultiples"))],
      outputs: ["output"], traits: .movesElements, precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let multiples = try Kernels.input(inputs, 1).requireIntegers()
      guard multiples.count == x.shape.rank, multiples.allSatisfy({ $0 >= 0 }) else {
        throw KernelError("Tile needs one multiple per dimension.")
      }
      _ = try context.allocating(
        try zip(x.shape.dimensions, multiples).map(Kernels.product), x.dtype)
      let ranges = zip(x.shape.dimensions, multiples).map { size, times in
        (0..<(size * times)).map { $0 % size }
      }
      return [try take(x, ranges: ranges, shape: Shape(ranges.map(\.count)))]
    }
    let paddings = OpSchema.Argument("paddings", type: .index("Tpaddings"))
    let pads: [(String, [OpSchema.Argument], OpSchema.Traits)] = [
      ("Pad", ["input", paddings], .movesElements),
      ("PadV2", ["input", paddings, "constant_values"], []),
    ]
    for (op, arguments, traits) in pads {
      registry.add(
        op, inputs: arguments, outputs: ["output"], traits: traits, precision: .clear
      ) { context, inputs in
        let x = try Kernels.input(inputs, 0)
        let paddings = try Kernels.input(inputs, 1).requireIntegers()
        guard paddings.count == 2 * x.shape.rank, paddings.allSatisfy({ $0 >= 0 }) else {
          throw KernelError("Pad needs two paddings per dimension.")
        }
        _ = try context.allocating(
          try x.shape.dimensions.enumerated().map { axis, size in
            try Kernels.sum(Kernels.sum(paddings[2 * axis], size), paddings[2 * axis + 1])
          }, x.dtype)
        let fill = inputs.count > 2 ? inputs[2] : try zero(like: x)
        // Index -1 marks a padding element, taken from `fill`.
        let ranges = x.shape.dimensions.enumerated().map { axis, size in
          Array(repeating: -1, count: paddings[2 * axis]) + Array(0..<size)
            + Array(repeating: -1, count: paddings[2 * axis + 1])
        }
        return [try take(x, ranges: ranges, shape: Shape(ranges.map(\.count)), fill: fill)]
      }
    }
    registry.add(
      "Fill", inputs: [.init("dims", type: .index("index_type")), "value"], outputs: ["output"],
      precision: .clear
    ) { context, inputs in
      let dimensions = try Kernels.input(inputs, 0).requireIntegers()
      let value = try Kernels.input(inputs, 1)
      guard value.shape.elementCount == 1 else {
        throw KernelError("Fill needs a scalar value.")
      }
      guard let count = try context.allocating(dimensions, value.dtype).elementCount else {
        throw KernelError("Fill needs a valid shape, got \(dimensions).")
      }
      return [
        try gather(
          [value], Array(repeating: (0, 0), count: count), dtype: value.dtype,
          shape: Shape(dimensions))
      ]
    }
    registry.add(
      "Range", inputs: ["start", "limit", "delta"].map { .init($0, type: .index("Tidx")) },
      outputs: [.init("output", type: .index("Tidx"))]
    ) { context, inputs in
      let (start, limit, delta) = (
        try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), try Kernels.input(inputs, 2)
      )
      let (a, b, d) = (
        try Kernels.doubles(start)[0], try Kernels.doubles(limit)[0], try Kernels.doubles(delta)[0]
      )
      guard d != 0, a.isFinite, b.isFinite, d.isFinite else {
        throw KernelError("Range needs finite bounds and a nonzero delta.")
      }
      let steps = Swift.max(0, ((b - a) / d).rounded(.up))
      _ = try context.allocating([steps < 0x1p62 ? Int(steps) : -1], start.dtype)
      let values = Array(stride(from: a, to: b, by: d))
      return [try Kernels.tensor(values, like: start, shape: Shape([values.count]))]
    }
    registry.add(
      "Cast", inputs: [.init("x", type: "SrcT")], outputs: [.init("y", type: "DstT")],
      fusion: .floatCast
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let target = try context.type("DstT")
      if case .float(let values) = x.storage, [.float32, .float16, .bfloat16].contains(target) {
        // The interpreter rounds float16 and bfloat16 results to DstT.
        return [Tensor(dtype: target, shape: x.shape, storage: .float(values))]
      }
      guard x.dtype != .string else { throw KernelError("Cast from strings is not supported.") }
      let doubles = try Kernels.doubles(x)
      switch target {
      case .float32, .float16, .bfloat16:
        return [Tensor(dtype: target, shape: x.shape, storage: .float(doubles.map(Float.init)))]
      case .float64:
        return [Tensor(dtype: .float64, shape: x.shape, storage: .double(doubles))]
      case .int32:
        return [Tensor(dtype: .int32, shape: x.shape, storage: .int32(doubles.map(truncated)))]
      case .int64:
        return [Tensor(dtype: .int64, shape: x.shape, storage: .int64(doubles.map(truncated)))]
      case .bool:
        return [Tensor(dtype: .bool, shape: x.shape, storage: .bool(doubles.map { $0 != 0 }))]
      case _ where target.smallIntegerRange != nil:
        // Truncated toward zero, then wrapped into the type as C's conversions wrap.
        return [
          Tensor(
            dtype: target, shape: x.shape,
            storage: .int32(doubles.map { target.wrapping(truncated($0.isNaN ? 0 : $0)) }))
        ]
      default: throw KernelError("Cast to \(target) is not supported yet.")
      }
    }
    registry.add(
      "MirrorPad", inputs: ["input", paddings], outputs: ["output"],
      attributes: [.string("mode")], traits: .movesElements, precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let ranges = try mirrorRanges(
        context, dimensions: x.shape.dimensions,
        paddings: try Kernels.input(inputs, 1).requireIntegers())
      return [try take(x, ranges: ranges, shape: Shape(ranges.map(\.count)))]
    }
    // The gradient: each padded element's gradient added to the element it mirrors.
    registry.add(
      "MirrorPadGrad", inputs: ["input", paddings], outputs: ["output"],
      attributes: [.string("mode")]
    ) { context, inputs in
      let gradient = try Kernels.input(inputs, 0)
      let paddings = try Kernels.input(inputs, 1).requireIntegers()
      let padded = gradient.shape.dimensions
      guard paddings.count == 2 * padded.count else {
        throw KernelError("MirrorPadGrad needs two paddings per dimension.")
      }
      let dimensions = padded.indices.map { padded[$0] - paddings[2 * $0] - paddings[2 * $0 + 1] }
      let ranges = try mirrorRanges(context, dimensions: dimensions, paddings: paddings)
      let values = try gradient.requireFloats()
      // Each padded position's offset in the result, accumulated axis by axis.
      let strides = StridedWalk.contiguous(dimensions)
      var offsets = [0]
      for (axis, range) in ranges.enumerated() {
        offsets = offsets.flatMap { base in range.map { base + $0 * strides[axis] } }
      }
      var result = [Float](repeating: 0, count: Shape(dimensions).elementCount ?? 0)
      for (value, offset) in zip(values, offsets) { result[offset] += value }
      return [Tensor(dtype: gradient.dtype, shape: Shape(dimensions), storage: .float(result))]
    }
  }

  /// For each dimension of a tensor of `dimensions` mirror-padded by `paddings` (the context's
  /// `mode`: REFLECT mirrors about the edge element, SYMMETRIC about the edge itself), the
  /// element each padded position takes.
  static func mirrorRanges(_ context: KernelContext, dimensions: [Int], paddings: [Int]) throws
    -> [[Int]]
  {
    let mode = try context.string("mode")
    let edge = mode == "REFLECT" ? 1 : 0
    let fits =
      paddings.count == 2 * dimensions.count
      && dimensions.indices.allSatisfy { axis in
        let (before, after) = (paddings[2 * axis], paddings[2 * axis + 1])
        return before >= 0 && after >= 0 && Swift.max(before, after) <= dimensions[axis] - edge
      }
    guard ["REFLECT", "SYMMETRIC"].contains(mode), fits else {
      throw KernelError(
        "MirrorPad needs mode REFLECT or SYMMETRIC and two paddings per dimension, each at "
          + "most the size (less one for REFLECT).")
    }
    return dimensions.enumerated().map { axis, size -> [Int] in
      (-paddings[2 * axis]..<(size + paddings[2 * axis + 1])).map { index -> Int in
        if index < 0 { return -index - 1 + edge }
        return index >= size ? 2 * size - 1 - edge - index : index
      }
    }
  }

  /// `t` where `condition` holds, else `e`, the three broadcast together.
  static func select(_ condition: Tensor, _ a: Tensor, _ b: Tensor, limits: ResourceLimits)
    throws -> Tensor
  {
    guard case .bool(let flags) = condition.storage, a.dtype == b.dtype else {
      throw KernelError("Select needs a bool condition and two values of one dtype.")
    }
    let (shape, walk) = try StridedWalk.broadcast(
      [condition.shape, a.shape, b.shape], of: a.dtype, within: limits)
    // One choice for every element (a scalar condition: a step kept or skipped): the operand
    // itself, when it has the result's shape.
    if let first = flags.first, flags.allSatisfy({ $0 == first }) {
      let picked = first ? a : b
      if picked.shape == shape { return picked }
    }
    let indices = walk.indices()
    let order = (0..<(shape.elementCount ?? 0)).map {
      flags[indices[0][$0]] ? (0, indices[1][$0]) : (1, indices[2][$0])
    }
    return try gather([a, b], order, dtype: a.dtype, shape: shape)
  }

  /// TensorFlow's StridedSlice: an ellipsis stands for the dimensions the other entries leave
  /// out, a new axis inserts a dimension of size 1, a shrunk axis is indexed away.
  static func stridedSlice(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let x = try Kernels.input(inputs, 0)
    let (ranges, shape) = try sliceRanges(context, inputs, dimensions: x.shape.dimensions)
    return try take(x, ranges: ranges, shape: shape)
  }

  /// StridedSliceGrad(shape, begin, end, strides, dy): the gradient of a StridedSlice of a
  /// tensor of `shape`, `dy` put back where the slice took its elements, zeros elsewhere.
  static func stridedSliceGradient(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let dimensions = try Kernels.input(inputs, 0).requireIntegers()
    let gradient = try Kernels.input(inputs, 4)
    guard let count = try context.allocating(dimensions, gradient.dtype).elementCount else {
      throw KernelError("StridedSliceGrad needs a valid shape, got \(dimensions).")
    }
    let (ranges, shape) = try sliceRanges(
      context, Array(inputs[0...3]), dimensions: dimensions)
    let values = try gradient.requireFloats()
    guard shape.elementCount == values.count else {
      throw KernelError("The gradient \(gradient.shape) is not the slice's shape \(shape).")
    }
    let strides = StridedWalk.contiguous(dimensions)
    var result = [Float](repeating: 0, count: count)
    var position = [Int](repeating: 0, count: ranges.count)
    let counts = ranges.map(\.count)
    for value in values {
      var offset = 0
      for axis in ranges.indices { offset += ranges[axis][position[axis]] * strides[axis] }
      result[offset] += value
      _ = StridedWalk.advance(&position, counts: counts)
    }
    return Tensor(dtype: gradient.dtype, shape: Shape(dimensions), storage: .float(result))
  }

  /// For a StridedSlice (inputs: the sliced tensor or its shape, begin, end, strides) of a
  /// tensor of `dimensions`, the indices it takes along each dimension and the output's shape.
  private static func sliceRanges(
    _ context: KernelContext, _ inputs: [Tensor], dimensions: [Int]
  ) throws -> (ranges: [[Int]], shape: Shape) {
    let begin = try Kernels.input(inputs, 1).requireIntegers()
    let end = try Kernels.input(inputs, 2).requireIntegers()
    let steps = try Kernels.input(inputs, 3).requireIntegers()
    let (beginMask, endMask, shrinkMask) = (
      try context.int("begin_mask"), try context.int("end_mask"),
      try context.int("shrink_axis_mask")
    )
    let (ellipsisMask, newAxisMask) = (
      try context.int("ellipsis_mask"), try context.int("new_axis_mask")
    )
    guard begin.count == end.count, begin.count == steps.count else {
      throw KernelError("begin, end and strides differ in length.")
    }
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
      throw KernelError("The slice has more entries than \(dimensions) has dimensions.")
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
    return (ranges, Shape(output))
  }
}
