public import TensorCore
internal import Foundation

/// What tfmp knows about one op type: its arguments and their dtypes, its attributes, the
/// traits passes and the runtime rely on, and how it takes part in mixed precision.
///
/// Modelled on TensorFlow's `OpDef`: an argument is one tensor, a number of tensors given by an
/// integer attribute (`Split`'s `num_split`), or a list whose dtypes an attribute lists
/// (`IdentityN`'s `T`, a call's `Tout`); its tensors' dtype is fixed or held by a type attribute.
/// Schemas are registered with their kernels, one file per op family (see the runtime's op
/// registry); an interop test checks each against TensorFlow's own `OpDef`.
public struct OpSchema: Sendable {
  /// How many tensors an argument holds.
  public enum Count: Hashable, Sendable {
    /// Exactly one.
    case one
    /// As many as integer attribute `name` says.
    case number(String)
    /// One per dtype in list attribute `name` (which then gives their dtypes too).
    case typeList(String)
  }

  /// Where the dtype of an argument's tensors comes from.
  public enum ElementType: Hashable, Sendable, ExpressibleByStringLiteral {
    /// Type attribute `name`, which is `defaultType` when a node leaves it out.
    case attribute(String, defaultType: DType? = nil)
    /// Always this dtype.
    case fixed(DType)

    /// The type attribute named by the literal, without a default.
    public init(stringLiteral name: String) { self = .attribute(name) }
  }

  /// A named input or output argument.
  public struct Argument: Hashable, Sendable, ExpressibleByStringLiteral {
    /// The argument's name, as TensorFlow's `OpDef` gives it.
    public var name: String
    /// How many tensors it holds.
    public var count: Count
    /// Their dtype; `nil` for a ``Count/typeList(_:)`` argument, whose list holds each one's.
    public var type: ElementType?

    /// An argument `name` of `count` tensors of `type`.
    public init(_ name: String, _ count: Count = .one, type: ElementType = "T") {
      self.name = name
      self.count = count
      if case .typeList = count { self.type = nil } else { self.type = type }
    }

    /// One tensor of type attribute `T`, named by the literal (most ops' arguments).
    public init(stringLiteral name: String) { self.init(name) }
  }

  /// An attribute a node of the op carries, other than the type and number attributes its
  /// arguments imply.
  public struct Attribute: Hashable, Sendable {
    /// What kind of value it holds, named as TensorFlow's `OpDef` names it.
    public enum Kind: String, Hashable, Sendable {
      case int, float, bool, string, type, shape, tensor
      case function = "func"
      case ints = "list(int)"
      case strings = "list(string)"
      case floats = "list(float)"
      case types = "list(type)"
      case shapes = "list(shape)"
    }
    /// Its name.
    public var name: String
    /// Its kind.
    public var kind: Kind
    /// The value a node that leaves it out has; `nil` when a node must carry it.
    public var defaultValue: AttrValue?

    /// Attribute `name` of `kind`, required unless it has a `defaultValue`.
    public init(_ name: String, _ kind: Kind, default defaultValue: AttrValue? = nil) {
      self.name = name
      self.kind = kind
      self.defaultValue = defaultValue
    }

    /// An integer attribute.
    public static func int(_ name: String, _ defaultValue: Int64? = nil) -> Self {
      Self(name, .int, default: defaultValue.map(AttrValue.int))
    }
    /// A float attribute.
    public static func float(_ name: String, _ defaultValue: Float) -> Self {
      Self(name, .float, default: .float(defaultValue))
    }
    /// A boolean attribute.
    public static func bool(_ name: String, _ defaultValue: Bool) -> Self {
      Self(name, .bool, default: .bool(defaultValue))
    }
    /// A string attribute.
    public static func string(_ name: String, _ defaultValue: String? = nil) -> Self {
      Self(name, .string, default: defaultValue.map { .bytes(Data($0.utf8)) })
    }
    /// A type attribute that no argument implies (a variable's `dtype`, a cast's target).
    public static func type(_ name: String, _ defaultValue: DType? = nil) -> Self {
      Self(name, .type, default: defaultValue.map(AttrValue.type))
    }
    /// An integer list attribute.
    public static func ints(_ name: String, _ defaultValue: [Int64]? = nil) -> Self {
      Self(
        name, .ints,
        default: defaultValue.map { values in
          var list = AttrList()
          list.ints = values
          return .list(list)
        })
    }

    /// A float list attribute, required.
    public static func floats(_ name: String) -> Self { Self(name, .floats) }

    /// A string list attribute, required.
    public static func strings(_ name: String) -> Self { Self(name, .strings) }

    /// Whether `value` is of this attribute's kind.
    func admits(_ value: AttrValue) -> Bool {
      switch (kind, value) {
      case (.int, .int), (.float, .float), (.bool, .bool), (.string, .bytes), (.type, .type),
        (.shape, .shape), (.tensor, .tensor), (.function, .function):
        return true
      case (.ints, .list(let list)): return list.holdsOnly(\.ints)
      case (.strings, .list(let list)): return list.holdsOnly(\.bytes)
      case (.floats, .list(let list)): return list.holdsOnly(\.floats)
      case (.types, .list(let list)): return list.holdsOnly(\.types)
      case (.shapes, .list(let list)): return list.holdsOnly(\.shapes)
      default: return false
      }
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
  /// The attributes beyond those the arguments imply.
  public var attributes: [Attribute]
  /// What passes and the runtime may rely on.
  public var traits: Traits
  /// How the op takes part in mixed precision; `nil` when tfmp never converts it.
  public var precision: Precision?

  /// The schema of `op`.
  public init(
    _ op: String, inputs: [Argument], outputs: [Argument], attributes: [Attribute] = [],
    traits: Traits = [], precision: Precision? = nil
  ) {
    self.op = op
    self.inputs = inputs
    self.outputs = outputs
    self.attributes = attributes
    self.traits = traits
    self.precision = precision
  }

  /// How many tensors `argument` holds for a node with these attributes; `nil` for a missing
  /// attribute.
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

  /// The argument among `arguments` that tensor `position` of a node with these attributes
  /// belongs to; `nil` beyond the last or after an argument of unknown size.
  private func argument(
    at position: Int, of arguments: [Argument], attributes: [String: AttrValue]
  ) -> Argument? {
    var end = 0
    for argument in arguments {
      guard let size = size(of: argument, attributes: attributes) else { return nil }
      end += size
      if position < end { return argument }
    }
    return nil
  }

  /// The input argument that data input `position` of a node with these attributes belongs to.
  public func inputArgument(at position: Int, attributes: [String: AttrValue]) -> Argument? {
    argument(at: position, of: inputs, attributes: attributes)
  }

  /// The output argument that `slot` of a node with these attributes names.
  public func outputArgument(of slot: OutputSlot, attributes: [String: AttrValue]) -> Argument? {
    outputPosition(of: slot, attributes: attributes).flatMap {
      argument(at: $0, of: outputs, attributes: attributes)
    }
  }

  /// The number of data inputs a node with these attributes must have; `nil` when an attribute
  /// giving an argument's size is missing.
  public func inputCount(attributes: [String: AttrValue]) -> Int? {
    var total = 0
    for argument in inputs {
      guard let size = size(of: argument, attributes: attributes) else { return nil }
      total += size
    }
    return total
  }

  /// Every attribute a node of the op carries: those its arguments imply (type, number and type
  /// list attributes), then ``attributes``.
  public var allAttributes: [Attribute] {
    var all: [Attribute] = []
    func add(_ attribute: Attribute) {
      if !all.contains(where: { $0.name == attribute.name }) { all.append(attribute) }
    }
    for argument in inputs + outputs {
      switch argument.count {
      case .one: break
      case .number(let name): add(Attribute(name, .int))
      case .typeList(let name): add(Attribute(name, .types))
      }
      if case .attribute(let name, let defaultType)? = argument.type {
        add(Attribute(name, .type, default: defaultType.map(AttrValue.type)))
      }
    }
    attributes.forEach(add)
    return all
  }

  /// Why a node's attributes do not fit the schema.
  public struct AttributeProblem: Error, Sendable {
    /// What is wrong, naming the attribute.
    public var message: String
  }

  /// A node's `attributes` with the default of every attribute it leaves out, as TensorFlow
  /// fills them in when it loads a graph.
  ///
  /// - Throws: ``AttributeProblem`` for a required attribute the node lacks, or one whose value
  ///   is of another kind than the schema says.
  public func completing(_ attributes: [String: AttrValue]) throws(AttributeProblem)
    -> [String: AttrValue]
  {
    var completed = attributes
    for attribute in allAttributes {
      guard let value = attributes[attribute.name] else {
        guard let defaultValue = attribute.defaultValue else {
          throw AttributeProblem(
            message: "\(op) needs attribute '\(attribute.name)' (\(attribute.kind.rawValue)), "
              + "which the node lacks.")
        }
        completed[attribute.name] = defaultValue
        continue
      }
      guard attribute.admits(value) else {
        throw AttributeProblem(
          message: "Attribute '\(attribute.name)' of \(op) must be a \(attribute.kind.rawValue), "
            + "but the node's is \(value.kindDescription).")
      }
    }
    return completed
  }
}

/// Looks up op schemas by op type; the runtime's op registry is one.
public protocol OpSchemaSource: Sendable {
  /// The schema of `op`, or `nil` when tfmp does not know the op.
  func schema(for op: String) -> OpSchema?
}

extension AttrList {
  /// Whether every element is in the array at `keyPath` (an empty list holds any kind).
  func holdsOnly<Element>(_ keyPath: KeyPath<AttrList, [Element]>) -> Bool {
    let total =
      bytes.count + ints.count + floats.count + bools.count + types.count + shapes.count
      + tensors.count + functions.count
    return self[keyPath: keyPath].count == total
  }
}

extension AttrList {
  /// The kind of the elements, as an error message names it.
  fileprivate var elementKind: String {
    let kinds: [(Int, String)] = [
      (bytes.count, "string"), (ints.count, "int"), (floats.count, "float"), (bools.count, "bool"),
      (types.count, "type"), (shapes.count, "shape"), (tensors.count, "tensor"),
      (functions.count, "func"),
    ]
    return kinds.first { $0.0 > 0 }?.1 ?? "empty"
  }
}

extension AttrValue {
  /// The kind of value, as an error message names it.
  var kindDescription: String {
    switch self {
    case .bytes: "string"
    case .int: "int"
    case .float: "float"
    case .bool: "bool"
    case .type: "type"
    case .shape: "shape"
    case .tensor: "tensor"
    case .list(let list): "list(\(list.elementKind))"
    case .function: "func"
    case .placeholder(let name): "placeholder '\(name)' (the function is not instantiated)"
    case .unsupported(let what): "value tfmp cannot read (\(what))"
    }
  }
}
