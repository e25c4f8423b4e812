public import ModelFormats
internal import CPURuntime
internal import GraphIR
public import TensorCore
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
  /// Nodes kept float32, each named by its function (``GraphIR/Function/graphName`` for the
  /// top-level graph) and its own name: what the accuracy search chose.
  public var float32Nodes: Set<QualifiedNodeName> = []
  /// Op types always converted (treated as allow ops).
  public var reducedOps: [String] = []
  /// Whether normalizations (batch, layer, RMS) compute in float32, as Keras computes them, or
  /// like any other op.
  public var normalizationInFloat32 = true

  /// Options with the defaults: float16 compute, variables stored by range, no overrides.
  public init() {}
}

/// A node named by its function and its own name (names are unique only within a function).
public struct QualifiedNodeName: Hashable, Sendable, Codable, CustomStringConvertible {
  /// The function's name; ``GraphIR/Function/graphName`` for the top-level graph.
  public var function: String
  /// The node's name.
  public var node: String

  /// The node `node` of `function`.
  public init(function: String, node: String) {
    self.function = function
    self.node = node
  }

  /// `node` in `function`.
  public var description: String { "\(node) in \(function)" }
}

/// Converts SavedModels to mixed precision: reads the model into a GraphIR module, runs the
/// conversion passes over it, and writes the result back into the model.
///
/// The pipeline, in order: ``RangePass`` finds the constants and variable reads whose values do
/// not survive the reduced type; ``NormalizationPass`` finds the normalizations, which stay
/// float32 as in Keras (unless turned off); ``ChoicePass`` finds what choices (top-k, arg max)
/// are made on, which stays float32; ``PaintingPass`` decides each node's precision; with
/// `--weights auto`, ``VariableStoragePass`` stores variables in the reduced type where every
/// reader computes in it; ``CastInsertionPass`` retypes the converted nodes and puts casts at the
/// boundaries; with `--no-keep-io-types`, ``SignatureTypesPass`` gives the signatures reduced
/// inputs and outputs. A new pass is a type conforming to ``ConversionPass`` and one line here.
///
/// Every function in the library and the top-level graph is painted and rewritten on its own:
/// function arguments and results stay float32, so signatures, calls and control flow stay
/// type-consistent, and outputs keep their dtypes.
public struct Converter: Sendable {
  /// What to convert and how.
  public var options: ConversionOptions

  /// A converter with `options`.
  public init(options: ConversionOptions) { self.options = options }

  /// Converts `model`, a SavedModel or a frozen graph, into the same format.
  ///
  /// - Throws: See ``convert(_:)-(SavedModel)`` and ``convert(_:)-(GraphDefFile)``.
  public func convert(_ model: GraphModel) throws -> (GraphModel, ConversionReport) {
    try prepare(model).convert()
  }

  /// Converts the SavedModel `model`.
  ///
  /// - Returns: The converted model (its `fingerprint.pb` dropped) and a report of every decision.
  /// - Throws: ``ModelFormatError`` with code `alreadyConverted` when the model already computes
  ///   in float16 or bfloat16; `malformed` for an invalid `--fp32-node` pattern or a graph that
  ///   cannot be read; `unsupported` for signatures `--no-keep-io-types` cannot retype.
  public func convert(_ model: SavedModel) throws -> (SavedModel, ConversionReport) {
    let (converted, report) = try convert(.savedModel(model))
    guard case .savedModel(let savedModel) = converted else {
      preconditionFailure("a SavedModel converts to a SavedModel")
    }
    return (savedModel, report)
  }

  /// Converts the frozen graph `file`: its weights are constants, stored in the reduced type
  /// where the ops reading them compute in it; its fetched node names stay.
  ///
  /// - Returns: The converted graph and a report of every decision.
  /// - Throws: ``ModelFormatError`` as for a SavedModel; `unsupported` for `--weights float32`,
  ///   which a graph without variables cannot honour, and for `--no-keep-io-types`.
  public func convert(_ file: GraphDefFile) throws -> (GraphDefFile, ConversionReport) {
    let (converted, report) = try convert(.frozenGraph(file))
    guard case .frozenGraph(let graph) = converted else {
      preconditionFailure("a frozen graph converts to a frozen graph")
    }
    return (graph, report)
  }

  /// `model` read and analysed for conversion (see ``PreparedConversion``).
  ///
  /// - Throws: See ``convert(_:)-(SavedModel)`` and ``convert(_:)-(GraphDefFile)``.
  public func prepare(_ model: GraphModel) throws -> PreparedConversion {
    let module: Module
    let checkpoint: CheckpointReader?
    switch model {
    case .savedModel(let savedModel):
      module = try savedModel.module()
      checkpoint = savedModel.checkpoint
    case .frozenGraph(let file):
      try refuseFrozenGraphOptions(file)
      module = try file.module()
      checkpoint = nil
    }
    let context = try analyse(module, checkpoint: checkpoint, path: model.path)
    return PreparedConversion(converter: self, original: model, module: module, context: context)
  }

  /// `model`, converted with float32 master weights (`--weights float32`) and perhaps trained
  /// further, with each master weight stored in `options.precision` where `--weights auto`
  /// would store it: where every read is cast to that type (by the conversion) and its values,
  /// the trained ones given to ``SavedModel/updatingVariables(_:)`` included, fit. Those casts
  /// then cast from the stored type to itself, which TensorFlow runs as an identity.
  ///
  /// - Returns: The model and a report of its variables (``ConversionReport/variables``, the
  ///   weight bytes before and after); no op changes precision.
  /// - Throws: ``ModelFormatError`` for a graph or checkpoint that cannot be read.
  public func storingMasterWeights(of model: SavedModel) throws -> (SavedModel, ConversionReport) {
    var module = try model.module()
    let storage = try VariableStoragePass(precision: options.precision).apply(
      to: &module, groups: VariableStoragePass.groups(in: module), readers: .casts,
      checkpoint: model.checkpoint, values: model.checkpointValues)
    var stored = model.replacing(module)
    stored.fingerprint = nil
    try stored.storeReduced(storage.convertedKeys, in: options.precision)
    var report = ConversionReport(precision: options.precision, weights: .auto)
    try report.record(storage, of: model)
    return (stored, report)
  }

  /// Refuses the options a frozen graph cannot honour.
  private func refuseFrozenGraphOptions(_ file: GraphDefFile) throws {
    guard options.keepIOTypes else {
      throw ModelFormatError(
        code: .unsupported, path: file.path, location: "--no-keep-io-types",
        message: "A frozen graph's placeholders and fetched nodes keep their float32 types. "
          + "Convert with the default --keep-io-types, and cast where you feed and fetch.")
    }
    guard options.weights == .auto else {
      throw ModelFormatError(
        code: .unsupported, path: file.path, location: "--weights float32",
        message: "A frozen graph has no variables to keep as float32 master weights: its "
          + "weights are constants, stored in the reduced type where the ops reading them "
          + "compute in it. Drop --weights float32, or convert the SavedModel it was frozen from.")
    }
  }

  /// Runs the analysis passes over `module`, whose variables `checkpoint` holds, read from
  /// `path`: the context every conversion of it starts from.
  fileprivate func analyse(_ module: Module, checkpoint: CheckpointReader?, path: String)
    throws -> ConversionContext
  {
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
    try refuseReducedPrecision(module, OpLists(for: options.precision), path: path)

    var passes: [any ConversionPass] = [RangePass(precision: options.precision)]
    if options.normalizationInFloat32 { passes.append(NormalizationPass()) }
    passes.append(ChoicePass())
    if options.weights == .auto { passes.append(VariableStoragePass.Grouping()) }

    var context = ConversionContext(
      options: options, lists: lists, float32NodePatterns: patterns, checkpoint: checkpoint,
      modelPath: path)
    var analysed = module
    try run(passes, on: &analysed, &context)
    return context
  }

  /// Runs the rewriting passes over `module`, analysed into `context`, keeping `float32Nodes`
  /// float32 besides what the options keep.
  fileprivate func rewrite(
    _ module: inout Module, _ context: inout ConversionContext,
    keepingFloat32 float32Nodes: Set<QualifiedNodeName>
  ) throws {
    var passes: [any ConversionPass] = [
      PaintingPass(
        lists: context.lists, float32NodePatterns: context.float32NodePatterns,
        searchedFloat32Nodes: options.float32Nodes.union(float32Nodes),
        userReducedOps: Set(options.reducedOps), userFloat32Ops: Set(options.float32Ops))
    ]
    if options.weights == .auto { passes.append(VariableStoragePass(precision: options.precision)) }
    passes.append(CastInsertionPass(precision: options.precision))
    if !options.keepIOTypes { passes.append(SignatureTypesPass(precision: options.precision)) }
    try run(passes, on: &module, &context)
  }

  private func run(
    _ passes: [any ConversionPass], on module: inout Module, _ context: inout ConversionContext
  ) throws {
    // Passes must keep a well-formed module well formed (checked in builds with internal
    // checks; a malformed input, such as a corrupted file, is left as it is).
    let schemas = OpRegistry.standard
    let wellFormed = GraphVerifier.isWellFormedForInternalChecks(module, schemas: schemas)
    for pass in passes {
      try pass.run(on: &module, &context)
      if wellFormed { GraphVerifier.checkInternally(module, schemas: schemas) }
    }
  }

  /// The SavedModel `model` with `module`, converted in `context`.
  fileprivate func finish(_ module: Module, _ context: ConversionContext, of model: SavedModel)
    throws -> (SavedModel, ConversionReport)
  {
    var converted = model.replacing(module)
    converted.fingerprint = nil
    try converted.storeReduced(context.storage.convertedKeys, in: options.precision)
    for retyped in context.retypedSignatureFunctions {
      converted.retypeConcreteFunction(
        retyped.function, inputs: retyped.inputs, outputs: retyped.outputs,
        to: options.precision.dtype)
    }
    var report = context.report
    try report.record(context.storage, of: model)
    return (converted, report)
  }

  /// The frozen graph `file`, whose module was `original`, with `module`, converted in
  /// `context`.
  fileprivate func finish(
    _ module: Module, _ context: ConversionContext, of file: GraphDefFile, original: Module
  ) -> (GraphDefFile, ConversionReport) {
    var report = context.report
    report.weightsAreConstants = true
    report.weightBytesBefore = Self.constantBytes(original)
    report.weightBytesAfter = Self.constantBytes(module)
    return (file.replacing(module), report)
  }

  /// The bytes of the module's float constants (a frozen graph's weights).
  private static func constantBytes(_ module: Module) -> Int {
    var bytes = 0
    for body in [module.graph] + module.functions {
      for node in body.nodes where node.op == "Const" {
        guard case .tensor(let tensor)? = node.attributes["value"], tensor.dtype.isFloatingPoint,
          let count = tensor.elementCount, let size = tensor.dtype.byteSize
        else { continue }
        bytes += count * size
      }
    }
    return bytes
  }

  /// Refuses a model whose Tensor Core ops (the allow list) already run in float16 or bfloat16.
  private func refuseReducedPrecision(_ module: Module, _ lists: OpLists, path: String) throws {
    let bodies =
      [("the top-level graph", module.graph)]
      + module.functions.map { ("function '\($0.name)'", $0) }
    for (place, body) in bodies {
      for node in body.nodes {
        guard lists.opClass(of: node.op) == .allow,
          let attribute = OpLists.convertible(node.op)?.precision?.attribute,
          let type = node.type(attribute), type == .float16 || type == .bfloat16
        else { continue }
        throw ModelFormatError(
          code: .alreadyConverted, path: path, location: "node '\(node.name)' in \(place)",
          message:
            "The \(node.op) already computes in \(type == .float16 ? "float16" : "bfloat16"); "
            + "the model was converted before or exported from mixed-precision training. tfmp "
            + "converts float32 models; convert the original float32 model instead.")
      }
    }
  }
}

/// One model read and analysed for conversion: the passes that only read the model (ranges,
/// normalizations, choices, the variables' handle groups) have run, so that converting it
/// again and again, keeping different nodes float32 (the accuracy search), repeats only the
/// painting and the rewriting.
public struct PreparedConversion {
  fileprivate let converter: Converter
  /// The model being converted.
  public let original: GraphModel
  fileprivate let module: Module
  fileprivate let context: ConversionContext

  /// Converts the model, keeping `float32Nodes` float32 besides what the options keep.
  ///
  /// - Throws: See ``Converter/convert(_:)-(SavedModel)`` and
  ///   ``Converter/convert(_:)-(GraphDefFile)``.
  public func convert(keepingFloat32 float32Nodes: Set<QualifiedNodeName> = []) throws
    -> (GraphModel, ConversionReport)
  {
    var converted = module
    var context = context
    try converter.rewrite(&converted, &context, keepingFloat32: float32Nodes)
    switch original {
    case .savedModel(let model):
      let (result, report) = try converter.finish(converted, context, of: model)
      return (.savedModel(result), report)
    case .frozenGraph(let file):
      let (result, report) = converter.finish(converted, context, of: file, original: module)
      return (.frozenGraph(result), report)
    }
  }
}
