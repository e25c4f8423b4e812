internal import GraphIR
internal import TensorCore

/// The reduction family's gradients (TensorFlow's `math_grad.py`, `nn_grad.py`): a sum's
/// gradient is broadcast back over the dimensions it reduced; a mean's is divided by how many
/// elements each output averaged; softmax's is TensorFlow's `(g - sum(g * y)) * y`.
extension ReductionKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    registry.differentiate("Sum") { builder, forward throws(GraphError) in
      [Spread(&builder, forward)(&builder, try forward.gradient())]
    }
    registry.differentiate("Mean") { builder, forward throws(GraphError) in
      let type = forward.type
      let spreadOut = Spread(&builder, forward)(&builder, try forward.gradient())
      // Each output averaged size(x) / size(y) elements.
      let counts = [forward.inputs[0], forward.outputs[0]].map {
        builder.add("Size", [$0], ["T": .type(type), "out_type": .type(.int32)])
      }
      let count = builder.cast(
        builder.math("FloorDiv", counts[0], counts[1], type: .int32), from: .int32, to: type)
      return [builder.math("RealDiv", spreadOut, count, type: type), nil]
    }
    registry.differentiate("Max", "Min") { builder, forward throws(GraphError) in
      // The gradient is shared by the elements equal to the extreme, as TensorFlow shares it.
      let (x, type) = (forward.inputs[0], forward.type)
      let spread = Spread(&builder, forward)
      let extreme = spread(&builder, forward.outputs[0])
      let chosen = builder.cast(
        builder.math("Equal", x, extreme, type: type), from: .bool, to: type)
      let ties = spread(
        &builder,
        builder.add(
          "Sum", [chosen, forward.inputs[1]],
          [
            "T": .type(type), "Tidx": .type(forward.node.type("Tidx") ?? .int32),
            "keep_dims": forward.node.attributes["keep_dims"] ?? .bool(false),
          ]))
      let share = builder.math("RealDiv", chosen, ties, type: type)
      return [
        builder.math("Mul", share, spread(&builder, try forward.gradient()), type: type),
        nil,
      ]
    }
    registry.differentiate("Prod") { builder, forward throws(GraphError) in
      // Each element's gradient is the product of the others it was multiplied with: the
      // product before it times the product after it along the reduced axis (exclusive
      // running products both ways, so that zeros need no division). Over several axes, the
      // others in axis t's direction are the products over the axes before t.
      let (x, type) = (forward.inputs[0], forward.type)
      guard let axes = Kernels.constantIntegers(forward.inputs[1], in: builder) else {
        throw GraphError(
          code: .noGradient, message: "tfmp differentiates Prod over constant axes only.")
      }
      var others: Input?
      for (position, axis) in axes.enumerated() {
        let reduced =
          position == 0
          ? x
          : builder.add(
            "Prod", [x, builder.integers(axes.prefix(position).map { Int32(clamping: $0) })],
            ["T": .type(type), "Tidx": .type(.int32), "keep_dims": .bool(true)])
        let running = [false, true].map { reverse in
          builder.add(
            "Cumprod", [reduced, builder.integer(Int32(clamping: axis))],
            [
              "T": .type(type), "Tidx": .type(.int32), "exclusive": .bool(true),
              "reverse": .bool(reverse),
            ])
        }
        let term = builder.math("Mul", running[0], running[1], type: type)
        others = others.map { builder.math("Mul", $0, term, type: type) } ?? term
      }
      let spread = Spread(&builder, forward)(&builder, try forward.gradient())
      return [others.map { builder.math("Mul", spread, $0, type: type) } ?? spread, nil]
    }
    registry.differentiate("Cumsum") { builder, forward throws(GraphError) in
      // The gradient of a running sum is the running sum of the gradient the other way.
      var attributes = forward.node.attributes
      attributes["reverse"] = .bool(attributes["reverse"] != .bool(true))
      return [builder.add("Cumsum", [try forward.gradient(), forward.inputs[1]], attributes), nil]
    }
    registry.differentiate("UnsortedSegmentSum") { builder, forward throws(GraphError) in
      // Each element's gradient is its segment's.
      let indices = forward.node.type("Tindices") ?? .int32
      return [
        builder.add(
          "GatherV2", [try forward.gradient(), forward.inputs[1], builder.integer(0)],
          [
            "Tparams": .type(forward.type), "Tindices": .type(indices), "Taxis": .type(.int32),
            "batch_dims": .int(0),
          ]), nil, nil,
      ]
    }
    registry.differentiate("TopKV2") { builder, forward throws(GraphError) in
      // The values' gradient goes back to where each value was taken from: one-hot rows of
      // the indices over the last dimension, weighted by the gradient and summed over k. The
      // indices have none.
      let (x, type) = (forward.inputs[0], forward.type)
      guard let g = forward.gradients.first ?? nil else { return [nil, nil] }
      let indexType = forward.node.type("index_type") ?? .int32
      let depth = builder.slice(
        builder.shape(x, type), begin: [-1], end: [0], strides: [1], endMask: 1, shrinkAxisMask: 1)
      let oneHot = builder.add(
        "OneHot",
        [forward.outputs[1], depth, builder.scalar(1, type), builder.scalar(0, type)],
        ["T": .type(type), "TI": .type(indexType), "axis": .int(-1)])
      let weights = builder.add(
        "ExpandDims", [g, builder.integer(-1)], ["T": .type(type), "Tdim": .type(.int32)])
      let spread = builder.math("Mul", oneHot, weights, type: type)
      return [
        builder.sum(spread, axes: builder.integers([-2]), keepDimensions: false, type: type), nil,
      ]
    }
    registry.differentiate("Softmax") { builder, forward throws(GraphError) in
      let (y, g, type) = (forward.outputs[0], try forward.gradient(), forward.type)
      let last = builder.integers([-1])
      let dot = builder.sum(
        builder.math("Mul", g, y, type: type), axes: last, keepDimensions: true, type: type)
      return [builder.math("Mul", builder.math("Sub", g, dot, type: type), y, type: type)]
    }
    registry.differentiate("LogSoftmax") { builder, forward throws(GraphError) in
      let (y, g, type) = (forward.outputs[0], try forward.gradient(), forward.type)
      let total = builder.sum(g, axes: builder.integers([-1]), keepDimensions: true, type: type)
      let share = builder.math("Mul", builder.math("Exp", y, type: type), total, type: type)
      return [builder.math("Sub", g, share, type: type)]
    }
  }

  /// How a value shaped as a reduction's output (`Sum`, `Mean`, `Max`, `Min` of `x` over
  /// `axes`, with or without the reduced dimensions) is spread back over `x`: reshaped to the
  /// reduction's shape with its dimensions kept, then broadcast. The kept shape is `x`'s with
  /// the reduced axes set to 1, computed on the shape vectors, not by reducing `x` again.
  private struct Spread {
    let type: DType
    let shape: Input
    let kept: Input

    init(_ builder: inout GradientBuilder, _ forward: GradientBuilder.Forward) {
      let x = forward.inputs[0]
      type = forward.type
      shape = builder.shape(x, type)
      if forward.node.attributes["keep_dims"] == .bool(true) {
        kept = builder.shape(forward.outputs[0], type)
        return
      }
      let axes = builder.cast(
        forward.inputs[1], from: forward.node.type("Tidx") ?? .int32, to: .int32)
      let rank = builder.add("Rank", [x], ["T": .type(type)])
      let positive = builder.math("FloorMod", axes, rank, type: .int32)
      let column = builder.add(
        "Reshape", [positive, builder.integers([-1, 1])],
        ["T": .type(.int32), "Tshape": .type(.int32)])
      let flat = builder.add(
        "Reshape", [positive, builder.integers([-1])],
        ["T": .type(.int32), "Tshape": .type(.int32)])
      let sizes = builder.add(
        "GatherV2", [shape, flat, builder.integer(0)],
        [
          "Tparams": .type(.int32), "Tindices": .type(.int32), "Taxis": .type(.int32),
          "batch_dims": .int(0),
        ])
      // x's shape less (size - 1) at each reduced axis.
      let excess = builder.add(
        "ScatterNd",
        [
          column, builder.math("Sub", sizes, builder.integer(1), type: .int32),
          builder.add(
            "Reshape", [rank, builder.integers([1])], ["T": .type(.int32), "Tshape": .type(.int32)]),
        ], ["T": .type(.int32), "Tindices": .type(.int32)])
      kept = builder.math("Sub", shape, excess, type: .int32)
    }

    /// `value` spread over `x`.
    func callAsFunction(_ builder: inout GradientBuilder, _ value: Input) -> Input {
      let reshaped = builder.add(
        "Reshape", [value, kept], ["T": .type(type), "Tshape": .type(.int32)])
      return builder.add(
        "BroadcastTo", [reshaped, shape], ["T": .type(type), "Tidx": .type(.int32)])
    }
  }
}
