public import TensorCore

/// How an op's gradient is emitted: given the forward node and the gradients reaching its
/// outputs, the nodes computing the gradients of its data inputs, as TensorFlow ops (`nil` for an
/// input no gradient reaches: an integer shape, an index).
///
/// Registered with the op's schema and kernel (see the runtime's op registry), as TensorFlow
/// registers its gradient functions (`math_grad.py`, `nn_grad.py`, `array_grad.py`).
public typealias Gradient =
  @Sendable (inout GradientBuilder, GradientBuilder.Forward) throws(GraphError) -> [Input?]

/// Where the differentiation pass finds each op's schema and gradient.
public protocol GradientSource: OpSchemaSource {
  /// The gradient of `op`, or `nil` when tfmp cannot differentiate it.
  func gradient(for op: String) -> Gradient?
}

/// Appends the nodes of a gradient to a function, under a name scope (`gradients/`), with
/// output references spelled as the function spells them.
public struct GradientBuilder: Sendable {
  /// The forward node being differentiated.
  public struct Forward: Sendable {
    /// The node.
    public var node: Node
    /// Its outputs, by position.
    public var outputs: [Input]
    /// The gradient reaching each output; `nil` where none does.
    public var gradients: [Input?]

    /// Its data inputs.
    public var inputs: [Input] { node.inputs }
    /// Its type attribute `T` (most ops'), float32 when it has none.
    public var type: DType { node.type("T") ?? .float32 }

    /// The gradient reaching output `position`; the gradient of an op with one output is this
    /// of 0.
    public func gradient(_ position: Int = 0) throws(GraphError) -> Input {
      guard position < gradients.count, let gradient = gradients[position] else {
        throw GraphError(
          code: .noGradient, location: "node '\(node.name)'",
          message: "No gradient reaches output \(position) of this \(node.op).")
      }
      return gradient
    }
  }

  /// The function with the nodes added so far.
  public private(set) var function: Function
  private let schemas: any OpSchemaSource
  private let scope: String

  /// A builder adding to `function`, naming nodes `scope/...`.
  public init(function: Function, schemas: any OpSchemaSource, scope: String = "gradients") {
    self.function = function
    self.schemas = schemas
    self.scope = scope
  }

  /// Adds an `op` node reading `inputs`, with `attributes`; returns its output 0 (see
  /// ``output(_:_:)`` for the others).
  @discardableResult
  public mutating func add(
    _ op: String, _ inputs: [Input], _ attributes: [String: AttrValue] = [:], name: String? = nil
  ) -> Input {
    // The node first: `output(node(...), 0)` would take a copy of the builder (the receiver)
    // before the argument grows it, and every node added would copy the whole function.
    let added = node(op, inputs, attributes, name: name)
    return output(added, 0)
  }

  /// Adds an `op` node reading `inputs`, with `attributes`; returns its ID.
  public mutating func node(
    _ op: String, _ inputs: [Input], _ attributes: [String: AttrValue] = [:], name: String? = nil
  ) -> NodeID {
    let name = function.uniqueName("\(scope)/\(name ?? op)")
    return function.append(Node(name: name, op: op, inputs: inputs, attributes: attributes))
  }

  /// Output `position` of `node`, spelled as the function spells references (in a function
  /// body, by output argument and index within it, which the op's schema gives).
  public func output(_ node: NodeID, _ position: Int) -> Input {
    guard function.syntax == .function else { return .output(node, OutputSlot(index: position)) }
    let definition = function[node]
    guard let schema = schemas.schema(for: definition.op) else {
      return .output(node, OutputSlot(argument: "output", index: position))
    }
    var start = 0
    for argument in schema.outputs {
      let size = schema.size(of: argument, attributes: definition.attributes) ?? 1
      if position < start + size {
        return .output(node, OutputSlot(argument: argument.name, index: position - start))
      }
      start += size
    }
    return .output(node, OutputSlot(argument: schema.outputs.last?.name, index: position))
  }

  /// A scalar constant `value` of float type `type`.
  public mutating func scalar(_ value: Double, _ type: DType) -> Input {
    var literal = TensorLiteral(dtype: type, shape: ShapeValue(dimensions: []))
    switch type {
    case .float64: literal.doubleValues = [value]
    case .float16, .bfloat16:
      let bits =
        type == .float16
        ? UInt16(Float16(Float(value)).bitPattern) : BFloat16(Float(value)).bitPattern
      literal.halfValues = [Int32(bits)]
    default: literal.floatValues = [Float(value)]
    }
    return add("Const", [], ["dtype": .type(type), "value": .tensor(literal)], name: "Const")
  }

  /// An int32 vector constant.
  public mutating func integers(_ values: [Int32]) -> Input {
    var literal = TensorLiteral(dtype: .int32, shape: ShapeValue(dimensions: [Int64(values.count)]))
    literal.intValues = values
    return add("Const", [], ["dtype": .type(.int32), "value": .tensor(literal)], name: "Const")
  }

  /// An int32 scalar constant.
  public mutating func integer(_ value: Int32) -> Input {
    var literal = TensorLiteral(dtype: .int32, shape: ShapeValue(dimensions: []))
    literal.intValues = [value]
    return add("Const", [], ["dtype": .type(.int32), "value": .tensor(literal)], name: "Const")
  }

  /// `StridedSlice` of `x` (of dtype `type`) with constant int32 bounds and masks, as TensorFlow
  /// spells `x[begin:end:strides]`.
  public mutating func slice(
    _ x: Input, begin: [Int32], end: [Int32], strides: [Int32], type: DType = .int32,
    beginMask: Int64 = 0, endMask: Int64 = 0, shrinkAxisMask: Int64 = 0
  ) -> Input {
    add(
      "StridedSlice", [x, integers(begin), integers(end), integers(strides)],
      [
        "T": .type(type), "Index": .type(.int32), "begin_mask": .int(beginMask),
        "end_mask": .int(endMask), "shrink_axis_mask": .int(shrinkAxisMask),
        "ellipsis_mask": .int(0), "new_axis_mask": .int(0),
      ])
  }

  /// `x` cast from `source` to `destination`, or `x` itself when they are the same.
  public mutating func cast(_ x: Input, from source: DType, to destination: DType) -> Input {
    source == destination
      ? x
      : add(
        "Cast", [x], ["SrcT": .type(source), "DstT": .type(destination), "Truncate": .bool(false)])
  }

  /// The forward node's attributes named `names` (those it has), with `T` set to its type:
  /// what a gradient op of the same configuration takes.
  public static func attributes(_ names: [String], of forward: Forward) -> [String: AttrValue] {
    var attributes = forward.node.attributes.filter { names.contains($0.key) }
    attributes["T"] = .type(forward.type)
    return attributes
  }

  /// `Shape` of `x`, as int32.
  public mutating func shape(_ x: Input, _ type: DType) -> Input {
    add("Shape", [x], ["T": .type(type), "out_type": .type(.int32)])
  }

  /// The gradients of a binary elementwise op of `x` and `y`, in the output's shape, each summed
  /// over the dimensions along which its operand was broadcast, then shaped like it
  /// (TensorFlow's `BroadcastGradientArgs` pattern: both shapes and the axes computed once).
  public mutating func unbroadcast(
    _ gradients: (x: Input, y: Input), x: Input, y: Input, _ type: DType
  ) -> (x: Input, y: Input) {
    let (xShape, yShape) = (shape(x, type), shape(y, type))
    let arguments = node("BroadcastGradientArgs", [xShape, yShape], ["T": .type(.int32)])
    return (
      reduced(gradients.x, over: output(arguments, 0), to: xShape, type),
      reduced(gradients.y, over: output(arguments, 1), to: yShape, type)
    )
  }

  /// `gradient` summed over the dimensions along which `x` was broadcast to the shape of
  /// `result` (one operand of a broadcasting op, such as `BroadcastTo`'s), then shaped like `x`.
  public mutating func unbroadcast(
    _ gradient: Input, to x: Input, from result: Input, _ type: DType
  ) -> Input {
    let xShape = shape(x, type)
    let arguments = node(
      "BroadcastGradientArgs", [xShape, shape(result, type)], ["T": .type(.int32)])
    return reduced(gradient, over: output(arguments, 0), to: xShape, type)
  }

  /// `gradient` summed over `axes`, then reshaped to `shape`.
  private mutating func reduced(_ gradient: Input, over axes: Input, to shape: Input, _ type: DType)
    -> Input
  {
    add(
      "Reshape", [sum(gradient, axes: axes, keepDimensions: false, type: type), shape],
      ["T": .type(type), "Tshape": .type(.int32)])
  }
}

extension ErrorCode where Domain == GraphError {
  /// An op on the path from a target to the loss that tfmp cannot differentiate.
  public static var noGradient: Self { Self(name: "noGradient") }
}

extension GradientBuilder {
  /// An `op` node of type `T` = `type` reading `inputs` (the math ops' only attribute).
  public mutating func math(_ op: String, _ inputs: Input..., type: DType) -> Input {
    add(op, inputs, ["T": .type(type)])
  }

  /// `x` reshaped to the shape of `like`.
  public mutating func reshape(_ x: Input, like: Input, type: DType) -> Input {
    add("Reshape", [x, shape(like, type)], ["T": .type(type), "Tshape": .type(.int32)])
  }

  /// The sum of `x` over `axes` (int32), keeping the reduced dimensions when `keepDimensions`.
  public mutating func sum(_ x: Input, axes: Input, keepDimensions: Bool, type: DType) -> Input {
    add(
      "Sum", [x, axes],
      ["T": .type(type), "Tidx": .type(.int32), "keep_dims": .bool(keepDimensions)])
  }
}
