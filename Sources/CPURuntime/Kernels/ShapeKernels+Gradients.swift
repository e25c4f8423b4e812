internal import GraphIR
internal import TensorCore

/// The shape family's gradients (TensorFlow's `array_grad.py`, `math_grad.py`): ops that only
/// reshape give the gradient back in the input's shape; a cast between float types casts it
/// back.
extension ShapeKernels {
  static func registerGradients(in registry: inout OpRegistry) {
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
    registry.differentiate("Cast") { builder, forward throws(GraphError) in
      guard let source = forward.node.type("SrcT"), let destination = forward.node.type("DstT"),
        source.isFloatingPoint, destination.isFloatingPoint
      else { return [nil] }
      return [
        builder.add(
          "Cast", [try forward.gradient()],
          ["SrcT": .type(destination), "DstT": .type(source), "Truncate": .bool(false)])
      ]
    }
  }
}
