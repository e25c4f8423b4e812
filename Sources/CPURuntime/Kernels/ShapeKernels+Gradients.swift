internal import GraphIR
internal import TensorCore

/// The shape family's gradients (TensorFlow's `array_grad.py`, `math_grad.py`): ops that only
/// reshape give the gradient back in the input's shape; a cast between float types casts it
/// back.
extension ShapeKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    registry.differentiate("Roll") { builder, forward throws(GraphError) in
      // Rolled back by the opposite shift (`manip_grad.py`).
      let shift = builder.math(
        "Neg", forward.inputs[1], type: forward.node.type("Tshift") ?? .int32)
      var attributes = GradientBuilder.attributes(["Tshift", "Taxis"], of: forward)
      attributes["Tshift"] = forward.node.attributes["Tshift"] ?? .type(.int32)
      return [
        builder.add("Roll", [try forward.gradient(), shift, forward.inputs[2]], attributes), nil,
        nil,
      ]
    }
    registry.differentiate("ReverseSequence") { builder, forward throws(GraphError) in
      // Reversing the same prefixes again puts each element back (`array_grad.py`).
      [
        builder.add(
          "ReverseSequence", [try forward.gradient(), forward.inputs[1]],
          GradientBuilder.attributes(["seq_dim", "batch_dim", "Tlen"], of: forward)), nil,
      ]
    }
    // Each moves elements the way the other moves them back (`array_grad.py`).
    for (op, inverse) in [
      ("SpaceToBatchND", "BatchToSpaceND"), ("BatchToSpaceND", "SpaceToBatchND"),
    ] {
      registry.differentiate(op) { builder, forward throws(GraphError) in
        var attributes = GradientBuilder.attributes(["Tblock_shape"], of: forward)
        let margins = op == "SpaceToBatchND" ? "Tpaddings" : "Tcrops"
        attributes[inverse == "SpaceToBatchND" ? "Tpaddings" : "Tcrops"] =
          forward.node.attributes[margins] ?? .type(.int32)
        return [
          builder.add(
            inverse, [try forward.gradient(), forward.inputs[1], forward.inputs[2]], attributes),
          nil, nil,
        ]
      }
    }
    registry.differentiate("Reshape", "Squeeze", "ExpandDims") {
      builder, forward throws(GraphError) in
      let g = try forward.gradient()
      return [builder.reshape(g, like: forward.inputs[0], type: forward.type)]
        + forward.inputs.dropFirst().map { _ in nil }
    }
    registry.differentiate("StridedSlice") { builder, forward throws(GraphError) in
      let (x, g, type) = (forward.inputs[0], try forward.gradient(), forward.type)
      let index = forward.node.type("Index") ?? .int32
      var attributes = forward.node.attributes.filter { $0.key.hasSuffix("_mask") }
      attributes["T"] = .type(type)
      attributes["Index"] = .type(index)
      let shape = builder.add("Shape", [x], ["T": .type(type), "out_type": .type(index)])
      return [
        builder.add(
          "StridedSliceGrad", [shape] + Array(forward.inputs[1...3]) + [g], attributes),
        nil, nil, nil,
      ]
    }
    registry.differentiate("ConcatV2") { builder, forward throws(GraphError) in
      // The gradient split back into the pieces, each as long along the axis as its input.
      let (g, type) = (try forward.gradient(), forward.type)
      let pieces = Array(forward.inputs.dropLast())
      let given = forward.inputs[forward.inputs.count - 1]
      let axisType = forward.node.type("Tidx") ?? .int32
      let cast =
        builder.cast(given, from: axisType, to: .int32)
      // A negative axis counts from the end.
      let rank = builder.add("Rank", [pieces[0]], ["T": .type(type)])
      let axis = builder.math("FloorMod", cast, rank, type: .int32)
      let sizes = pieces.map { piece in
        builder.add(
          "GatherV2", [builder.shape(piece, type), axis, builder.integer(0)],
          [
            "Tparams": .type(.int32), "Tindices": .type(.int32), "Taxis": .type(.int32),
            "batch_dims": .int(0),
          ])
      }
      let lengths = builder.add(
        "Pack", sizes, ["T": .type(.int32), "N": .int(Int64(sizes.count)), "axis": .int(0)])
      let split = builder.node(
        "SplitV", [g, lengths, axis],
        ["T": .type(type), "Tlen": .type(.int32), "num_split": .int(Int64(pieces.count))])
      return pieces.indices.map { builder.output(split, $0) } + [nil]
    }
    registry.differentiate("MirrorPad") { builder, forward throws(GraphError) in
      [
        builder.add(
          "MirrorPadGrad", [try forward.gradient(), forward.inputs[1]],
          GradientBuilder.attributes(["Tpaddings", "mode"], of: forward)), nil,
      ]
    }
    registry.differentiate("Pad", "PadV2") { builder, forward throws(GraphError) in
      // The gradient's middle: from each dimension's leading padding, the input's size.
      let (x, paddings, type) = (forward.inputs[0], forward.inputs[1], forward.type)
      let padType = forward.node.type("Tpaddings") ?? .int32
      let leading = builder.slice(
        paddings, begin: [0, 0], end: [0, 1], strides: [1, 1], type: padType, beginMask: 1,
        endMask: 1, shrinkAxisMask: 2)
      let begin =
        builder.cast(leading, from: padType, to: .int32)
      let sliced = builder.add(
        "Slice", [try forward.gradient(), begin, builder.shape(x, type)],
        ["T": .type(type), "Index": .type(.int32)])
      return [sliced, nil] + (forward.inputs.count > 2 ? [nil] : [])
    }
    registry.differentiate("Transpose") { builder, forward throws(GraphError) in
      let permutationType = forward.node.type("Tperm") ?? .int32
      let inverse = builder.add(
        "InvertPermutation", [forward.inputs[1]], ["T": .type(permutationType)])
      return [
        builder.add(
          "Transpose", [try forward.gradient(), inverse],
          ["T": .type(forward.type), "Tperm": .type(permutationType)]), nil,
      ]
    }
    registry.differentiate("GatherNd") { builder, forward throws(GraphError) in
      // Each gathered slice's gradient added back where it came from.
      guard forward.node.attributes["batch_dims"] ?? .int(0) == .int(0) else {
        throw GraphError(
          code: .noGradient, message: "tfmp differentiates GatherNd without batch_dims only.")
      }
      let type = forward.node.type("Tparams") ?? .float32
      let indexType = forward.node.type("Tindices") ?? .int32
      let shape = builder.cast(
        builder.shape(forward.inputs[0], type), from: .int32, to: indexType)
      return [
        builder.add(
          "ScatterNd", [forward.inputs[1], try forward.gradient(), shape],
          ["T": .type(type), "Tindices": .type(indexType)]), nil,
      ]
    }
    registry.differentiate("GatherV2") { builder, forward throws(GraphError) in
      // Each gathered slice's gradient summed back into the slice it came from. params is seen
      // as [batch, outer, K, inner] (its dimensions before batch_dims, up to the axis, at the
      // axis, after it) and the gradient as [batch, outer, lookups, inner]: moved to [batch,
      // lookups, outer, inner] and flattened, its rows are summed by UnsortedSegmentSum into
      // segment (batch entry * K + index), then moved back (TensorFlow's `_GatherV2Grad`).
      let (params, indices) = (forward.inputs[0], forward.inputs[1])
      let type = forward.node.type("Tparams") ?? .float32
      let indexType = forward.node.type("Tindices") ?? .int32
      guard case .int(let batchDimensions)? = forward.node.attributes["batch_dims"] ?? .int(0),
        batchDimensions >= 0, let axes = Kernels.constantIntegers(forward.inputs[2], in: builder),
        axes.count == 1, axes[0] >= batchDimensions
      else {
        throw GraphError(
          code: .noGradient,
          message: "tfmp differentiates GatherV2 along a constant axis, with batch_dims of 0 or "
            + "more, only.")
      }
      let (batch, axis) = (Int32(clamping: batchDimensions), Int32(clamping: axes[0]))
      let shape = builder.shape(params, type)
      func piece(_ begin: Int32, _ end: Int32?) -> Input {
        builder.slice(
          shape, begin: [begin], end: [end ?? 0], strides: [1], endMask: end == nil ? 1 : 0)
      }
      func product(_ x: Input) -> Input {
        builder.add(
          "Prod", [x, builder.integers([0])],
          ["T": .type(.int32), "Tidx": .type(.int32), "keep_dims": .bool(false)])
      }
      func reshape(_ x: Input, _ type: DType, _ sizes: [Input]) -> Input {
        let target = builder.add(
          "Pack", sizes, ["T": .type(.int32), "N": .int(Int64(sizes.count)), "axis": .int(0)])
        return builder.add("Reshape", [x, target], ["T": .type(type), "Tshape": .type(.int32)])
      }
      func swapMiddle(_ x: Input) -> Input {
        builder.add(
          "Transpose", [x, builder.integers([0, 2, 1, 3])],
          ["T": .type(type), "Tperm": .type(.int32)])
      }
      let batchSize = product(piece(0, batch))
      let outerSize = product(piece(batch, axis))
      let rows = product(piece(axis, axis + 1))
      let innerSize = product(piece(axis + 1, nil))
      let lookups = builder.math(
        "FloorDiv",
        builder.add("Size", [indices], ["T": .type(indexType), "out_type": .type(.int32)]),
        batchSize, type: .int32)
      let minusOne = builder.integer(-1)
      let values = reshape(
        swapMiddle(
          reshape(try forward.gradient(), type, [batchSize, outerSize, lookups, innerSize])),
        type, [minusOne, builder.math("Mul", outerSize, innerSize, type: .int32)])
      // Segment of each lookup: its batch entry's first row plus its index.
      let offsets = builder.cast(
        builder.math(
          "Mul",
          builder.add(
            "Range", [builder.integer(0), batchSize, builder.integer(1)], ["Tidx": .type(.int32)]),
          rows, type: .int32), from: .int32, to: indexType)
      let segments = reshape(
        builder.math(
          "AddV2", reshape(indices, indexType, [batchSize, lookups]),
          reshape(offsets, indexType, [batchSize, builder.integer(1)]), type: indexType),
        indexType, [minusOne])
      let summed = builder.add(
        "UnsortedSegmentSum",
        [values, segments, builder.math("Mul", batchSize, rows, type: .int32)],
        ["T": .type(type), "Tindices": .type(indexType), "Tnumsegments": .type(.int32)])
      let unflat = swapMiddle(reshape(summed, type, [batchSize, rows, outerSize, innerSize]))
      return [
        builder.add("Reshape", [unflat, shape], ["T": .type(type), "Tshape": .type(.int32)]),
        nil, nil,
      ]
    }
    // A filled tensor's value gets the gradient's sum; the shape none.
    registry.differentiate("Fill") { builder, forward throws(GraphError) in
      let g = try forward.gradient()
      let flat = builder.add(
        "Reshape", [g, builder.integers([-1])], ["T": .type(forward.type), "Tshape": .type(.int32)])
      return [
        nil,
        builder.sum(flat, axes: builder.integers([0]), keepDimensions: false, type: forward.type),
      ]
    }
    // What a one-hot encoding or a shape computes from has no gradient, as in TensorFlow.
    registry.differentiate("OneHot", "Shape", "Size", "Rank", "ZerosLike", "OnesLike", "Range") {
      _, forward throws(GraphError) in
      forward.inputs.map { _ in nil }
    }
    registry.differentiate("SelectV2") { builder, forward throws(GraphError) in
      // Each branch gets the gradient where the condition chose it, summed back to its shape.
      let (condition, chosen, other) = (forward.inputs[0], forward.inputs[1], forward.inputs[2])
      let (g, type) = (try forward.gradient(), forward.type)
      let zeros = builder.math("ZerosLike", g, type: type)
      let toChosen = builder.add("SelectV2", [condition, g, zeros], ["T": .type(type)])
      let toOther = builder.add("SelectV2", [condition, zeros, g], ["T": .type(type)])
      return [
        nil, builder.unbroadcast(toChosen, to: chosen, from: g, type),
        builder.unbroadcast(toOther, to: other, from: g, type),
      ]
    }
    registry.differentiate("BroadcastTo") { builder, forward throws(GraphError) in
      // Summed over the dimensions the input was broadcast along.
      let (x, g, type) = (forward.inputs[0], try forward.gradient(), forward.type)
      return [builder.unbroadcast(g, to: x, from: g, type), nil]
    }
    registry.differentiate("Tile") { builder, forward throws(GraphError) in
      // The gradient seen as [m0, d0, m1, d1, ...] (multiples and the input's sizes
      // interleaved), summed over the multiples.
      let (x, multiples, g, type) = (
        forward.inputs[0], forward.inputs[1], try forward.gradient(), forward.type
      )
      let multipleType = forward.node.type("Tmultiples") ?? .int32
      let counts =
        builder.cast(multiples, from: multipleType, to: .int32)
      let pairs = builder.add(
        "Pack", [counts, builder.shape(x, type)],
        ["T": .type(.int32), "N": .int(2), "axis": .int(1)])
      let interleaved = builder.add(
        "Reshape", [pairs, builder.integers([-1])], ["T": .type(.int32), "Tshape": .type(.int32)])
      let split = builder.add(
        "Reshape", [g, interleaved], ["T": .type(type), "Tshape": .type(.int32)])
      let axes = builder.add(
        "Range",
        [
          builder.integer(0),
          builder.add("Size", [interleaved], ["T": .type(.int32), "out_type": .type(.int32)]),
          builder.integer(2),
        ], ["Tidx": .type(.int32)])
      return [builder.sum(split, axes: axes, keepDimensions: false, type: type), nil]
    }
    registry.differentiate("Pack") { builder, forward throws(GraphError) in
      // Each packed tensor's gradient is its slice of the gradient.
      let unpacked = builder.node(
        "Unpack", [try forward.gradient()],
        [
          "T": .type(forward.type), "num": .int(Int64(forward.inputs.count)),
          "axis": forward.node.attributes["axis"] ?? .int(0),
        ])
      return forward.inputs.indices.map { builder.output(unpacked, $0) }
    }
    registry.differentiate("Slice") { builder, forward throws(GraphError) in
      // The gradient padded back: `begin` before, the rest of the input after.
      let (x, g, type) = (forward.inputs[0], try forward.gradient(), forward.type)
      let index = forward.node.type("Index") ?? .int32
      let begin =
        builder.cast(forward.inputs[1], from: index, to: .int32)
      let after = builder.math(
        "Sub", builder.math("Sub", builder.shape(x, type), begin, type: .int32),
        builder.shape(g, type), type: .int32)
      let paddings = builder.add(
        "Pack", [begin, after], ["T": .type(.int32), "N": .int(2), "axis": .int(1)])
      return [
        builder.add("Pad", [g, paddings], ["T": .type(type), "Tpaddings": .type(.int32)]), nil, nil,
      ]
    }
    registry.differentiate("Split", "SplitV") { builder, forward throws(GraphError) in
      // The pieces' gradients (zeros for a piece none reaches) joined along the axis.
      let type = forward.type
      let split = forward.node.op == "Split"
      let axis = split ? forward.inputs[0] : forward.inputs[2]
      let pieces = forward.outputs.indices.map { index in
        forward.gradients[index] ?? builder.math("ZerosLike", forward.outputs[index], type: type)
      }
      let joined = builder.add(
        "ConcatV2", pieces + [axis],
        ["T": .type(type), "N": .int(Int64(pieces.count)), "Tidx": .type(.int32)])
      return split ? [nil, joined] : [joined, nil, nil]
    }
    registry.differentiate("Unpack") { builder, forward throws(GraphError) in
      let type = forward.type
      let pieces = forward.outputs.indices.map { index in
        forward.gradients[index] ?? builder.math("ZerosLike", forward.outputs[index], type: type)
      }
      return [
        builder.add(
          "Pack", pieces,
          [
            "T": .type(type), "N": .int(Int64(pieces.count)),
            "axis": forward.node.attributes["axis"] ?? .int(0),
          ])
      ]
    }
    registry.differentiate("Cast") { builder, forward throws(GraphError) in
      guard let source = forward.node.type("SrcT"), let destination = forward.node.type("DstT"),
        source.isFloatingPoint, destination.isFloatingPoint
      else { return [nil] }
      return [builder.cast(try forward.gradient(), from: destination, to: source)]
    }
  }
}
