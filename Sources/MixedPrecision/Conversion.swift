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
  public var weights: WeightStorage = .float32
  /// Op types always kept float32 (treated as deny ops: their float32 spreads downstream).
  public var float32Ops: [String] = []
  /// Regular expressions; nodes whose name matches one are kept float32.
  public var float32NodePatterns: [String] = []
  /// Op types always converted (treated as allow ops).
  public var reducedOps: [String] = []

  /// Options with the defaults: float16 compute, float32 weights, no overrides.
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
    let caster = { (arguments: Set<String>) in
      CastInsertionPass(precision: options.precision, argumentNames: arguments)
    }
    var model = self
    model.fingerprint = nil
    var report = ConversionReport(precision: options.precision, weights: options.weights)
    var metaGraph = model.proto.metaGraphs[0]
    try refuseReducedPrecision(metaGraph.graphDef)

    for (index, function) in metaGraph.graphDef.library.function.enumerated() {
      var body = GraphBody(
        name: function.signature.name, syntax: .function, nodes: function.nodeDef,
        sinks: function.ret)
      let arguments = Set(function.signature.inputArg.map(\.name))
      let decisions = painter.paint(body)
      report.record(body, decisions, lists: lists)
      guard decisions.contains(where: \.reduced) else { continue }
      let statistics = caster(arguments).apply(to: &body, decisions: decisions)
      report.add(statistics)
      metaGraph.graphDef.library.function[index].nodeDef = body.nodes
      metaGraph.graphDef.library.function[index].ret = body.sinks
    }

    // A TF1-style graph computes at the top level; its signature outputs are the sinks.
    var sinks: [String: String] = [:]
    for (key, signature) in metaGraph.signatureDef {
      for (output, info) in signature.outputs {
        if case .name(let name)? = info.encoding { sinks["\(key)\u{0}\(output)"] = name }
      }
    }
    var graph = GraphBody(
      name: "<graph>", syntax: .graph, nodes: metaGraph.graphDef.node, sinks: sinks)
    let decisions = painter.paint(graph)
    report.record(graph, decisions, lists: lists)
    if decisions.contains(where: \.reduced) {
      report.add(caster([]).apply(to: &graph, decisions: decisions))
      metaGraph.graphDef.node = graph.nodes
      for (sinkKey, reference) in graph.sinks where reference != sinks[sinkKey] {
        let parts = sinkKey.split(separator: "\u{0}", maxSplits: 1).map(String.init)
        metaGraph.signatureDef[parts[0]]?.outputs[parts[1]]?.name =
          reference.contains(":") ? reference : reference + ":0"
      }
    }
    model.proto.metaGraphs[0] = metaGraph
    report.weightBytesBefore = try logicalVariables().reduce(0) { $0 + $1.bytes }
    report.weightBytesAfter = report.weightBytesBefore
    return (model, report)
  }

  /// Refuses a model whose compute ops already run in float16 or bfloat16.
  private func refuseReducedPrecision(_ graph: Tensorflow_GraphDef) throws {
    let bodies = [("the top-level graph", graph.node)]
      + graph.library.function.map { ("function '\($0.signature.name)'", $0.nodeDef) }
    for (place, nodes) in bodies {
      for node in nodes {
        guard let rule = OpTypeRule.rule(for: node.op),
          let type = node.attr[rule.attribute]?.type, type == .dtHalf || type == .dtBfloat16
        else { continue }
        throw ModelFormatError(
          code: .alreadyConverted, path: directory, location: "node '\(node.name)' in \(place)",
          message: "The \(node.op) already computes in \(type == .dtHalf ? "float16" : "bfloat16"); "
            + "the model was converted before or exported from mixed-precision training. tfmp "
            + "converts float32 models; convert the original float32 model instead.")
      }
    }
  }
}
