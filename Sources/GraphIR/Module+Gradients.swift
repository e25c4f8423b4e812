public import TensorCore

extension Module {
  /// The module with a signature `name` added that computes, for signature `key`'s inputs, the
  /// gradient of a weighted sum of its float outputs with respect to every variable it reads:
  /// for each output `y` an input `<y>_weight` of its shape, the loss Σ sum(y * weight), and
  /// an output per variable, named by its checkpoint key (variables the loss does not depend on
  /// are left out). Weighting every output element by a different number checks a
  /// whole Jacobian-vector product at once, which is how tfmp's gradients are compared with
  /// TensorFlow's.
  ///
  /// The top-level graph is inlined first (``inliningCalls(schemas:)``), so the new signature's
  /// nodes are all in it.
  ///
  /// - Throws: ``GraphError`` for an unknown signature, an op on the way from a variable to an
  ///   output without a gradient, or calls that cannot be inlined.
  public func addingWeightedSumGradients(
    of key: String, named name: String, using source: some GradientSource
  ) throws(GraphError) -> Module {
    let module = try inliningCalls(schemas: source)
    let graph = module.graph
    // Each variable's reads: ReadVariableOp nodes of its handle.
    let handles = Dictionary(
      module.variables.map { ($0.node, $0.checkpointKey) }, uniquingKeysWith: { first, _ in first })
    if let signature = module.signatures[key] {
      try refuseVariablesReadInside(
        graph, handles: handles,
        outputs: signature.outputs.filter { $0.dtype?.isFloatingPoint == true }.map(\.source),
        schemas: source)
    }
    var reads: [GradientTarget] = []
    for id in graph.nodeIDs where graph[id].op == "ReadVariableOp" {
      guard let handle = graph[id].inputs.first?.node, let checkpointKey = handles[handle],
        let type = graph[id].type("dtype"), type.isFloatingPoint
      else { continue }
      reads.append(
        GradientTarget(name: checkpointKey, source: .output(id, OutputSlot()), dtype: type))
    }
    return try module.addingWeightedSumGradients(
      of: key, named: name, withRespectTo: reads, using: source)
  }

  /// A value to differentiate with respect to, and the name of its gradient's output.
  public struct GradientTarget: Sendable {
    /// The output's name; the gradients of targets of one name are summed.
    public var name: String
    /// The value, in the top-level graph.
    public var source: Input
    /// Its dtype.
    public var dtype: DType

    /// The target `source` of `dtype`, its gradient named `name`.
    public init(name: String, source: Input, dtype: DType) {
      self.name = name
      self.source = source
      self.dtype = dtype
    }
  }

  /// The module with a signature `name` added that computes, for signature `key`'s inputs and
  /// a weight input `<y>_weight` per float output `y`, the gradient of Σ sum(y * weight) with
  /// respect to each of `targets`, values of the top-level graph, which computes the whole
  /// signature (inline calls first): an output per target name, the targets of one name summed,
  /// and none for a name the loss does not depend on.
  ///
  /// - Throws: ``GraphError`` for an unknown signature, one without float outputs, or an op on
  ///   the way from a target to an output without a gradient.
  public func addingWeightedSumGradients(
    of key: String, named name: String, withRespectTo targets: [GradientTarget],
    using source: some GradientSource
  ) throws(GraphError) -> Module {
    guard let signature = signatures[key] else {
      throw GraphError(
        code: .unresolvedInput, function: Function.graphName,
        message: "The model has no signature '\(key)'.")
    }
    var module = self
    var builder = GradientBuilder(function: graph, schemas: source, scope: "tfmp_loss")
    var inputs = signature.inputs
    var terms: [Input] = []
    for output in signature.outputs where output.dtype?.isFloatingPoint == true {
      let type = output.dtype ?? .float32
      let weight = builder.add(
        "Placeholder", [],
        ["dtype": .type(type), "shape": .shape(ShapeValue(dimensions: [], unknownRank: true))],
        name: "\(output.name)_weight")
      inputs.append(
        Signature.Endpoint(
          name: "\(output.name)_weight", source: weight, dtype: type, shape: output.shape))
      let flat = builder.add(
        "Reshape",
        [builder.math("Mul", output.source, weight, type: type), builder.integers([-1])],
        ["T": .type(type), "Tshape": .type(.int32)])
      var term = builder.sum(flat, axes: builder.integers([0]), keepDimensions: false, type: type)
      if type != .float32 {
        term = builder.add(
          "Cast", [term], ["SrcT": .type(type), "DstT": .type(.float32), "Truncate": .bool(false)])
      }
      terms.append(term)
    }
    guard !terms.isEmpty else {
      throw GraphError(
        code: .noGradient, function: Function.graphName,
        message: "Signature '\(key)' has no float output to differentiate.")
    }
    let loss =
      terms.count == 1
      ? terms[0]
      : builder.add("AddN", terms, ["T": .type(.float32), "N": .int(Int64(terms.count))])
    let (differentiated, gradients) = try builder.function.appendingGradients(
      of: loss, withRespectTo: targets.map(\.source), using: source)
    builder = GradientBuilder(function: differentiated, schemas: source, scope: "tfmp_gradients")
    var byName: [String: (type: DType, parts: [Input])] = [:]
    for (target, gradient) in zip(targets, gradients) {
      guard let gradient else { continue }
      byName[target.name, default: (target.dtype, [])].parts.append(gradient)
    }
    var outputs: [Signature.Endpoint] = []
    for (outputName, entry) in byName.sorted(by: { $0.key < $1.key }) {
      let total =
        entry.parts.count == 1
        ? entry.parts[0]
        : builder.add(
          "AddN", entry.parts, ["T": .type(entry.type), "N": .int(Int64(entry.parts.count))])
      outputs.append(
        Signature.Endpoint(
          name: outputName, source: total, dtype: entry.type,
          shape: ShapeValue(dimensions: [], unknownRank: true)))
    }
    module.graph = builder.function
    module.signatures[name] = Signature(key: name, inputs: inputs, outputs: outputs)
    return module
  }

  /// Throws when a variable's handle goes into an op that calls functions (a `While` loop, an
  /// `If`) on which the loss depends: its reads inside are not differentiated yet, and leaving
  /// the variable out would be a silent error.
  private func refuseVariablesReadInside(
    _ graph: Function, handles: [NodeID: String], outputs: [Input], schemas: any OpSchemaSource
  ) throws(GraphError) {
    for id in graph.ancestors(of: outputs) {
      let node = graph[id]
      guard schemas.schema(for: node.op)?.traits.contains(.callsFunctions) == true,
        let handle = node.inputs.compactMap(\.node).first(where: { handles[$0] != nil })
      else { continue }
      throw GraphError(
        code: .noGradient, function: Function.graphName, location: "node '\(node.name)'",
        message: "Variable '\(handles[handle] ?? "?")' is read inside this \(node.op), which tfmp "
          + "does not differentiate yet (loops and conditionals).")
    }
  }
}
