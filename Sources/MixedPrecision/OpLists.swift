public import GraphIR
public import TensorCore
internal import CPURuntime

/// The op lists for one reduced-precision type, with user overrides applied.
///
/// Each op's class and the type attribute converting it changes are part of its schema in the op
/// registry (``OpSchema/precision``), registered with its kernel: TensorFlow's CUDA float16 lists
/// for `float16`, its oneDNN bfloat16 lists for `bfloat16`, with deliberate differences commented
/// where the op is registered. Against TensorFlow's lists:
/// - the gradient ops are left out (tfmp converts inference graphs);
/// - TensorList and TF1 control-flow ops are left out of the clear list: a list's element type
///   and a loop's carried types must match across function boundaries, so tfmp keeps them (and
///   the loop bodies' boundaries) float32 rather than risk a type mismatch.
public struct OpLists: Sendable {
  /// The reduced-precision type these lists are for.
  public let precision: ReducedPrecision
  private var overrides: [String: OpClass] = [:]

  /// The lists TensorFlow uses for `precision`.
  public init(for precision: ReducedPrecision) {
    self.precision = precision
  }

  /// The schema of `op` when tfmp can convert it (it has a precision rule); `nil` otherwise.
  static func convertible(_ op: String) -> OpSchema? {
    guard let schema = OpRegistry.standard.schema(for: op), schema.precision != nil else {
      return nil
    }
    return schema
  }

  /// The class of `op`, or `nil` for an op in no list (left in float32).
  public func opClass(of op: String) -> OpClass? {
    overrides[op] ?? Self.convertible(op)?.precision?.opClass(for: precision)
  }

  /// Moves `op` to `opClass`, as the user's `--fp32-op` (deny) or `--lowp-op` (allow) ask.
  public mutating func assign(_ op: String, to opClass: OpClass) {
    overrides[op] = opClass
  }
}
