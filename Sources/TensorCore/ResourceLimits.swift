/// How much a model may make tfmp do beyond what its files hold: the ceilings that keep a hostile
/// or broken model from exhausting memory, the stack or time.
///
/// What a reader takes from a file is bounded by the file itself (every size and offset is
/// checked against it). These limits bound what a file can only *ask for*: a constant whose shape
/// asks for more elements than it stores (TensorFlow repeats the last value), a tensor a kernel
/// computes from values (a `Fill`, a broadcast, a product), a loop's iterations, nested calls.
/// The command line sets them with `--max-tensor-bytes` and `--max-loop-iterations`.
public struct ResourceLimits: Sendable, Hashable {
  /// The largest tensor, in bytes, that running a model may create. Default: 4 GiB.
  public var maxTensorBytes: Int
  /// The most iterations of one `While` loop. Default: 10 million.
  public var maxLoopIterations: Int
  /// The deepest nesting of function calls (a call in a loop body in a call, ...). TensorFlow's
  /// own models nest a few levels; a library that calls itself is stopped here. Default: 64.
  public var maxCallDepth: Int
  /// The most nodes of a model's graph and functions together. Default: 10 million.
  public var maxNodes: Int

  /// Creates limits; each left out is the default.
  public init(
    maxTensorBytes: Int = 4 << 30, maxLoopIterations: Int = 10_000_000, maxCallDepth: Int = 64,
    maxNodes: Int = 10_000_000
  ) {
    self.maxTensorBytes = maxTensorBytes
    self.maxLoopIterations = maxLoopIterations
    self.maxCallDepth = maxCallDepth
    self.maxNodes = maxNodes
  }

  /// The defaults.
  public static let standard = ResourceLimits()

  /// Why a `dtype` tensor of `shape` may not be created: its size is unknown, overflows `Int` or
  /// exceeds ``maxTensorBytes``; `nil` when it may. (Strings count one byte per element.)
  public func problem(creating shape: Shape, of dtype: DType) -> String? {
    guard let count = shape.elementCount else {
      return "The shape \(shape) has a negative dimension or more elements than Int can count"
    }
    let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize ?? 1)
    guard overflow || bytes > maxTensorBytes else { return nil }
    return
      "A \(dtype) tensor of shape \(shape) needs \(overflow ? "more than Int.max" : "\(bytes)") "
      + "bytes, more than the limit of \(maxTensorBytes) (--max-tensor-bytes)"
  }
}
