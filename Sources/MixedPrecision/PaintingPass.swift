internal import GraphIR
internal import TensorCore
internal import Foundation

/// Why a node got its precision; shown in reports.
public enum PrecisionReason: String, Sendable, Hashable, Codable {
  /// On the allow list (Tensor Core math).
  case allowList = "allow list"
  /// An infer op fed by reduced-precision ops and no deny op.
  case inferAfterAllow = "infer op after reduced-precision ops"
  /// Between reduced-precision ops: converting it avoids a pair of casts.
  case betweenAllowOps = "between reduced-precision ops"
  /// A clear op next to reduced-precision ops.
  case clearNeighbour = "clear op next to reduced-precision ops"
  /// On the deny list.
  case denyList = "deny list"
  /// Downstream of a deny op through infer and clear ops.
  case downstreamOfDeny = "downstream of a deny op"
  /// Reads a constant whose values do not fit the reduced type.
  case constantRange = "reads a constant that does not fit the reduced type"
  /// A variable whose values would overflow or flush to zero is read.
  case variableRange = "reads a variable that does not fit the reduced type"
  /// Reads positions computed from a `Range` (rotary or sinusoidal embedding angles).
  case positions = "reads positions computed from a Range"
  /// Part of a normalization: computed in float32, as Keras computes normalizations.
  case normalization = "normalization (float32, as in Keras)"
  /// Computes the values a choice (top-k, arg max or min) is made on: in float32, so that
  /// rounding does not change what is chosen.
  case choice = "feeds a choice (top-k, arg max or min)"
  /// The user's `--fp32-op`.
  case userFloat32Op = "--fp32-op"
  /// The user's `--fp32-node`.
  case userFloat32Node = "--fp32-node"
  /// The user's `--lowp-op`.
  case userReducedOp = "--lowp-op"
  /// The accuracy search (`convert --tolerance`) found that the node must stay float32 for the
  /// outputs to meet the tolerances.
  case searched = "kept float32 by the accuracy search"
  /// A softmax or sigmoid whose result is the model's output stays float32 (TensorFlow's guide;
  /// Keras keeps such output layers float32).
  case outputSoftmax = "softmax or sigmoid at the model output"
  /// The layer computing what an output softmax or sigmoid turns into probabilities (its matrix
  /// product and bias): float32 as a whole, as Keras keeps such a layer and `tfmp convert` of a
  /// `.keras` file does. Its share of the computation is small; in reduced precision it would
  /// add the larger part of a classifier's output error.
  case outputLayer = "output layer of a softmax or sigmoid (float32, as in Keras)"
  /// An infer or clear op with no reduced-precision neighbour.
  case noReducedNeighbour = "no reduced-precision neighbour"
  /// The op is in no list, or tfmp has no type rule for it: left as it is.
  case notInLists = "op not in the lists (left as is)"
}

/// Decides which nodes of a graph body compute in reduced precision: TensorFlow's painting
/// passes (grappler `AutoMixedPrecisionImpl`) over the nodes that compute in float32.
///
/// 1. allow-list ops are converted;
/// 2. deny ops, nodes reading values that would overflow or flush to zero, and float32 islands
///    (normalizations, choices) holding a deny op spread float32 downstream through infer ops
///    and through clear ops that lead to infer or deny ops (other islands stay float32 on their
///    own);
/// 3. infer and clear ops lying between converted ops are converted;
/// 4. infer ops fed by converted ops and by no deny op are converted, and clear ops next to
///    converted ops follow; 4 repeats until nothing changes. (TensorFlow runs this step once and,
///    for float16 on GPUs, not at all; tfmp runs it for both types so that MatMul -> BiasAdd ->
///    Relu -> Add chains stay in reduced precision without casts.)
struct PaintingPass {
  enum Color { case none, allow, deny }

  /// Nodes that compute in float32 together (a normalization, what a choice is made on), and
  /// why.
  struct Island {
    var nodes: Set<NodeID>
    var reason: PrecisionReason
  }

  struct Decision {
    var reduced: Bool
    var reason: PrecisionReason
    /// Whether the node computes in float32 and its op converts: it counts as a compute op.
    var isCandidate: Bool
  }

  let lists: OpLists
  let float32NodePatterns: [NSRegularExpression]
  var searchedFloat32Nodes: Set<QualifiedNodeName> = []
  let userReducedOps: Set<String>
  let userFloat32Ops: Set<String>

  /// The decision for each node of `body` (by position), whose results leave it as `sinks`;
  /// `unfit` are its values that do not fit the reduced type (``RangePass``); `islands` compute
  /// in float32 (``NormalizationPass``, ``ChoicePass``): like deny ops when they hold one,
  /// otherwise as float32 islands in the painting.
  func paint(
    _ body: Function, sinks: [String: Input], unfit: [NodeID: PrecisionReason],
    islands: [Island]
  ) -> [Decision] {
    let count = body.nodes.count
    let consumers = body.consumers()
    var decisions = body.nodes.map { node in
      Decision(reduced: false, reason: .notInLists, isCandidate: false)
    }
    var opClass = [OpClass?](repeating: nil, count: count)
    // The schemas of the candidates: ops tfmp converts, computing in float32.
    var schemas = [OpSchema?](repeating: nil, count: count)
    for (index, node) in body.nodes.enumerated() {
      guard let schema = OpLists.convertible(node.op), let cls = lists.opClass(of: node.op),
        let precision = schema.precision, node.type(precision.attribute) == .float32
      else { continue }
      if matchesFloat32Pattern(node.name) {
        decisions[index].reason = .userFloat32Node
        continue
      }
      if searchedFloat32Nodes.contains(QualifiedNodeName(function: body.name, node: node.name)) {
        // A compute op all the same, which the search keeps float32.
        decisions[index].isCandidate = true
        decisions[index].reason = .searched
        continue
      }
      schemas[index] = schema
      opClass[index] = cls
      decisions[index].isCandidate = true
      decisions[index].reason = .noReducedNeighbour
    }
    for index in 0..<count
    where schemas[index] != nil && isOutputSoftmax(index, body, consumers, sinks) {
      schemas[index] = nil
      opClass[index] = nil
      decisions[index].reason = .outputSoftmax
      for layer in outputLayer(feeding: index, body, consumers) where schemas[layer] != nil {
        schemas[layer] = nil
        opClass[layer] = nil
        decisions[layer].reason = .outputLayer
      }
    }

    // Islands holding a deny op spread float32 from all their nodes (an allow op among them, a
    // choice's matrix product, stays float32 without spreading); the others stay float32,
    // connected to nothing.
    var spreading: [Int: PrecisionReason] = [:]
    for island in islands {
      let indices = island.nodes.map(\.index).filter { schemas[$0] != nil }
      let spreads = indices.contains(where: { opClass[$0] == .deny })
      if spreads {
        for index in indices where spreading[index] == nil && opClass[index] != .allow {
          spreading[index] = island.reason
        }
      }
      for index in indices where !spreads || opClass[index] == .allow {
        schemas[index] = nil
        opClass[index] = nil
        decisions[index].reason = island.reason
      }
    }

    // Float edges connect candidates through governed outputs and inputs.
    var fanIn = [[Int]](repeating: [], count: count)
    var fanOut = [[Int]](repeating: [], count: count)
    for consumer in 0..<count {
      guard let consumerSchema = schemas[consumer] else { continue }
      let node = body.nodes[consumer]
      for (position, input) in node.inputs.enumerated() {
        guard case .output(let producerID, let slot) = input,
          let producerSchema = schemas[producerID.index],
          producerSchema.convertsOutput(slot, attributes: body[producerID].attributes),
          consumerSchema.convertsInput(position, attributes: node.attributes)
        else { continue }
        let producer = producerID.index
        fanIn[consumer].append(producer)
        fanOut[producer].append(consumer)
      }
    }

    // Ops reading a value that does not fit through a port they convert stay float32, whatever
    // their class.
    var readsUnfit: [Int: PrecisionReason] = [:]
    for index in 0..<count {
      guard let schema = schemas[index] else { continue }
      let node = body.nodes[index]
      readsUnfit[index] =
        node.inputs.indices.lazy.compactMap { position -> PrecisionReason? in
          guard schema.convertsInput(position, attributes: node.attributes) else { return nil }
          return node.inputs[position].node.flatMap { unfit[$0] }
        }
        .first
    }
    var color = [Color](repeating: .none, count: count)
    // Pass 1: allow.
    for index in 0..<count where opClass[index] == .allow && readsUnfit[index] == nil {
      color[index] = .allow
      decisions[index].reason =
        userReducedOps.contains(body.nodes[index].op) ? .userReducedOp : .allowList
    }
    // Pass 2: deny sources and their downstream spread.
    let leadsToInferOrDeny = clearNodesUpstreamOfInferOrDeny(opClass, fanIn)
    var stack: [Int] = []
    for index in 0..<count where schemas[index] != nil && color[index] == .none {
      if opClass[index] == .deny {
        decisions[index].reason =
          userFloat32Ops.contains(body.nodes[index].op) ? .userFloat32Op : .denyList
      } else if let reason = readsUnfit[index] {
        decisions[index].reason = reason
      } else if let reason = spreading[index] {
        decisions[index].reason = reason
      } else {
        continue
      }
      color[index] = .deny
      stack.append(index)
    }
    while let node = stack.popLast() {
      for next in fanOut[node] where color[next] == .none {
        guard
          opClass[next] == .infer || (opClass[next] == .clear && leadsToInferOrDeny.contains(next))
        else { continue }
        color[next] = .deny
        decisions[next].reason = .downstreamOfDeny
        stack.append(next)
      }
    }
    // Pass 3: between allow ops.
    let passable = { (node: Int) in
      color[node] == .none && (opClass[node] == .infer || opClass[node] == .clear)
    }
    let allowNodes = (0..<count).filter { color[$0] == .allow }
    let downstream = reach(from: allowNodes, along: fanOut, where: passable)
    let upstream = reach(from: allowNodes, along: fanIn, where: passable)
    for node in downstream.intersection(upstream) {
      color[node] = .allow
      decisions[node].reason = .betweenAllowOps
    }
    // Pass 4: infer after allow, and clear neighbours, until nothing changes.
    let order = body.topologicalOrder().map(\.index)
    var changed = true
    while changed {
      changed = false
      for node in order where opClass[node] == .infer && color[node] == .none {
        let inputs = fanIn[node].map { color[$0] }
        if inputs.contains(.allow) && !inputs.contains(.deny) {
          color[node] = .allow
          decisions[node].reason = .inferAfterAllow
          changed = true
        }
      }
      var frontier = (0..<count).filter { color[$0] == .allow }
      while let node = frontier.popLast() {
        for next in fanIn[node] + fanOut[node]
        where opClass[next] == .clear && color[next] == .none {
          color[next] = .allow
          decisions[next].reason = .clearNeighbour
          frontier.append(next)
          changed = true
        }
      }
    }
    for index in 0..<count where color[index] == .allow {
      decisions[index].reduced = true
    }
    return decisions
  }

  private func matchesFloat32Pattern(_ name: String) -> Bool {
    let range = NSRange(name.startIndex..., in: name)
    return float32NodePatterns.contains { $0.firstMatch(in: name, range: range) != nil }
  }

  /// Clear nodes from which a path of clear nodes leads to an infer or deny node.
  private func clearNodesUpstreamOfInferOrDeny(_ opClass: [OpClass?], _ fanIn: [[Int]]) -> Set<Int>
  {
    let starts = opClass.indices.filter { opClass[$0] == .infer || opClass[$0] == .deny }
    var marked = Set<Int>()
    var stack = starts.flatMap { fanIn[$0] }.filter { opClass[$0] == .clear }
    while let node = stack.popLast() {
      guard marked.insert(node).inserted else { continue }
      stack += fanIn[node].filter { opClass[$0] == .clear }
    }
    return marked
  }

  private func reach(from starts: [Int], along edges: [[Int]], where allowed: (Int) -> Bool) -> Set<
    Int
  > {
    var reached = Set<Int>()
    var stack = starts.flatMap { edges[$0] }.filter(allowed)
    while let node = stack.popLast() {
      guard reached.insert(node).inserted else { continue }
      stack += edges[node].filter(allowed)
    }
    return reached
  }

  /// Whether a Softmax, LogSoftmax or Sigmoid's result leaves the body (through Identity nodes
  /// only): a model's probabilities, which Keras computes in float32 too.
  /// The nodes of the layer whose result the output softmax `index` reads: back through a bias
  /// addition and reshapes, each read by nothing else, to the matrix product (an allow op);
  /// none when the chain does not end in one.
  private func outputLayer(
    feeding index: Int, _ body: Function, _ consumers: [[(node: NodeID, position: Int)]]
  ) -> [Int] {
    let passed: Set<String> = ["BiasAdd", "Add", "AddV2", "Reshape", "Squeeze", "Identity"]
    var chain: [Int] = []
    var current = index
    while let producer = body.nodes[current].inputs.first?.node?.index,
      consumers[producer].count == 1
    {
      chain.append(producer)
      if lists.opClass(of: body.nodes[producer].op) == .allow { return chain }
      guard passed.contains(body.nodes[producer].op) else { return [] }
      current = producer
    }
    return []
  }

  private func isOutputSoftmax(
    _ index: Int, _ body: Function, _ consumers: [[(node: NodeID, position: Int)]],
    _ sinks: [String: Input]
  ) -> Bool {
    guard ["Softmax", "LogSoftmax", "Sigmoid"].contains(body.nodes[index].op) else { return false }
    let sinkNodes = Set(sinks.values.compactMap { $0.node?.index })
    func leavesOnly(_ node: Int) -> Bool {
      let readers = consumers[node]
      if readers.isEmpty { return sinkNodes.contains(node) }
      return readers.allSatisfy {
        body.nodes[$0.node.index].op == "Identity" && leavesOnly($0.node.index)
      }
    }
    return leavesOnly(index)
  }
}
