extension Module {
  /// The ops that call a library function named by their `f` attribute.
  public static let callOps: Set<String> = ["PartitionedCall", "StatefulPartitionedCall"]

  /// This module with every call of the top-level graph replaced by the nodes of the function it
  /// calls, recursively, so that the graph holds the whole computation of its signatures (what
  /// differentiation needs); the library stays as it was. An inlined node is named after its
  /// call, `call/node`; a call's control inputs hold back the inlined nodes that read nothing,
  /// and what waited for the call waits for a `NoOp` named after it that waits for every
  /// inlined node.
  ///
  /// TF1 dataflow loops should be functionalized first (``functionalizingLoops()``): their back
  /// edges are left unresolved here.
  ///
  /// - Throws: ``GraphError`` for a call of a function the library lacks, or calls that recurse.
  public func inliningCalls(schemas: any OpSchemaSource) throws(GraphError) -> Module {
    try inliningCallsTracingOrigins(schemas: schemas).module
  }

  /// Where a node of an inlined graph comes from: the function it was copied from
  /// (``Function/graphName`` for the top-level graph) and its name there; for the `NoOp`
  /// standing for a call, the call's.
  public struct NodeOrigin: Hashable, Sendable {
    /// The function's name.
    public var function: String
    /// The node's name in it.
    public var node: String
  }

  /// ``inliningCalls(schemas:)``, and where each node of the inlined graph comes from (by
  /// position): a function called twice gives two nodes of one origin.
  ///
  /// - Throws: As ``inliningCalls(schemas:)``.
  public func inliningCallsTracingOrigins(schemas: any OpSchemaSource) throws(GraphError)
    -> (module: Module, origins: [NodeOrigin])
  {
    var inliner = Inliner(module: self, schemas: schemas)
    var inputs: [Input] = []
    var mapped: [NodeID: Inliner.Mapped] = [:]
    // Control inputs too: a control input on a node not yet copied would be lost.
    for id in graph.topologicalOrder(followingControls: true) {
      let node = graph[id]
      mapped[id] = try inliner.copy(node, in: graph, prefix: "", arguments: &inputs, mapped: mapped)
    }
    var module = self
    let resolve = { (input: Input) -> Input in
      Inliner.resolve(input, in: self.graph, mapped: mapped, arguments: [], schemas: schemas)
    }
    module.graph = Function(
      name: graph.name, syntax: .graph, arguments: graph.arguments,
      results: graph.results.map { Function.Result(name: $0.name, source: resolve($0.source)) },
      controlResults: graph.controlResults, nodes: inliner.nodes, original: graph.original)
    for (key, signature) in signatures {
      var updated = signature
      updated.inputs = signature.inputs.map { endpoint in
        var endpoint = endpoint
        endpoint.source = resolve(endpoint.source)
        return endpoint
      }
      updated.outputs = signature.outputs.map { endpoint in
        var endpoint = endpoint
        endpoint.source = resolve(endpoint.source)
        return endpoint
      }
      module.signatures[key] = updated
    }
    module.variables = variables.compactMap { variable in
      guard case .node(let node)? = mapped[variable.node] else { return nil }
      var moved = variable
      moved.node = node
      return moved
    }
    return (module, inliner.origins)
  }
}

/// Copies nodes into one flat graph, inlining calls.
private struct Inliner {
  /// What a node of the source became: one node, or (for a call) the inlined function's results
  /// and the `NoOp` standing for the call in control inputs.
  enum Mapped {
    case node(NodeID)
    case call(results: [Input], done: NodeID)
  }

  let module: Module
  let schemas: any OpSchemaSource
  var nodes: [Node] = []
  /// Where each of `nodes` comes from.
  var origins: [Module.NodeOrigin] = []
  private var names = Set<String>()
  private var active: [String] = []

  init(module: Module, schemas: any OpSchemaSource) {
    self.module = module
    self.schemas = schemas
  }

  /// Copies `node` of `function` (its nodes so far mapped by `mapped`, its arguments being
  /// `arguments`), inlining it if it is a call.
  mutating func copy(
    _ node: Node, in function: Function, prefix: String, arguments: inout [Input],
    mapped: [NodeID: Mapped]
  ) throws(GraphError) -> Mapped {
    let inputs = node.inputs.map {
      Self.resolve($0, in: function, mapped: mapped, arguments: arguments, schemas: schemas)
    }
    let controls = node.controlInputs.compactMap {
      Self.control($0, in: function, mapped: mapped, arguments: arguments)
    }
    guard Module.callOps.contains(node.op), case .function(let callee)? = node.attributes["f"]
    else {
      var copy = node
      copy.name = prefix + node.name
      copy.inputs = inputs
      copy.controlInputs = controls
      copy.original = nil
      return .node(append(copy, from: function.name, named: node.name))
    }
    guard let body = module.function(named: callee.name) else {
      throw GraphError(
        code: .unresolvedInput, function: function.name, location: "node '\(node.name)'",
        message: "The call names function '\(callee.name)', which the library lacks.")
    }
    guard !active.contains(callee.name) else {
      throw GraphError(
        code: .cycle, function: function.name, location: "node '\(node.name)'",
        message: "Function '\(callee.name)' calls itself; calls that recurse cannot be inlined.")
    }
    active.append(callee.name)
    defer { active.removeLast() }
    var calleeArguments = inputs
    var inner: [NodeID: Mapped] = [:]
    var copied: [NodeID] = []
    let first = nodes.count
    for id in body.topologicalOrder(followingControls: true) {
      let mappedNode = try copy(
        body[id], in: body, prefix: prefix + node.name + "/", arguments: &calleeArguments,
        mapped: inner)
      inner[id] = mappedNode
      if case .node(let new) = mappedNode { copied.append(new) }
    }
    // The call's control inputs hold back the inlined nodes that read nothing.
    for index in first..<nodes.count where nodes[index].inputs.isEmpty {
      nodes[index].controlInputs += controls
    }
    let results = body.results.map {
      Self.resolve($0.source, in: body, mapped: inner, arguments: calleeArguments, schemas: schemas)
    }
    let done = append(
      Node(
        name: prefix + node.name, op: "NoOp",
        controlInputs: copied.map { .output($0, OutputSlot()) }),
      from: function.name, named: node.name)
    return .call(results: results, done: done)
  }

  /// Appends `node`, a copy of node `original` of function `function`, under a name not yet
  /// taken.
  private mutating func append(_ node: Node, from function: String, named original: String)
    -> NodeID
  {
    var node = node
    var name = node.name
    var suffix = 1
    while names.contains(name) {
      name = "\(node.name)_\(suffix)"
      suffix += 1
    }
    node.name = name
    names.insert(name)
    nodes.append(node)
    origins.append(Module.NodeOrigin(function: function, node: original))
    return NodeID(nodes.count - 1)
  }

  /// Where data input `input` of a node of `function` now comes from.
  static func resolve(
    _ input: Input, in function: Function, mapped: [NodeID: Mapped], arguments: [Input],
    schemas: any OpSchemaSource
  ) -> Input {
    switch input {
    case .argument(let index):
      return index < arguments.count ? arguments[index] : input
    case .unresolved:
      return input
    case .output(let producer, let slot):
      let definition = function[producer]
      let position =
        schemas.schema(for: definition.op)?.outputPosition(
          of: slot, attributes: definition.attributes) ?? slot.index
      switch mapped[producer] {
      case .node(let id)?: return .output(id, OutputSlot(index: position))
      case .call(let results, _)?:
        return position < results.count
          ? results[position] : .unresolved(function.reference(to: input))
      case nil:
        // A back edge (a TF1 loop's NextIteration): functionalize loops first.
        return .unresolved(function.reference(to: input))
      }
    }
  }

  /// Where control input `input` of a node of `function` now points.
  private static func control(
    _ input: Input, in function: Function, mapped: [NodeID: Mapped], arguments: [Input]
  ) -> Input? {
    switch input {
    case .argument(let index):
      return index < arguments.count ? arguments[index] : nil
    case .unresolved: return input
    case .output(let producer, _):
      switch mapped[producer] {
      case .node(let id)?: return .output(id, OutputSlot())
      case .call(_, let done)?: return .output(done, OutputSlot())
      case nil: return nil
      }
    }
  }
}
