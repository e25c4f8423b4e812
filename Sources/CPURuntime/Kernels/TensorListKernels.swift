internal import TensorCore
internal import GraphIR

/// TensorList ops, as `tf.while_loop` uses them to collect per-step values: a list is an array
/// of optional tensors (unset elements are nil).
enum TensorListKernels {
  static func register(in registry: inout OpRegistry) {
    let list = OpSchema.Argument.fixed("input_handle", .variant)
    let index = OpSchema.Argument.fixed("index", .int32)
    let element = OpSchema.ElementType.attribute("element_dtype")
    let schemas: [(String, [OpSchema.Argument], OpSchema.Argument)] = [
      (
        "TensorListReserve",
        [.init("element_shape", type: "shape_type"), .fixed("num_elements", .int32)],
        .fixed("handle", .variant)
      ),
      (
        "TensorListFromTensor",
        [.init("tensor", type: element), .init("element_shape", type: "shape_type")],
        .fixed("output_handle", .variant)
      ),
      (
        "TensorListGetItem", [list, index, .init("element_shape", type: .index("Tshape"))],
        .init("item", type: element)
      ),
      (
        "TensorListSetItem", [list, index, .init("item", type: element)],
        .fixed("output_handle", .variant)
      ),
      ("TensorListLength", [list], .fixed("length", .int32)),
      ("TensorListStack", [list, .fixed("element_shape", .int32)], .init("tensor", type: element)),
    ]
    for (op, inputs, output) in schemas {
      // Reserve's element type is implied by no argument.
      let attributes: [OpSchema.Attribute] =
        op == "TensorListReserve" ? [.type("element_dtype")] : []
      registry.add(op, inputs: inputs, outputs: [output], attributes: attributes, .values(execute))
    }
  }

  static func execute(_ context: KernelContext, _ inputs: [Value]) throws -> [Value] {
    func tensor(_ index: Int) throws -> Tensor {
      guard index < inputs.count, case .tensor(let value) = inputs[index] else {
        throw KernelError("Input \(index) must be a tensor.")
      }
      return value
    }
    func list() throws -> [Tensor?] {
      guard case .list(let elements)? = inputs.first else {
        throw KernelError("Input 0 must be a TensorList.")
      }
      return elements
    }
    func position(_ index: Int, in elements: [Tensor?]) throws -> Int {
      guard let value = try tensor(index).requireIntegers().first, elements.indices.contains(value)
      else {
        throw KernelError("The list index is outside the list of \\(elements.count).")
      }
      return value
    }
    switch context.node.op {
    case "TensorListReserve":
      guard let count = try tensor(1).requireIntegers().first, count >= 0 else {
        throw KernelError("TensorListReserve needs a non-negative num_elements.")
      }
      // Each element a reference to a tensor.
      _ = try context.allocating([count, MemoryLayout<Tensor?>.stride], .uint8)
      return [.list(Array(repeating: nil, count: count))]
    case "TensorListFromTensor":
      let value = try tensor(0)
      guard let count = value.shape.dimensions.first else {
        throw KernelError("A scalar cannot be unstacked.")
      }
      let element = Shape(Array(value.shape.dimensions.dropFirst()))
      let size = element.elementCount ?? 0
      return [
        .list(
          try (0..<count).map { row in
            try ShapeKernels.gather(
              [value], (0..<size).map { (0, row * size + $0) }, dtype: value.dtype, shape: element)
          })
      ]
    case "TensorListGetItem":
      let elements = try list()
      guard let item = elements[try position(1, in: elements)] else {
        throw KernelError("The list element read was never set.")
      }
      return [.tensor(item)]
    case "TensorListSetItem":
      var elements = try list()
      elements[try position(1, in: elements)] = try tensor(2)
      return [.list(elements)]
    case "TensorListLength":
      return [
        .tensor(Tensor(dtype: .int32, shape: Shape([]), storage: .int32([Int32(try list().count)])))
      ]
    case "TensorListStack":
      let elements = try list().map { element -> Tensor in
        guard let element else {
          throw KernelError("The list has unset elements and cannot be stacked.")
        }
        return element
      }
      guard let first = elements.first, elements.allSatisfy({ $0.shape == first.shape }) else {
        throw KernelError("The list is empty or its elements differ in shape.")
      }
      let size = first.shape.elementCount ?? 0
      let order = elements.indices.flatMap { index in (0..<size).map { (index, $0) } }
      return [
        .tensor(
          try ShapeKernels.gather(
            elements, order, dtype: first.dtype,
            shape: Shape([elements.count] + first.shape.dimensions)))
      ]
    default:
      throw KernelError("Op '\\(context.node.op)' has no CPU kernel in tfmp yet.")
    }
  }
}
