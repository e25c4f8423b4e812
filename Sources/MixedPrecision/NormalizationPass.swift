internal import GraphIR
internal import TensorCore

/// Finds the normalizations of each body by their structure, so that they compute in float32 as
/// Keras computes them (its BatchNormalization, LayerNormalization and RMS normalizations cast
/// a reduced-precision input to float32 and the result back): the statistics, the scale and the
/// affine transformation of the activation. The painter keeps them float32, with casts where the
/// activation enters and the result leaves, as Keras's layers cast; float32 spreads further
/// only from a normalization holding a deny op (a `Mean` under the float16 lists), as it always
/// did (a post-norm transformer's residual additions then stay float32).
///
/// A normalization is anchored at the inverse square root of a statistic: an `Rsqrt`, or a
/// `Sqrt` that is inverted or divided by (after a floor, as Keras's Normalization divides by
/// `max(sqrt(variance), epsilon)`), unless it is a scalar computed from constants alone (an
/// attention scale `rsqrt(d)` is not a normalization; a frozen batch normalization's variance is a
/// constant vector). From the anchor:
/// - **forward**, elementwise arithmetic on the *scale* (the anchor and its products with
///   parameters) stays part of it, a product or quotient of the scale with the activation
///   *applies* it, and arithmetic combining an applied value with parameters or other values of
///   the normalization (the offset, the mean's term) belongs to it too; growth stops at any
///   other op or operand, so a residual addition after the normalization is left out;
/// - **backward**, the statistics the anchor is computed from: means, squares and differences,
///   up to the activation itself (an operand the scale is applied to), which is left out.
struct NormalizationPass {
  private enum Role { case scale, applied }

  /// Ops through which a normalization's scale and result flow.
  private static let arithmetic: Set<String> = [
    "Mul", "AddV2", "Add", "Sub", "RealDiv", "Neg", "Reciprocal", "Inv", "Maximum",
  ]
  /// Ops that compute the statistics an anchor reads.
  private static let statistics: Set<String> = [
    "Mean", "Sum", "Square", "SquaredDifference", "Sub", "AddV2", "Add", "Mul", "StopGradient",
    "Neg", "Maximum", "RealDiv",
  ]
  /// Ops whose output is a variable's value or a constant: parameters.
  private static let parameterSources: Set<String> = ["Const", "ReadVariableOp", "VariableV2"]

  /// The normalizations of `body`, each as its nodes.
  func normalizations(in body: Function) -> [Set<NodeID>] {
    let consumers = body.consumers()
    let origins = Origins(body)
    var found: [Set<NodeID>] = []
    for anchor in body.nodeIDs
    where isAnchor(anchor, body, consumers) && !origins.isConstantScalar(anchor)
      && !found.contains(where: { $0.contains(anchor) })
    {
      found.append(normalization(at: anchor, body, consumers, origins))
    }
    return found
  }

  private func isAnchor(
    _ id: NodeID, _ body: Function, _ consumers: [[(node: NodeID, position: Int)]]
  ) -> Bool {
    let node = body[id]
    guard node.type("T") == .float32 else { return false }
    if node.op == "Rsqrt" { return true }
    guard node.op == "Sqrt" else { return false }
    func inverted(_ id: NodeID) -> Bool {
      consumers[id.index].contains { consumer in
        let op = body[consumer.node].op
        return op == "Reciprocal" || op == "Inv" || (op == "RealDiv" && consumer.position == 1)
      }
    }
    // Keras's Normalization floors the deviation first: x / max(sqrt(variance), epsilon).
    return inverted(id)
      || consumers[id.index].contains { body[$0.node].op == "Maximum" && inverted($0.node) }
  }

  private func normalization(
    at anchor: NodeID, _ body: Function, _ consumers: [[(node: NodeID, position: Int)]],
    _ origins: Origins
  ) -> Set<NodeID> {
    var role: [NodeID: Role] = [anchor: .scale]
    // The activations a scale is applied to: the backward walk stops there.
    var activations = Set<NodeID>()
    var pending = [anchor]
    while let current = pending.popLast() {
      for (consumer, _) in consumers[current.index] where role[consumer] == nil {
        guard let joined = joinedRole(of: consumer, body, role, origins, &activations) else {
          continue
        }
        role[consumer] = joined
        pending.append(consumer)
      }
    }
    var region = Set(role.keys)
    // The statistics: producers of the anchor's inputs, up to the activations.
    var stack = body[anchor].inputs.compactMap(\.node)
    while let producer = stack.popLast() {
      let node = body[producer]
      guard !region.contains(producer), !activations.contains(producer),
        Self.statistics.contains(node.op), node.type("T") == .float32
      else { continue }
      region.insert(producer)
      stack.append(contentsOf: node.inputs.compactMap(\.node))
    }
    // Producers computed from the statistics and parameters only for the normalization (the
    // mean's negation, `1 + scale`).
    var producers = region.flatMap { body[$0].inputs.compactMap(\.node) }
    while let id = producers.popLast() {
      let node = body[id]
      guard !region.contains(id), Self.arithmetic.contains(node.op), node.type("T") == .float32,
        consumers[id.index].allSatisfy({ region.contains($0.node) }),
        node.inputs.allSatisfy({ input in
          input.node.map { region.contains($0) || origins.isParameter($0) } ?? false
        })
      else { continue }
      region.insert(id)
      producers.append(contentsOf: node.inputs.compactMap(\.node))
    }
    return region
  }

  /// The role `consumer` takes in the normalization, or nil when it is not part of it.
  private func joinedRole(
    of consumer: NodeID, _ body: Function, _ role: [NodeID: Role], _ origins: Origins,
    _ activations: inout Set<NodeID>
  ) -> Role? {
    let node = body[consumer]
    guard Self.arithmetic.contains(node.op), node.type("T") == .float32 else { return nil }
    var applied = false
    // Operands that are neither parameters nor part of the normalization, by position.
    var others: [(position: Int, input: Input)] = []
    for (position, input) in node.inputs.enumerated() {
      switch input.node.flatMap({ role[$0] }) {
      case .applied?: applied = true
      case .scale?: break
      case nil where input.node.map(origins.isParameter) ?? false: break
      case nil: others.append((position, input))
      }
    }
    // A floor (`Maximum`) belongs to the scale only, not to an applied value.
    if applied { return others.isEmpty && node.op != "Maximum" ? .applied : nil }
    if others.isEmpty { return .scale }
    // The scale applied to one activation: `x * scale`, or `x / sqrt(...)`.
    guard others.count == 1, node.op == "Mul" || (node.op == "RealDiv" && others[0].position == 0)
    else { return nil }
    if let activation = others[0].input.node { activations.insert(activation) }
    return .applied
  }

  /// What each node's value is computed from: parameters only (constants and variables), and
  /// whether it is a scalar computed from constants alone.
  private struct Origins {
    private var parameter: [Bool]
    private var constantScalar: [Bool]

    init(_ body: Function) {
      parameter = Array(repeating: false, count: body.nodes.count)
      constantScalar = Array(repeating: false, count: body.nodes.count)
      for id in body.topologicalOrder() {
        let node = body[id]
        let producers = node.inputs.map(\.node)
        let fromProducers = { (facts: [Bool]) in
          !producers.isEmpty && producers.allSatisfy { $0.map { facts[$0.index] } ?? false }
        }
        if node.op == "Const" {
          let elements = ConstantValues(node).map { $0.shape.dimensions.reduce(1, *) }
          constantScalar[id.index] = elements.map { $0 <= 1 } ?? true
        } else {
          constantScalar[id.index] = fromProducers(constantScalar)
        }
        parameter[id.index] =
          NormalizationPass.parameterSources.contains(node.op) || fromProducers(parameter)
      }
    }

    /// Whether the node's value comes from constants and variables only.
    func isParameter(_ id: NodeID) -> Bool { parameter[id.index] }
    /// Whether the node's value is a scalar computed from constants alone (such as an attention
    /// scale).
    func isConstantScalar(_ id: NodeID) -> Bool { constantScalar[id.index] }
  }
}
