internal import GraphIR
internal import TensorCore

/// The elementwise family's gradients, as TensorFlow's `math_grad.py` and `nn_grad.py` write
/// them: broadcasting arithmetic sums its gradient back to each operand's shape; activations use
/// TensorFlow's `*Grad` ops (``GradientKernels``).
extension ElementwiseKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    registry.differentiate("AddV2", "Add") { builder, forward throws(GraphError) in
      try broadcasting(&builder, forward) { _, _, _, g, _ in (g, g) }
    }
    registry.differentiate("Sub") { builder, forward throws(GraphError) in
      try broadcasting(&builder, forward) { builder, _, _, g, type in
        (g, builder.math("Neg", g, type: type))
      }
    }
    registry.differentiate("Mul") { builder, forward throws(GraphError) in
      try broadcasting(&builder, forward) { builder, x, y, g, type in
        (builder.math("Mul", g, y, type: type), builder.math("Mul", x, g, type: type))
      }
    }
    registry.differentiate("RealDiv") { builder, forward throws(GraphError) in
      // d(x/y)/dx = 1/y; d(x/y)/dy = -x/y^2.
      try broadcasting(&builder, forward) { builder, x, y, g, type in
        let quotient = builder.math(
          "RealDiv", builder.math("RealDiv", x, y, type: type), y, type: type)
        return (
          builder.math("RealDiv", g, y, type: type),
          builder.math("Neg", builder.math("Mul", g, quotient, type: type), type: type)
        )
      }
    }
    registry.differentiate("SquaredDifference") { builder, forward throws(GraphError) in
      // d(x - y)^2 = 2 (x - y) for x, its negation for y.
      try broadcasting(&builder, forward) { builder, x, y, g, type in
        let twice = builder.math(
          "Mul", builder.scalar(2, type), builder.math("Sub", x, y, type: type), type: type)
        let dx = builder.math("Mul", g, twice, type: type)
        return (dx, builder.math("Neg", dx, type: type))
      }
    }
    registry.differentiate("Maximum", "Minimum") { builder, forward throws(GraphError) in
      // The gradient goes to x where x wins (ties included), else to y.
      let comparison = forward.node.op == "Maximum" ? "GreaterEqual" : "LessEqual"
      return try broadcasting(&builder, forward) { builder, x, y, g, type in
        let wins = builder.cast(builder.math(comparison, x, y, type: type), from: .bool, to: type)
        let dx = builder.math("Mul", g, wins, type: type)
        return (dx, builder.math("Sub", g, dx, type: type))
      }
    }
    registry.differentiate("DivNoNan") { builder, forward throws(GraphError) in
      // As RealDiv, 0 where y is 0 (TensorFlow's math_grad.py).
      try broadcasting(&builder, forward) { builder, x, y, g, type in
        let quotient = builder.math(
          "DivNoNan", builder.math("DivNoNan", builder.math("Neg", x, type: type), y, type: type),
          y, type: type)
        return (
          builder.math("DivNoNan", g, y, type: type), builder.math("Mul", g, quotient, type: type)
        )
      }
    }
    registry.differentiate("Pow") { builder, forward throws(GraphError) in
      // d x^p = p x^(p-1) for x; x^p log x for p (0 where x <= 0, as TensorFlow has it).
      try broadcasting(&builder, forward) { builder, x, p, g, type in
        let lower = builder.math("Sub", p, builder.scalar(1, type), type: type)
        let dx = builder.math(
          "Mul", g, builder.math("Mul", p, builder.math("Pow", x, lower, type: type), type: type),
          type: type)
        let positive = builder.math("Greater", x, builder.scalar(0, type), type: type)
        let safe = builder.add(
          "SelectV2", [positive, x, builder.math("OnesLike", x, type: type)], ["T": .type(type)])
        let logarithm = builder.math("Log", safe, type: type)
        let dp = builder.math(
          "Mul", g, builder.math("Mul", forward.outputs[0], logarithm, type: type), type: type)
        return (dx, dp)
      }
    }
    registry.differentiate("Reciprocal") { builder, forward throws(GraphError) in
      // d 1/x = -1/x^2 = -y^2.
      let square = builder.math("Square", forward.outputs[0], type: forward.type)
      return [
        builder.math(
          "Neg", builder.math("Mul", try forward.gradient(), square, type: forward.type),
          type: forward.type)
      ]
    }
    registry.differentiate("Erf", "Erfc") { builder, forward throws(GraphError) in
      // d erf(x) = 2 / sqrt(pi) exp(-x^2); erfc = 1 - erf.
      let type = forward.type
      let bell = builder.math(
        "Exp",
        builder.math("Neg", builder.math("Square", forward.inputs[0], type: type), type: type),
        type: type)
      let sign: Double = forward.node.op == "Erf" ? 1 : -1
      let slope = builder.math(
        "Mul", builder.scalar(sign * 2 / Double.pi.squareRoot(), type), bell, type: type)
      return [builder.math("Mul", try forward.gradient(), slope, type: type)]
    }
    registry.differentiate("Atan2") { builder, forward throws(GraphError) in
      // atan2(y, x): d/dy = x / (x^2 + y^2), d/dx = -y / (x^2 + y^2).
      try broadcasting(&builder, forward) { builder, y, x, g, type in
        let squares = builder.math(
          "AddV2", builder.math("Square", x, type: type), builder.math("Square", y, type: type),
          type: type)
        let share = builder.math("RealDiv", g, squares, type: type)
        return (
          builder.math("Mul", share, x, type: type),
          builder.math("Neg", builder.math("Mul", share, y, type: type), type: type)
        )
      }
    }
    // Activations written through their outputs where TensorFlow's *Grad ops use them:
    // d softplus = sigmoid(x), d softsign = 1 / (1 + |x|)^2, d expm1 = y + 1, d elu = 1 above 0
    // and y + 1 below, d selu = scale above 0 and y + scale * alpha below.
    registry.differentiate("Softplus") { builder, forward throws(GraphError) in
      let slope = builder.math("Sigmoid", forward.inputs[0], type: forward.type)
      return [builder.math("Mul", try forward.gradient(), slope, type: forward.type)]
    }
    registry.differentiate("Softsign") { builder, forward throws(GraphError) in
      let type = forward.type
      let denominator = builder.math(
        "Square",
        builder.math(
          "AddV2", builder.scalar(1, type), builder.math("Abs", forward.inputs[0], type: type),
          type: type), type: type)
      return [builder.math("RealDiv", try forward.gradient(), denominator, type: type)]
    }
    registry.differentiate("Expm1") { builder, forward throws(GraphError) in
      let type = forward.type
      let slope = builder.math("AddV2", forward.outputs[0], builder.scalar(1, type), type: type)
      return [builder.math("Mul", try forward.gradient(), slope, type: type)]
    }
    let seluScale = 1.0507009873554804934193349852946
    let seluAlpha = 1.6732632423543772848170429916717
    for (op, above, offset) in [("Elu", 1.0, 1.0), ("Selu", seluScale, seluScale * seluAlpha)] {
      registry.differentiate(op) { builder, forward throws(GraphError) in
        let (x, y, type) = (forward.inputs[0], forward.outputs[0], forward.type)
        let positive = builder.math("Greater", x, builder.scalar(0, type), type: type)
        let below = builder.math("AddV2", y, builder.scalar(offset, type), type: type)
        let slope = builder.add(
          "SelectV2",
          [
            positive,
            builder.math(
              "Mul", builder.math("OnesLike", x, type: type), builder.scalar(above, type),
              type: type), below,
          ],
          ["T": .type(type)])
        return [builder.math("Mul", try forward.gradient(), slope, type: type)]
      }
    }
    // d sin = cos, d cos = -sin, d sinh = cosh, d cosh = sinh.
    for (op, derivative, negated) in [
      ("Sin", "Cos", false), ("Cos", "Sin", true), ("Sinh", "Cosh", false), ("Cosh", "Sinh", false),
    ] {
      registry.differentiate(op) { builder, forward throws(GraphError) in
        var slope = builder.math(derivative, forward.inputs[0], type: forward.type)
        if negated { slope = builder.math("Neg", slope, type: forward.type) }
        return [builder.math("Mul", try forward.gradient(), slope, type: forward.type)]
      }
    }
    registry.differentiate("BiasAdd") { builder, forward throws(GraphError) in
      let g = try forward.gradient()
      var attributes: [String: AttrValue] = ["T": .type(forward.type)]
      attributes["data_format"] = forward.node.attributes["data_format"]
      return [g, builder.add("BiasAddGrad", [g], attributes)]
    }
    registry.differentiate("Neg") { builder, forward throws(GraphError) in
      [builder.math("Neg", try forward.gradient(), type: forward.type)]
    }
    registry.differentiate("Relu") { builder, forward throws(GraphError) in
      [builder.math("ReluGrad", try forward.gradient(), forward.outputs[0], type: forward.type)]
    }
    registry.differentiate("LeakyRelu") { builder, forward throws(GraphError) in
      [
        builder.add(
          "LeakyReluGrad", [try forward.gradient(), forward.inputs[0]],
          GradientBuilder.attributes(["alpha"], of: forward))
      ]
    }
    registry.differentiate("Relu6") { builder, forward throws(GraphError) in
      [builder.math("Relu6Grad", try forward.gradient(), forward.inputs[0], type: forward.type)]
    }
    registry.differentiate("Tanh") { builder, forward throws(GraphError) in
      [builder.math("TanhGrad", forward.outputs[0], try forward.gradient(), type: forward.type)]
    }
    registry.differentiate("Sigmoid") { builder, forward throws(GraphError) in
      [builder.math("SigmoidGrad", forward.outputs[0], try forward.gradient(), type: forward.type)]
    }
    registry.differentiate("Exp") { builder, forward throws(GraphError) in
      [builder.math("Mul", try forward.gradient(), forward.outputs[0], type: forward.type)]
    }
    registry.differentiate("Log") { builder, forward throws(GraphError) in
      let inverse = builder.math("Reciprocal", forward.inputs[0], type: forward.type)
      return [builder.math("Mul", try forward.gradient(), inverse, type: forward.type)]
    }
    // The inverse and hyperbolic trigonometric functions, as TensorFlow's `math_grad.py`
    // writes them: d acosh(x) = 1 / sinh(y), d asinh(x) = 1 / cosh(y) (y the output);
    // d asin(x) = 1 / sqrt(1 - x^2), d acos(x) its negation, d atan(x) = 1 / (1 + x^2),
    // d atanh(x) = 1 / (1 - x^2), d tan(x) = 1 / cos(x)^2.
    for (op, hyperbolic) in [("Acosh", "Sinh"), ("Asinh", "Cosh")] {
      registry.differentiate(op) { builder, forward throws(GraphError) in
        let slope = builder.math(hyperbolic, forward.outputs[0], type: forward.type)
        return [builder.math("RealDiv", try forward.gradient(), slope, type: forward.type)]
      }
    }
    registry.differentiate("Asin", "Acos", "Atan", "Atanh", "Tan") {
      builder, forward throws(GraphError) in
      let (x, type) = (forward.inputs[0], forward.type)
      let one = builder.scalar(1, type)
      let square = builder.math("Square", x, type: type)
      let slope: Input
      switch forward.node.op {
      case "Asin", "Acos":
        let root = builder.math("Rsqrt", builder.math("Sub", one, square, type: type), type: type)
        slope = forward.node.op == "Asin" ? root : builder.math("Neg", root, type: type)
      case "Atan":
        slope = builder.math(
          "Reciprocal", builder.math("AddV2", one, square, type: type), type: type)
      case "Atanh":
        slope = builder.math("Reciprocal", builder.math("Sub", one, square, type: type), type: type)
      default:
        slope = builder.math(
          "Square", builder.math("Reciprocal", builder.math("Cos", x, type: type), type: type),
          type: type)
      }
      return [builder.math("Mul", try forward.gradient(), slope, type: type)]
    }
    registry.differentiate("Log1p") { builder, forward throws(GraphError) in
      let type = forward.type
      let shifted = builder.math("AddV2", forward.inputs[0], builder.scalar(1, type), type: type)
      return [builder.math("RealDiv", try forward.gradient(), shifted, type: type)]
    }
    registry.differentiate("Abs") { builder, forward throws(GraphError) in
      let sign = builder.math("Sign", forward.inputs[0], type: forward.type)
      return [builder.math("Mul", try forward.gradient(), sign, type: forward.type)]
    }
    registry.differentiate("ClipByValue") { builder, forward throws(GraphError) in
      // The gradient passes where the bounds hold x (ends included), as TensorFlow's
      // `_ClipByValueGrad` has it; the bounds here are constants, which take none.
      let (x, type) = (forward.inputs[0], forward.type)
      let inside = builder.add(
        "LogicalAnd",
        [
          builder.math("GreaterEqual", x, forward.inputs[1], type: type),
          builder.math("LessEqual", x, forward.inputs[2], type: type),
        ])
      let g = try forward.gradient()
      return [
        builder.add(
          "SelectV2", [inside, g, builder.add("ZerosLike", [g], ["T": .type(type)])],
          ["T": .type(type)]), nil, nil,
      ]
    }
    registry.differentiate("Square") { builder, forward throws(GraphError) in
      let twice = builder.math(
        "Mul", forward.inputs[0], builder.scalar(2, forward.type), type: forward.type)
      return [builder.math("Mul", try forward.gradient(), twice, type: forward.type)]
    }
    registry.differentiate("Sqrt") { builder, forward throws(GraphError) in
      // d sqrt(x) = 0.5 / sqrt(x).
      let half = builder.math(
        "Mul", try forward.gradient(), builder.scalar(0.5, forward.type), type: forward.type)
      return [builder.math("RealDiv", half, forward.outputs[0], type: forward.type)]
    }
    registry.differentiate("Rsqrt") { builder, forward throws(GraphError) in
      // d x^-1/2 = -0.5 x^-3/2 = -0.5 y^3.
      let y = forward.outputs[0]
      let cube = builder.math(
        "Mul", builder.math("Square", y, type: forward.type), y, type: forward.type)
      let scaled = builder.math("Mul", cube, builder.scalar(-0.5, forward.type), type: forward.type)
      return [builder.math("Mul", try forward.gradient(), scaled, type: forward.type)]
    }
    registry.differentiate("AddN") { _, forward throws(GraphError) in
      let g = try forward.gradient()
      return forward.inputs.map { _ in g }
    }
  }

  /// The gradients of a broadcasting binary op: `partials` gives each operand's gradient in the
  /// output's shape (from the builder, x, y, the output gradient and the type), then each is
  /// summed over the dimensions its operand was broadcast along.
  private static func broadcasting(
    _ builder: inout GradientBuilder, _ forward: GradientBuilder.Forward,
    _ partials: (inout GradientBuilder, Input, Input, Input, DType) -> (Input, Input)
  ) throws(GraphError) -> [Input?] {
    let (x, y, type) = (forward.inputs[0], forward.inputs[1], forward.type)
    let partial = partials(&builder, x, y, try forward.gradient(), type)
    let (dx, dy) = builder.unbroadcast(partial, x: x, y: y, type)
    return [dx, dy]
  }
}
