internal import GraphIR
internal import TensorCore

/// The reduction family's gradients (TensorFlow's `math_grad.py`, `nn_grad.py`): a sum's
/// gradient is broadcast back over the dimensions it reduced; a mean's is divided by how many
/// elements each output averaged; softmax's is TensorFlow's `(g - sum(g * y)) * y`.
extension ReductionKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    registry.differentiate("Sum") { builder, forward throws(GraphError) in
      [spread(&builder, forward, try forward.gradient())]
    }
    registry.differentiate("Mean") { builder, forward throws(GraphError) in
      let type = forward.type
      let spreadOut = spread(&builder, forward, try forward.gradient())
      // Each output averaged size(x) / size(y) elements.
      let counts = [forward.inputs[0], forward.outputs[0]].map {
        builder.add("Size", [$0], ["T": .type(type), "out_type": .type(.int32)])
      }
      let count = builder.add(
        "Cast", [builder.math("FloorDiv", counts[0], counts[1], type: .int32)],
        ["SrcT": .type(.int32), "DstT": .type(type), "Truncate": .bool(false)])
      return [builder.math("RealDiv", spreadOut, count, type: type), nil]
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

  /// The gradient `g` of a `Sum` or `Mean` of `x` over `axes`, shaped as its output (with or
  /// without the reduced dimensions), broadcast back to `x`'s shape: reshaped to the reduction
  /// with its dimensions kept, then broadcast.
  private static func spread(
    _ builder: inout GradientBuilder, _ forward: GradientBuilder.Forward, _ g: Input
  ) -> Input {
    let (x, axes, type) = (forward.inputs[0], forward.inputs[1], forward.type)
    let axisType = forward.node.type("Tidx") ?? .int32
    let kept = builder.add(
      "Sum", [x, axes], ["T": .type(type), "Tidx": .type(axisType), "keep_dims": .bool(true)])
    let reshaped = builder.reshape(g, like: kept, type: type)
    return builder.add(
      "BroadcastTo", [reshaped, builder.shape(x, type)], ["T": .type(type), "Tidx": .type(.int32)])
  }
}
