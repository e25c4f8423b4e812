internal import TensorCore
internal import Foundation

/// The CPU kernels by op type. Each is a scalar reference implementation in float32.
enum Kernels {
  typealias Kernel = @Sendable (KernelContext, [Tensor]) throws -> [Tensor]

  static let table: [String: Kernel] = {
    var table: [String: Kernel] = [:]
    table["Const"] = { context, _ in [try TensorDecoding.constant(context.node)] }
    for op in ["Identity", "Snapshot", "StopGradient"] {
      table[op] = { _, inputs in [try input(inputs, 0)] }
    }
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
    for (op, function) in unary {
      table[op] = { _, inputs in
        let x = try input(inputs, 0)
        return [Tensor(shape: x.shape, floats: try x.requireFloats().map(function))]
      }
    }
    var binary: [String: @Sendable (Float, Float) -> Float] = [:]
    binary["AddV2"] = { $0 + $1 }
    binary["Add"] = { $0 + $1 }
    binary["Sub"] = { $0 - $1 }
    binary["Mul"] = { $0 * $1 }
    binary["RealDiv"] = { $0 / $1 }
    binary["Maximum"] = { Swift.max($0, $1) }
    binary["Minimum"] = { Swift.min($0, $1) }
    binary["SquaredDifference"] = { ($0 - $1) * ($0 - $1) }
    for (op, function) in binary {
      table[op] = { _, inputs in [try broadcast(try input(inputs, 0), try input(inputs, 1), function)] }
    }
    table["Sum"] = { context, inputs in [try reduce(context, inputs, initial: 0) { $0 + $1 }] }
    table["Max"] = { context, inputs in [try reduce(context, inputs, initial: -.infinity) { Swift.max($0, $1) }] }
    table["Min"] = { context, inputs in [try reduce(context, inputs, initial: .infinity) { Swift.min($0, $1) }] }
    table["Prod"] = { context, inputs in [try reduce(context, inputs, initial: 1) { $0 * $1 }] }
    table["Mean"] = { context, inputs in
      let sum = try reduce(context, inputs, initial: 0) { $0 + $1 }
      let x = try input(inputs, 0)
      let divisor = Float((x.shape.elementCount ?? 0) / Swift.max(1, sum.shape.elementCount ?? 1))
      return [Tensor(shape: sum.shape, floats: try sum.requireFloats().map { $0 / divisor })]
    }
    table["MatMul"] = { context, inputs in [try matmul(context, inputs)] }
    table["BiasAdd"] = { _, inputs in
      let (x, bias) = (try input(inputs, 0), try input(inputs, 1))
      let values = try x.requireFloats()
      let b = try bias.requireFloats()
      guard !b.isEmpty, values.count % b.count == 0 else { throw KernelError("The bias does not fit the last dimension.") }
      return [Tensor(shape: x.shape, floats: values.enumerated().map { $1 + b[$0 % b.count] })]
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
    return table
  }()

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

  /// Applies `function` elementwise with NumPy broadcasting.
  static func broadcast(_ a: Tensor, _ b: Tensor, _ function: (Float, Float) -> Float) throws -> Tensor {
    let (left, right) = (try a.requireFloats(), try b.requireFloats())
    let rank = Swift.max(a.shape.rank, b.shape.rank)
    let da = [Int](repeating: 1, count: rank - a.shape.rank) + a.shape.dimensions
    let db = [Int](repeating: 1, count: rank - b.shape.rank) + b.shape.dimensions
    var output: [Int] = []
    for axis in 0..<rank {
      guard da[axis] == db[axis] || da[axis] == 1 || db[axis] == 1 else {
        throw KernelError("Shapes \(a.shape) and \(b.shape) do not broadcast.")
      }
      output.append(da[axis] == 1 ? db[axis] : da[axis])
    }
    let (sa, sb, so) = (strides(da), strides(db), strides(output))
    let count = output.reduce(1, *)
    var result = [Float](repeating: 0, count: count)
    for index in 0..<count {
      var (ia, ib, rest) = (0, 0, index)
      for axis in 0..<rank {
        let coordinate = rest / so[axis]
        rest %= so[axis]
        if da[axis] != 1 { ia += coordinate * sa[axis] }
        if db[axis] != 1 { ib += coordinate * sb[axis] }
      }
      result[index] = function(left[ia], right[ib])
    }
    return Tensor(shape: Shape(output), floats: result)
  }

  /// Reduces input 0 over the axes in input 1 (attribute `keep_dims`).
  static func reduce(
    _ context: KernelContext, _ inputs: [Tensor], initial: Float, _ combine: (Float, Float) -> Float
  ) throws -> Tensor {
    let x = try input(inputs, 0)
    let values = try x.requireFloats()
    let rank = x.shape.rank
    let axes = Set(try input(inputs, 1).requireIntegers().map { $0 < 0 ? $0 + rank : $0 })
    guard axes.allSatisfy({ (0..<rank).contains($0) }) else { throw KernelError("A reduction axis is out of range.") }
    let dimensions = x.shape.dimensions
    let kept = dimensions.enumerated().map { axes.contains($0) ? 1 : $1 }
    let (sx, sk) = (strides(dimensions), strides(kept))
    var result = [Float](repeating: initial, count: kept.reduce(1, *))
    for index in values.indices {
      var (target, rest) = (0, index)
      for axis in 0..<rank {
        let coordinate = rest / sx[axis]
        rest %= sx[axis]
        if !axes.contains(axis) { target += coordinate * sk[axis] }
      }
      result[target] = combine(result[target], values[index])
    }
    let shape = context.bool("keep_dims") ? kept : dimensions.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
    return Tensor(shape: Shape(shape), floats: result)
  }

  /// A matrix product with float32 accumulation (attributes `transpose_a`, `transpose_b`).
  static func matmul(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let (a, b) = (try input(inputs, 0), try input(inputs, 1))
    guard a.shape.rank == 2, b.shape.rank == 2 else { throw KernelError("MatMul needs matrices, got \(a.shape) and \(b.shape).") }
    let (x, y) = (try a.requireFloats(), try b.requireFloats())
    let (ta, tb) = (context.bool("transpose_a"), context.bool("transpose_b"))
    let (m, k) = ta ? (a.shape.dimensions[1], a.shape.dimensions[0]) : (a.shape.dimensions[0], a.shape.dimensions[1])
    let (k2, n) = tb ? (b.shape.dimensions[1], b.shape.dimensions[0]) : (b.shape.dimensions[0], b.shape.dimensions[1])
    guard k == k2 else { throw KernelError("MatMul inner dimensions differ: \(a.shape) and \(b.shape).") }
    var result = [Float](repeating: 0, count: m * n)
    for row in 0..<m {
      for column in 0..<n {
        var sum: Float = 0
        for inner in 0..<k {
          let left = ta ? x[inner * m + row] : x[row * k + inner]
          let right = tb ? y[column * k + inner] : y[inner * n + column]
          sum += left * right
        }
        result[row * n + column] = sum
      }
    }
    return Tensor(shape: Shape([m, n]), floats: result)
  }
}
