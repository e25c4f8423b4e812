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

  /// A TF1 graph with a dataflow loop and a conditional, as `tf.compat.v1.while_loop` and
  /// `tf.compat.v1.cond` build them: `halved` is `x` halved `iterations` times in a loop frame,
  /// and `out` is `halved * 2` when `flag` is true, else the constant 7 (on the branch whose
  /// pivot is a control input).
  package static func loopAndConditional(iterations: Int32) -> Tensorflow_GraphDef {
    func enter(_ name: String, _ input: String, constant: Bool = false, type: Tensorflow_DataType)
      -> Tensorflow_NodeDef
    {
      var enter = node(name, "Enter", [input])
      enter.attr["T"] = self.type(type)
      var frame = Tensorflow_AttrValue()
      frame.s = Data("loop".utf8)
      enter.attr["frame_name"] = frame
      var isConstant = Tensorflow_AttrValue()
      isConstant.b = constant
      enter.attr["is_constant"] = isConstant
      return enter
    }
    func typed(_ node: Tensorflow_NodeDef, _ type: Tensorflow_DataType) -> Tensorflow_NodeDef {
      var node = node
      node.attr["T"] = self.type(type)
      return node
    }
    func controlled(_ node: Tensorflow_NodeDef, by pivot: String) -> Tensorflow_NodeDef {
      var node = node
      node.input.append("^" + pivot)
      return node
    }
    var flag = node("flag", "Placeholder")
    flag.attr["dtype"] = type(.dtBool)
    var graph = Tensorflow_GraphDef()
    graph.node = [
      node("x", "Placeholder"), flag,
      constant("zero", scalar(0)), constant("half", tensor([0.5], shape: [])),
      enter("enter_i", "zero", type: .dtInt32), enter("enter_x", "x", type: .dtFloat),
      enter("enter_half", "half", constant: true, type: .dtFloat),
      typed(node("merge_i", "Merge", ["enter_i", "next_i"]), .dtInt32),
      node("merge_x", "Merge", ["enter_x", "next_x"]),
      controlled(constant("limit", scalar(iterations)), by: "merge_i"),
      typed(node("less", "Less", ["merge_i", "limit"]), .dtInt32),
      node("loop_cond", "LoopCond", ["less"]),
      typed(node("switch_i", "Switch", ["merge_i", "loop_cond"]), .dtInt32),
      node("switch_x", "Switch", ["merge_x", "loop_cond"]),
      typed(node("body_i", "Identity", ["switch_i:1"]), .dtInt32),
      node("body_x", "Identity", ["switch_x:1"]),
      controlled(constant("one", scalar(1)), by: "body_i"),
      typed(node("add", "AddV2", ["body_i", "one"]), .dtInt32),
      node("mul", "Mul", ["body_x", "enter_half"]),
      typed(node("next_i", "NextIteration", ["add"]), .dtInt32),
      node("next_x", "NextIteration", ["mul"]),
      node("halved", "Exit", ["switch_x"]),
      typed(node("switch_flag", "Switch", ["flag", "flag"]), .dtBool),
      typed(node("pivot_t", "Identity", ["switch_flag:1"]), .dtBool),
      typed(node("pivot_f", "Identity", ["switch_flag:0"]), .dtBool),
      node("switch_halved", "Switch", ["halved", "flag"]),
      controlled(constant("two", tensor([2], shape: [])), by: "pivot_t"),
      node("doubled", "Mul", ["switch_halved:1", "two"]),
      controlled(constant("seven", tensor([7], shape: [])), by: "pivot_f"),
      node("out", "Merge", ["seven", "doubled"]),
    ]
    for index in graph.node.indices where graph.node[index].op == "Merge" {
      var count = Tensorflow_AttrValue()
      count.i = 2
      graph.node[index].attr["N"] = count
    }
    return graph
  }

  /// A library function: `arguments` and `results` as (name, type); `returns` maps each result
  /// to the tensor it is (`node:output:index`).
  package static func function(
    _ name: String, arguments: [(String, Tensorflow_DataType)],
    results: [(String, Tensorflow_DataType)], nodes: [Tensorflow_NodeDef],
    returns: [String: String]
  ) -> Tensorflow_FunctionDef {
    func argument(_ pair: (String, Tensorflow_DataType)) -> Tensorflow_OpDef.ArgDef {
      var argument = Tensorflow_OpDef.ArgDef()
      argument.name = pair.0
      argument.type = pair.1
      return argument
    }
    var function = Tensorflow_FunctionDef()
    function.signature.name = name
    function.signature.inputArg = arguments.map(argument)
    function.signature.outputArg = results.map(argument)
    function.nodeDef = nodes
    function.ret = returns
    return function
  }

  /// An attribute naming function `name`.
  package static func function(_ name: String) -> Tensorflow_AttrValue {
    var value = Tensorflow_AttrValue()
    value.func.name = name
    return value
  }

  /// A list-of-types attribute value.
  package static func types(_ types: [Tensorflow_DataType]) -> Tensorflow_AttrValue {
    var value = Tensorflow_AttrValue()
    value.list.type = types
    return value
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

  /// An int32 scalar.
  package static func scalar(_ value: Int32) -> Tensorflow_TensorProto {
    var tensor = Tensorflow_TensorProto()
    tensor.dtype = .dtInt32
    tensor.tensorShape = shape([])
    tensor.intVal = [value]
    return tensor
  }

  /// A type attribute value.
  package static func type(_ type: Tensorflow_DataType) -> Tensorflow_AttrValue {
    var value = Tensorflow_AttrValue()
    value.type = type
    return value
  }

  /// A shape of `sizes`.
  package static func shape(_ sizes: [Int]) -> Tensorflow_TensorShapeProto {
    var shape = Tensorflow_TensorShapeProto()
    shape.dim = sizes.map { size in
      var dimension = Tensorflow_TensorShapeProto.Dim()
      dimension.size = Int64(size)
      return dimension
    }
    return shape
  }
}
