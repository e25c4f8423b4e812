public import TensorCore

/// A function body of the library, or the top-level graph of a model.
///
/// Nodes refer to each other by ``NodeID`` (their index here); names are looked up through an
/// index the function keeps in step with every edit made through its methods.
public struct Function: Sendable {
  /// An argument of a function (the top-level graph has none: its inputs are placeholders).
  public struct Argument: Hashable, Sendable {
    /// The argument's name, which bare references in the body use.
    public var name: String
    /// The declared dtype; `nil` when the definition gives it through an attribute.
    public var dtype: DType?
    /// For a resource argument, the dtypes of the variables its handle data records (`nil` for
    /// a number tfmp does not know).
    public var handleDTypes: [DType?]

    /// An argument named `name` of type `dtype`.
    public init(name: String, dtype: DType?, handleDTypes: [DType?] = []) {
      self.name = name
      self.dtype = dtype
      self.handleDTypes = handleDTypes
    }
  }

  /// A named result of a function: the value it returns under that name.
  public struct Result: Hashable, Sendable {
    /// The output argument's name.
    public var name: String
    /// The value returned.
    public var source: Input
    /// The declared dtype; `nil` when given through an attribute, or for the top-level
    /// graph's control results.
    public var dtype: DType?

    /// The result `name`, returning `source`.
    public init(name: String, source: Input, dtype: DType? = nil) {
      self.name = name
      self.source = source
      self.dtype = dtype
    }
  }

  /// The function's name; `<graph>` for the top-level graph.
  public var name: String
  /// How the function's nodes spell tensor references.
  public let syntax: ReferenceSyntax
  /// The arguments in order; ``Input/argument(_:)`` counts positions here. Changed through
  /// ``replaceArguments(with:)`` and ``updateArgument(at:_:)``, which keep the index by name
  /// (an observer comparing old and new would copy the array at every change of one argument).
  public private(set) var arguments: [Argument]
  /// The results in the order of the definition's output arguments.
  public var results: [Result]
  /// Nodes that must have run when the function returns (`control_ret`), by name.
  public var controlResults: [Result]
  /// The nodes; a ``NodeID`` is an index into this array.
  public private(set) var nodes: [Node]
  /// The file's own record of the function; `nil` for the top-level graph and new functions.
  public var original: Preserved?
  private var index: [String: NodeID]
  /// The position of each argument by name (the first, should a malformed file repeat one).
  private var argumentIndex: [String: Int]

  /// The name of the top-level graph in messages.
  public static let graphName = "<graph>"

  /// A function with these parts; its name index is built here.
  public init(
    name: String, syntax: ReferenceSyntax, arguments: [Argument] = [], results: [Result] = [],
    controlResults: [Result] = [], nodes: [Node], original: Preserved? = nil
  ) {
    self.name = name
    self.syntax = syntax
    self.arguments = arguments
    self.results = results
    self.controlResults = controlResults
    self.nodes = nodes
    self.original = original
    var index: [String: NodeID] = [:]
    index.reserveCapacity(nodes.count)
    for (position, node) in nodes.enumerated() where index[node.name] == nil {
      index[node.name] = NodeID(position)
    }
    self.index = index
    self.argumentIndex = Self.positions(of: arguments)
  }

  private static func positions(of arguments: [Argument]) -> [String: Int] {
    var positions: [String: Int] = [:]
    positions.reserveCapacity(arguments.count)
    for (position, argument) in arguments.enumerated() where positions[argument.name] == nil {
      positions[argument.name] = position
    }
    return positions
  }

  /// The node with this ID.
  ///
  /// Modified in place: a node's fields are one copy-on-write box, which a copy taken to
  /// change and store back would copy whole.
  public subscript(id: NodeID) -> Node {
    get { nodes[id.index] }
    _modify {
      let oldName = nodes[id.index].name
      yield &nodes[id.index]
      let newName = nodes[id.index].name
      if newName != oldName {
        if index[oldName] == id { index[oldName] = nil }
        if index[newName] == nil { index[newName] = id }
      }
    }
  }

  /// The IDs of all nodes, in order.
  public var nodeIDs: [NodeID] { nodes.indices.map(NodeID.init) }

  /// The node named `name` (the first, should a malformed file have two).
  public func id(of name: String) -> NodeID? { index[name] }

  /// The position of the argument named `name`.
  public func argumentPosition(of name: String) -> Int? { argumentIndex[name] }

  /// Replaces every argument.
  public mutating func replaceArguments(with arguments: [Argument]) {
    self.arguments = arguments
    argumentIndex = Self.positions(of: arguments)
  }

  /// Changes the argument at `position` in place.
  public mutating func updateArgument(at position: Int, _ update: (inout Argument) -> Void) {
    let name = arguments[position].name
    update(&arguments[position])
    if arguments[position].name != name { argumentIndex = Self.positions(of: arguments) }
  }

  /// Adds `node` and returns its ID.
  @discardableResult
  public mutating func append(_ node: Node) -> NodeID {
    let id = NodeID(nodes.count)
    nodes.append(node)
    if index[node.name] == nil { index[node.name] = id }
    return id
  }

  /// A node name not yet used in this function, nor by an argument: `base`, else `base_1`, ...
  public func uniqueName(_ base: String) -> String {
    var candidate = base
    var suffix = 1
    while index[candidate] != nil || argumentPosition(of: candidate) != nil {
      candidate = "\(base)_\(suffix)"
      suffix += 1
    }
    return candidate
  }

  /// Resolves a parsed reference against this function's nodes and arguments.
  ///
  /// A reference that names nothing here becomes ``Input/unresolved(_:)``; a control reference
  /// resolves to its argument or to output 0 of its node.
  public func resolve(_ reference: TensorReference) -> Input {
    switch syntax {
    case .function where reference.outputArgument == nil:
      // A bare name is an argument; a control input may also name a node.
      if let position = argumentPosition(of: reference.name) { return .argument(position) }
      guard reference.isControl, let node = index[reference.name] else {
        return .unresolved(reference)
      }
      return .output(node, OutputSlot())
    default:
      guard let node = index[reference.name] else { return .unresolved(reference) }
      return .output(node, OutputSlot(argument: reference.outputArgument, index: reference.index))
    }
  }

  /// The reference that spells `input` in this function (the inverse of ``resolve(_:)``).
  public func reference(to input: Input, control: Bool = false) -> TensorReference {
    switch input {
    case .argument(let position):
      return TensorReference(name: arguments[position].name, isControl: control)
    case .output(let node, let slot):
      return TensorReference(
        name: nodes[node.index].name, outputArgument: slot.argument, index: slot.index,
        isControl: control)
    case .unresolved(let reference):
      return reference
    }
  }

  /// For each node, the nodes that read its outputs through data inputs, with the input's position.
  public func consumers() -> [[(node: NodeID, position: Int)]] {
    var consumers = [[(node: NodeID, position: Int)]](repeating: [], count: nodes.count)
    for (index, node) in nodes.enumerated() {
      for (position, input) in node.inputs.enumerated() {
        if case .output(let producer, _) = input {
          consumers[producer.index].append((NodeID(index), position))
        }
      }
    }
    return consumers
  }
}
