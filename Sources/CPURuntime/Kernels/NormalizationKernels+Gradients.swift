internal import GraphIR
internal import TensorCore

/// Batch normalization's gradient in inference (TensorFlow's `FusedBatchNormGradV3` with
/// `is_training` false, written out): the statistics are constants, so y = (x - mean) * s +
/// offset with s = scale / sqrt(variance + epsilon), and the moving statistics get none.
extension NormalizationKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    registry.differentiate("FusedBatchNormV3", "FusedBatchNormV2") {
      builder, forward throws(GraphError) in
      guard forward.node.attributes["is_training"] == .bool(false) else {
        throw GraphError(
          code: .noGradient,
          message: "A batch normalization in training mode has no gradient in tfmp; exported "
            + "models compute in inference mode.")
      }
      guard (forward.node.attributes["data_format"]?.text ?? "NHWC") == "NHWC" else {
        throw GraphError(
          code: .noGradient, message: "tfmp differentiates NHWC batch normalization only.")
      }
      let (type, statistics) = (forward.type, forward.node.type("U") ?? .float32)
      func cast(_ value: Input, _ from: DType, _ to: DType) -> Input {
        builder.cast(value, from: from, to: to)
      }
      let (x, scale, mean, variance) = (
        cast(forward.inputs[0], type, statistics), forward.inputs[1], forward.inputs[3],
        forward.inputs[4]
      )
      let g = cast(try forward.gradient(0), type, statistics)
      let epsilon = builder.add(
        "Const", [],
        [
          "dtype": .type(statistics),
          "value": .tensor(
            {
              var literal = TensorLiteral(dtype: statistics, shape: ShapeValue(dimensions: []))
              if case .float(let value)? = forward.node.attributes["epsilon"] {
                literal.floatValues = [value]
              } else {
                literal.floatValues = [1e-4]
              }
              return literal
            }()),
        ])
      let inverse = builder.math(
        "Rsqrt", builder.math("AddV2", variance, epsilon, type: statistics), type: statistics)
      let all = builder.integers([0, 1, 2])
      let dx = builder.math(
        "Mul", g, builder.math("Mul", scale, inverse, type: statistics), type: statistics)
      let normalized = builder.math(
        "Mul", builder.math("Sub", x, mean, type: statistics), inverse, type: statistics)
      return [
        cast(dx, statistics, type),
        builder.sum(
          builder.math("Mul", g, normalized, type: statistics), axes: all, keepDimensions: false,
          type: statistics),
        builder.sum(g, axes: all, keepDimensions: false, type: statistics), nil, nil,
      ]
    }
  }
}
