internal import GraphIR

/// Finds what each choice is made on, so that it computes in float32: rounding to the reduced
/// type turns near-ties into ties or reverses them, and a different choice is not a small error
/// (a mixture of experts routes a token to other experts, a detector keeps other boxes).
///
/// A choice is a `TopKV2`, `ArgMax` or `ArgMin`. Its island is the choice and the ops its input
/// is computed by, back through ops the painter converts up to and including the nearest allow
/// ops (the router's or the head's matrix product): the layer making the choice, not the network
/// before it.
struct ChoicePass {
  /// Ops that choose positions from values.
  static let choiceOps: Set<String> = ["TopKV2", "ArgMax", "ArgMin"]

  /// The island of each choice in `body`, as its nodes.
  func choices(in body: Function) -> [Set<NodeID>] {
    var islands: [Set<NodeID>] = []
    for choice in body.nodeIDs where Self.choiceOps.contains(body[choice].op) {
      guard !islands.contains(where: { $0.contains(choice) }) else { continue }
      var island: Set<NodeID> = [choice]
      var pending = body[choice].inputs.prefix(1).compactMap(\.node)
      while let node = pending.popLast() {
        guard let schema = OpLists.convertible(body[node].op), let precision = schema.precision,
          island.insert(node).inserted
        else { continue }
        if precision.float16Class == .allow || precision.bfloat16Class == .allow { continue }
        let attributes = body[node].attributes
        pending += body[node].inputs.indices.filter {
          schema.convertsInput($0, attributes: attributes)
        }.compactMap { body[node].inputs[$0].node }
      }
      islands.append(island)
    }
    return islands
  }
}
