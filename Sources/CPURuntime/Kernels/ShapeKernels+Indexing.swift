internal import GraphIR
internal import TensorCore

/// The shape family's ops that address elements by computed indices: GatherNd, Gather,
/// ScatterNd, Where, OneHot, TopKV2, ReverseSequence, MatrixBandPart, Roll,
/// XlaDynamicUpdateSlice.
extension ShapeKernels {
  static func registerIndexing(in registry: inout OpRegistry) {
    let gathers = OpSchema.Precision(.clear, attribute: "Tparams")
    let gatherArguments: [OpSchema.Argument] = [
      .init("params", type: "Tparams"), .init("indices", type: "Tindices"),
    ]
    registry.add(
      "GatherNd", inputs: gatherArguments, outputs: [.init("output", type: "Tparams")],
      traits: .movesElements, precision: gathers
    ) { context, inputs in
      let (params, indices) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
      let (slices, inner) = try sliceOffsets(of: indices, into: params.shape, op: "GatherNd")
      let shape = try context.allocating(
        Array(indices.shape.dimensions.dropLast())
          + params.shape.dimensions.dropFirst(indices.shape.dimensions.last ?? 0), params.dtype)
      let order = slices.flatMap { start in (0..<inner).map { (0, start + $0) } }
      return [try gather([params], order, dtype: params.dtype, shape: shape)]
    }
    // TF1's Gather: GatherV2 along axis 0.
    registry.add(
      "Gather", inputs: gatherArguments, outputs: [.init("output", type: "Tparams")],
      attributes: [.bool("validate_indices", true)], traits: .movesElements, precision: gathers
    ) { context, inputs in
      [
        try gathered(
          try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), axis: 0,
          limits: context.limits)
      ]
    }
    // Not in TensorFlow's float16 lists: it stays float32 (the oneDNN bfloat16 list
    // has it clear).
    registry.add(
      "ScatterNd",
      inputs: [.init("indices", type: "Tindices"), "updates", .init("shape", type: "Tindices")],
      outputs: ["output"]
    ) { context, inputs in
      let (indices, updates) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
      let shape = try context.allocating(
        try Kernels.input(inputs, 2).requireIntegers(), updates.dtype)
      let (slices, inner) = try sliceOffsets(of: indices, into: shape, op: "ScatterNd")
      guard let count = shape.elementCount, updates.shape.elementCount == slices.count * inner
      else {
        throw KernelError("ScatterNd's updates \(updates.shape) do not fit \(indices.shape).")
      }
      // Updates at one index add up.
      var values = [Double](repeating: 0, count: count)
      let given = try Kernels.doubles(updates)
      for (slice, start) in slices.enumerated() {
        for j in 0..<inner { values[start + j] += given[slice * inner + j] }
      }
      return [try Kernels.tensor(values, like: updates, shape: shape)]
    }
    // The coordinates of the true (nonzero) elements, in row-major order: [count, rank] int64.
    registry.add(
      "Where", inputs: [.init("input", type: .attribute("T", defaultType: .bool))],
      outputs: [.fixed("index", .int64)], precision: .clear
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let truths = try Kernels.doubles(x).map { $0 != 0 }
      let strides = StridedWalk.contiguous(x.shape.dimensions)
      var coordinates: [Int64] = []
      var count = 0
      for (offset, truth) in truths.enumerated() where truth {
        count += 1
        for (axis, stride) in strides.enumerated() {
          coordinates.append(Int64(offset / stride % x.shape.dimensions[axis]))
        }
      }
      let shape = Shape([count, x.shape.rank])
      return [Tensor(dtype: .int64, shape: shape, storage: .int64(coordinates))]
    }
    registry.add(
      "OneHot",
      inputs: [
        .init("indices", type: .index("TI", .int64)), .fixed("depth", .int32), "on_value",
        "off_value",
      ],
      outputs: ["output"], attributes: [.int("axis", -1)], precision: .clear
    ) { context, inputs in
      let indices = try Kernels.input(inputs, 0)
      guard let depth = try Kernels.input(inputs, 1).requireIntegers().first, depth >= 0 else {
        throw KernelError("OneHot needs a non-negative scalar depth.")
      }
      let (on, off) = (try Kernels.input(inputs, 2), try Kernels.input(inputs, 3))
      var axis = try context.int("axis")
      let rank = indices.shape.rank
      if axis == -1 { axis = rank }
      guard (0...rank).contains(axis), on.shape.rank == 0, off.shape.rank == 0 else {
        throw KernelError("OneHot needs scalar on and off values and an axis in [-1, \(rank)].")
      }
      let values = try indices.requireIntegers()
      let dimensions = indices.shape.dimensions
      var outputDimensions = dimensions
      outputDimensions.insert(depth, at: axis)
      let shape = try context.allocating(outputDimensions, on.dtype)
      let (outer, inner) = (
        dimensions.prefix(axis).reduce(1, *), dimensions.dropFirst(axis).reduce(1, *)
      )
      var order: [(Int, Int)] = []
      order.reserveCapacity(outer * depth * inner)
      for o in 0..<outer {
        for d in 0..<depth {
          for i in 0..<inner { order.append(values[o * inner + i] == d ? (0, 0) : (1, 0)) }
        }
      }
      return [try gather([on, off], order, dtype: on.dtype, shape: shape)]
    }
    registry.add(
      "TopKV2", inputs: ["input", .init("k", type: .index("Tk"))],
      outputs: ["values", .init("indices", type: .index("index_type"))],
      attributes: [.bool("sorted", true)], traits: .movesElements, precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      guard let k = try Kernels.input(inputs, 1).requireIntegers().first,
        let width = x.shape.dimensions.last, (0...width).contains(k)
      else { throw KernelError("TopKV2 needs a k in [0, the last dimension of \(x.shape)].") }
      let values = try Kernels.doubles(x)
      let rows = width == 0 ? 0 : values.count / width
      var picked: [Int] = []
      picked.reserveCapacity(rows * k)
      for row in 0..<rows {
        // Largest first; of equal values, the lower index first, as TensorFlow orders them.
        let order = (0..<width).sorted { a, b in
          let (x, y) = (values[row * width + a], values[row * width + b])
          return x > y || (x == y && a < b)
        }
        picked += order.prefix(k).map { row * width + $0 }
      }
      let shape = Shape(Array(x.shape.dimensions.dropLast()) + [k])
      let positions = picked.map { $0 % Swift.max(width, 1) }
      let indices =
        try context.type("index_type") == .int64
        ? Tensor(dtype: .int64, shape: shape, storage: .int64(positions.map(Int64.init)))
        : Tensor(dtype: .int32, shape: shape, storage: .int32(positions.map(Int32.init)))
      return [try gather([x], picked.map { (0, $0) }, dtype: x.dtype, shape: shape), indices]
    }
    registry.add(
      "ReverseSequence", inputs: ["input", .init("seq_lengths", type: .index("Tlen", .int64))],
      outputs: ["output"], attributes: [.int("seq_dim"), .int("batch_dim", 0)],
      traits: .movesElements, precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let lengths = try Kernels.input(inputs, 1).requireIntegers()
      let (sequence, batch) = (try context.int("seq_dim"), try context.int("batch_dim"))
      let dimensions = x.shape.dimensions
      guard sequence != batch, dimensions.indices.contains(sequence),
        dimensions.indices.contains(batch), lengths.count == dimensions[batch],
        lengths.allSatisfy({ (0...dimensions[sequence]).contains($0) })
      else {
        throw KernelError(
          "ReverseSequence needs distinct seq_dim and batch_dim of \(x.shape) and one length in "
            + "[0, \(dimensions.indices.contains(sequence) ? dimensions[sequence] : 0)] per batch entry."
        )
      }
      let strides = StridedWalk.contiguous(dimensions)
      let order = (0..<(x.shape.elementCount ?? 0)).map { offset -> (Int, Int) in
        let step = offset / strides[sequence] % dimensions[sequence]
        let length = lengths[offset / strides[batch] % dimensions[batch]]
        guard step < length else { return (0, offset) }
        return (0, offset + (length - 1 - 2 * step) * strides[sequence])
      }
      return [try gather([x], order, dtype: x.dtype, shape: x.shape)]
    }
    registry.add(
      "MatrixBandPart",
      inputs: [
        "input", .init("num_lower", type: .index("Tindex", .int64)),
        .init("num_upper", type: .index("Tindex", .int64)),
      ],
      outputs: ["band"], traits: .movesElements
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      guard x.shape.rank >= 2, let lower = try Kernels.input(inputs, 1).requireIntegers().first,
        let upper = try Kernels.input(inputs, 2).requireIntegers().first
      else { throw KernelError("MatrixBandPart needs matrices and scalar band widths.") }
      let (rows, columns) = (
        x.shape.dimensions[x.shape.rank - 2], x.shape.dimensions[x.shape.rank - 1]
      )
      let order = (0..<(x.shape.elementCount ?? 0)).map { offset -> (Int, Int) in
        let (row, column) = (offset / columns % rows, offset % columns)
        let inside = (lower < 0 || row - column <= lower) && (upper < 0 || column - row <= upper)
        return inside ? (0, offset) : (1, 0)
      }
      return [try gather([x, try zero(like: x)], order, dtype: x.dtype, shape: x.shape)]
    }
  }

  /// Roll and XlaDynamicUpdateSlice (which Keras's `ops.slice_update` emits on TensorFlow).
  static func registerShifts(in registry: inout OpRegistry) {
    // Neither is in TensorFlow's lists: they stay float32.
    registry.add(
      "Roll",
      inputs: ["input", .init("shift", type: "Tshift"), .init("axis", type: "Taxis")],
      outputs: ["output"], traits: .movesElements
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let shifts = try Kernels.input(inputs, 1).requireIntegers()
      let axes = try Kernels.input(inputs, 2).requireIntegers()
      let rank = x.shape.rank
      guard shifts.count == axes.count, axes.allSatisfy({ (-rank..<rank).contains($0) }) else {
        throw KernelError("Roll needs one shift per axis, each axis within rank \(rank).")
      }
      // Shifts along one axis add up.
      var total = [Int](repeating: 0, count: rank)
      for (shift, axis) in zip(shifts, axes) { total[(axis + rank) % rank] += shift }
      let ranges = x.shape.dimensions.enumerated().map { axis, size in
        (0..<size).map { index in ((index - total[axis]) % size + size) % size }
      }
      return [try take(x, ranges: ranges, shape: x.shape)]
    }
    registry.add(
      "XlaDynamicUpdateSlice",
      inputs: ["input", "update", .init("indices", type: "Tindices")], outputs: ["output"],
      traits: .movesElements
    ) { _, inputs in
      let (x, update) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
      let starts = try Kernels.input(inputs, 2).requireIntegers()
      let (dimensions, sizes) = (x.shape.dimensions, update.shape.dimensions)
      guard starts.count == dimensions.count, sizes.count == dimensions.count,
        zip(sizes, dimensions).allSatisfy({ $0 <= $1 })
      else {
        throw KernelError(
          "XlaDynamicUpdateSlice needs an update \(update.shape) that fits \(x.shape) and one "
            + "start index per dimension.")
      }
      // As XLA: each start is clamped so that the update lies inside the input.
      let clamped = dimensions.indices.map {
        Swift.min(Swift.max(starts[$0], 0), dimensions[$0] - sizes[$0])
      }
      let strides = (StridedWalk.contiguous(dimensions), StridedWalk.contiguous(sizes))
      let order = (0..<(x.shape.elementCount ?? 0)).map { offset -> (Int, Int) in
        var inner = 0
        for axis in dimensions.indices {
          let index = offset / strides.0[axis] % dimensions[axis] - clamped[axis]
          guard (0..<sizes[axis]).contains(index) else { return (0, offset) }
          inner += index * strides.1[axis]
        }
        return (1, inner)
      }
      return [try gather([x, update], order, dtype: x.dtype, shape: x.shape)]
    }
  }

  /// For each index tuple (the last dimension of `indices`) into `shape`, the offset of the slice
  /// it names, and the slice's size (the dimensions the tuple leaves out).
  static func sliceOffsets(of indices: Tensor, into shape: Shape, op: String) throws -> (
    offsets: [Int], inner: Int
  ) {
    guard let depth = indices.shape.dimensions.last, depth <= shape.rank else {
      throw KernelError("\(op)'s indices \(indices.shape) do not index \(shape).")
    }
    let values = try indices.requireIntegers()
    let dimensions = shape.dimensions
    let strides = StridedWalk.contiguous(dimensions)
    let inner = dimensions.dropFirst(depth).reduce(1, *)
    let count = depth == 0 ? (indices.shape.elementCount ?? 0) : values.count / depth
    let offsets = try (0..<count).map { tuple -> Int in
      try (0..<depth).reduce(0) { offset, axis in
        let index = values[tuple * depth + axis]
        guard (0..<dimensions[axis]).contains(index) else {
          throw KernelError("\(op): index \(index) is outside [0, \(dimensions[axis])).")
        }
        return offset + index * strides[axis]
      }
    }
    return (offsets, inner)
  }
}
