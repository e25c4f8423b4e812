internal import GraphIR
internal import TensorCore

/// The matrix products' gradients (TensorFlow's `math_grad.py`): each operand's gradient is a
/// product of the output gradient with the other operand, transposed as the forward product
/// transposed it.
extension LinearAlgebraKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    registry.differentiate("MatMul") { builder, forward throws(GraphError) in
      let (a, b, g, type) = (
        forward.inputs[0], forward.inputs[1], try forward.gradient(), forward.type
      )
      let attributes = forward.node.attributes
      let (transposeA, transposeB) = (
        attributes["transpose_a"] == .bool(true), attributes["transpose_b"] == .bool(true)
      )
      func product(_ x: Input, _ y: Input, _ tx: Bool, _ ty: Bool) -> Input {
        builder.add(
          "MatMul", [x, y],
          ["T": .type(type), "transpose_a": .bool(tx), "transpose_b": .bool(ty)])
      }
      switch (transposeA, transposeB) {
      case (false, false): return [product(g, b, false, true), product(a, g, true, false)]
      case (false, true): return [product(g, b, false, false), product(g, a, true, false)]
      case (true, false): return [product(b, g, false, true), product(a, g, false, false)]
      case (true, true): return [product(b, g, true, true), product(g, a, true, true)]
      }
    }
  }
}
