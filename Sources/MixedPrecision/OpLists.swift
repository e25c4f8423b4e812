public import TensorCore

/// How an op type takes part in mixed precision. The corresponding TensorFlow concept is the
/// allow / infer / clear / deny lists of grappler's `auto_mixed_precision_lists.h`.
public enum OpClass: String, Sendable, Hashable, Codable {
  /// Fast and safe in reduced precision (Tensor Core math): always converted.
  case allow
  /// Safe in reduced precision, but follows its inputs: converted after allow ops, unless a
  /// deny op lies upstream.
  case infer
  /// Numerically neutral: takes the precision of its neighbours.
  case clear
  /// Numerically dangerous in reduced precision (exponentials, large sums); its danger
  /// propagates downstream through infer and clear ops.
  case deny
}

/// The op lists for one reduced-precision type, with user overrides applied.
///
/// Starts from TensorFlow's own lists (CUDA float16 lists for `float16`; oneDNN bfloat16 lists for
/// `bfloat16`). Deliberate differences are commented where they are made.
public struct OpLists: Sendable {
  /// The reduced-precision type these lists are for.
  public let precision: ReducedPrecision
  private var classes: [String: OpClass]

  /// The lists TensorFlow uses for `precision`.
  public init(for precision: ReducedPrecision) {
    self.precision = precision
    var classes: [String: OpClass] = [:]
    for op in Self.allow { classes[op] = .allow }
    for op in Self.infer { classes[op] = .infer }
    for op in Self.clear { classes[op] = .clear }
    for op in Self.deny { classes[op] = .deny }
    if precision == .bfloat16 {
      // oneDNN bfloat16 lists: bfloat16 has float32's range, so sums and means cannot overflow;
      // TensorFlow moves them from deny to infer.
      classes["Mean"] = .infer
      classes["Sum"] = .infer
    }
    self.classes = classes
  }

  /// The class of `op`, or `nil` for an op in no list (left in float32).
  public func opClass(of op: String) -> OpClass? { classes[op] }

  /// Moves `op` to `opClass`, as the user's `--fp32-op` (deny) or `--lowp-op` (allow) ask.
  public mutating func assign(_ op: String, to opClass: OpClass) {
    classes[op] = opClass
  }

  /// Tensor Core math: converted whenever the op computes in float32. TensorFlow's list without
  /// the gradient ops (`Conv2DBackpropInput`, ...): tfmp converts inference graphs.
  static let allow = [
    "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Einsum", "MatMul", "BatchMatMul",
    "BatchMatMulV2",
  ]

  /// TensorFlow's infer list. Difference: Rsqrt, Square and SquaredDifference come from the
  /// oneDNN float16 list (they are as safe as Sqrt and Mul, and Keras's batch normalization uses
  /// them). Softmax and LogSoftmax stay infer, as in TensorFlow; the one at a model's output is
  /// kept float32 by the converter, as TensorFlow's mixed precision guide advises.
  static let infer = [
    "Add", "AddN", "AddV2", "AvgPool", "AvgPool3D", "BiasAdd", "BiasAddV1", "Elu", "Erf", "Erfc",
    "FloorDiv", "FusedBatchNormV2", "FusedBatchNormV3", "Inv", "LeakyRelu", "Log", "Log1p",
    "LogSoftmax", "Mul", "Prod", "RealDiv", "Reciprocal", "Selu", "Sigmoid", "Softmax",
    "Softplus", "Softsign", "Sqrt", "Sub", "Tanh", "Rsqrt", "Square", "SquaredDifference",
  ]

  /// TensorFlow's clear list, less the TensorList and TF1 control-flow ops: a list's element type
  /// and a loop's carried types must match across function boundaries, so tfmp keeps them (and
  /// the loop bodies' boundaries) float32 rather than risk a type mismatch.
  static let clear = [
    "Abs", "ArgMax", "ArgMin", "BatchToSpace", "BatchToSpaceND", "BroadcastTo", "Ceil",
    "CheckNumerics", "ClipByValue", "Concat", "ConcatV2", "DepthToSpace", "EnsureShape", "Equal",
    "ExpandDims", "Fill", "Floor", "Gather", "GatherNd", "GatherV2", "Greater", "GreaterEqual",
    "Identity", "IsFinite", "IsInf", "IsNan", "Less", "LessEqual", "Max", "MaxPool", "MaxPoolV2",
    "MaxPool3D", "Maximum", "Min", "Minimum", "MirrorPad", "Neg", "NotEqual", "OnesLike", "Pack",
    "Pad", "PadV2", "PreventGradient", "Relu", "Relu6", "Reshape", "ResizeNearestNeighbor",
    "Reverse", "ReverseSequence", "ReverseV2", "Round", "Select", "SelectV2", "Shape", "Sign",
    "Slice", "Snapshot", "SpaceToBatch", "SpaceToBatchND", "SpaceToDepth", "Split", "SplitV",
    "Squeeze", "StopGradient", "StridedSlice", "Tile", "TopKV2", "Transpose", "Unpack",
    "ZerosLike",
  ]

  /// TensorFlow's deny list.
  static let deny = [
    "Exp", "Expm1", "L2Loss", "Mean", "Pow", "SaveV2", "SoftmaxCrossEntropyWithLogits",
    "SparseSoftmaxCrossEntropyWithLogits", "Sum",
  ]
}
