internal import GraphIR
public import TensorCore
internal import ModelFormats

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
  /// Whether the weights are constants (a frozen graph), not variables.
  public var weightsAreConstants = false
  /// Op types not in the lists (left as they are), with how many nodes have each.
  public var opsNotInLists: [String: Int] = [:]
  /// Every compute op and every node with an op not in the lists.
  public var nodes: [Node] = []
  /// What happened to each variable.
  public var variables: [Variable] = []

  /// One variable's storage.
  public struct Variable: Sendable, Codable, Hashable {
    /// The variable's name (from the object graph), or its first checkpoint key.
    public var name: String
    /// Its checkpoint keys.
    public var checkpointKeys: [String]
    /// The stored dtype after conversion.
    public var dtype: String
    /// Why.
    public var reason: String
  }

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
  mutating func record(_ body: Function, _ decisions: [PaintingPass.Decision], lists: OpLists) {
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
      } else if lists.opClass(of: node.op) == nil || OpLists.convertible(node.op) == nil,
        !Self.structuralOps.contains(node.op),
        node.attributes.values.contains(.type(.float32))
      {
        opsNotInLists[node.op, default: 0] += 1
        nodes.append(
          Node(
            function: body.name, name: node.name, op: node.op, precision: "float32",
            reason: .notInLists))
      }
    }
  }

  /// Records what ``VariableStoragePass`` did to `model`'s variables: each one's stored type
  /// and reason, and the weight bytes before and after.
  ///
  /// - Throws: ``ModelFormatError`` when the model's variables cannot be listed.
  mutating func record(_ storage: VariableStoragePass.Result, of model: SavedModel) throws {
    let variables = try model.logicalVariables()
    weightBytesBefore = variables.reduce(0) { $0 + $1.bytes }
    weightBytesAfter = variables.reduce(0) { total, variable in
      total
        + (storage.convertedKeys.contains(variable.checkpointKeys[0])
          ? variable.bytes / 2 : variable.bytes)
    }
    var names: [String: String] = [:]
    for variable in variables {
      for key in variable.checkpointKeys { names[key] = variable.name }
    }
    for outcome in storage.outcomes {
      self.variables.append(
        Variable(
          name: outcome.keys.lazy.compactMap { names[$0] }.first ?? outcome.keys[0],
          checkpointKeys: outcome.keys, dtype: outcome.dtype.name,
          reason: outcome.reason))
    }
    self.variables.sort { $0.name < $1.name }
  }

  mutating func add(_ statistics: CastInsertionPass.Statistics) {
    castsInserted += statistics.castsInserted
    constantsConverted += statistics.constantsConverted
  }

  /// The summary `tfmp convert` prints.
  public var summary: String {
    let percent = computeOpCount == 0 ? 0 : 100 * convertedOpCount / computeOpCount
    let storage =
      if weightsAreConstants {
        " (constants of a frozen graph)"
      } else if weights == .float32 {
        " (float32 master weights kept)"
      } else {
        ", \(variables.filter { $0.dtype == precision.rawValue }.count) of \(variables.count) "
          + "variables stored in \(precision.rawValue)"
      }
    var lines = [
      "converted \(convertedOpCount) of \(computeOpCount) compute ops to \(precision.rawValue) "
        + "(\(percent)%), \(castsInserted) casts inserted, \(constantsConverted) constants stored in "
        + "\(precision.rawValue)",
      "weights \(Self.megabytes(weightBytesBefore)) -> \(Self.megabytes(weightBytesAfter))"
        + storage,
    ]
    let keptByRange = variables.filter { $0.reason.hasPrefix("kept float32 (range)") }
    if !keptByRange.isEmpty {
      lines.append(
        "\(keptByRange.count) variables kept float32 (range): "
          + keptByRange.prefix(5).map(\.name).joined(separator: ", ")
          + (keptByRange.count > 5 ? ", ..." : ""))
    }
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

  private static func megabytes(_ bytes: Int) -> String { ModelSummary.bytes(bytes) }
}
