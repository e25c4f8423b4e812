internal import TensorCore

extension Function {
  /// This function with nodes appended that compute the gradient of `loss` (a scalar) with
  /// respect to each of `targets` (reverse mode, TensorFlow's `tf.gradients`), and those
  /// gradients: `nil` for a target the loss does not depend on.
  ///
  /// Only the nodes on a path from a target to the loss are differentiated, in reverse
  /// topological order; the gradients reaching one output are summed with `AddN`. A target is
  /// differentiated through only when another target lies upstream of it (a variable's read is
  /// where its gradient ends; an activation's gradient flows on to the activations before it).
  ///
  /// - Throws: ``GraphError`` with code `noGradient` naming the first op on such a path that
  ///   `source` has no gradient for, or an op whose gradient cannot be built.
  public func appendingGradients(
    of loss: Input, withRespectTo targets: [Input], using source: some GradientSource,
    scope: String = "gradients"
  ) throws(GraphError) -> (function: Function, gradients: [Input?]) {
    let onPath = nodesBetween(targets, and: loss)
    var builder = GradientBuilder(function: self, schemas: source, scope: scope)
    // The gradients reaching each (node, output position), and each argument.
    var reaching: [NodeID: [Int: [Input]]] = [:]
    var reachingArguments: [Int: [Input]] = [:]
    func send(_ gradient: Input, to input: Input) {
      switch input {
      case .output(let node, let slot):
        let position = self.position(of: slot, node: node, schemas: source)
        reaching[node, default: [:]][position, default: []].append(gradient)
      case .argument(let index): reachingArguments[index, default: []].append(gradient)
      case .unresolved: break
      }
    }
    func total(_ gradients: [Input], _ type: DType) -> Input {
      gradients.count == 1
        ? gradients[0]
        : builder.add("AddN", gradients, ["T": .type(type), "N": .int(Int64(gradients.count))])
    }
    // Each target output's gradient once summed, so that a target differentiated through has
    // one sum, read by its own gradient and returned.
    var summed: [NodeID: [Int: Input]] = [:]
    let lossType = type(of: loss, schemas: source) ?? .float32
    let seed = builder.add("OnesLike", [loss], ["T": .type(lossType)], name: "seed")
    send(seed, to: loss)
    let targetNodes = Set(targets.compactMap(\.node))
    for id in topologicalOrder().reversed() where onPath.contains(id) {
      guard let arriving = reaching[id] else { continue }
      let node = self[id]
      if targetNodes.contains(id) {
        summed[id] = Dictionary(
          uniqueKeysWithValues: arriving.map { position, gradients in
            let dtype = self.type(of: builder.output(id, position), schemas: source) ?? .float32
            return (position, total(gradients, dtype))
          })
        guard node.inputs.contains(where: { $0.node.map(onPath.contains) ?? false }) else {
          continue
        }
      }
      guard let gradient = source.gradient(for: node.op) else {
        throw GraphError(
          code: .noGradient, function: name, location: "node '\(node.name)'",
          message: "tfmp has no gradient for \(node.op), which lies between the loss and a "
            + "variable trained.")
      }
      let count = max(arriving.keys.max().map { $0 + 1 } ?? 0, outputCount(of: id, schemas: source))
      let type = node.type("T") ?? .float32
      let forward = GradientBuilder.Forward(
        node: node, outputs: (0..<count).map { builder.output(id, $0) },
        gradients: (0..<count).map { position in
          summed[id]?[position] ?? arriving[position].map { total($0, type) }
        })
      let inputGradients: [Input?]
      do {
        inputGradients = try gradient(&builder, forward)
      } catch {
        throw error.placed(function: name, location: "node '\(node.name)'")
      }
      for (input, gradient) in zip(node.inputs, inputGradients) {
        if let gradient { send(gradient, to: input) }
      }
    }
    let gradients = targets.map { target -> Input? in
      let arrived: [Input]?
      switch target {
      case .output(let node, let slot):
        let position = position(of: slot, node: node, schemas: source)
        if let sum = summed[node]?[position] { return sum }
        arrived = reaching[node]?[position]
      case .argument(let index): arrived = reachingArguments[index]
      case .unresolved: arrived = nil
      }
      return arrived.map { total($0, type(of: target, schemas: source) ?? .float32) }
    }
    return (builder.function, gradients)
  }

  /// The nodes that depend on one of `targets` and on which `loss` depends, targets included.
  private func nodesBetween(_ targets: [Input], and loss: Input) -> Set<NodeID> {
    var needed = Set<NodeID>()
    var pending = loss.node.map { [$0] } ?? []
    while let id = pending.popLast() {
      guard needed.insert(id).inserted else { continue }
      pending += self[id].inputs.compactMap(\.node)
    }
    let targetArguments = Set(
      targets.compactMap { if case .argument(let i) = $0 { i } else { nil } })
    var depends = Set(targets.compactMap(\.node))
    for id in topologicalOrder() where !depends.contains(id) {
      let reads = self[id].inputs.contains { input in
        switch input {
        case .output(let producer, _): depends.contains(producer)
        case .argument(let index): targetArguments.contains(index)
        case .unresolved: false
        }
      }
      if reads { depends.insert(id) }
    }
    return needed.intersection(depends)
  }

  /// The position among `node`'s outputs that `slot` names.
  private func position(of slot: OutputSlot, node: NodeID, schemas: any OpSchemaSource) -> Int {
    let definition = self[node]
    return schemas.schema(for: definition.op)?.outputPosition(
      of: slot, attributes: definition.attributes) ?? slot.index
  }

  /// How many outputs `node` has, by its schema (1 when not known).
  private func outputCount(of node: NodeID, schemas: any OpSchemaSource) -> Int {
    let definition = self[node]
    guard let schema = schemas.schema(for: definition.op) else { return 1 }
    return schema.outputs.reduce(0) {
      $0 + (schema.size(of: $1, attributes: definition.attributes) ?? 1)
    }
  }

  /// The dtype of `input`, from its producer's schema and attributes, or the argument's.
  private func type(of input: Input, schemas: any OpSchemaSource) -> DType? {
    switch input {
    case .argument(let index): return arguments[index].dtype
    case .unresolved: return nil
    case .output(let node, let slot):
      let definition = self[node]
      guard let schema = schemas.schema(for: definition.op),
        let argument = schema.outputArgument(of: slot, attributes: definition.attributes)
      else { return definition.type("T") }
      switch argument.type {
      case .fixed(let type)?: return type
      case .attribute(let name, let defaultType)?: return definition.type(name) ?? defaultType
      case nil: return nil
      }
    }
  }
}
