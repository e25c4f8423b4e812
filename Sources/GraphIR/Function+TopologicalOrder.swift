extension Function {
  /// The nodes in an order where every producer precedes the nodes reading its outputs through
  /// data inputs; cycles, which valid graphs only have through TF1 loops' `NextIteration`, are
  /// broken at the first node not yet placed.
  public func topologicalOrder() -> [NodeID] {
    let consumers = consumers()
    var pending = nodes.map { node in node.inputs.filter { $0.node != nil }.count }
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
          pending[consumer.node.index] -= 1
          if pending[consumer.node.index] == 0 { ready.append(consumer.node.index) }
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
