internal import TFProtos

/// One graph to convert: a function body from the library, or a TF1-style top-level graph.
///
/// Nodes stay protobuf `NodeDef`s so that every field tfmp does not touch survives. Inputs are
/// parsed into edges once; rewriting appends nodes and edits inputs and attributes in place.
struct GraphBody {
  /// How tensors are referenced: `node:output_arg:index` inside functions, `node:index` at the
  /// top level.
  enum Syntax { case function, graph }

  /// Where a data input comes from.
  enum Source: Hashable {
    /// A function argument (bare name): float32 at the boundary.
    case argument(String)
    /// Output `index` of node `node`; `argument` is the output argument's name in function
    /// bodies, `nil` at the top level.
    case output(node: Int, argument: String?, index: Int)
  }

  /// A data input of a node.
  struct Input {
    /// The position among the node's data inputs (control inputs excluded).
    var position: Int
    /// The index in `NodeDef.input`.
    var slot: Int
    var source: Source
  }

  /// The name used in reports: the function's name, or `<graph>`.
  let name: String
  let syntax: Syntax
  var nodes: [Tensorflow_NodeDef]
  /// The data inputs of each node.
  private(set) var inputs: [[Input]] = []
  /// Which nodes read each node's outputs: (consumer, input position).
  private(set) var consumers: [[(node: Int, position: Int)]] = []
  /// Tensors leaving the body: a function's `ret` values, or a graph's signature outputs.
  var sinks: [String: String]
  private var indexByName: [String: Int] = [:]

  init(name: String, syntax: Syntax, nodes: [Tensorflow_NodeDef], sinks: [String: String]) {
    self.name = name
    self.syntax = syntax
    self.nodes = nodes
    self.sinks = sinks
    reindex()
  }

  /// Parses every input again (after nodes were added or inputs rewired).
  mutating func reindex() {
    indexByName = Dictionary(
      nodes.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    inputs = nodes.map { _ in [] }
    consumers = nodes.map { _ in [] }
    for (index, node) in nodes.enumerated() {
      var position = 0
      for (slot, reference) in node.input.enumerated() where !reference.hasPrefix("^") {
        if let source = source(of: reference) {
          inputs[index].append(Input(position: position, slot: slot, source: source))
          if case .output(let producer, _, _) = source {
            consumers[producer].append((index, position))
          }
        }
        position += 1
      }
    }
  }

  /// Appends a node whose inputs are existing tensors; its own edges are parsed at the next
  /// ``reindex()``, but its name is taken at once.
  mutating func append(_ node: Tensorflow_NodeDef) {
    indexByName[node.name] = nodes.count
    nodes.append(node)
    inputs.append([])
    consumers.append([])
  }

  /// The node named `name`, if any.
  func index(of name: String) -> Int? { indexByName[name] }

  /// Resolves a tensor reference; `nil` for one naming no node or argument (left untouched).
  func source(of reference: String) -> Source? {
    let parts = reference.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
    switch syntax {
    case .function:
      if parts.count == 1 { return .argument(parts[0]) }
      guard let node = indexByName[parts[0]] else { return nil }
      return .output(
        node: node, argument: parts[1], index: parts.count > 2 ? Int(parts[2]) ?? 0 : 0)
    case .graph:
      guard let node = indexByName[parts[0]] else { return nil }
      return .output(node: node, argument: nil, index: parts.count > 1 ? Int(parts[1]) ?? 0 : 0)
    }
  }

  /// The reference text of a node's output.
  func reference(node: Int, argument: String?, index: Int) -> String {
    switch syntax {
    case .function: "\(nodes[node].name):\(argument ?? "output"):\(index)"
    case .graph: index == 0 ? nodes[node].name : "\(nodes[node].name):\(index)"
    }
  }

  /// The reference text of `source`.
  func reference(_ source: Source) -> String {
    switch source {
    case .argument(let name): name
    case .output(let node, let argument, let index):
      reference(node: node, argument: argument, index: index)
    }
  }

  /// The output reference of a node with a single output named `argument` (`Cast`'s `y`).
  func singleOutputReference(nodeName: String, argument: String) -> String {
    syntax == .function ? "\(nodeName):\(argument):0" : nodeName
  }

  /// The nodes in an order where every producer precedes its consumers (cycles, which valid
  /// graphs only have through NextIteration, are broken arbitrarily).
  func topologicalOrder() -> [Int] {
    var pending = inputs.map { inputs in
      inputs.filter { if case .output = $0.source { true } else { false } }.count
    }
    var ready = (0..<nodes.count).filter { pending[$0] == 0 }
    var order: [Int] = []
    var visited = Set<Int>()
    while order.count < nodes.count {
      if ready.isEmpty, let next = (0..<nodes.count).first(where: { !visited.contains($0) }) {
        ready.append(next)
      }
      while let node = ready.popLast() {
        guard visited.insert(node).inserted else { continue }
        order.append(node)
        for consumer in consumers[node] {
          pending[consumer.node] -= 1
          if pending[consumer.node] == 0 { ready.append(consumer.node) }
        }
      }
    }
    return order
  }

  /// A node name not yet used in this body (nor as a function argument).
  func uniqueName(_ base: String, avoiding arguments: Set<String>) -> String {
    var candidate = base
    var suffix = 1
    while indexByName[candidate] != nil || arguments.contains(candidate) {
      candidate = "\(base)_\(suffix)"
      suffix += 1
    }
    return candidate
  }
}
