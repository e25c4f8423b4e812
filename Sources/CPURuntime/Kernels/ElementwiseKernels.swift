internal import CTFMPKernels
internal import TensorCore
internal import Foundation
internal import GraphIR
internal import RealModule

/// The elementwise family: unary math and activations, broadcasting arithmetic, comparisons,
/// logical ops, `BiasAdd`, `LeakyRelu`, `IsFinite`, `AddN`, `ClipByValue`, `Bucketize`,
/// `CheckNumerics`.
enum ElementwiseKernels {
  static func register(in registry: inout OpRegistry) {
    for function in UnaryFunction.allCases {
      let (input, output): (OpSchema.Argument, OpSchema.Argument) =
        function.isActivation ? ("features", "activations") : ("x", "y")
      let moves: OpSchema.Traits = [.relu, .neg, .abs].contains(function) ? .movesElements : []
      registry.add(
        function.rawValue, inputs: [input], outputs: [output], traits: [.elementwise, moves],
        precision: function.precision, fusion: .unary(function)
      ) { _, inputs in
        let x = try Kernels.input(inputs, 0)
        switch x.storage {
        case .int32(let values):
          if let result = function.apply(values) {
            return [Tensor(dtype: x.dtype, shape: x.shape, storage: .int32(result))]
          }
        case .int64(let values):
          if let result = function.apply(values) {
            return [Tensor(dtype: x.dtype, shape: x.shape, storage: .int64(result))]
          }
        case .double(let values):
          return [Tensor(dtype: x.dtype, shape: x.shape, storage: .double(function.apply(values)))]
        default: break
        }
        return [
          Tensor(
            dtype: x.dtype, shape: x.shape, storage: .float(function.apply(try x.requireFloats())))
        ]
      }
    }
    for function in BinaryFunction.allCases {
      let moves: OpSchema.Traits = [.maximum, .minimum].contains(function) ? .movesElements : []
      let fuses = ![.floorDiv, .floorMod, .pow, .divNoNan, .atan2].contains(function)
      registry.add(
        function.rawValue, inputs: function.inputs, outputs: ["z"], traits: [.elementwise, moves],
        precision: function.precision, fusion: fuses ? .binary(function) : nil
      ) { context, inputs in
        [
          try function.apply(
            try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), limits: context.limits)
        ]
      }
    }
    registry.alias("Add", of: "AddV2")
    let comparisons: [(String, @Sendable (Double, Double) -> Bool)] = [
      ("Less", { $0 < $1 }), ("LessEqual", { $0 <= $1 }), ("Greater", { $0 > $1 }),
      ("GreaterEqual", { $0 >= $1 }), ("Equal", { $0 == $1 }), ("NotEqual", { $0 != $1 }),
    ]
    let truth = OpSchema.Argument.fixed("z", .bool)
    for (op, predicate) in comparisons {
      registry.add(
        op, inputs: ["x", "y"], outputs: [truth], traits: .elementwise, precision: .clear
      ) { context, inputs in
        [
          try Kernels.compare(
            try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), limits: context.limits,
            equality: ["Equal": true, "NotEqual": false][op], predicate)
        ]
      }
    }
    let logical: [(String, @Sendable (Bool, Bool) -> Bool)] = [
      ("LogicalAnd", { $0 && $1 }), ("LogicalOr", { $0 || $1 }),
    ]
    let truths = [OpSchema.Argument.fixed("x", .bool), .fixed("y", .bool)]
    for (op, function) in logical {
      registry.add(op, inputs: truths, outputs: [truth], traits: .elementwise) { context, inputs in
        let (a, b) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
        guard case .bool(let x) = a.storage, case .bool(let y) = b.storage else {
          throw KernelError("Expected bool inputs.")
        }
        let (shape, walk) = try StridedWalk.broadcast(
          [a.shape, b.shape], of: .bool, within: context.limits)
        return [Tensor(dtype: .bool, shape: shape, storage: .bool(walk.map(x, y, function)))]
      }
    }
    // Integer bits, as Keras's RandomPosterization and RandAugment use them; shifts by at least
    // the width (or below 0) are clamped to it, as TensorFlow's.
    let bitwise: [(String, @Sendable (Int64, Int64, Int64) -> Int64)] = [
      ("BitwiseAnd", { x, y, _ in x & y }), ("BitwiseOr", { x, y, _ in x | y }),
      ("BitwiseXor", { x, y, _ in x ^ y }),
      ("LeftShift", { x, y, width in x << min(max(y, 0), width - 1) }),
      ("RightShift", { x, y, width in x >> min(max(y, 0), width - 1) }),
    ]
    for (op, function) in bitwise {
      registry.add(op, inputs: ["x", "y"], outputs: ["z"], traits: .elementwise) {
        context, inputs in
        let (a, b) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
        let types: [DType] = [.int8, .int16, .int32, .int64, .uint8, .uint16]
        guard a.dtype == b.dtype, types.contains(a.dtype), let size = a.dtype.byteSize else {
          throw KernelError(
            code: .unsupported,
            "\(op) runs on two inputs of one of int8, int16, int32, int64, uint8, uint16, not \(a.dtype) and \(b.dtype)."
          )
        }
        let width = Int64(size * 8)
        let (x, y) = (
          try a.requireIntegers().map(Int64.init), try b.requireIntegers().map(Int64.init)
        )
        let (shape, walk) = try StridedWalk.broadcast(
          [a.shape, b.shape], of: a.dtype, within: context.limits)
        let values = walk.map(x, y) { function($0, $1, width) }
        return [
          Tensor(
            dtype: a.dtype, shape: shape,
            storage: a.dtype == .int64 ? .int64(values) : .int32(values.map(a.dtype.wrapping)))
        ]
      }
    }
    registry.add(
      "LogicalNot", inputs: [truths[0]], outputs: [.fixed("y", .bool)],
      traits: .elementwise
    ) { _, inputs in
      let a = try Kernels.input(inputs, 0)
      guard case .bool(let x) = a.storage else { throw KernelError("Expected a bool input.") }
      return [Tensor(dtype: .bool, shape: a.shape, storage: .bool(x.map { !$0 }))]
    }
    let classifications: [(String, @Sendable (Float) -> Bool)] = [
      ("IsFinite", { $0.isFinite }), ("IsInf", { $0.isInfinite }), ("IsNan", { $0.isNaN }),
    ]
    for (op, predicate) in classifications {
      registry.add(
        op, inputs: ["x"], outputs: [.fixed("y", .bool)], traits: .elementwise, precision: .clear
      ) { _, inputs in
        let x = try Kernels.input(inputs, 0)
        let values = try x.requireFloats()
        // IsFinite, on every gradient of a training step, as one comparison of the bits.
        let flags =
          op == "IsFinite"
          ? values.map { $0.bitPattern & 0x7F80_0000 != 0x7F80_0000 } : values.map(predicate)
        return [Tensor(dtype: .bool, shape: x.shape, storage: .bool(flags))]
      }
    }
    registry.add(
      "AddN", inputs: [.init("inputs", .number("N"))], outputs: ["sum"], precision: .infer
    ) { context, inputs in
      guard var sum = inputs.first, inputs.allSatisfy({ $0.shape == sum.shape }) else {
        throw KernelError("AddN needs inputs of one shape.")
      }
      for addend in inputs.dropFirst() {
        sum = try BinaryFunction.add.apply(sum, addend, limits: context.limits)
      }
      return [sum]
    }
    registry.add(
      "ClipByValue", inputs: ["t", "clip_value_min", "clip_value_max"], outputs: ["output"],
      precision: .clear
    ) { context, inputs in
      let (x, low, high) = (
        try Kernels.input(inputs, 0), try Kernels.input(inputs, 1), try Kernels.input(inputs, 2)
      )
      let limits = context.limits
      let clipped = try BinaryFunction.minimum.apply(
        try BinaryFunction.maximum.apply(x, low, limits: limits), high, limits: limits)
      guard clipped.shape == x.shape else {
        throw KernelError("The clip values \(low.shape), \(high.shape) do not fit \(x.shape).")
      }
      return [clipped]
    }
    registry.add(
      "BiasAdd", inputs: ["value", "bias"], outputs: ["output"],
      attributes: [.string("data_format", "NHWC")], traits: .elementwise, precision: .infer,
      fusion: .binary(.add)
    ) { context, inputs in
      try ConvolutionKernels.checkNHWC(context)
      return [try biasAdd(context, inputs)]
    }
    // BiasAdd before data formats: always NHWC.
    registry.add(
      "BiasAddV1", inputs: ["value", "bias"], outputs: ["output"], traits: .elementwise,
      precision: .infer, fusion: .binary(.add)
    ) { context, inputs in [try biasAdd(context, inputs)] }
    registry.add(
      "LeakyRelu", inputs: [.init("features", type: .attribute("T", defaultType: .float32))],
      outputs: [.init("activations", type: .attribute("T", defaultType: .float32))],
      attributes: [.float("alpha", 0.2)], traits: .elementwise, precision: .infer
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let alpha = try context.float("alpha")
      return [
        Tensor(shape: x.shape, floats: try x.requireFloats().map { $0 > 0 ? $0 : alpha * $0 })
      ]
    }
    // The bucket of each element: how many boundaries are at or below it (Keras's
    // Discretization).
    registry.add(
      "Bucketize", inputs: ["input"], outputs: [.fixed("output", .int32)],
      attributes: [.floats("boundaries")], traits: .elementwise
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      let boundaries = try context.floats("boundaries").map(Double.init)
      guard zip(boundaries, boundaries.dropFirst()).allSatisfy({ $0 <= $1 }) else {
        throw KernelError("Bucketize's boundaries must be sorted.")
      }
      let buckets = try Kernels.doubles(x).map { value -> Int32 in
        var (low, high) = (0, boundaries.count)
        while low < high {
          let middle = (low + high) / 2
          if boundaries[middle] <= value { low = middle + 1 } else { high = middle }
        }
        return Int32(low)
      }
      return [Tensor(dtype: .int32, shape: x.shape, storage: .int32(buckets))]
    }
    registry.add(
      "CheckNumerics", inputs: ["tensor"], outputs: ["output"], attributes: [.string("message")],
      traits: [.stateful, .movesElements], precision: .clear
    ) { context, inputs in
      let x = try Kernels.input(inputs, 0)
      guard try x.requireFloats().allSatisfy(\.isFinite) else {
        throw KernelError(
          "CheckNumerics found inf or NaN: \(try context.string("message"))")
      }
      return [x]
    }
  }

  /// A bias added along the last dimension.
  static func biasAdd(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let (x, bias) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
    guard bias.shape.rank == 1, x.shape.rank >= 1,
      bias.shape.dimensions[0] == x.shape.dimensions.last
    else {
      throw KernelError("The bias \(bias.shape) does not fit the last dimension of \(x.shape).")
    }
    return try BinaryFunction.add.apply(x, bias, limits: context.limits)
  }
}

/// Elementwise float functions of one tensor. Each case's loop is written out with its function
/// inline, so the compiler vectorizes what it can instead of calling through a closure per element.
enum UnaryFunction: String, CaseIterable {
  case relu = "Relu", exp = "Exp", log = "Log", sqrt = "Sqrt", rsqrt = "Rsqrt", square = "Square"
  case tanh = "Tanh", sigmoid = "Sigmoid", neg = "Neg", abs = "Abs", relu6 = "Relu6", erf = "Erf"
  case erfc = "Erfc", softplus = "Softplus", elu = "Elu", reciprocal = "Reciprocal", log1p = "Log1p"
  case selu = "Selu", zerosLike = "ZerosLike", onesLike = "OnesLike", sin = "Sin", cos = "Cos",
    sign = "Sign"
  case floor = "Floor", ceil = "Ceil", round = "Round", expm1 = "Expm1", inv = "Inv",
    softsign = "Softsign"
  case tan = "Tan", atan = "Atan", asin = "Asin", acos = "Acos", sinh = "Sinh", cosh = "Cosh",
    asinh = "Asinh", acosh = "Acosh", atanh = "Atanh"

  /// Whether TensorFlow names the argument `features` and the result `activations` (the
  /// activation functions) rather than `x` and `y`.
  var isActivation: Bool { [.relu, .relu6, .softplus, .elu, .selu, .softsign].contains(self) }

  /// The class in the op lists: TensorFlow's, except that Rsqrt and Square are infer as in the
  /// oneDNN float16 list (as safe as Sqrt and Mul, and Keras's batch normalization uses them).
  /// The trigonometric and hyperbolic functions are in no list: they stay float32.
  var precision: OpSchema.Precision? {
    switch self {
    case .relu, .neg, .abs, .relu6, .zerosLike, .onesLike, .sign, .floor, .ceil, .round: .clear
    case .exp, .expm1: .deny
    case .log, .sqrt, .rsqrt, .square, .tanh, .sigmoid, .erf, .erfc, .softplus, .elu,
      .reciprocal, .log1p, .selu, .inv, .softsign:
      .infer
    case .sin, .cos, .tan, .atan, .asin, .acos, .sinh, .cosh, .asinh, .acosh, .atanh: nil
    }
  }

  /// The float32 or float64 form (float64 in double precision, as TensorFlow computes it).
  func apply<T: Real & BinaryFloatingPoint>(_ x: [T]) -> [T] {
    [T](unsafeUninitializedCapacity: x.count) { output, initialized in
      x.withUnsafeBufferPointer { x in
        if let source = x.baseAddress, let target = output.baseAddress {
          apply(source, target, x.count)
        }
      }
      initialized = x.count
    }
  }

  /// The integer form, wrapping as TensorFlow does (`abs` of the smallest value is itself);
  /// `nil` for functions TensorFlow does not define on integers.
  func apply<T: FixedWidthInteger & SignedInteger>(_ x: [T]) -> [T]? {
    switch self {
    case .abs: x.map { $0 < 0 ? 0 &- $0 : $0 }
    case .neg: x.map { 0 &- $0 }
    case .sign: x.map { $0 > 0 ? 1 : $0 < 0 ? -1 : 0 }
    case .square: x.map { $0 &* $0 }
    case .relu: x.map { Swift.max($0, 0) }
    case .zerosLike: x.map { _ in 0 }
    case .onesLike: x.map { _ in 1 }
    default: nil
    }
  }

  /// target[i] = f(source[i]) for `count` elements, in float32 or float64; `target` may be
  /// `source` (an update in place). Float32's exponential and error functions run the C
  /// kernels.
  func apply<T: Real & BinaryFloatingPoint>(
    _ source: UnsafePointer<T>, _ target: UnsafeMutablePointer<T>, _ count: Int
  ) {
    @inline(__always)
    func map(_ function: (T) -> T) {
      for i in 0..<count { target[i] = function(source[i]) }
    }
    if T.self == Float.self {
      let (source, target) = (
        UnsafeRawPointer(source).assumingMemoryBound(to: Float.self),
        UnsafeMutableRawPointer(target).assumingMemoryBound(to: Float.self)
      )
      switch self {
      case .exp: return tfmp_exp_f32(source, target, count)
      case .sigmoid:
        for i in 0..<count { target[i] = -source[i] }
        tfmp_exp_f32(target, target, count)
        for i in 0..<count { target[i] = 1 / (1 + target[i]) }
        return
      case .erf: return tfmp_erf_f32(source, target, count)
      case .erfc: return tfmp_erfc_f32(source, target, count)
      default: break
      }
    }
    switch self {
    case .relu: map { Swift.max($0, 0) }
    case .exp: map { T.exp($0) }
    case .log: map { T.log($0) }
    case .sqrt: map { $0.squareRoot() }
    case .rsqrt: map { 1 / $0.squareRoot() }
    case .square: map { $0 * $0 }
    case .tanh: map { T.tanh($0) }
    case .sigmoid: map { 1 / (1 + T.exp(-$0)) }
    case .neg: map { -$0 }
    case .abs: map { Swift.abs($0) }
    case .relu6: map { Swift.min(Swift.max($0, 0), 6) }
    case .erf: map { T.erf($0) }
    case .erfc: map { T.erfc($0) }
    case .softplus: map { $0 > 20 ? $0 : T.log(onePlus: T.exp($0)) }
    case .elu: map { $0 > 0 ? $0 : T.expMinusOne($0) }
    case .reciprocal: map { 1 / $0 }
    case .log1p: map { T.log(onePlus: $0) }
    case .selu:
      map {
        $0 > 0
          ? 1.0507009873554805 * $0 : 1.0507009873554805 * 1.6732632423543772 * T.expMinusOne($0)
      }
    case .zerosLike: map { _ in 0 }
    case .onesLike: map { _ in 1 }
    case .sin: map { T.sin($0) }
    case .cos: map { T.cos($0) }
    // NaN stays NaN; both zeros give +0, as in TensorFlow (Eigen's `(x > 0) - (x < 0)`).
    case .sign: map { $0.isNaN ? $0 : $0 > 0 ? 1 : $0 < 0 ? -1 : 0 }
    case .floor: map { $0.rounded(.down) }
    case .ceil: map { $0.rounded(.up) }
    // Halves to even, as TensorFlow's Round (banker's rounding).
    case .round: map { $0.rounded(.toNearestOrEven) }
    case .expm1: map { T.expMinusOne($0) }
    case .inv: map { 1 / $0 }
    case .softsign: map { $0 / (1 + Swift.abs($0)) }
    case .tan: map { T.tan($0) }
    case .atan: map { T.atan($0) }
    case .asin: map { T.asin($0) }
    case .acos: map { T.acos($0) }
    case .sinh: map { T.sinh($0) }
    case .cosh: map { T.cosh($0) }
    case .asinh: map { T.asinh($0) }
    case .acosh: map { T.acosh($0) }
    case .atanh: map { T.atanh($0) }
    }
  }
}

/// Elementwise arithmetic of two tensors with NumPy broadcasting, on floats and (where defined)
/// integers, each case's loop written out with its function inline.
enum BinaryFunction: String, CaseIterable {
  case add = "AddV2", sub = "Sub", mul = "Mul", realDiv = "RealDiv", maximum = "Maximum", minimum =
    "Minimum"
  case squaredDifference = "SquaredDifference", floorDiv = "FloorDiv", floorMod = "FloorMod", pow =
    "Pow"
  case divNoNan = "DivNoNan", atan2 = "Atan2"

  /// The input names: TensorFlow's Atan2 takes `y` first.
  var inputs: [OpSchema.Argument] { self == .atan2 ? ["y", "x"] : ["x", "y"] }

  /// The class in the op lists: TensorFlow's, with SquaredDifference infer as in the oneDNN
  /// float16 list. FloorMod, DivNoNan and Atan2 are in no list.
  var precision: OpSchema.Precision? {
    switch self {
    case .add, .sub, .mul, .realDiv, .squaredDifference, .floorDiv: .infer
    case .maximum, .minimum: .clear
    case .pow: .deny
    case .floorMod, .divNoNan, .atan2: nil
    }
  }

  /// The float32 or float64 form.
  func apply<T: ElementwiseFloatingPoint>(_ walk: StridedWalk, _ x: [T], _ y: [T]) -> [T] {
    switch self {
    case .add: walk.map(x, y) { $0 + $1 }
    case .sub: walk.map(x, y) { $0 - $1 }
    case .mul: walk.map(x, y) { $0 * $1 }
    case .realDiv: walk.map(x, y) { $0 / $1 }
    case .maximum: walk.map(x, y) { Swift.max($0, $1) }
    case .minimum: walk.map(x, y) { Swift.min($0, $1) }
    case .squaredDifference: walk.map(x, y) { ($0 - $1) * ($0 - $1) }
    case .floorDiv: walk.map(x, y) { ($0 / $1).rounded(.down) }
    case .floorMod: walk.map(x, y) { a, b in a - (a / b).rounded(.down) * b }
    case .pow: walk.map(x, y) { T.power($0, $1) }
    case .divNoNan: walk.map(x, y) { $1 == 0 ? 0 : $0 / $1 }
    case .atan2: walk.map(x, y) { T.arcTangent($0, $1) }
    }
  }

  /// The integer form, wrapping on overflow as TensorFlow does; `nil` for functions TensorFlow
  /// does not define on integers. Division by zero gives 0 instead of trapping.
  func apply<T: FixedWidthInteger>(_ walk: StridedWalk, _ x: [T], _ y: [T]) -> [T]? {
    switch self {
    case .add: walk.map(x, y) { $0 &+ $1 }
    case .sub: walk.map(x, y) { $0 &- $1 }
    case .mul: walk.map(x, y) { $0 &* $1 }
    case .maximum: walk.map(x, y) { Swift.max($0, $1) }
    case .minimum: walk.map(x, y) { Swift.min($0, $1) }
    case .squaredDifference: walk.map(x, y) { ($0 &- $1) &* ($0 &- $1) }
    case .floorDiv:
      walk.map(x, y) { a, b in
        guard b != 0, !(b == -1 && a == T.min) else { return b == 0 ? 0 : a &* b }
        let (quotient, remainder) = a.quotientAndRemainder(dividingBy: b)
        return remainder != 0 && (remainder < 0) != (b < 0) ? quotient - 1 : quotient
      }
    case .floorMod:
      walk.map(x, y) { a, b in
        guard b != 0, !(b == -1 && a == T.min) else { return 0 }
        let remainder = a % b
        return remainder != 0 && (remainder < 0) != (b < 0) ? remainder + b : remainder
      }
    case .realDiv, .pow, .divNoNan, .atan2: nil
    }
  }

  /// Applies the function to `a` and `b`, broadcasting, for a result no larger than `limits`
  /// allow.
  func apply(_ a: Tensor, _ b: Tensor, limits: ResourceLimits) throws -> Tensor {
    guard a.dtype == b.dtype else { throw KernelError("Operands are \(a.dtype) and \(b.dtype).") }
    let (shape, walk) = try StridedWalk.broadcast([a.shape, b.shape], of: a.dtype, within: limits)
    let storage: Tensor.Storage?
    switch (a.storage, b.storage) {
    case (.float(let x), .float(let y)): storage = .float(apply(walk, x, y))
    case (.double(let x), .double(let y)): storage = .double(apply(walk, x, y))
    case (.int32(let x), .int32(let y)): storage = apply(walk, x, y).map { .int32($0) }
    case (.int64(let x), .int64(let y)): storage = apply(walk, x, y).map { .int64($0) }
    default: storage = nil
    }
    guard let storage else { throw KernelError("The op does not support \(a.dtype) operands yet.") }
    return Tensor(dtype: a.dtype, shape: shape, storage: storage)
  }
}

extension BinaryFunction {
  /// output[i] = f(a[i * aStride], b[i * bStride]) for `count` elements, each stride 1 or 0 (one
  /// value for all); `output` may be `a` or `b` (an update in place).
  func apply(
    _ a: UnsafePointer<Float>, _ aStride: Int, _ b: UnsafePointer<Float>, _ bStride: Int,
    into output: UnsafeMutablePointer<Float>, count: Int
  ) {
    @inline(__always)
    func run(_ function: (Float, Float) -> Float) {
      switch (aStride, bStride) {
      case (1, 1): for i in 0..<count { output[i] = function(a[i], b[i]) }
      case (1, _):
        let y = b.pointee
        for i in 0..<count { output[i] = function(a[i], y) }
      case (_, 1):
        let x = a.pointee
        for i in 0..<count { output[i] = function(x, b[i]) }
      default:
        let value = function(a.pointee, b.pointee)
        output.update(repeating: value, count: count)
      }
    }
    switch self {
    case .add: run { $0 + $1 }
    case .sub: run { $0 - $1 }
    case .mul: run { $0 * $1 }
    case .realDiv: run { $0 / $1 }
    case .maximum: run { Swift.max($0, $1) }
    case .minimum: run { Swift.min($0, $1) }
    case .squaredDifference: run { ($0 - $1) * ($0 - $1) }
    case .floorDiv: run { ($0 / $1).rounded(.down) }
    case .floorMod: run { a, b in a - (a / b).rounded(.down) * b }
    case .pow: run { Foundation.pow($0, $1) }
    case .divNoNan: run { $1 == 0 ? 0 : $0 / $1 }
    case .atan2: run { Foundation.atan2($0, $1) }
    }
  }
}

/// The float types elementwise kernels compute in, with their `pow` and `atan2`.
protocol ElementwiseFloatingPoint: BinaryFloatingPoint {
  static func power(_ base: Self, _ exponent: Self) -> Self
  static func arcTangent(_ y: Self, _ x: Self) -> Self
}

extension Float: ElementwiseFloatingPoint {
  static func power(_ base: Float, _ exponent: Float) -> Float { Foundation.pow(base, exponent) }
  static func arcTangent(_ y: Float, _ x: Float) -> Float { Foundation.atan2(y, x) }
}

extension Double: ElementwiseFloatingPoint {
  static func power(_ base: Double, _ exponent: Double) -> Double { Foundation.pow(base, exponent) }
  static func arcTangent(_ y: Double, _ x: Double) -> Double { Foundation.atan2(y, x) }
}
