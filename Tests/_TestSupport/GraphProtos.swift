package import TFProtos
internal import Foundation
internal import SwiftProtobuf

/// Graph protos that tests build by hand.
package enum GraphProtos {
  /// A `Const` node named `name` holding `tensor`.
  package static func constant(_ name: String, _ tensor: Tensorflow_TensorProto)
    -> Tensorflow_NodeDef
  {
    var node = Tensorflow_NodeDef()
    node.name = name
    node.op = "Const"
    node.attr["dtype"] = type(tensor.dtype)
    var value = Tensorflow_AttrValue()
    value.tensor = tensor
    node.attr["value"] = value
    return node
  }

  /// A node named `name` of type `op`, reading `inputs`, with float32 `T` (or `dtype`, for a
  /// `Placeholder`).
  package static func node(_ name: String, _ op: String, _ inputs: [String] = [])
    -> Tensorflow_NodeDef
  {
    var node = Tensorflow_NodeDef()
    node.name = name
    node.op = op
    node.input = inputs
    node.attr[op == "Placeholder" ? "dtype" : "T"] = type(.dtFloat)
    return node
  }

  /// A frozen graph: `logits = MatMul(x, w)`, an unread placeholder, and an init `NoOp`.
  package static func frozenGraph() -> Tensorflow_GraphDef {
    var graph = Tensorflow_GraphDef()
    graph.node = [
      node("x", "Placeholder"), node("unused", "Placeholder"),
      constant("w", tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])),
      node("logits", "MatMul", ["x", "w"]),
      node("init", "NoOp"),
    ]
    graph.node[2].attr.removeValue(forKey: "T")
    return graph
  }

  /// Writes `graph` to `path` as a binary `.pb`.
  package static func write(_ graph: Tensorflow_GraphDef, to path: String) throws {
    try graph.serializedData().write(to: URL(fileURLWithPath: path))
  }

  /// A float32 tensor of `shape` (a vector by default).
  package static func tensor(_ values: [Float], shape: [Int]? = nil) -> Tensorflow_TensorProto {
    var tensor = Tensorflow_TensorProto()
    tensor.dtype = .dtFloat
    tensor.tensorShape = self.shape(shape ?? [values.count])
    tensor.floatVal = values
    return tensor
  }

  /// An int32 vector.
  package static func tensor(_ values: [Int32]) -> Tensorflow_TensorProto {
    var tensor = Tensorflow_TensorProto()
    tensor.dtype = .dtInt32
    tensor.tensorShape = shape([values.count])
    tensor.intVal = values
    return tensor
  }

  /// A type attribute value.
  package static func type(_ type: Tensorflow_DataType) -> Tensorflow_AttrValue {
    var value = Tensorflow_AttrValue()
    value.type = type
    return value
  }

  private static func shape(_ sizes: [Int]) -> Tensorflow_TensorShapeProto {
    var shape = Tensorflow_TensorShapeProto()
    shape.dim = sizes.map { size in
      var dimension = Tensorflow_TensorShapeProto.Dim()
      dimension.size = Int64(size)
      return dimension
    }
    return shape
  }
}
