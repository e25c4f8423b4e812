public import TensorCore
internal import TFProtos
internal import SwiftProtobuf
internal import Foundation

/// What `tfmp inspect` reports about a model: signatures, functions and ops, variables, and how
/// its float values would fare in float16 and bfloat16.
public struct ModelSummary: Sendable, Codable {
  /// The model format, such as `SavedModel`.
  public var format: String
  /// The path the model was read from.
  public var path: String
  /// The tags of the MetaGraphDef described (TF2 exports have `serve`).
  public var tags: [String]
  /// The number of MetaGraphDefs in the file (the first is described).
  public var metaGraphCount: Int
  /// The TensorFlow version that wrote the model, if recorded.
  public var tensorflowVersion: String
  /// The signatures, sorted by key.
  public var signatures: [Signature]
  /// The library functions, sorted by name.
  public var functions: [Function]
  /// Nodes per op type over the top-level graph and every function.
  public var opCounts: [String: Int]
  /// The variables.
  public var variables: Variables
  /// Values that do not survive rounding to float16 or bfloat16.
  public var rangeReport: RangeReport

  /// A named tensor in a signature.
  public struct TensorSpec: Sendable, Codable, Hashable {
    /// The key users pass or receive the tensor under.
    public var name: String
    /// The graph tensor it is bound to, such as `serving_default_x:0`.
    public var tensor: String
    /// The dtype name (`float32`, ...).
    public var dtype: String
    /// The dimensions, `-1` for unknown; `nil` for an unknown rank.
    public var shape: [Int]?
  }

  /// A serving signature.
  public struct Signature: Sendable, Codable, Hashable {
    /// The signature key, such as `serving_default`.
    public var key: String
    /// The method name, such as `tensorflow/serving/predict`.
    public var methodName: String
    /// The inputs, sorted by name.
    public var inputs: [TensorSpec]
    /// The outputs, sorted by name.
    public var outputs: [TensorSpec]
  }

  /// A function in the graph's library.
  public struct Function: Sendable, Codable, Hashable {
    /// The function name, such as `__inference_serve_123`.
    public var name: String
    /// The number of nodes in its body.
    public var nodeCount: Int
    /// Nodes per op type in its body.
    public var opCounts: [String: Int]
  }

  /// One logical variable, possibly stored under several checkpoint keys (Keras exports store
  /// every weight twice).
  public struct Variable: Sendable, Codable, Hashable {
    /// The variable's name, such as `dense/kernel`.
    public var name: String
    /// The dtype name.
    public var dtype: String
    /// The dimensions.
    public var shape: [Int]
    /// Bytes of one copy.
    public var bytes: Int
    /// The checkpoint keys holding it.
    public var checkpointKeys: [String]
    /// Whether the model marks it trainable (its object graph's `trainable`; a moving mean of
    /// batch normalization is not); true for a model without an object graph.
    public var trainable: Bool

    /// A variable record; see the properties.
    public init(
      name: String, dtype: String, shape: [Int], bytes: Int, checkpointKeys: [String],
      trainable: Bool
    ) {
      self.name = name
      self.dtype = dtype
      self.shape = shape
      self.bytes = bytes
      self.checkpointKeys = checkpointKeys
      self.trainable = trainable
    }
  }

  /// The model's variables.
  public struct Variables: Sendable, Codable, Hashable {
    /// The number of logical variables.
    public var count: Int
    /// The number of checkpoint entries holding tensors (object graph excluded).
    public var checkpointEntryCount: Int
    /// Bytes of the logical variables by dtype name.
    public var bytesByDType: [String: Int]
    /// Bytes of tensor data in the checkpoint, copies included.
    public var checkpointBytes: Int
    /// The largest variables, largest first (at most ten).
    public var largest: [Variable]
  }

  /// How one stored float tensor fares when rounded.
  public struct RangeEntry: Sendable, Codable, Hashable {
    /// The variable name, or the constant's node name with its function.
    public var name: String
    /// `variable` or `constant`.
    public var kind: String
    /// The stored dtype name.
    public var dtype: String
    /// The counts for float16.
    public var float16: RangeCounts
    /// The counts for bfloat16.
    public var bfloat16: RangeCounts
  }

  /// Range statistics over all float variables and constants.
  public struct RangeReport: Sendable, Codable, Hashable {
    /// Float tensors examined.
    public var tensorCount: Int
    /// Totals over every examined value, for float16.
    public var float16: RangeCounts
    /// Totals for bfloat16.
    public var bfloat16: RangeCounts
    /// Tensors with values that overflow, flush to zero or turn subnormal in either type, worst
    /// first (overflow weighs most), at most ``RangeReport/worstLimit``.
    public var worst: [RangeEntry]
    /// Tensors with affected values, including those beyond the `worst` list.
    public var affectedTensorCount: Int

    /// The length of the `worst` list.
    public static let worstLimit = 15
  }
}

extension SavedModel {
  /// Describes the model: signatures, functions and op counts, variables and the range report.
  ///
  /// Reads every float variable from the checkpoint (checksums verified) and every float
  /// constant in the graph and its functions.
  /// - Throws: ``ModelFormatError`` when a checkpoint tensor is corrupt.
  public func summary() throws -> ModelSummary {
    let metaGraph = proto.metaGraphs[0]
    let contents = Self.contents(of: metaGraph.graphDef)
    let signatures = metaGraph.signatureDef.map { key, signature in
      ModelSummary.Signature(
        key: key, methodName: signature.methodName,
        inputs: signature.inputs.map(Self.spec).sorted { $0.name < $1.name },
        outputs: signature.outputs.map(Self.spec).sorted { $0.name < $1.name })
    }.sorted { $0.key < $1.key }

    let variables = try logicalVariables()
    var rangeEntries: [ModelSummary.RangeEntry] = []
    if let checkpoint {
      for variable in variables {
        guard let key = variable.checkpointKeys.first, let entry = checkpoint.entry(forKey: key),
          entry.dtype.isFloatingPoint
        else { continue }
        let entryCounts = try checkpoint.withBytes(of: entry) { bytes in
          entry.dtype == .float32
            ? Dictionary(
              uniqueKeysWithValues: ReducedPrecision.allCases.map {
                ($0, RangeCounts(float32LittleEndian: bytes, roundedTo: $0))
              })
            : FloatValues.decode(bytes, dtype: entry.dtype)?.rangeCounts()
        }
        if let entryCounts {
          rangeEntries.append(
            Self.rangeEntry(variable.name, kind: "variable", dtype: entry.dtype, entryCounts))
        }
      }
    }
    rangeEntries += contents.constants

    var bytesByDType: [String: Int] = [:]
    for variable in variables { bytesByDType[variable.dtype, default: 0] += variable.bytes }
    let tensorEntries =
      checkpoint?.entries.filter { $0.key != CheckpointReader.objectGraphKey } ?? []
    return ModelSummary(
      format: "SavedModel", path: directory, tags: metaGraph.metaInfoDef.tags,
      metaGraphCount: proto.metaGraphs.count,
      tensorflowVersion: metaGraph.metaInfoDef.tensorflowVersion, signatures: signatures,
      functions: contents.functions, opCounts: contents.opCounts,
      variables: ModelSummary.Variables(
        count: variables.count, checkpointEntryCount: tensorEntries.count,
        bytesByDType: bytesByDType,
        checkpointBytes: tensorEntries.reduce(0) { $0 + $1.byteCount },
        largest: Array(
          variables.sorted { ($0.bytes, $1.name) > ($1.bytes, $0.name) }.prefix(10))),
      rangeReport: Self.rangeReport(rangeEntries))
  }

  /// The variables of the model, one per logical weight.
  ///
  /// A TF2 model's object graph names its variables; their checkpoint keys come from the
  /// checkpoint's own object graph (same node ids). Object-graph variables with the same name,
  /// dtype, shape and stored checksum are one weight stored twice (Keras exports). A model
  /// without an object graph (TF1) has one variable per checkpoint entry.
  ///
  /// - Throws: ``ModelFormatError`` when the checkpoint's object graph is corrupt.
  public func logicalVariables() throws -> [ModelSummary.Variable] {
    guard let checkpoint else { return [] }
    let objectGraph = proto.metaGraphs[0].objectGraphDef
    let keysByNode = try checkpointKeysByNode(checkpoint)
    var variables: [ModelSummary.Variable] = []
    var seen: [String: Int] = [:]
    if !objectGraph.nodes.isEmpty {
      for (id, node) in objectGraph.nodes.enumerated() {
        guard case .variable(let variable)? = node.kind, let key = keysByNode[id],
          let entry = checkpoint.entry(forKey: key)
        else { continue }
        let identity = "\(variable.name)|\(entry.dtype)|\(entry.shape)|\(entry.recordedChecksum)"
        if let existing = seen[identity] {
          variables[existing].checkpointKeys.append(key)
          continue
        }
        seen[identity] = variables.count
        variables.append(
          ModelSummary.Variable(
            name: variable.name.isEmpty ? key : variable.name, dtype: entry.dtype.name,
            shape: entry.shape.dimensions, bytes: entry.byteCount, checkpointKeys: [key],
            trainable: variable.trainable))
      }
      return variables
    }
    return checkpoint.entries.filter { $0.key != CheckpointReader.objectGraphKey }.map { entry in
      ModelSummary.Variable(
        name: entry.key, dtype: entry.dtype.name, shape: entry.shape.dimensions,
        bytes: entry.byteCount, checkpointKeys: [entry.key], trainable: true)
    }
  }

  /// The `VARIABLE_VALUE` checkpoint key of each object-graph node that has one (node ids are
  /// shared by the checkpoint's object graph and the SavedModel's).
  package func checkpointKeysByNode(_ checkpoint: CheckpointReader) throws -> [Int: String] {
    guard let entry = checkpoint.entry(forKey: CheckpointReader.objectGraphKey),
      entry.dtype == .string, let serialized = try checkpoint.strings(of: entry).first
    else { return [:] }
    let graph: Tensorflow_TrackableObjectGraph
    do {
      graph = try Tensorflow_TrackableObjectGraph(serializedBytes: serialized)
    } catch {
      throw ModelFormatError(
        code: .malformed, path: checkpoint.shardPath(of: entry),
        location: "tensor '\(CheckpointReader.objectGraphKey)'",
        message: "The object graph is not a valid TrackableObjectGraph protobuf. The checkpoint "
          + "is corrupt; re-export the model.", underlyingError: error)
    }
    var keys: [Int: String] = [:]
    for (id, node) in graph.nodes.enumerated() {
      if let attribute = node.attributes.first(where: { $0.name == "VARIABLE_VALUE" }) {
        keys[id] = attribute.checkpointKey
      }
    }
    return keys
  }

  /// What `graph` holds: its library's functions, the count of each op type (library
  /// included), and a range entry for each float constant.
  static func contents(of graph: Tensorflow_GraphDef) -> (
    functions: [ModelSummary.Function], opCounts: [String: Int],
    constants: [ModelSummary.RangeEntry]
  ) {
    var opCounts: [String: Int] = [:]
    var constants: [ModelSummary.RangeEntry] = []
    func count(_ node: Tensorflow_NodeDef, in function: String?) {
      opCounts[node.op, default: 0] += 1
      if let values = constantValues(node) {
        constants.append(
          rangeEntry(
            function.map { "\($0)/\(node.name)" } ?? node.name, kind: "constant",
            dtype: values.dtype, values.rangeCounts()))
      }
    }
    for node in graph.node { count(node, in: nil) }
    let functions = graph.library.function.map { function -> ModelSummary.Function in
      var counts: [String: Int] = [:]
      for node in function.nodeDef {
        counts[node.op, default: 0] += 1
        count(node, in: function.signature.name)
      }
      return ModelSummary.Function(
        name: function.signature.name, nodeCount: function.nodeDef.count, opCounts: counts)
    }.sorted { $0.name < $1.name }
    return (functions, opCounts, constants)
  }

  private static func spec(name: String, info: Tensorflow_TensorInfo) -> ModelSummary.TensorSpec {
    let tensor: String =
      switch info.encoding {
      case .name(let name)?: name
      case .cooSparse(let sparse)?: "sparse(\(sparse.valuesTensorName))"
      case .compositeTensor?: "composite"
      case nil: ""
      }
    return ModelSummary.TensorSpec(
      name: name, tensor: tensor, dtype: dtypeName(info.dtype),
      shape: info.tensorShape.unknownRank ? nil : info.tensorShape.dim.map { Int($0.size) })
  }

  static func dtypeName(_ dtype: Tensorflow_DataType) -> String {
    dtype == .dtInvalid
      ? "invalid" : DType(rawValue: dtype.rawValue)?.name ?? "dtype(\(dtype.rawValue))"
  }

  private static func constantValues(_ node: Tensorflow_NodeDef) -> FloatValues? {
    guard node.op == "Const", case .tensor(let tensor)? = node.attr["value"]?.value else {
      return nil
    }
    return FloatValues.decode(tensor)
  }

  static func rangeEntry(
    _ name: String, kind: String, dtype: DType, _ counts: [ReducedPrecision: RangeCounts]
  ) -> ModelSummary.RangeEntry {
    ModelSummary.RangeEntry(
      name: name, kind: kind, dtype: dtype.name, float16: counts[.float16] ?? RangeCounts(),
      bfloat16: counts[.bfloat16] ?? RangeCounts())
  }

  static func rangeReport(_ entries: [ModelSummary.RangeEntry]) -> ModelSummary.RangeReport {
    var float16 = RangeCounts()
    var bfloat16 = RangeCounts()
    for entry in entries {
      float16.merge(entry.float16)
      bfloat16.merge(entry.bfloat16)
    }
    // Overflow breaks a model outright; flush to zero and subnormals cost precision.
    func severity(_ entry: ModelSummary.RangeEntry) -> (Int, Int, String) {
      (
        entry.float16.overflow + entry.bfloat16.overflow,
        entry.float16.affected + entry.bfloat16.affected, entry.name
      )
    }
    let affected = entries.filter { $0.float16.affected + $0.bfloat16.affected > 0 }
    let worst = affected.sorted {
      let (left, right) = (severity($0), severity($1))
      return (left.0, left.1) != (right.0, right.1)
        ? (left.0, left.1) > (right.0, right.1) : left.2 < right.2
    }
    return ModelSummary.RangeReport(
      tensorCount: entries.count, float16: float16, bfloat16: bfloat16,
      worst: Array(worst.prefix(ModelSummary.RangeReport.worstLimit)),
      affectedTensorCount: affected.count)
  }
}
