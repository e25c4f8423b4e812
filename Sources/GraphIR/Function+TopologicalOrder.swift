extension Function {
  /// The nodes in an order where every producer precedes the nodes reading its outputs through
  /// data inputs (`followingControls`: and every node precedes those with a control input on
  /// it); cycles, which valid graphs only have through TF1 loops' `NextIteration`, are broken at
  /// the first node not yet placed.
  public func topologicalOrder(followingControls: Bool = false) -> [NodeID] {
    var consumers = consumers().map { $0.map(\.node) }
    if followingControls {
      for (index, node) in nodes.enumerated() {
        for case .output(let producer, _) in node.controlInputs {
          consumers[producer.index].append(NodeID(index))
        }
      }
    }
    var pending = nodes.map { node in
      (node.inputs + (followingControls ? node.controlInputs : [])).filter { $0.node != nil }.count
    }
    var ready = nodes.indices.filter { pending[$0] == 0 }
    var order: [NodeID] = []
    order.reserveCapacity(nodes.count)
    var visited = [Bool](repeating: false, count: nodes.count)
    var next = 0
    while order.count < nodes.count {
      if ready.isEmpty {
        while visited[next] { next += 1 }
        ready.append(next)
      }
      while let node = ready.popLast() {
        guard !visited[node] else { continue }
        visited[node] = true
        order.append(NodeID(node))
        for consumer in consumers[node] {
          pending[consumer.index] -= 1
          if pending[consumer.index] == 0 { ready.append(consumer.index) }
        }
      }
    }
    return order
  }

  /// The nodes `outputs` depend on through data inputs, the nodes producing them included.
  public func ancestors(of outputs: [Input]) -> Set<NodeID> {
    var ancestors = Set<NodeID>()
    var pending = outputs.compactMap(\.node)
    while let id = pending.popLast() {
      guard ancestors.insert(id).inserted else { continue }
      pending += self[id].inputs.compactMap(\.node)
    }
    return ancestors
  }
}
