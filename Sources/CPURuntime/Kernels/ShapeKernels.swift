internal import GraphIR
internal import TensorCore

/// The shape family: ops that reshape, slice, join, gather, pad, fill and cast.
enum ShapeKernels {
  static func register(in registry: inout OpRegistry) {
    registerShapes(in: &registry)
    registerJoinsAndSplits(in: &registry)
    registerSelections(in: &registry)
    registerFills(in: &registry)
    registerIndexing(in: &registry)
    registerShifts(in: &registry)
  }

  /// Ops that give a tensor another shape or order of its elements: Shape, Reshape, Squeeze, ExpandDims, Transpose, BroadcastTo.
  static func registerShapes(in registry: inout OpRegistry) {
    registry.add(
      "Shape", inputs: ["input"], outputs: [.init("output", type: .index("out_type"))],
      precision: .clear
    ) { context, inputs in
      let dimensions = try Kernels.input(inputs, 0).shape.dimensions
      let shape = Shape([dimensions.count])
      return try context.type("out_type") == .int64
        ? [Tensor(dtype: .int64, shape: shape, storage: .int64(dimensions.map(Int64.init)))]
        : [Tensor(dtype: .int32, shape: shape, storage: .int32(dimensions.map(Int32.init)))]
    }
    registry.add("Rank", inputs: ["input"], outputs: [.fixed("output", .int32)], precision: .clear)
    { _, inputs in
      [
        Tensor(
          dtype: .int32, shape: Shape([]),
          storage: .int32([Int32(try Kernels.input(inputs, 0).shape.rank)]))
      ]
    }
    registry.add(
      "Size", inputs: ["input"], outputs: [.init("output", type: .index("out_type"))],
      precision: .clear
    ) { context, inputs in
      let count = try Kernels.input(inputs, 0).shape.elementCount ?? 0
      return try context.type("out_type") == .int64
        ? [Tensor(dtype: .int64, shape: Shape([]), storage: .int64([Int64(count)]))]
        : [Tensor(dtype: .int32, shape: Shape([]), storage: .int32([Int32(clamping: count)]))]
    }
    registry.add(
      "Reshape", inputs: ["tensor", .init("shape", type: .index("Tshape"))], outputs: ["output"],
      traits: [.movesElements, .sharesInput], precision: .clear
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
      "Squeeze", inputs: ["input"], outputs: ["output"], attributes: [.ints("squeeze_dims", [])],
      traits: [.movesElements, .sharesInput], precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let rank = x.shape.rank
      let axes = Set(try context.ints("squeeze_dims").map { $0 < 0 ? $0 + rank : $0 })
      let kept = x.shape.dimensions.enumerated().filter { axis, size in
        axes.isEmpty ? size != 1 : !axes.contains(axis)
      }.map(\.element)
      return [Tensor(dtype: x.dtype, shape: Shape(kept), storage: x.storage)]
    }
    registry.add(
      "ExpandDims", inputs: ["input", .init("dim", type: .index("Tdim"))], outputs: ["output"],
      traits: [.movesElements, .sharesInput], precision: .clear
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
    registry.add(
      "Transpose", inputs: ["x", .init("perm", type: .index("Tperm"))], outputs: ["y"],
      traits: .movesElements, precision: .clear
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let permutation = try Kernels.input(inputs, 1).requireIntegers()
      let dimensions = x.shape.dimensions
      guard permutation.sorted() == Array(dimensions.indices) else {
        throw KernelError("The permutation \(permutation) does not fit shape \(x.shape).")
      }
      let shape = Shape(permutation.map { dimensions[$0] })
      // A permutation that keeps the order of the dimensions larger than 1 moves nothing: the
      // identity (Tensordot's, for one), or one that only moves dimensions of 1 (a gather's
      // gradient around an embedding table's lookups).
      let moved = permutation.filter { dimensions[$0] != 1 }
      if moved == moved.sorted() {
        return [Tensor(dtype: x.dtype, shape: shape, storage: x.storage)]
      }
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
      "BroadcastTo", inputs: ["input", .init("shape", type: .index("Tidx"))], outputs: ["output"],
      traits: .movesElements, precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let target = try Kernels.input(inputs, 1).requireIntegers()
      guard target.allSatisfy({ $0 >= 0 }), target.count >= x.shape.rank,
        let broadcast = try? StridedWalk.broadcastShape([x.shape, Shape(target)]),
        broadcast.dimensions == target
      else {
        throw KernelError("Shape \(x.shape) cannot be broadcast to \(target).")
      }
      let shape = try context.allocating(target, x.dtype)
      // Dimensions added on the left and dimensions of 1 repeat element 0.
      let sizes = Array(repeating: 1, count: target.count - x.shape.rank) + x.shape.dimensions
      let ranges = zip(sizes, target).map { size, wanted in
        size == wanted ? Array(0..<wanted) : Array(repeating: 0, count: wanted)
      }
      let source = Tensor(dtype: x.dtype, shape: Shape(sizes), storage: x.storage)
      return [try take(source, ranges: ranges, shape: shape)]
    }
    registry.add(
      "EnsureShape", inputs: ["input"], outputs: ["output"],
      attributes: [OpSchema.Attribute("shape", .shape)], traits: .movesElements,
      precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let expected = try context.shape("shape")
      let dimensions = x.shape.dimensions
      guard
        expected.unknownRank
          || (expected.dimensions.count == dimensions.count
            && zip(expected.dimensions, dimensions).allSatisfy { $0 < 0 || Int($0) == $1 })
      else { throw KernelError("The shape \(x.shape) is not the expected \(expected.dimensions).") }
      return [x]
    }
    let blockSize = OpSchema.Attribute.int("block_size")
    for (op, toSpace) in [("DepthToSpace", true), ("SpaceToDepth", false)] {
      registry.add(
        op, inputs: ["input"], outputs: ["output"],
        attributes: [blockSize, .string("data_format", "NHWC")], traits: .movesElements,
        precision: .clear
      ) { context, inputs in
        try ConvolutionKernels.checkNHWC(context)
        return [
          try rearrangeBlocks(
            try Kernels.input(inputs, 0), block: try context.int("block_size"), toSpace: toSpace)
        ]
      }
    }
    let paddings = OpSchema.Argument("paddings", type: .index("Tpaddings"))
    let blockShape = OpSchema.Argument("block_shape", type: .index("Tblock_shape"))
    registry.declare(
      "SpaceToBatch", inputs: ["input", paddings], outputs: ["output"], attributes: [blockSize],
      traits: .movesElements, precision: .clear)
    // Dilated convolutions: Keras's Conv2D with a dilation rate runs as SpaceToBatchND, a
    // plain Conv2D and BatchToSpaceND.
    registry.add(
      "SpaceToBatchND", inputs: ["input", blockShape, paddings], outputs: ["output"],
      traits: .movesElements, precision: .clear
    ) { _, inputs in
      [try batchedSpace(inputs, toBatch: true)]
    }
    registry.declare(
      "BatchToSpace", inputs: ["input", .init("crops", type: .index("Tidx"))], outputs: ["output"],
      attributes: [blockSize], traits: .movesElements, precision: .clear)
    registry.add(
      "BatchToSpaceND", inputs: ["input", blockShape, .init("crops", type: .index("Tcrops"))],
      outputs: ["output"], traits: .movesElements, precision: .clear
    ) { _, inputs in
      [try batchedSpace(inputs, toBatch: false)]
    }
  }

  /// Ops that join tensors or split one: Pack, ConcatV2, Split, SplitV, Unpack.
  static func registerJoinsAndSplits(in registry: inout OpRegistry) {
    registry.add(
      "Pack", inputs: [.init("values", .number("N"))], outputs: ["output"],
      attributes: [.int("axis", 0)], traits: .movesElements, precision: .clear
    ) { context, inputs in
      guard let first = inputs.first else { throw KernelError("Pack needs inputs.") }
      guard inputs.allSatisfy({ $0.shape == first.shape && $0.dtype == first.dtype }) else {
        throw KernelError("Pack needs inputs of one shape and dtype.")
      }
      var axis = try context.int("axis")
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
      "ConcatV2", inputs: [.init("values", .number("N")), .init("axis", type: .index("Tidx"))],
      outputs: ["output"], traits: .movesElements, precision: .clear
    ) { _, inputs in
      guard inputs.count >= 2 else { throw KernelError("ConcatV2 needs values and an axis.") }
      return [try concatenated(Array(inputs.dropLast()), axis: inputs[inputs.count - 1])]
    }
    registry.add(
      "Split", inputs: [.fixed("split_dim", .int32), "value"],
      outputs: [.init("output", .number("num_split"))], traits: .movesElements, precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 1)
      let pieces = try context.int("num_split")
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
      "SplitV",
      inputs: [
        "value", .init("size_splits", type: .index("Tlen", .int64)), .fixed("split_dim", .int32),
      ],
      outputs: [.init("output", .number("num_split"))], traits: .movesElements, precision: .clear
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
      attributes: [.int("axis", 0)], traits: .movesElements, precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      var axis = try context.int("axis")
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
    // TF1's Concat: the axis comes first.
    registry.add(
      "Concat", inputs: [.fixed("concat_dim", .int32), .init("values", .number("N"))],
      outputs: ["output"], traits: .movesElements, precision: .clear
    ) { _, inputs in
      guard inputs.count >= 2 else { throw KernelError("Concat needs an axis and values.") }
      return [try concatenated(Array(inputs.dropFirst()), axis: inputs[0])]
    }
  }

  /// SpaceToBatchND (`toBatch`: the spatial dimensions, padded, are cut into blocks of
  /// `block_shape`, and each offset within a block becomes a batch of its own, offsets major)
  /// or BatchToSpaceND (the reverse, then cropped).
  static func batchedSpace(_ inputs: [Tensor], toBatch: Bool) throws -> Tensor {
    let x = try Kernels.input(inputs, 0)
    let block = try Kernels.input(inputs, 1).requireIntegers()
    let margins = try Kernels.input(inputs, 2).requireIntegers()
    let d = x.shape.dimensions
    let m = block.count
    let blocks = block.reduce(1, *)
    guard m >= 1, d.count > m, margins.count == 2 * m, block.allSatisfy({ $0 >= 1 }),
      margins.allSatisfy({ $0 >= 0 }), toBatch || d[0] % blocks == 0
    else {
      throw KernelError(
        "\(toBatch ? "SpaceToBatchND" : "BatchToSpaceND") needs block sizes and margins for "
          + "\(m) spatial dimensions of \(x.shape).")
    }
    // The output's spatial sizes; the space side's, with its margins (padding or crops), is a
    // multiple of the block.
    var output: [Int] = []
    for axis in 0..<m {
      let margin = margins[2 * axis] + margins[2 * axis + 1]
      let size = d[axis + 1]
      let full = toBatch ? size + margin : size * block[axis]
      guard full % block[axis] == 0, full >= margin else {
        throw KernelError("Spatial dimension \(axis + 1) of \(x.shape) does not fit \(block).")
      }
      output.append(toBatch ? full / block[axis] : full - margin)
    }
    let batch = toBatch ? d[0] : d[0] / blocks
    let rest = Array(d.dropFirst(m + 1))
    let inner = rest.reduce(1, *)
    let shape = [toBatch ? d[0] * blocks : batch] + output + rest
    let strides = StridedWalk.contiguous(d)
    let count = shape.reduce(1, *)
    var order: [(Int, Int)] = []
    order.reserveCapacity(count)
    for offset in 0..<count {
      var remainder = offset / inner
      var position = [Int](repeating: 0, count: m)
      for axis in (0..<m).reversed() {
        position[axis] = remainder % output[axis]
        remainder /= output[axis]
      }
      let outer = remainder  // the output batch index
      var source = offset % inner
      var inside = true
      if toBatch {
        // Output batch = (offset within the block, row-major) * batch + n.
        var within = outer / batch
        source += (outer % batch) * strides[0]
        for axis in (0..<m).reversed() {
          let step = within % block[axis]
          within /= block[axis]
          let index = position[axis] * block[axis] + step - margins[2 * axis]
          inside = inside && (0..<d[axis + 1]).contains(index)
          source += index * strides[axis + 1]
        }
      } else {
        var within = 0
        for axis in 0..<m {
          let index = position[axis] + margins[2 * axis]
          within = within * block[axis] + index % block[axis]
          source += index / block[axis] * strides[axis + 1]
        }
        source += (within * batch + outer) * strides[0]
      }
      order.append(inside ? (0, source) : (1, 0))
    }
    return try gather([x, try zero(like: x)], order, dtype: x.dtype, shape: Shape(shape))
  }

  /// `values` joined along the dimension the scalar `axis` names.
  static func concatenated(_ values: [Tensor], axis given: Tensor) throws -> Tensor {
    let rank = values[0].shape.rank
    guard var axis = try given.requireIntegers().first else { throw KernelError("No axis.") }
    if axis < 0 { axis += rank }
    guard (0..<rank).contains(axis),
      values.allSatisfy({ $0.shape.rank == rank && $0.dtype == values[0].dtype })
    else { throw KernelError("The inputs do not fit together along axis \(axis).") }
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
    return try gather(values, order, dtype: values[0].dtype, shape: Shape(dimensions))
  }

  /// DepthToSpace (`toSpace`) or SpaceToDepth of an NHWC tensor with blocks of `block` x
  /// `block`: in the deep layout, depth index (i * block + j) * C + c holds channel c of the
  /// element at row offset i and column offset j of the block.
  static func rearrangeBlocks(_ x: Tensor, block: Int, toSpace: Bool) throws -> Tensor {
    guard x.shape.rank == 4, block >= 2 else {
      throw KernelError("The input must be NHWC and block_size at least 2.")
    }
    let d = x.shape.dimensions
    let fits = toSpace ? d[3] % (block * block) == 0 : d[1] % block == 0 && d[2] % block == 0
    guard fits else {
      throw KernelError(
        toSpace
          ? "The depth \(d[3]) is not a multiple of block_size squared, \(block * block)."
          : "The height and width \(d[1])x\(d[2]) are not multiples of block_size \(block).")
    }
    // The wide layout is [N, rows, columns, channels]; the deep one
    // [N, rows / block, columns / block, block * block * channels].
    let (rows, columns, channels) =
      toSpace ? (d[1] * block, d[2] * block, d[3] / (block * block)) : (d[1], d[2], d[3])
    func deep(_ n: Int, _ row: Int, _ column: Int, _ channel: Int) -> Int {
      ((n * rows / block + row / block) * (columns / block) + column / block) * block * block
        * channels + ((row % block) * block + column % block) * channels + channel
    }
    var order: [(Int, Int)] = []
    order.reserveCapacity(x.shape.elementCount ?? 0)
    for n in 0..<d[0] {
      if toSpace {
        for row in 0..<rows {
          for column in 0..<columns {
            for channel in 0..<channels { order.append((0, deep(n, row, column, channel))) }
          }
        }
      } else {
        for h in 0..<(rows / block) {
          for w in 0..<(columns / block) {
            for k in 0..<(block * block * channels) {
              let (row, column) = (
                h * block + k / channels / block, w * block + k / channels % block
              )
              order.append((0, ((n * rows + row) * columns + column) * channels + k % channels))
            }
          }
        }
      }
    }
    let shape =
      toSpace
      ? [d[0], rows, columns, channels]
      : [d[0], rows / block, columns / block, block * block * channels]
    return try gather([x], order, dtype: x.dtype, shape: Shape(shape))
  }
}
