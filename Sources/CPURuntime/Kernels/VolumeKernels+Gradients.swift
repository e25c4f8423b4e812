internal import GraphIR
internal import TensorCore

/// The gradients of NDHWC convolution and pooling, as TensorFlow's `nn_grad.py` writes them:
/// a convolution's input and filter gradients are its two backprops, a transposed convolution's
/// are the filter backprop read the other way round and the convolution it transposes, and a
/// pooling's goes back through its `Grad` op.
extension VolumeKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    let convolving = ["strides", "padding", "data_format", "dilations"]
    registry.differentiate("Conv3D") { builder, forward throws(GraphError) in
      let (x, filter, gradient) = (forward.inputs[0], forward.inputs[1], try forward.gradient())
      var attributes = GradientBuilder.attributes(convolving, of: forward)
      let filterGradient = builder.add(
        "Conv3DBackpropFilterV2", [x, builder.shape(filter, forward.type), gradient], attributes)
      attributes["Tshape"] = .type(.int32)
      return [
        builder.add(
          "Conv3DBackpropInputV2", [builder.shape(x, forward.type), filter, gradient],
          attributes),
        filterGradient,
      ]
    }
    registry.differentiate("Conv3DBackpropInputV2") { builder, forward throws(GraphError) in
      let (filter, input, gradient) = (
        forward.inputs[1], forward.inputs[2], try forward.gradient()
      )
      let attributes = GradientBuilder.attributes(convolving, of: forward)
      return [
        nil,
        builder.add(
          "Conv3DBackpropFilterV2", [gradient, builder.shape(filter, forward.type), input],
          attributes),
        builder.add("Conv3D", [gradient, filter], attributes),
      ]
    }
    let pooling = ["ksize", "strides", "padding", "data_format"]
    registry.differentiate("MaxPool3D") { builder, forward throws(GraphError) in
      var attributes = GradientBuilder.attributes(pooling, of: forward)
      attributes["TInput"] = .type(forward.type)
      return [
        builder.add(
          "MaxPool3DGrad", [forward.inputs[0], forward.outputs[0], try forward.gradient()],
          attributes)
      ]
    }
    registry.differentiate("AvgPool3D") { builder, forward throws(GraphError) in
      [
        builder.add(
          "AvgPool3DGrad",
          [builder.shape(forward.inputs[0], forward.type), try forward.gradient()],
          GradientBuilder.attributes(pooling, of: forward))
      ]
    }
  }
}
