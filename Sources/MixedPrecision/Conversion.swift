public import ModelFormats
public import TensorCore
internal import TFProtos
internal import Foundation

/// How `tfmp convert` stores variables.
public enum WeightStorage: String, Sendable, CaseIterable, Codable {
  /// Reduced precision where every reader computes in it and the values fit; else float32.
  case auto
  /// Float32 master weights, cast after each read (for fine-tuning).
  case float32
}

/// What to convert and how.
public struct ConversionOptions: Sendable {
  /// The reduced-precision type to compute in.
  public var precision: ReducedPrecision = .float16
  /// How to store variables.
  public var weights: WeightStorage = .auto
  /// Whether signature inputs and outputs keep their float32 dtype; if false, they take the
  /// reduced type.
  public var keepIOTypes = true
  /// Op types always kept float32 (treated as deny ops: their float32 spreads downstream).
  public var float32Ops: [String] = []
  /// Regular expressions; nodes whose name matches one are kept float32.
  public var float32NodePatterns: [String] = []
  /// Op types always converted (treated as allow ops).
  public var reducedOps: [String] = []

  /// Options with the defaults: float16 compute, variables stored by range, no overrides.
  public init() {}
}

extension SavedModel {
  /// Converts the model to mixed precision.
  ///
  /// Every function in the graph's library and the top-level graph is painted and rewritten
  /// independently: function arguments and results stay float32, so signatures, calls and control
  /// flow stay type-consistent, and outputs keep their dtypes.
  ///
  /// - Returns: The converted model (its `fingerprint.pb` dropped) and a report of every decision.
  /// - Throws: ``ModelFormatError`` with code `alreadyConverted` when the model already computes
  ///   in float16 or bfloat16; `malformed` for an invalid `--fp32-node` pattern.
  public func converted(with options: ConversionOptions) throws -> (SavedModel, ConversionReport) {
    var lists = OpLists(for: options.precision)
    for op in options.reducedOps { lists.assign(op, to: .allow) }
    for op in options.float32Ops { lists.assign(op, to: .deny) }
    let patterns = try options.float32NodePatterns.map { pattern in
      do {
        return try NSRegularExpression(pattern: pattern)
      } catch {
        throw ModelFormatError(
          code: .malformed, path: "--fp32-node", location: "'\(pattern)'",
          message: "The pattern is not a valid regular expression. Fix or quote it.",
          underlyingError: error)
      }
    }
    let painter = PaintingPass(
      lists: lists, float32NodePatterns: patterns, userReducedOps: Set(options.reducedOps),
      userFloat32Ops: Set(options.float32Ops))
    var model = self
    model.fingerprint = nil
    var report = ConversionReport(precision: options.precision, weights: options.weights)
    var metaGraph = model.proto.metaGraphs[0]
    try refuseReducedPrecision(metaGraph.graphDef, OpLists(for: options.precision))

    // Every library function, then the top-level graph (which computes in TF1-style models;
    // its signature outputs are its sinks).
    var functions = metaGraph.graphDef.library.function
    var bodies = functions.map { function in
      GraphBody(
        name: function.signature.name, syntax: .function, nodes: function.nodeDef,
        sinks: function.ret)
    }
    var graphSinks: [String: String] = [:]
    for (key, signature) in metaGraph.signatureDef {
      for (output, info) in signature.outputs {
        if case .name(let name)? = info.encoding { graphSinks["\(key)\u{0}\(output)"] = name }
      }
    }
    bodies.append(
      GraphBody(name: "<graph>", syntax: .graph, nodes: metaGraph.graphDef.node, sinks: graphSinks))
    let decisions = bodies.map { painter.paint($0) }
    for (body, bodyDecisions) in zip(bodies, decisions) {
      report.record(body, bodyDecisions, lists: lists)
    }

    var storage = VariableStoragePass.Result()
    if options.weights == .auto {
      storage = try VariableStoragePass(precision: options.precision).apply(
        bodies: &bodies, functions: &functions, decisions: decisions, checkpoint: checkpoint)
    }
    for index in bodies.indices {
      let retyped = storage.retyped[index] ?? []
      let retypedGather = bodies[index].nodes.contains {
        retyped.contains($0.name) && ["GatherV2", "Gather", "GatherNd"].contains($0.op)
      }
      guard decisions[index].contains(where: \.reduced) || retypedGather else { continue }
      let arguments =
        index < functions.count ? Set(functions[index].signature.inputArg.map(\.name)) : []
      let pass = CastInsertionPass(
        precision: options.precision, argumentNames: arguments,
        retypedNodes: retyped)
      report.add(pass.apply(to: &bodies[index], decisions: decisions[index]))
    }

    for index in functions.indices {
      functions[index].nodeDef = bodies[index].nodes
      functions[index].ret = bodies[index].sinks
    }
    metaGraph.graphDef.library.function = functions
    let graph = bodies[functions.count]
    metaGraph.graphDef.node = graph.nodes
    for (sinkKey, reference) in graph.sinks where reference != graphSinks[sinkKey] {
      let parts = sinkKey.split(separator: "\u{0}", maxSplits: 1).map(String.init)
      metaGraph.signatureDef[parts[0]]?.outputs[parts[1]]?.name =
        reference.contains(":") ? reference : reference + ":0"
    }

    // Variables stored in the reduced type: the object graph's dtypes and the checkpoint.
    if let checkpoint, !storage.convertedKeys.isEmpty {
      let target: Tensorflow_DataType = options.precision == .float16 ? .dtHalf : .dtBfloat16
      for (node, key) in try checkpointKeysByNode(checkpoint)
      where storage.convertedKeys.contains(key) {
        guard node < metaGraph.objectGraphDef.nodes.count,
          case .variable(var variable)? = metaGraph.objectGraphDef.nodes[node].kind
        else { continue }
        variable.dtype = target
        for component in variable.experimentalDistributedVariableComponents.indices {
          variable.experimentalDistributedVariableComponents[component].dtype = target
        }
        metaGraph.objectGraphDef.nodes[node].variable = variable
      }
      for key in storage.convertedKeys { model.checkpointConversions[key] = options.precision }
    }
    if !options.keepIOTypes {
      try SignatureTypesPass(precision: options.precision).apply(
        to: &metaGraph, modelPath: directory)
    }
    model.proto.metaGraphs[0] = metaGraph

    let variables = try logicalVariables()
    report.weightBytesBefore = variables.reduce(0) { $0 + $1.bytes }
    report.weightBytesAfter = variables.reduce(0) { total, variable in
      total
        + (storage.convertedKeys.contains(variable.checkpointKeys[0])
          ? variable.bytes / 2 : variable.bytes)
    }
    report.record(storage.outcomes, variables: variables)
    return (model, report)
  }

  /// Refuses a model whose Tensor Core ops (the allow list) already run in float16 or bfloat16.
  private func refuseReducedPrecision(_ graph: Tensorflow_GraphDef, _ lists: OpLists) throws {
    let bodies =
      [("the top-level graph", graph.node)]
      + graph.library.function.map { ("function '\($0.signature.name)'", $0.nodeDef) }
    for (place, nodes) in bodies {
      for node in nodes {
        guard lists.opClass(of: node.op) == .allow, let rule = OpTypeRule.rule(for: node.op),
          let type = node.attr[rule.attribute]?.type, type == .dtHalf || type == .dtBfloat16
        else { continue }
        throw ModelFormatError(
          code: .alreadyConverted, path: directory, location: "node '\(node.name)' in \(place)",
          message:
            "The \(node.op) already computes in \(type == .dtHalf ? "float16" : "bfloat16"); "
            + "the model was converted before or exported from mixed-precision training. tfmp "
            + "converts float32 models; convert the original float32 model instead.")
      }
    }
  }
}
