internal import GraphIR
internal import Foundation
internal import TensorCore

/// The matrix products' gradients (TensorFlow's `math_grad.py`): each operand's gradient is a
/// product of the output gradient with the other operand, transposed as the forward product
/// transposed it.
extension LinearAlgebraKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    registry.differentiate("MatMul") { builder, forward throws(GraphError) in
      let attributes = forward.node.attributes
      let (dx, dy) = products(
        &builder, forward, op: "MatMul", transposes: ("transpose_a", "transpose_b"),
        transposed: (
          attributes["transpose_a"] == .bool(true), attributes["transpose_b"] == .bool(true)
        ),
        try forward.gradient())
      return [dx, dy]
    }
    registry.differentiate("Einsum", by: einsumGradient)
    registry.differentiate("BatchMatMulV2", "BatchMatMul") { builder, forward throws(GraphError) in
      let attributes = forward.node.attributes
      let (dx, dy) = products(
        &builder, forward, op: "BatchMatMulV2", transposes: ("adj_x", "adj_y"),
        transposed: (attributes["adj_x"] == .bool(true), attributes["adj_y"] == .bool(true)),
        try forward.gradient())
      // Summed over the batch dimensions each operand was broadcast along, as TensorFlow does.
      let (x, y, type) = (forward.inputs[0], forward.inputs[1], forward.type)
      func batch(_ operand: Input) -> Input {
        builder.slice(builder.shape(operand, type), begin: [0], end: [-2], strides: [1])
      }
      let arguments = builder.node(
        "BroadcastGradientArgs", [batch(x), batch(y)], ["T": .type(.int32)])
      func reduced(_ gradient: Input, _ operand: Input, _ position: Int) -> Input {
        builder.reshape(
          builder.sum(
            gradient, axes: builder.output(arguments, position), keepDimensions: false, type: type),
          like: operand, type: type)
      }
      return [reduced(dx, x, 0), reduced(dy, y, 1)]
    }
  }

  /// Einsum of two operands, explicit output, no ellipsis: each operand's gradient is the
  /// einsum of the output gradient with the other operand into the operand's labels, which
  /// needs every label of the operand in the output or in the other operand.
  static func einsumGradient(_ builder: inout GradientBuilder, _ forward: GradientBuilder.Forward)
    throws(GraphError) -> [Input?]
  {
    let equation = forward.node.attributes["equation"]?.text ?? ""
    let sides = equation.components(separatedBy: "->")
    let operands = sides.first?.components(separatedBy: ",") ?? []
    guard sides.count == 2, operands.count == 2, forward.inputs.count == 2,
      !equation.contains(".")
    else {
      throw GraphError(
        code: .noGradient,
        message: "tfmp differentiates Einsum of two operands with an explicit output and no "
          + "ellipsis, not '\(equation)'.")
    }
    let output = sides[1]
    let g = try forward.gradient()
    var gradients: [Input?] = []
    for (index, labels) in operands.enumerated() {
      let other = operands[1 - index]
      guard labels.allSatisfy({ output.contains($0) || other.contains($0) }),
        Set(labels).count == labels.count
      else {
        throw GraphError(
          code: .noGradient,
          message: "Einsum '\(equation)' sums labels of one operand alone or repeats one; tfmp "
            + "does not differentiate that yet.")
      }
      gradients.append(
        builder.add(
          "Einsum", [g, forward.inputs[1 - index]],
          [
            "T": .type(forward.type), "N": .int(2),
            "equation": .bytes(Data("\(output),\(other)->\(labels)".utf8)),
          ]))
    }
    return gradients
  }

  /// The gradients of a product `op` of x and y, transposed (adjointed) as `transposed` says
  /// through the attributes named `transposes`: TensorFlow's four cases.
  private static func products(
    _ builder: inout GradientBuilder, _ forward: GradientBuilder.Forward, op: String,
    transposes: (String, String), transposed: (Bool, Bool), _ g: Input
  ) -> (Input, Input) {
    let (a, b, type) = (forward.inputs[0], forward.inputs[1], forward.type)
    func product(_ x: Input, _ y: Input, _ tx: Bool, _ ty: Bool) -> Input {
      builder.add(
        op, [x, y], ["T": .type(type), transposes.0: .bool(tx), transposes.1: .bool(ty)])
    }
    switch transposed {
    case (false, false): return (product(g, b, false, true), product(a, g, true, false))
    case (false, true): return (product(g, b, false, false), product(g, a, true, false))
    case (true, false): return (product(b, g, false, true), product(a, g, false, false))
    case (true, true): return (product(b, g, true, true), product(g, a, true, true))
    }
  }
}
