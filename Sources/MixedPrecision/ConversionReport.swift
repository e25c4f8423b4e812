internal import TFProtos
public import TensorCore

/// Every decision `tfmp convert` made, for `--report` and the summary it prints.
public struct ConversionReport: Sendable, Codable {
  /// One node's outcome.
  public struct Node: Sendable, Codable, Hashable {
    /// The function holding the node, or `<graph>` for the top level.
    public var function: String
    /// The node name.
    public var name: String
    /// The op type.
    public var op: String
    /// `float16`, `bfloat16`, or `float32`.
    public var precision: String
    /// Why.
    public var reason: PrecisionReason
  }

  /// The reduced-precision type converted to.
  public var precision: ReducedPrecision
  /// How variables were stored.
  public var weights: WeightStorage
  /// Nodes that compute in float32 and that tfmp knows how to convert.
  public var computeOpCount = 0
  /// Of those, the ones converted.
  public var convertedOpCount = 0
  /// Casts added at precision boundaries.
  public var castsInserted = 0
  /// Float32 constants stored in the reduced type instead of being cast at run time.
  public var constantsConverted = 0
  /// Bytes of the model's weights (one copy each) before conversion.
  public var weightBytesBefore = 0
  /// Bytes after.
  public var weightBytesAfter = 0
  /// Op types not in the lists (left as they are), with how many nodes have each.
  public var opsNotInLists: [String: Int] = [:]
  /// Every compute op and every node with an op not in the lists.
  public var nodes: [Node] = []

  init(precision: ReducedPrecision, weights: WeightStorage) {
    self.precision = precision
    self.weights = weights
  }

  /// Ops that exist in every graph and need no decision.
  private static let structuralOps: Set<String> = [
    "Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "VarHandleOp", "ReadVariableOp",
    "AssignVariableOp", "VarIsInitializedOp", "DisableCopyOnRead", "StatefulPartitionedCall",
    "PartitionedCall", "Cast", "RestoreV2", "SaveV2", "MergeV2Checkpoints", "ShardedFilename",
    "StringJoin", "StaticRegexFullMatch", "Select", "IdentityN",
  ]

  /// Records the decisions for one body. Compute ops count only in bodies that have Tensor Core
  /// work (allow ops): the Identity plumbing of save and restore functions is not compute.
  mutating func record(_ body: GraphBody, _ decisions: [PaintingPass.Decision], lists: OpLists) {
    let computes = zip(body.nodes, decisions).contains { node, decision in
      decision.isCandidate && lists.opClass(of: node.op) == .allow
    }
    for (node, decision) in zip(body.nodes, decisions) {
      if computes
        && (decision.isCandidate || decision.reason == .outputSoftmax
          || decision.reason == .userFloat32Node)
      {
        if decision.isCandidate { computeOpCount += 1 }
        if decision.reduced { convertedOpCount += 1 }
        nodes.append(
          Node(
            function: body.name, name: node.name, op: node.op,
            precision: decision.reduced ? precision.rawValue : "float32", reason: decision.reason))
      } else if !Self.structuralOps.contains(node.op),
        node.attr.values.contains(where: { $0.type == .dtFloat })
      {
        opsNotInLists[node.op, default: 0] += 1
        nodes.append(
          Node(function: body.name, name: node.name, op: node.op, precision: "float32",
            reason: .notInLists))
      }
    }
  }

  mutating func add(_ statistics: CastInsertionPass.Statistics) {
    castsInserted += statistics.castsInserted
    constantsConverted += statistics.constantsConverted
  }

  /// The summary `tfmp convert` prints.
  public var summary: String {
    let percent = computeOpCount == 0 ? 0 : 100 * convertedOpCount / computeOpCount
    var lines = [
      "converted \(convertedOpCount) of \(computeOpCount) compute ops to \(precision.rawValue) "
        + "(\(percent)%), \(castsInserted) casts inserted, \(constantsConverted) constants stored in "
        + "\(precision.rawValue)",
      "weights: \(weights == .float32 ? "float32 master weights kept" : "stored by range"), "
        + "\(Self.megabytes(weightBytesBefore)) -> \(Self.megabytes(weightBytesAfter))",
    ]
    var kept: [PrecisionReason: Int] = [:]
    for node in nodes where node.precision == "float32" && node.reason != .notInLists {
      kept[node.reason, default: 0] += 1
    }
    if !kept.isEmpty {
      lines.append(
        "kept float32: "
          + kept.sorted { ($1.value, $0.key.rawValue) < ($0.value, $1.key.rawValue) }
          .map { "\($0.value) (\($0.key.rawValue))" }.joined(separator: ", "))
    }
    if !opsNotInLists.isEmpty {
      lines.append(
        "left as is (op not in the lists): "
          + opsNotInLists.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
          .joined(separator: ", "))
    }
    return lines.joined(separator: "\n") + "\n"
  }

  private static func megabytes(_ bytes: Int) -> String {
    let tenths = (bytes * 10 + 524_288) / 1_048_576
    return "\(tenths / 10).\(tenths % 10) MiB"
  }
}
