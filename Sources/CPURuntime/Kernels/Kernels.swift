internal import TensorCore
internal import Foundation

/// The CPU kernels by op type. Each is a scalar reference implementation in float32.
enum Kernels {
  typealias Kernel = @Sendable (KernelContext, [Tensor]) throws -> [Tensor]

  static let table: [String: Kernel] = {
    var table: [String: Kernel] = [:]
    table["Const"] = { context, _ in [try TensorDecoding.constant(context.node)] }
    var unary: [String: @Sendable (Float) -> Float] = [:]
    unary["Relu"] = { Swift.max($0, 0) }
    unary["Exp"] = { Foundation.exp($0) }
    unary["Log"] = { Foundation.log($0) }
    unary["Sqrt"] = { $0.squareRoot() }
    unary["Rsqrt"] = { 1 / $0.squareRoot() }
    unary["Square"] = { $0 * $0 }
    unary["Tanh"] = { Foundation.tanh($0) }
    unary["Sigmoid"] = { 1 / (1 + Foundation.exp(-$0)) }
    unary["Neg"] = { -$0 }
    unary["Abs"] = { Swift.abs($0) }
    unary["Relu6"] = { Swift.min(Swift.max($0, 0), 6) }
    unary["Erf"] = { Foundation.erf($0) }
    unary["Erfc"] = { Foundation.erfc($0) }
    unary["Softplus"] = { $0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0)) }
    unary["Elu"] = { $0 > 0 ? $0 : Foundation.expm1($0) }
    unary["Reciprocal"] = { 1 / $0 }
    unary["Log1p"] = { Foundation.log1p($0) }
    unary["Selu"] = { $0 > 0 ? 1.0507009873554805 * $0 : 1.0507009873554805 * 1.6732632423543772 * Foundation.expm1($0) }
    unary["ZerosLike"] = { _ in 0 }
    unary["OnesLike"] = { _ in 1 }
    for (op, function) in unary {
      table[op] = { _, inputs in
        let x = try input(inputs, 0)
        return [Tensor(shape: x.shape, floats: try x.requireFloats().map(function))]
      }
    }
    typealias FloatOp = @Sendable (Float, Float) -> Float
    typealias IntegerOp = @Sendable (Int64, Int64) -> Int64
    let binary: [(String, FloatOp, IntegerOp?)] = [
      ("AddV2", { $0 + $1 }, { $0 &+ $1 }), ("Add", { $0 + $1 }, { $0 &+ $1 }),
      ("Sub", { $0 - $1 }, { $0 &- $1 }), ("Mul", { $0 * $1 }, { $0 &* $1 }),
      ("RealDiv", { $0 / $1 }, nil), ("Maximum", { Swift.max($0, $1) }, { Swift.max($0, $1) }),
      ("Minimum", { Swift.min($0, $1) }, { Swift.min($0, $1) }),
      ("SquaredDifference", { ($0 - $1) * ($0 - $1) }, { ($0 &- $1) &* ($0 &- $1) }),
      ("FloorDiv", { ($0 / $1).rounded(.down) }, { a, b in b == 0 ? 0 : (a - ((a % b) + b) % b) / b }),
      ("FloorMod", { a, b in a - (a / b).rounded(.down) * b }, { a, b in b == 0 ? 0 : ((a % b) + b) % b }),
      ("Pow", { Foundation.pow($0, $1) }, nil),
    ]
    for (op, float, integer) in binary {
      let fast = FastBinary(rawValue: op)
      table[op] = { _, inputs in
        let (a, b) = (try input(inputs, 0), try input(inputs, 1))
        if let fast, let result = fast.apply(a, b) { return [result] }
        return [try broadcast(a, b, float: float, integer: integer)]
      }
    }
    let comparisons: [(String, @Sendable (Double, Double) -> Bool)] = [
      ("Less", { $0 < $1 }), ("LessEqual", { $0 <= $1 }), ("Greater", { $0 > $1 }),
      ("GreaterEqual", { $0 >= $1 }), ("Equal", { $0 == $1 }), ("NotEqual", { $0 != $1 }),
    ]
    for (op, predicate) in comparisons {
      table[op] = { _, inputs in [try compare(try input(inputs, 0), try input(inputs, 1), predicate)] }
    }
    let logical: [(String, @Sendable (Bool, Bool) -> Bool)] = [("LogicalAnd", { $0 && $1 }), ("LogicalOr", { $0 || $1 })]
    for (op, function) in logical {
      table[op] = { _, inputs in
        let (a, b) = (try input(inputs, 0), try input(inputs, 1))
        guard case .bool(let x) = a.storage, case .bool(let y) = b.storage else { throw KernelError("Expected bool inputs.") }
        let (shape, indices) = try broadcastIndices([a.shape, b.shape])
        return [Tensor(dtype: .bool, shape: shape, storage: .bool(zip(indices[0], indices[1]).map { function(x[$0], y[$1]) }))]
      }
    }
    table["LogicalNot"] = { _, inputs in
      let a = try input(inputs, 0)
      guard case .bool(let x) = a.storage else { throw KernelError("Expected a bool input.") }
      return [Tensor(dtype: .bool, shape: a.shape, storage: .bool(x.map { !$0 }))]
    }
    table["Sum"] = { context, inputs in [try reduce(context, inputs, initial: 0) { $0 + $1 }] }
    table["Max"] = { context, inputs in [try reduce(context, inputs, initial: -.infinity) { Swift.max($0, $1) }] }
    table["Min"] = { context, inputs in [try reduce(context, inputs, initial: .infinity) { Swift.min($0, $1) }] }
    table["Prod"] = { context, inputs in [try reduce(context, inputs, initial: 1) { $0 * $1 }] }
    table["Mean"] = { context, inputs in
      let x = try input(inputs, 0)
      let sum = try reduce(context, inputs, initial: 0) { $0 + $1 }
      let divisor = Double((x.shape.elementCount ?? 0) / Swift.max(1, sum.shape.elementCount ?? 1))
      return [try tensor(try doubles(sum).map { $0 / Swift.max(divisor, 1) }, like: x, shape: sum.shape)]
    }
    table["MatMul"] = { context, inputs in [try matmul(context, inputs)] }
    table["BiasAdd"] = { _, inputs in
      let (x, bias) = (try input(inputs, 0), try input(inputs, 1))
      let values = try x.requireFloats()
      let b = try bias.requireFloats()
      guard !b.isEmpty, values.count % b.count == 0 else { throw KernelError("The bias does not fit the last dimension.") }
      return [Tensor(shape: x.shape, floats: values.enumerated().map { $1 + b[$0 % b.count] })]
    }
    table["LeakyRelu"] = { context, inputs in
      let x = try input(inputs, 0)
      let alpha = context.float("alpha", default: 0.2)
      return [Tensor(shape: x.shape, floats: try x.requireFloats().map { $0 > 0 ? $0 : alpha * $0 })]
    }
    table["LogSoftmax"] = { _, inputs in
      let x = try input(inputs, 0)
      let values = try x.requireFloats()
      let width = Swift.max(x.shape.dimensions.last ?? 1, 1)
      var result = values
      for row in stride(from: 0, to: values.count, by: width) {
        let slice = values[row..<(row + width)]
        let largest = slice.max() ?? 0
        let logSum = Foundation.log(slice.map { Foundation.exp($0 - largest) }.reduce(0, +)) + largest
        for offset in 0..<width { result[row + offset] = values[row + offset] - logSum }
      }
      return [Tensor(shape: x.shape, floats: result)]
    }
    table["ArgMax"] = { context, inputs in
      let x = try input(inputs, 0)
      let values = try doubles(x)
      let rank = x.shape.rank
      guard var axis = try input(inputs, 1).requireIntegers().first else { throw KernelError("No axis.") }
      if axis < 0 { axis += rank }
      guard (0..<rank).contains(axis) else { throw KernelError("Axis \(axis) is out of range.") }
      let dimensions = x.shape.dimensions
      let (outer, size) = (dimensions.prefix(axis).reduce(1, *), dimensions[axis])
      let inner = dimensions.dropFirst(axis + 1).reduce(1, *)
      var indices: [Int64] = []
      for o in 0..<outer {
        for i in 0..<inner {
          let candidates = (0..<size).map { values[(o * size + $0) * inner + i] }
          indices.append(Int64(candidates.indices.max { candidates[$0] < candidates[$1] || (candidates[$0] == candidates[$1] && $0 > $1) } ?? 0))
        }
      }
      let shape = Shape(dimensions.enumerated().filter { $0.offset != axis }.map(\.element))
      return context.type("output_type") == .int32
        ? [Tensor(dtype: .int32, shape: shape, storage: .int32(indices.map { Int32($0) }))]
        : [Tensor(dtype: .int64, shape: shape, storage: .int64(indices))]
    }
    table["FusedBatchNormV3"] = { context, inputs in
      guard !context.bool("is_training") else { throw KernelError("FusedBatchNormV3 in training mode is not supported.") }
      try ConvolutionKernels.checkNHWC(context)
      let x = try input(inputs, 0)
      let values = try x.requireFloats()
      let (scale, offset, mean, variance) = try (1...4).map { try input(inputs, $0).requireFloats() }
        .withFour()
      let epsilon = context.float("epsilon", default: 1e-4)
      let channels = scale.count
      guard channels > 0, values.count % channels == 0 else { throw KernelError("The scale does not fit the channels.") }
      let multipliers = (0..<channels).map { scale[$0] / (variance[$0] + epsilon).squareRoot() }
      let result = values.enumerated().map { index, value in
        let c = index % channels
        return (value - mean[c]) * multipliers[c] + offset[c]
      }
      let statistics = Tensor(shape: Shape([channels]), floats: mean)
      return [Tensor(shape: x.shape, floats: result), statistics, Tensor(shape: Shape([channels]), floats: variance),
              statistics, statistics, statistics]
    }
    table["Softmax"] = { _, inputs in
      let x = try input(inputs, 0)
      let values = try x.requireFloats()
      let width = x.shape.dimensions.last ?? 1
      var result = values
      for row in stride(from: 0, to: values.count, by: Swift.max(width, 1)) {
        let slice = values[row..<(row + width)]
        let largest = slice.max() ?? 0
        let exps = slice.map { Foundation.exp($0 - largest) }
        let total = exps.reduce(0, +)
        for (offset, value) in exps.enumerated() { result[row + offset] = value / total }
      }
      return [Tensor(shape: x.shape, floats: result)]
    }
    ShapeKernels.register(in: &table)
    ConvolutionKernels.register(in: &table)
    LinearAlgebraKernels.register(in: &table)
    return table
  }()

  /// The names of each output argument, in order, of ops with several: a function body refers
  /// to `node:batch_mean:0`, which is output 1 of FusedBatchNormV3.
  static let outputArguments: [String: [String]] = [
    "FusedBatchNormV3": ["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2", "reserve_space_3"],
    "FusedBatchNormV2": ["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"],
    "TopKV2": ["values", "indices"],
  ]

  static func input(_ inputs: [Tensor], _ index: Int) throws -> Tensor {
    guard index < inputs.count else { throw KernelError("Expected at least \(index + 1) inputs, got \(inputs.count).") }
    return inputs[index]
  }

  /// Row-major strides of `dimensions`.
  static func strides(_ dimensions: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: dimensions.count)
    for axis in dimensions.indices.dropLast().reversed() { strides[axis] = strides[axis + 1] * dimensions[axis + 1] }
    return strides
  }

  /// The broadcast shape of `shapes` (NumPy rules) and, for each output element, the element
  /// index it reads in each input.
  static func broadcastIndices(_ shapes: [Shape]) throws -> (shape: Shape, indices: [[Int]]) {
    let rank = shapes.map(\.rank).max() ?? 0
    let padded = shapes.map { [Int](repeating: 1, count: rank - $0.rank) + $0.dimensions }
    var output: [Int] = []
    for axis in 0..<rank {
      let sizes = Set(padded.map { $0[axis] }).subtracting([1])
      guard sizes.count <= 1 else {
        throw KernelError("Shapes \(shapes.map(\.description).joined(separator: " and ")) do not broadcast.")
      }
      output.append(sizes.first ?? (padded.contains { $0[axis] == 0 } ? 0 : 1))
    }
    let inputStrides = padded.map(strides)
    let outputStrides = strides(output)
    let count = output.reduce(1, *)
    var indices = shapes.map { _ in [Int](repeating: 0, count: count) }
    for element in 0..<count {
      var rest = element
      for axis in 0..<rank {
        let coordinate = rest / outputStrides[axis]
        rest %= outputStrides[axis]
        for input in padded.indices where padded[input][axis] != 1 {
          indices[input][element] += coordinate * inputStrides[input][axis]
        }
      }
    }
    return (Shape(output), indices)
  }

  /// Applies `function` elementwise with NumPy broadcasting, on floats or integers.
  static func broadcast(
    _ a: Tensor, _ b: Tensor, float: (Float, Float) -> Float, integer: ((Int64, Int64) -> Int64)?
  ) throws -> Tensor {
    guard a.dtype == b.dtype else { throw KernelError("Operands are \(a.dtype) and \(b.dtype).") }
    if case .float(let x) = a.storage, case .float(let y) = b.storage, let result = repeating(x, a.shape, y, b.shape, float) {
      return Tensor(dtype: a.dtype, shape: result.shape, storage: .float(result.values))
    }
    let (shape, indices) = try broadcastIndices([a.shape, b.shape])
    switch (a.storage, b.storage) {
    case (.float(let x), .float(let y)):
      return Tensor(dtype: a.dtype, shape: shape, storage: .float(zip(indices[0], indices[1]).map { float(x[$0], y[$1]) }))
    case (.int32(let x), .int32(let y)):
      guard let f = integer else { throw KernelError("The op does not support \(a.dtype) operands yet.") }
      return Tensor(dtype: a.dtype, shape: shape, storage: .int32(zip(indices[0], indices[1]).map { Int32(truncatingIfNeeded: f(Int64(x[$0]), Int64(y[$1]))) }))
    case (.int64(let x), .int64(let y)):
      guard let f = integer else { throw KernelError("The op does not support \(a.dtype) operands yet.") }
      return Tensor(dtype: a.dtype, shape: shape, storage: .int64(zip(indices[0], indices[1]).map { f(x[$0], y[$1]) }))
    default:
      throw KernelError("The op does not support \(a.dtype) operands yet.")
    }
  }

  /// The commonest float ops on equal shapes or a trailing (bias-like) operand, in loops the
  /// compiler inlines and vectorizes; ``broadcast(_:_:float:integer:)`` handles the rest.
  enum FastBinary: String {
    case addV2 = "AddV2", add = "Add", sub = "Sub", mul = "Mul", realDiv = "RealDiv"

    func apply(_ a: Tensor, _ b: Tensor) -> Tensor? {
      guard a.dtype == b.dtype, case .float(let x) = a.storage, case .float(let y) = b.storage else { return nil }
      let result: (values: [Float], shape: Shape)?
      switch self {
      case .addV2, .add: result = Kernels.repeating(x, a.shape, y, b.shape, +)
      case .sub: result = Kernels.repeating(x, a.shape, y, b.shape, -)
      case .mul: result = Kernels.repeating(x, a.shape, y, b.shape, *)
      case .realDiv: result = Kernels.repeating(x, a.shape, y, b.shape, /)
      }
      return result.map { Tensor(dtype: a.dtype, shape: $0.shape, storage: .float($0.values)) }
    }
  }

  /// The common broadcasts without index arrays: equal shapes, and one operand repeating over the
  /// other because its shape is the other's trailing dimensions (a scalar, a bias). `nil` for
  /// other shapes.
  @inline(__always)
  static func repeating(
    _ x: [Float], _ xShape: Shape, _ y: [Float], _ yShape: Shape, _ function: (Float, Float) -> Float
  ) -> (values: [Float], shape: Shape)? {
    func isTrailing(_ small: Shape, of large: Shape) -> Bool {
      let dimensions = small.dimensions.drop { $0 == 1 }
      return dimensions.count <= large.rank && Array(large.dimensions.suffix(dimensions.count)) == Array(dimensions)
    }
    /// `function(large[i], small[i % period])`, or with the operands swapped, block by block.
    func blocks(_ large: [Float], _ small: [Float], swapped: Bool) -> [Float] {
      let period = small.count
      return [Float](unsafeUninitializedCapacity: large.count) { output, initialized in
        large.withUnsafeBufferPointer { large in
          small.withUnsafeBufferPointer { small in
            var start = 0
            while start < large.count {
              for offset in 0..<period {
                output[start + offset] =
                  swapped ? function(small[offset], large[start + offset]) : function(large[start + offset], small[offset])
              }
              start += period
            }
          }
        }
        initialized = large.count
      }
    }
    if xShape == yShape { return (zip(x, y).map(function), xShape) }
    if !y.isEmpty, xShape.rank >= yShape.rank, isTrailing(yShape, of: xShape) {
      return (blocks(x, y, swapped: false), xShape)
    }
    if !x.isEmpty, yShape.rank >= xShape.rank, isTrailing(xShape, of: yShape) {
      return (blocks(y, x, swapped: true), yShape)
    }
    return nil
  }

  /// Compares elementwise with broadcasting; the result is bool.
  static func compare(_ a: Tensor, _ b: Tensor, _ predicate: (Double, Double) -> Bool) throws -> Tensor {
    let (shape, indices) = try broadcastIndices([a.shape, b.shape])
    let (x, y) = (try doubles(a), try doubles(b))
    return Tensor(dtype: .bool, shape: shape, storage: .bool(zip(indices[0], indices[1]).map { predicate(x[$0], y[$1]) }))
  }

  /// The elements of a numeric tensor as doubles (exact for float32 and 32-bit integers).
  static func doubles(_ tensor: Tensor) throws -> [Double] {
    switch tensor.storage {
    case .float(let values): return values.map(Double.init)
    case .double(let values): return values
    case .int32(let values): return values.map(Double.init)
    case .int64(let values): return values.map(Double.init)
    case .bool(let values): return values.map { $0 ? 1 : 0 }
    case .string: throw KernelError("Expected a numeric tensor, got strings.")
    }
  }

  /// Reduces input 0 over the axes in input 1 (attribute `keep_dims`), accumulating in double
  /// precision and storing the result in the input's type.
  static func reduce(
    _ context: KernelContext, _ inputs: [Tensor], initial: Double, _ combine: (Double, Double) -> Double
  ) throws -> Tensor {
    let x = try input(inputs, 0)
    let values = try doubles(x)
    let rank = x.shape.rank
    let axes = Set(try input(inputs, 1).requireIntegers().map { $0 < 0 ? $0 + rank : $0 })
    guard axes.allSatisfy({ (0..<rank).contains($0) }) else { throw KernelError("A reduction axis is out of range.") }
    let dimensions = x.shape.dimensions
    let kept = dimensions.enumerated().map { axes.contains($0) ? 1 : $1 }
    let (sx, sk) = (strides(dimensions), strides(kept))
    var result = [Double](repeating: initial, count: kept.reduce(1, *))
    for index in values.indices {
      var (target, rest) = (0, index)
      for axis in 0..<rank {
        let coordinate = rest / sx[axis]
        rest %= sx[axis]
        if !axes.contains(axis) { target += coordinate * sk[axis] }
      }
      result[target] = combine(result[target], values[index])
    }
    let shape = Shape(
      context.bool("keep_dims") ? kept : dimensions.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
    return try tensor(result, like: x, shape: shape)
  }

  /// `values` stored in the type of `prototype`.
  static func tensor(_ values: [Double], like prototype: Tensor, shape: Shape) throws -> Tensor {
    switch prototype.storage {
    case .float: return Tensor(dtype: prototype.dtype, shape: shape, storage: .float(values.map { Float($0) }))
    case .double: return Tensor(dtype: prototype.dtype, shape: shape, storage: .double(values))
    case .int32: return Tensor(dtype: .int32, shape: shape, storage: .int32(values.map { Int32(clamping: Int64($0)) }))
    case .int64: return Tensor(dtype: .int64, shape: shape, storage: .int64(values.map { Int64($0) }))
    default: throw KernelError("\(prototype.dtype) values cannot be reduced.")
    }
  }

  /// A matrix product with float32 accumulation (attributes `transpose_a`, `transpose_b`).
  static func matmul(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let (a, b) = (try input(inputs, 0), try input(inputs, 1))
    guard a.shape.rank == 2, b.shape.rank == 2 else { throw KernelError("MatMul needs matrices, got \(a.shape) and \(b.shape).") }
    var (x, y) = (try a.requireFloats(), try b.requireFloats())
    let (ta, tb) = (context.bool("transpose_a"), context.bool("transpose_b"))
    let (ra, ca, rb, cb) = (a.shape.dimensions[0], a.shape.dimensions[1], b.shape.dimensions[0], b.shape.dimensions[1])
    if ta { x = Gemm.transpose(x, rows: ra, columns: ca) }
    if tb { y = Gemm.transpose(y, rows: rb, columns: cb) }
    let (m, k) = ta ? (ca, ra) : (ra, ca)
    let (k2, n) = tb ? (rb, cb) : (cb == 0 && rb == 0 ? (0, 0) : (rb, cb))
    guard k == k2 else { throw KernelError("MatMul inner dimensions differ: \(a.shape) and \(b.shape).") }
    return Tensor(shape: Shape([m, n]), floats: Gemm.multiply(x, y, m: m, k: k, n: n))
  }
}

extension Array {
  /// The first four elements (the caller guarantees four).
  fileprivate func withFour() -> (Element, Element, Element, Element) { (self[0], self[1], self[2], self[3]) }
}
