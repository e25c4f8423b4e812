/// What tfmp knows about one op type's interface: its arguments, how many tensors each holds,
/// and the traits passes and the runtime rely on.
///
/// Modelled on TensorFlow's `OpDef`: an argument is one tensor, a number of tensors given by an
/// integer attribute (`Split`'s `num_split`), or a list whose dtypes an attribute lists
/// (`IdentityN`'s `T`, a call's `Tout`). Schemas are registered with their kernels, one file per
/// op family (see the runtime's op registry).
public struct OpSchema: Sendable {
  /// How many tensors an argument holds.
  public enum Count: Hashable, Sendable {
    /// Exactly one.
    case one
    /// As many as integer attribute `name` says.
    case number(String)
    /// One per dtype in list attribute `name`.
    case typeList(String)
    /// Any number (no attribute records it); only a last argument may be variadic.
    case variadic
  }

  /// A named input or output argument.
  public struct Argument: Hashable, Sendable {
    /// The argument's name, as TensorFlow's `OpDef` gives it.
    public var name: String
    /// How many tensors it holds.
    public var count: Count

    /// An argument `name` holding `count` tensors.
    public init(_ name: String, _ count: Count = .one) {
      self.name = name
      self.count = count
    }
  }

  /// Properties of an op that passes and the runtime act on.
  public struct Traits: OptionSet, Hashable, Sendable {
    /// The set's bits.
    public let rawValue: Int
    /// Creates a set from its bits.
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Each output element depends only on the elements at the same place in the inputs
    /// (broadcast), so the op can be fused into a block-by-block computation.
    public static let elementwise = Traits(rawValue: 1 << 0)
    /// The outputs' elements are elements of the inputs (moved, not computed): values already
    /// rounded to float16 or bfloat16 stay exact.
    public static let movesElements = Traits(rawValue: 1 << 1)
    /// Output 0 holds input 0's elements themselves (same buffer, perhaps another shape).
    public static let sharesInput = Traits(rawValue: 1 << 2)
    /// The op has effects beyond its outputs or reads state (variables, random numbers).
    public static let stateful = Traits(rawValue: 1 << 3)
    /// The op calls functions named by attributes (calls, loops, conditionals).
    public static let callsFunctions = Traits(rawValue: 1 << 4)
  }

  /// The op type (`MatMul`).
  public var op: String
  /// The input arguments, in order.
  public var inputs: [Argument]
  /// The output arguments, in order.
  public var outputs: [Argument]
  /// What passes and the runtime may rely on.
  public var traits: Traits

  /// The schema of `op`.
  public init(_ op: String, inputs: [Argument], outputs: [Argument], traits: Traits = []) {
    self.op = op
    self.inputs = inputs
    self.outputs = outputs
    self.traits = traits
  }

  /// How many tensors `argument` holds for a node with these attributes; `nil` for a variadic
  /// argument or a missing attribute.
  public func size(of argument: Argument, attributes: [String: AttrValue]) -> Int? {
    switch argument.count {
    case .one: return 1
    case .number(let name):
      guard case .int(let count)? = attributes[name], count >= 0, count <= Int64(Int32.max) else {
        return nil
      }
      return Int(count)
    case .typeList(let name):
      guard case .list(let list)? = attributes[name] else { return nil }
      return list.types.count
    case .variadic: return nil
    }
  }

  /// The position among a node's outputs of `slot`, or `nil` when the slot names no output
  /// argument of this op or lies beyond it.
  ///
  /// In a graph (no argument name) the slot's index is the position. In a function body the
  /// position is the sizes of the arguments before the named one plus the index.
  public func outputPosition(of slot: OutputSlot, attributes: [String: AttrValue]) -> Int? {
    guard let name = slot.argument else { return slot.index }
    var offset = 0
    for argument in outputs {
      let size = self.size(of: argument, attributes: attributes)
      if argument.name == name {
        if let size, slot.index >= size { return nil }
        return offset + slot.index
      }
      guard let size else { return nil }
      offset += size
    }
    return nil
  }

  /// The number of data inputs a node with these attributes must have; `nil` when a variadic
  /// argument leaves it open (then at least ``minimumInputCount(attributes:)``).
  public func inputCount(attributes: [String: AttrValue]) -> Int? {
    var total = 0
    for argument in inputs {
      guard let size = size(of: argument, attributes: attributes) else { return nil }
      total += size
    }
    return total
  }

  /// The fewest data inputs a node may have: every argument but variadic ones at their size.
  public func minimumInputCount(attributes: [String: AttrValue]) -> Int {
    inputs.reduce(0) { $0 + (size(of: $1, attributes: attributes) ?? 0) }
  }
}

/// Looks up op schemas by op type; the runtime's op registry is one.
public protocol OpSchemaSource: Sendable {
  /// The schema of `op`, or `nil` when tfmp does not know the op.
  func schema(for op: String) -> OpSchema?
}

extension OpSchema.Argument: ExpressibleByStringLiteral {
  /// An argument holding one tensor, named by the literal.
  public init(stringLiteral name: String) { self.init(name) }
}
