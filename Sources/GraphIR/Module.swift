public import TensorCore

/// A whole model as tfmp works on it: the top-level graph, the function library, the signatures
/// and the variables, whatever file it came from.
public struct Module: Sendable {
  /// The top-level graph (``Function/graphName``): in a TF2 SavedModel it mostly calls library
  /// functions; in a TF1 model or a frozen graph it does the computing.
  public var graph: Function
  /// The library, in the file's order.
  public private(set) var functions: [Function]
  /// The serving signatures by key, each a view of the top-level graph.
  public var signatures: [String: Signature]
  /// The variables whose values a checkpoint holds, by the graph node that makes their handle.
  public var variables: [Variable]
  private var functionIndex: [String: Int]

  /// A module of these parts.
  public init(
    graph: Function, functions: [Function], signatures: [String: Signature] = [:],
    variables: [Variable] = []
  ) {
    self.graph = graph
    self.functions = functions
    self.signatures = signatures
    self.variables = variables
    functionIndex = Dictionary(
      functions.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
  }

  /// The library function named `name`.
  public func function(named name: String) -> Function? {
    functionIndex[name].map { functions[$0] }
  }

  /// The position in ``functions`` of the function named `name`.
  public func index(ofFunction name: String) -> Int? { functionIndex[name] }

  /// Edits library function `index` in place (without copying its nodes); its name must stay
  /// the same.
  public mutating func modifyFunction<T>(at index: Int, _ edit: (inout Function) throws -> T)
    rethrows -> T
  {
    let name = functions[index].name
    defer { precondition(functions[index].name == name, "an edited function keeps its name") }
    return try edit(&functions[index])
  }

  /// Replaces library function `index` (its name must stay the same).
  public mutating func setFunction(_ function: Function, at index: Int) {
    precondition(function.name == functions[index].name, "a replaced function keeps its name")
    functions[index] = function
  }

  /// The signature keys that can be run (the init op's pseudo-signature left out), sorted.
  public var signatureKeys: [String] {
    signatures.keys.filter { $0 != Signature.initOperationKey }.sorted()
  }

  /// ``signatureKeys`` less those over the same graph tensors as an earlier key (a TF1
  /// export's `predict` and `serving_default`): what a run of every signature needs to run.
  public var distinctSignatureKeys: [String] {
    var seen = Set<[Input]>()
    return signatureKeys.filter { key in
      guard let signature = signatures[key] else { return true }
      return seen.insert(signature.inputs.map(\.source) + signature.outputs.map(\.source)).inserted
    }
  }
}

/// A serving signature: named inputs and outputs, each a tensor of the top-level graph.
public struct Signature: Sendable {
  /// One named input or output.
  public struct Endpoint: Sendable {
    /// The name the signature gives the tensor.
    public var name: String
    /// The graph tensor: for an input, the placeholder it feeds.
    public var source: Input
    /// The declared dtype, `nil` when the file gives one tfmp does not know.
    public var dtype: DType?
    /// The declared shape (-1 for unknown dimensions).
    public var shape: ShapeValue

    /// An endpoint named `name`.
    public init(name: String, source: Input, dtype: DType?, shape: ShapeValue) {
      self.name = name
      self.source = source
      self.dtype = dtype
      self.shape = shape
    }
  }

  /// The key SavedModels use for their initialization op, which is not a signature to run.
  public static let initOperationKey = "__saved_model_init_op"

  /// The signature's key (`serving_default`).
  public var key: String
  /// Inputs sorted by name.
  public var inputs: [Endpoint]
  /// Outputs sorted by name.
  public var outputs: [Endpoint]

  /// A signature with these inputs and outputs (sorted by name here).
  public init(key: String, inputs: [Endpoint], outputs: [Endpoint]) {
    self.key = key
    self.inputs = inputs.sorted { $0.name < $1.name }
    self.outputs = outputs.sorted { $0.name < $1.name }
  }
}

/// A variable of the model: the graph node that makes its handle and the checkpoint entry that
/// holds its value.
public struct Variable: Hashable, Sendable {
  /// The `VarHandleOp` (or TF1 variable) node of the top-level graph.
  public var node: NodeID
  /// The checkpoint entry that holds the value.
  public var checkpointKey: String

  /// The variable made by `node`, saved under `checkpointKey`.
  public init(node: NodeID, checkpointKey: String) {
    self.node = node
    self.checkpointKey = checkpointKey
  }
}

extension Module {
  /// The reduced type a converted module computes in, as its casts tell: float16 when a `Cast`
  /// anywhere produces float16, else bfloat16 when one produces bfloat16, else `nil`.
  public var reducedCompute: ReducedPrecision? {
    let produced = Set(
      ([graph] + functions).lazy.flatMap(\.nodes).filter { $0.op == "Cast" }
        .compactMap { $0.type("DstT") })
    return [ReducedPrecision.float16, .bfloat16].first { produced.contains($0.dtype) }
  }
}
