public import TensorCore

extension Module {
  /// The module with each TF1 dataflow loop of the top-level graph made a functional `While`.
  ///
  /// `tf.compat.v1.while_loop` builds, and freezing a `While` leaves, a loop as a frame of
  /// nodes: an `Enter` per loop variable and per loop-invariant value, a `Merge` of the entered
  /// value and the `NextIteration` of the body's result, a `Switch` on the `LoopCond` sending the
  /// value on to the body or out through an `Exit`. Each frame (inner frames first) becomes a
  /// `While` node reading what its `Enter` nodes read, with a new library function for its
  /// condition (from the `Merge` outputs to the `LoopCond`'s input) and one for its body (from
  /// the `Switch` outputs to the `NextIteration` inputs; loop invariants are extra loop
  /// variables it returns unchanged). Each `Exit` becomes an `Identity` of the `While`'s output,
  /// keeping its name, so signatures and fetches still name it. `Switch` and `Merge` outside
  /// loops (conditionals) stay. A module without `Enter` nodes is returned as it is.
  ///
  /// - Throws: ``GraphError`` with code `malformedLoop` when a frame does not have that
  ///   structure (no single `LoopCond`, a `Merge` or `Switch` missing, a node outside the frame
  ///   reading inside it other than through an `Exit`).
  public func functionalizingLoops() throws(GraphError) -> Module {
    guard graph.nodes.contains(where: { LoopOps.enter.contains($0.op) }) else { return self }
    var rewriter = try LoopRewriter(
      graph, functionNames: Set(functions.map(\.name)))
    try rewriter.rewriteFrames()
    let (graph, newID) = rewriter.compacted()
    func remap(_ input: Input) -> Input {
      guard case .output(let node, let slot) = input, let id = newID[node.index] else {
        return input
      }
      return .output(id, slot)
    }
    var signatures = self.signatures
    for (key, var signature) in signatures {
      for index in signature.inputs.indices {
        signature.inputs[index].source = remap(signature.inputs[index].source)
      }
      for index in signature.outputs.indices {
        signature.outputs[index].source = remap(signature.outputs[index].source)
      }
      signatures[key] = signature
    }
    let variables = self.variables.compactMap { variable in
      newID[variable.node.index].map { Variable(node: $0, checkpointKey: variable.checkpointKey) }
    }
    return Module(
      graph: graph, functions: functions + rewriter.newFunctions, signatures: signatures,
      variables: variables)
  }
}

extension ErrorCode where Domain == GraphError {
  /// A TF1 dataflow loop (`Enter` ... `Exit`) whose structure tfmp does not recognize.
  public static var malformedLoop: Self { Self(name: "malformedLoop") }
}

/// The op types of TF1 dataflow loops, reference variants included.
enum LoopOps {
  static let enter: Set<String> = ["Enter", "RefEnter"]
  static let exit: Set<String> = ["Exit", "RefExit"]
  static let merge: Set<String> = ["Merge", "RefMerge"]
  static let switches: Set<String> = ["Switch", "RefSwitch"]
  static let nextIteration: Set<String> = ["NextIteration", "RefNextIteration"]
}

/// Rewrites the frames of a graph into `While` nodes, innermost first, on a copy of its nodes
/// in which removed nodes are `nil` and new nodes are appended.
private struct LoopRewriter {
  struct Frame {
    var name: String
    var parent: Int
    var depth: Int
  }

  let original: Function
  var nodes: [Node?]
  /// Each node's name, removed nodes' included.
  var names: [String]
  /// Each node's frame: an index into `frames`, 0 the graph's own.
  var frameOf: [Int]
  var frames = [Frame(name: "", parent: 0, depth: 0)]
  var newFunctions: [Function] = []
  var functionNames: Set<String>
  var nodeNames: Set<String>

  init(_ graph: Function, functionNames: Set<String>) throws(GraphError) {
    original = graph
    nodes = graph.nodes
    names = graph.nodes.map(\.name)
    self.functionNames = functionNames
    nodeNames = Set(graph.nodes.map(\.name))
    frameOf = [Int](repeating: 0, count: graph.nodes.count)
    try assignFrames()
  }

  func error(_ node: Node?, _ message: String) -> GraphError {
    GraphError(
      code: .malformedLoop, function: original.name,
      location: node.map { "node '\($0.name)'" } ?? "", message: message)
  }

  /// Places every node in the frame its inputs put it in: an `Enter` starts (or joins) the
  /// frame it names inside its input's frame, an `Exit` returns to the enclosing frame, and any
  /// other node is in the frame of its first input (data before control; none: the graph).
  mutating func assignFrames() throws(GraphError) {
    var childFrames: [String: Int] = [:]  // "parent/name" -> frame
    for id in try order() {
      let node = original[id]
      let producers = (node.inputs + node.controlInputs).compactMap { input -> Int? in
        guard let producer = input.node?.index else { return nil }
        return LoopOps.merge.contains(node.op)
          && LoopOps.nextIteration.contains(original.nodes[producer].op) ? nil : producer
      }
      let inherited = producers.first.map { frameOf[$0] } ?? 0
      if LoopOps.enter.contains(node.op) {
        guard let name = node.attributes["frame_name"]?.text, !name.isEmpty else {
          throw error(node, "The Enter node has no frame_name.")
        }
        let key = "\(inherited)/\(name)"
        if let frame = childFrames[key] {
          frameOf[id.index] = frame
        } else {
          frames.append(Frame(name: name, parent: inherited, depth: frames[inherited].depth + 1))
          childFrames[key] = frames.count - 1
          frameOf[id.index] = frames.count - 1
        }
      } else if LoopOps.exit.contains(node.op) {
        guard inherited != 0 else { throw error(node, "The Exit node is in no loop frame.") }
        frameOf[id.index] = frames[inherited].parent
      } else {
        frameOf[id.index] = inherited
      }
    }
  }

  /// The nodes in dependency order over data and control inputs, the edges from
  /// `NextIteration` into `Merge` left out.
  func order() throws(GraphError) -> [NodeID] {
    let count = original.nodes.count
    var pending = [Int](repeating: 0, count: count)
    var readers = [[Int]](repeating: [], count: count)
    for (index, node) in original.nodes.enumerated() {
      for input in node.inputs + node.controlInputs {
        guard let producer = input.node?.index else { continue }
        if LoopOps.merge.contains(node.op)
          && LoopOps.nextIteration.contains(original.nodes[producer].op)
        {
          continue
        }
        pending[index] += 1
        readers[producer].append(index)
      }
    }
    var ready = (0..<count).filter { pending[$0] == 0 }.reversed().map { $0 }
    var order: [NodeID] = []
    order.reserveCapacity(count)
    while let node = ready.popLast() {
      order.append(NodeID(node))
      for reader in readers[node] {
        pending[reader] -= 1
        if pending[reader] == 0 { ready.append(reader) }
      }
    }
    guard order.count == count else {
      let stuck = pending.firstIndex { $0 > 0 }.map { original.nodes[$0] }
      throw error(stuck, "The node is on a cycle that does not pass through a Merge.")
    }
    return order
  }

  mutating func rewriteFrames() throws(GraphError) {
    let inner = frames.indices.dropFirst().sorted { frames[$0].depth > frames[$1].depth }
    for frame in inner { try rewrite(frame) }
  }

  /// The readers of each node's outputs through data inputs: (reader, input position).
  func readers() -> [[(node: Int, position: Int)]] {
    var readers = [[(node: Int, position: Int)]](repeating: [], count: nodes.count)
    for (index, node) in nodes.enumerated() {
      guard let node else { continue }
      for (position, input) in node.inputs.enumerated() {
        if let producer = input.node?.index { readers[producer].append((index, position)) }
      }
    }
    return readers
  }

  mutating func rewrite(_ frame: Int) throws(GraphError) {
    let name = frames[frame].name
    let members = nodes.indices.filter { nodes[$0] != nil && frameOf[$0] == frame }
    let readers = readers()
    func single(_ candidates: [Int], _ what: String, for node: Int) throws(GraphError) -> Int {
      guard candidates.count == 1 else {
        throw error(
          nodes[node],
          "Expected one \(what) in loop frame '\(name)', found \(candidates.count).")
      }
      return candidates[0]
    }
    let enters = members.filter { LoopOps.enter.contains(nodes[$0]?.op ?? "") }
    let loopConditions = members.filter { nodes[$0]?.op == "LoopCond" }
    guard let firstEnter = enters.first else {
      throw error(nil, "Loop frame '\(name)' has no Enter.")
    }
    let loopCondition = try single(loopConditions, "LoopCond", for: firstEnter)
    let variables = enters.filter { nodes[$0]?.attributes["is_constant"] != .bool(true) }
    let invariants = enters.filter { nodes[$0]?.attributes["is_constant"] == .bool(true) }
    struct LoopVariable {
      var enter: Int
      var merge: Int
      var switchNode: Int
      var nextIteration: Int
      var exits: [Int]
    }
    var loop: [LoopVariable] = []
    for enter in variables {
      let merge = try single(
        readers[enter].map(\.node).filter { LoopOps.merge.contains(nodes[$0]?.op ?? "") },
        "Merge reading the Enter", for: enter)
      let switchNode = try single(
        readers[merge].filter {
          LoopOps.switches.contains(nodes[$0.node]?.op ?? "") && $0.position == 0
            && nodes[$0.node]?.inputs.last?.node?.index == loopCondition
        }.map(\.node), "Switch on the LoopCond reading the Merge", for: merge)
      let nextIteration = try single(
        (nodes[merge]?.inputs ?? []).compactMap(\.node?.index).filter {
          LoopOps.nextIteration.contains(nodes[$0]?.op ?? "")
        }, "NextIteration feeding the Merge", for: merge)
      let exits = readers[switchNode].filter {
        LoopOps.exit.contains(nodes[$0.node]?.op ?? "")
      }.map(\.node)
      loop.append(
        LoopVariable(
          enter: enter, merge: merge, switchNode: switchNode, nextIteration: nextIteration,
          exits: exits))
    }
    let count = loop.count + invariants.count
    let types = (loop.map(\.enter) + invariants).map { nodes[$0]?.type("T") }
    let arguments = types.enumerated().map { Function.Argument(name: "arg\($0)", dtype: $1) }
    var boundary: [Int: [Int: Input]] = [:]  // node -> output index -> argument
    for (position, variable) in loop.enumerated() {
      boundary[variable.merge] = [0: .argument(position)]
      boundary[variable.switchNode] = [1: .argument(position)]
    }
    for (position, invariant) in invariants.enumerated() {
      boundary[invariant] = [0: .argument(loop.count + position)]
    }
    // Nodes the functions may not read: what only steers the loop.
    var steering = Set(loop.flatMap { [$0.enter, $0.nextIteration] })
    steering.insert(loopCondition)
    let condition = try extract(
      name: "\(name)/cond", arguments: arguments,
      results: [("cond", nodes[loopCondition]?.inputs.first, DType.bool)], frame: frame,
      boundary: boundary.filter { !LoopOps.switches.contains(nodes[$0.key]?.op ?? "") },
      steering: steering.union(loop.map(\.switchNode)))
    let bodyResults =
      loop.enumerated().map { position, variable in
        ("out\(position)", nodes[variable.nextIteration]?.inputs.first, types[position])
      }
      + invariants.indices.map { position in
        (
          "out\(loop.count + position)", Input.argument(loop.count + position),
          types[loop.count + position]
        )
      }
    let body = try extract(
      name: "\(name)/body", arguments: arguments, results: bodyResults, frame: frame,
      boundary: boundary, steering: steering)
    // The While reads what the Enter nodes read; the Exit nodes become its outputs.
    var attributes: [String: AttrValue] = [
      "cond": .function(FunctionReference(name: condition)),
      "body": .function(FunctionReference(name: body)),
    ]
    if types.allSatisfy({ $0 != nil }) {
      var typeList = AttrList()
      typeList.types = types.compactMap { $0 }
      attributes["T"] = .list(typeList)
    }
    if let iterations = nodes[firstEnter]?.attributes["parallel_iterations"] {
      attributes["parallel_iterations"] = iterations
    }
    let entered = loop.map(\.enter) + invariants
    var controlInputs: [Input] = []
    for input in entered.flatMap({ nodes[$0]?.controlInputs ?? [] })
    where !controlInputs.contains(input) {
      controlInputs.append(input)
    }
    let loopNode = Node(
      name: Self.unique(name, among: &nodeNames), op: "While",
      inputs: entered.compactMap { nodes[$0]?.inputs.first }, controlInputs: controlInputs,
      attributes: attributes)
    guard loopNode.inputs.count == count else {
      throw error(nodes[firstEnter], "An Enter node of loop frame '\(name)' has no input.")
    }
    nodes.append(loopNode)
    names.append(loopNode.name)
    frameOf.append(frames[frame].parent)
    let loopID = NodeID(nodes.count - 1)
    var removed = Set(members)
    for (position, variable) in loop.enumerated() {
      for exit in variable.exits {
        guard let node = nodes[exit] else { continue }
        var identity = Node(
          name: node.name, op: "Identity",
          inputs: [.output(loopID, OutputSlot(index: position))], device: node.device)
        if let type = types[position] { identity.attributes["T"] = .type(type) }
        nodes[exit] = identity
        removed.remove(exit)
      }
    }
    for index in removed { nodes[index] = nil }
    // Nothing outside the frame may read inside it but through an Exit; control inputs into it
    // are dropped (the While stands for the whole frame).
    for index in nodes.indices {
      guard var node = nodes[index] else { continue }
      for input in node.inputs {
        if let producer = input.node?.index, nodes[producer] == nil {
          throw error(
            node,
            "The node reads '\(names[producer])' inside loop frame '\(name)' "
              + "other than through an Exit.")
        }
      }
      let kept = node.controlInputs.filter { $0.node.map { nodes[$0.index] != nil } ?? true }
      if kept.count != node.controlInputs.count {
        node.controlInputs = kept
        nodes[index] = node
      }
    }
  }

  /// Copies into a new library function what computes `results` from `arguments`: the frame's
  /// nodes (and constants of the graph) reached backwards over data and control inputs from the
  /// results, reading `boundary` outputs as arguments. Returns the function's name.
  mutating func extract(
    name: String, arguments: [Function.Argument], results: [(String, Input?, DType?)],
    frame: Int, boundary: [Int: [Int: Input]], steering: Set<Int>
  ) throws(GraphError) -> String {
    var copied: [Int: NodeID] = [:]
    var body: [Node] = []
    var stack: [(node: Int, expanded: Bool)] = []
    func visit(_ input: Input) {
      if let producer = input.node?.index, boundary[producer] == nil, copied[producer] == nil {
        stack.append((producer, false))
      }
    }
    var onPath = Set<Int>()
    for case let (_, source?, _) in results { visit(source) }
    while let (index, expanded) = stack.popLast() {
      guard copied[index] == nil else { continue }
      guard let node = nodes[index] else { continue }
      if !expanded {
        guard !steering.contains(index) else {
          throw error(node, "The loop of frame '\(frames[frame].name)' reads this node directly.")
        }
        let isConstant = node.op == "Const" && node.inputs.isEmpty
        guard frameOf[index] == frame || isConstant else {
          throw error(
            node,
            "The node is outside loop frame '\(frames[frame].name)' but read inside it without "
              + "an Enter.")
        }
        guard onPath.insert(index).inserted else { continue }
        stack.append((index, true))
        for input in node.inputs { visit(input) }
        for input in node.controlInputs
        where input.node.map({ !steering.contains($0.index) }) ?? false {
          visit(input)
        }
        continue
      }
      var copy = node
      copy.inputs = []
      for input in node.inputs {
        guard let input = mapped(input, copied: copied, boundary: boundary) else {
          throw error(
            node,
            "The node reads an output of '\(input.node.map { names[$0.index] } ?? "?")' that "
              + "loop frame '\(frames[frame].name)' does not pass to its body.")
        }
        copy.inputs.append(input)
      }
      copy.controlInputs = node.controlInputs.compactMap { input in
        guard case .output(let producer, _) = input, boundary[producer.index] == nil else {
          return nil
        }
        return copied[producer.index].map { .output($0, OutputSlot()) }
      }
      copied[index] = NodeID(body.count)
      body.append(copy)
    }
    var functionResults: [Function.Result] = []
    for (resultName, source, dtype) in results {
      guard let source, let mapped = mapped(source, copied: copied, boundary: boundary)
      else {
        throw error(nil, "Loop frame '\(frames[frame].name)' has a result it cannot compute.")
      }
      functionResults.append(Function.Result(name: resultName, source: mapped, dtype: dtype))
    }
    let functionName = Self.unique(name, among: &functionNames)
    newFunctions.append(
      Function(
        name: functionName, syntax: .graph, arguments: arguments, results: functionResults,
        nodes: body))
    return functionName
  }

  /// `input` as the new function reads it: an argument for a boundary output, else the copy.
  func mapped(_ input: Input, copied: [Int: NodeID], boundary: [Int: [Int: Input]]) -> Input? {
    guard case .output(let producer, let slot) = input else { return input }
    if let argument = boundary[producer.index] { return argument[slot.index] }
    return copied[producer.index].map { .output($0, slot) }
  }

  /// `base`, else `base_1`, `base_2`, ...: the first not in `used`, which then holds it.
  static func unique(_ base: String, among used: inout Set<String>) -> String {
    var candidate = base
    var suffix = 1
    while used.contains(candidate) {
      candidate = "\(base)_\(suffix)"
      suffix += 1
    }
    used.insert(candidate)
    return candidate
  }

  /// The graph without the removed nodes, and each old node's new ID.
  func compacted() -> (Function, [NodeID?]) {
    var newID = [NodeID?](repeating: nil, count: nodes.count)
    var next = 0
    for index in nodes.indices where nodes[index] != nil {
      newID[index] = NodeID(next)
      next += 1
    }
    func remap(_ input: Input) -> Input? {
      guard case .output(let node, let slot) = input else { return input }
      return newID[node.index].map { .output($0, slot) }
    }
    let kept = nodes.compactMap { node -> Node? in
      guard var node else { return nil }
      node.inputs = node.inputs.map { remap($0) ?? $0 }
      node.controlInputs = node.controlInputs.compactMap(remap)
      return node
    }
    let graph = Function(
      name: original.name, syntax: original.syntax, arguments: original.arguments,
      results: original.results.map {
        Function.Result(name: $0.name, source: remap($0.source) ?? $0.source, dtype: $0.dtype)
      },
      controlResults: original.controlResults.compactMap { result in
        remap(result.source).map {
          Function.Result(name: result.name, source: $0, dtype: result.dtype)
        }
      },
      nodes: kept, original: original.original)
    return (graph, newID)
  }
}
