/// Which attribute of an op holds its float type, and which inputs and outputs it governs.
///
/// Converting a node to reduced precision changes that attribute; its governed inputs then
/// expect, and its governed outputs produce, the reduced type. An op without a rule is never
/// converted (it keeps float32, with casts at its boundary).
struct OpTypeRule: Sendable {
  enum Inputs: Sendable {
    /// Every data input.
    case all
    /// The inputs at these positions.
    case only(Set<Int>)
    /// Every input but the last (`ConcatV2`'s axis).
    case allButLast
    /// Every input but the first (`Concat`'s axis).
    case allButFirst
  }

  enum Outputs: Sendable {
    /// Every output.
    case all
    /// No output (comparisons, `Shape`, `ArgMax`: the float input is only read).
    case none
    /// Only output 0, whose output argument is named `name` (`FusedBatchNormV3`'s `y`).
    case first(name: String)
  }

  /// The type attribute, usually `T`.
  let attribute: String
  let inputs: Inputs
  let outputs: Outputs

  func governsInput(_ position: Int, of count: Int) -> Bool {
    switch inputs {
    case .all: true
    case .only(let positions): positions.contains(position)
    case .allButLast: position < count - 1
    case .allButFirst: position > 0
    }
  }

  /// Whether the output referenced as `argument`/`index` (function bodies name the output
  /// argument; top-level graphs only number outputs) is governed.
  func governsOutput(argument: String?, index: Int) -> Bool {
    switch outputs {
    case .all: true
    case .none: false
    case .first(let name): argument.map { $0 == name } ?? (index == 0)
    }
  }

  /// The rule for `op`, or `nil` when tfmp does not convert it.
  static func rule(for op: String) -> OpTypeRule? { rules[op] }

  private static let rules: [String: OpTypeRule] = {
    var rules: [String: OpTypeRule] = [:]
    func add(_ ops: [String], _ rule: OpTypeRule) {
      for op in ops { rules[op] = rule }
    }
    let uniform = OpTypeRule(attribute: "T", inputs: .all, outputs: .all)
    add(
      [
        "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Einsum", "MatMul", "BatchMatMul",
        "BatchMatMulV2", "Add", "AddN", "AddV2", "AvgPool", "AvgPool3D", "BiasAdd", "BiasAddV1",
        "Elu", "Erf", "Erfc", "FloorDiv", "Inv", "LeakyRelu", "Log", "Log1p", "LogSoftmax", "Mul",
        "RealDiv", "Reciprocal", "Selu", "Sigmoid", "Softmax", "Softplus", "Softsign", "Sqrt",
        "Sub",
        "Tanh", "Rsqrt", "Square", "SquaredDifference", "Abs", "Ceil", "CheckNumerics",
        "ClipByValue", "Floor", "Identity", "Maximum", "Minimum", "Neg", "OnesLike", "Pack",
        "PreventGradient", "Relu", "Relu6", "Round", "Sign", "Snapshot", "StopGradient", "Unpack",
        "ZerosLike", "MaxPool", "MaxPool3D", "Exp", "Expm1", "Pow",
      ], uniform)
    add(
      [
        "Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual", "IsFinite", "IsInf",
        "IsNan",
      ],
      OpTypeRule(attribute: "T", inputs: .all, outputs: .none))
    add(
      ["ArgMax", "ArgMin", "Shape"],
      OpTypeRule(attribute: "T", inputs: .only([0]), outputs: .none))
    add(
      [
        "Max", "Min", "Mean", "Sum", "Prod", "Reshape", "ExpandDims", "Squeeze", "Transpose",
        "Tile", "Pad", "MirrorPad", "StridedSlice", "Slice", "BroadcastTo", "Reverse", "ReverseV2",
        "ReverseSequence", "SpaceToBatch", "SpaceToBatchND", "BatchToSpace", "BatchToSpaceND",
        "EnsureShape", "DepthToSpace", "SpaceToDepth", "ResizeNearestNeighbor", "SplitV",
        "MaxPoolV2", "L2Loss",
      ], OpTypeRule(attribute: "T", inputs: .only([0]), outputs: .all))
    add(["PadV2"], OpTypeRule(attribute: "T", inputs: .only([0, 2]), outputs: .all))
    add(["ConcatV2"], OpTypeRule(attribute: "T", inputs: .allButLast, outputs: .all))
    add(["Concat"], OpTypeRule(attribute: "T", inputs: .allButFirst, outputs: .all))
    add(["Split"], OpTypeRule(attribute: "T", inputs: .only([1]), outputs: .all))
    add(["Select", "SelectV2"], OpTypeRule(attribute: "T", inputs: .only([1, 2]), outputs: .all))
    add(["Fill"], OpTypeRule(attribute: "T", inputs: .only([1]), outputs: .all))
    add(
      ["GatherV2", "Gather", "GatherNd"],
      OpTypeRule(attribute: "Tparams", inputs: .only([0]), outputs: .all))
    add(["TopKV2"], OpTypeRule(attribute: "T", inputs: .only([0]), outputs: .first(name: "values")))
    add(
      ["FusedBatchNormV2", "FusedBatchNormV3"],
      OpTypeRule(attribute: "T", inputs: .only([0]), outputs: .first(name: "y")))
    return rules
  }()
}
