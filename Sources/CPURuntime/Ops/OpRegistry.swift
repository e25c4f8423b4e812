public import GraphIR
internal import TensorCore

/// A value flowing along an edge: a tensor, a variable (resource) handle, or a TensorList.
enum Value {
  case tensor(Tensor)
  case variable(key: String)
  case list([Tensor?])
  /// A lookup table's handle (``LookupTable``, one per table the model makes).
  case table(LookupTable)
  /// What a TF1 conditional's untaken branch carries: the output of a `Switch` it did not send
  /// its value to, and every output of a node reading one (but a `Merge`).
  case dead
}

/// How a node computes its outputs.
enum Kernel: Sendable {
  /// From tensors to tensors, in float32 for float types (the executor rounds the results).
  case tensors(@Sendable (KernelContext, [Tensor]) throws -> [Tensor])
  /// From values to values (handles, TensorLists, calls), with the interpreter at hand.
  case values(@Sendable (KernelContext, [Value]) throws -> [Value])
}

/// How an elementwise op joins a fused segment that the executor computes block by block.
enum FusionRule: Sendable {
  case unary(UnaryFunction)
  case binary(BinaryFunction)
  /// A `Cast` between float types (only those fuse; the plan checks the attributes).
  case floatCast
}

/// Everything tfmp knows about one op type: its schema, its kernel (`nil` for an op tfmp
/// converts but cannot run yet), how it fuses, and its gradient (`nil` when tfmp cannot
/// differentiate it).
struct OpDefinition: Sendable {
  var schema: OpSchema
  var kernel: Kernel?
  var fusion: FusionRule?
  var gradient: Gradient?
}

/// The op registry: one ``OpDefinition`` per op type tfmp knows, registered by the file of its
/// op family (`Kernels/*Kernels.swift`), each with its schema next to its kernel.
///
/// It is the ``OpSchemaSource`` of the whole toolkit: the converter reads each op's precision
/// from it, ``GraphVerifier`` checks modules against it, the interpreter runs the kernels, and
/// differentiation (``GraphIR/Function/appendingGradients(of:withRespectTo:using:scope:)``)
/// emits each op's gradient, registered by the family's `registerGradients(in:)`.
public struct OpRegistry: GradientSource {
  private var definitions: [String: OpDefinition] = [:]

  /// Every op tfmp knows.
  public static let standard: OpRegistry = {
    var registry = OpRegistry()
    ElementwiseKernels.register(in: &registry)
    ReductionKernels.register(in: &registry)
    ShapeKernels.register(in: &registry)
    ConvolutionKernels.register(in: &registry)
    LinearAlgebraKernels.register(in: &registry)
    NormalizationKernels.register(in: &registry)
    ResizeKernels.register(in: &registry)
    VolumeKernels.register(in: &registry)
    DetectionKernels.register(in: &registry)
    ControlFlowKernels.register(in: &registry)
    TensorListKernels.register(in: &registry)
    TableKernels.register(in: &registry)
    TextKernels.register(in: &registry)
    RandomKernels.register(in: &registry)
    GradientKernels.register(in: &registry)
    ElementwiseKernels.registerGradients(in: &registry)
    ReductionKernels.registerGradients(in: &registry)
    ShapeKernels.registerGradients(in: &registry)
    ConvolutionKernels.registerGradients(in: &registry)
    LinearAlgebraKernels.registerGradients(in: &registry)
    ControlFlowKernels.registerGradients(in: &registry)
    NormalizationKernels.registerGradients(in: &registry)
    ResizeKernels.registerGradients(in: &registry)
    VolumeKernels.registerGradients(in: &registry)
    return registry
  }()

  /// The op types registered, sorted.
  public var ops: [String] { definitions.keys.sorted() }

  /// The schema of `op`, if tfmp knows it.
  public func schema(for op: String) -> OpSchema? { definitions[op]?.schema }

  /// The gradient of `op`, if tfmp can differentiate it.
  public func gradient(for op: String) -> Gradient? { definitions[op]?.gradient }

  /// Whether the CPU runtime has a kernel for `op`.
  public func hasKernel(for op: String) -> Bool { definitions[op]?.kernel != nil }

  func definition(for op: String) -> OpDefinition? { definitions[op] }

  /// Registers `op` with this interface and kernel.
  mutating func add(
    _ op: String, inputs: [OpSchema.Argument], outputs: [OpSchema.Argument],
    attributes: [OpSchema.Attribute] = [], traits: OpSchema.Traits = [],
    precision: OpSchema.Precision? = nil, fusion: FusionRule? = nil, _ kernel: Kernel
  ) {
    register(
      OpSchema(
        op, inputs: inputs, outputs: outputs, attributes: attributes, traits: traits,
        precision: precision), kernel: kernel, fusion: fusion)
  }

  /// Registers `op` without a kernel: tfmp converts it, and `run` reports it as missing.
  mutating func declare(
    _ op: String, inputs: [OpSchema.Argument], outputs: [OpSchema.Argument],
    attributes: [OpSchema.Attribute] = [], traits: OpSchema.Traits = [],
    precision: OpSchema.Precision? = nil
  ) {
    register(
      OpSchema(
        op, inputs: inputs, outputs: outputs, attributes: attributes, traits: traits,
        precision: precision), kernel: nil, fusion: nil)
  }

  /// - Precondition: the op is not registered yet.
  private mutating func register(_ schema: OpSchema, kernel: Kernel?, fusion: FusionRule?) {
    let op = schema.op
    precondition(definitions[op] == nil, "op \(op) is registered twice")
    definitions[op] = OpDefinition(schema: schema, kernel: kernel, fusion: fusion, gradient: nil)
  }

  /// Registers `op` with a tensor kernel.
  mutating func add(
    _ op: String, inputs: [OpSchema.Argument], outputs: [OpSchema.Argument],
    attributes: [OpSchema.Attribute] = [], traits: OpSchema.Traits = [],
    precision: OpSchema.Precision? = nil, fusion: FusionRule? = nil,
    _ kernel: @escaping @Sendable (KernelContext, [Tensor]) throws -> [Tensor]
  ) {
    add(
      op, inputs: inputs, outputs: outputs, attributes: attributes, traits: traits,
      precision: precision, fusion: fusion, .tensors(kernel))
  }

  /// Registers the gradient of `ops` (each registered already).
  mutating func differentiate(_ ops: String..., by gradient: @escaping Gradient) {
    for op in ops {
      precondition(definitions[op] != nil, "op \(op) is not registered")
      precondition(definitions[op]?.gradient == nil, "op \(op) has a gradient already")
      definitions[op]?.gradient = gradient
    }
  }

  /// Registers `alias` with the definition of `op` under its own name (`Add` as `AddV2`).
  mutating func alias(_ alias: String, of op: String) {
    guard var definition = definitions[op] else {
      preconditionFailure("op \(op) is not registered")
    }
    precondition(definitions[alias] == nil, "op \(alias) is registered twice")
    definition.schema.op = alias
    definitions[alias] = definition
  }
}
