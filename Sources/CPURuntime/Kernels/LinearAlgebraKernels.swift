internal import GraphIR
internal import TensorCore
internal import Foundation

/// Batched matrix products: BatchMatMulV2 and Einsum (float32 accumulation); MatrixSolve.
enum LinearAlgebraKernels {
  static func register(in registry: inout OpRegistry) {
    // Not in TensorFlow's lists: it stays float32 (Keras's RandomPerspective solves for its
    // transform's coefficients).
    registry.add(
      "MatrixSolve", inputs: ["matrix", "rhs"], outputs: ["output"],
      attributes: [.bool("adjoint", false)]
    ) { context, inputs in [try solve(context, inputs)] }
    registry.add(
      "BatchMatMulV2", inputs: ["x", "y"], outputs: ["output"],
      attributes: [.bool("adj_x", false), .bool("adj_y", false)], precision: .allow
    ) { context, inputs in [try batchMatMul(context, inputs)] }
    registry.alias("BatchMatMul", of: "BatchMatMulV2")
    registry.add(
      "MatMul", inputs: ["a", "b"], outputs: ["product"],
      attributes: [.bool("transpose_a", false), .bool("transpose_b", false)], precision: .allow
    ) { context, inputs in [try matmul(context, inputs)] }
    registry.add(
      "Einsum", inputs: [.init("inputs", .number("N"))], outputs: ["output"],
      attributes: [.string("equation")], precision: .allow
    ) { context, inputs in [try einsumByMatrixProducts(context, inputs) ?? einsum(context, inputs)]
    }
  }

  /// X with A X = B (or Aᴴ X = B, `adjoint`) for each matrix of the batch: LU decomposition with
  /// partial pivoting, in double precision.
  static func solve(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let (a, b) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
    let (da, db) = (a.shape.dimensions, b.shape.dimensions)
    guard da.count >= 2, da.count == db.count, da.dropLast(2) == db.dropLast(2),
      let m = da.last, da[da.count - 2] == m, db[db.count - 2] == m, let k = db.last
    else {
      throw KernelError(
        "MatrixSolve needs square matrices and right-hand sides of one batch, not \(a.shape) and \(b.shape)."
      )
    }
    let adjoint = try context.bool("adjoint")
    let (x, y) = (try Kernels.doubles(a), try Kernels.doubles(b))
    var result = [Double](repeating: 0, count: y.count)
    for matrix in 0..<(m == 0 ? 0 : x.count / (m * m)) {
      var lu = (0..<(m * m)).map { index in
        let (row, column) = (index / m, index % m)
        return x[matrix * m * m + (adjoint ? column * m + row : index)]
      }
      var solution = Array(y[(matrix * m * k)..<((matrix + 1) * m * k)])
      for pivot in 0..<m {
        guard let best = (pivot..<m).max(by: { abs(lu[$0 * m + pivot]) < abs(lu[$1 * m + pivot]) }),
          lu[best * m + pivot] != 0
        else { throw KernelError("MatrixSolve's matrix \(matrix) is singular.") }
        if best != pivot {
          for column in 0..<m { lu.swapAt(best * m + column, pivot * m + column) }
          for column in 0..<k { solution.swapAt(best * k + column, pivot * k + column) }
        }
        for row in (pivot + 1)..<m {
          let factor = lu[row * m + pivot] / lu[pivot * m + pivot]
          for column in pivot..<m { lu[row * m + column] -= factor * lu[pivot * m + column] }
          for column in 0..<k {
            solution[row * k + column] -= factor * solution[pivot * k + column]
          }
        }
      }
      for row in stride(from: m - 1, through: 0, by: -1) {
        for column in 0..<k {
          var value = solution[row * k + column]
          for other in (row + 1)..<m { value -= lu[row * m + other] * solution[other * k + column] }
          solution[row * k + column] = value / lu[row * m + row]
        }
      }
      result.replaceSubrange((matrix * m * k)..<((matrix + 1) * m * k), with: solution)
    }
    return try Kernels.tensor(result, like: b, shape: b.shape)
  }

  static func batchMatMul(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let (a, b) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
    guard a.shape.rank >= 2, b.shape.rank >= 2 else {
      throw KernelError("BatchMatMul needs matrices.")
    }
    let (x, y) = (try a.requireFloats(), try b.requireFloats())
    let (adjointA, adjointB) = (try context.bool("adj_x"), try context.bool("adj_y"))
    let da = a.shape.dimensions
    let db = b.shape.dimensions
    let (ra, ca) = (da[da.count - 2], da[da.count - 1])
    let (rb, cb) = (db[db.count - 2], db[db.count - 1])
    let (m, k) = adjointA ? (ca, ra) : (ra, ca)
    let (k2, n) = adjointB ? (cb, rb) : (rb, cb)
    guard k == k2 else { throw KernelError("Inner dimensions differ: \(a.shape) and \(b.shape).") }
    let (batch, walk) = try StridedWalk.broadcast(
      [Shape(Array(da.dropLast(2))), Shape(Array(db.dropLast(2)))], of: a.dtype,
      within: context.limits)
    _ = try context.allocating(batch.dimensions + [m, n], a.dtype)
    let pairs = walk.indices()
    let offsets = (0..<(batch.elementCount ?? 0)).map {
      (pairs[0][$0] * ra * ca, pairs[1][$0] * rb * cb)
    }
    let result = Gemm.multiply(
      x, y, offsets: offsets, m: m, k: k, n: n, transposeA: adjointA, transposeB: adjointB,
      halfB: b.float16Bits,
      precision: Gemm.sharedPrecision(a, b), packs: context.weightPacks)
    return Tensor(shape: Shape(batch.dimensions + [m, n]), floats: result)
  }

  /// A two-operand Einsum as batched matrix products: labels in both operands and the output are
  /// the batch, labels in one operand and the output are rows or columns, labels in both
  /// operands only are contracted. The operands are transposed to [batch, rows, contracted] and
  /// [batch, contracted, columns], multiplied, and the product transposed to the output order.
  /// `nil` for other forms (a label summed within one operand, ellipses), which
  /// ``einsum(_:_:)``, the reference, computes.
  static func einsumByMatrixProducts(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor?
  {
    let equation = try context.string("equation")
    guard inputs.count == 2, !equation.contains("."), let arrow = equation.range(of: "->")
    else { return nil }
    let operands = equation[..<arrow.lowerBound].split(separator: ",").map { Array($0) }
    let output = Array(equation[arrow.upperBound...])
    guard operands.count == 2, operands[0].count == inputs[0].shape.rank,
      operands[1].count == inputs[1].shape.rank,
      Set(operands[0]).count == operands[0].count, Set(operands[1]).count == operands[1].count
    else { return nil }
    let (left, right) = (Set(operands[0]), Set(operands[1]))
    let outputSet = Set(output)
    let batch = output.filter { left.contains($0) && right.contains($0) }
    let rows = output.filter { left.contains($0) && !right.contains($0) }
    let columns = output.filter { right.contains($0) && !left.contains($0) }
    let contracted = operands[0].filter { right.contains($0) && !outputSet.contains($0) }
    guard batch.count + rows.count + columns.count == output.count,
      left.subtracting(outputSet).isSubset(of: right),
      right.subtracting(outputSet).isSubset(of: left)
    else { return nil }
    var sizes: [Character: Int] = [:]
    for (labels, tensor) in zip(operands, inputs) {
      for (label, size) in zip(labels, tensor.shape.dimensions) {
        if let known = sizes[label], known != size {
          throw KernelError("Einsum label '\(label)' has sizes \(known) and \(size).")
        }
        sizes[label] = size
      }
    }
    func product(_ labels: [Character]) -> Int { labels.map { sizes[$0] ?? 1 }.reduce(1, *) }
    let outputShape = Shape(output.map { sizes[$0] ?? 1 })
    let precision = Gemm.sharedPrecision(inputs[0], inputs[1])
    // Read in place: each group of labels is one stride in its operands and the output (Keras's
    // attention forms), the columns contiguous in the output.
    let layouts = [operands[0], operands[1], output].map { labels in
      (labels, StridedWalk.contiguous(labels.map { sizes[$0] ?? 1 }))
    }
    func stride(_ group: [Character], in layout: Int) -> Int? {
      let (labels, strides) = layouts[layout]
      let positions = group.compactMap { labels.firstIndex(of: $0) }
      guard positions.count == group.count else { return nil }
      guard let last = positions.last else { return 0 }
      for (outer, inner) in zip(positions, positions.dropFirst())
      where strides[outer] != strides[inner] * (sizes[labels[inner]] ?? 1) {
        return nil
      }
      return strides[last]
    }
    if let rsa = stride(rows, in: 0), let csa = stride(contracted, in: 0),
      let rsb = stride(contracted, in: 1),
      let csb = stride(columns, in: 1), let ldc = stride(rows, in: 2),
      stride(columns, in: 2) == 1 || columns.isEmpty
    {
      let (a, b) = (try inputs[0].requireFloats(), try inputs[1].requireFloats())
      // Each batch coordinate's offsets, the last batch label fastest.
      var pairs = [(a: 0, b: 0, c: 0)]
      for label in batch {
        let steps = (0..<3).map { layout in
          layouts[layout].1[layouts[layout].0.firstIndex(of: label) ?? 0]
        }
        pairs = pairs.flatMap { pair in
          (0..<(sizes[label] ?? 1)).map {
            (pair.a + $0 * steps[0], pair.b + $0 * steps[1], pair.c + $0 * steps[2])
          }
        }
      }
      let result = Gemm.multiply(
        a, b, pairs: pairs, m: product(rows), k: product(contracted), n: product(columns),
        layout: Gemm.Layout(rsa: rsa, csa: csa, rsb: rsb, csb: csb, ldc: ldc),
        count: outputShape.elementCount ?? 0,
        halfB: inputs[1].float16Bits, precision: precision, packs: context.weightPacks)
      return Tensor(shape: outputShape, floats: result)
    }
    let a = try permute(inputs[0], labels: operands[0], to: batch + rows + contracted)
    let b = try permute(inputs[1], labels: operands[1], to: batch + contracted + columns)
    // B is the second operand's own elements when it needs no transposing.
    let inPlace = operands[1] == batch + contracted + columns
    let (batches, m, k, n) = (product(batch), product(rows), product(contracted), product(columns))
    let offsets = (0..<batches).map { ($0 * m * k, $0 * k * n) }
    let result = Gemm.multiply(
      a, b, offsets: offsets, m: m, k: k, n: n, halfB: inPlace ? inputs[1].float16Bits : nil,
      precision: precision, packs: inPlace ? context.weightPacks : nil)
    let produced = batch + rows + columns
    let tensor = Tensor(shape: Shape(produced.map { sizes[$0] ?? 1 }), floats: result)
    return Tensor(shape: outputShape, floats: try permute(tensor, labels: produced, to: output))
  }

  /// The elements of `tensor`, whose dimensions carry `labels`, in the dimension order `order`.
  static func permute(_ tensor: Tensor, labels: [Character], to order: [Character]) throws
    -> [Float]
  {
    let values = try tensor.requireFloats()
    let permutation = order.compactMap { labels.firstIndex(of: $0) }
    return permutation == Array(labels.indices)
      ? values : ShapeKernels.transpose(values, tensor.shape.dimensions, permutation)
  }

  /// Einsum of one or two operands, explicit output, no ellipsis.
  static func einsum(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let equation = try context.string("equation")
    guard !equation.contains("."), let arrow = equation.range(of: "->") else {
      throw KernelError(
        "Einsum '\(equation)' is not supported yet (explicit output, no ellipsis).")
    }
    let operandLabels = equation[..<arrow.lowerBound].split(separator: ",").map { Array($0) }
    let outputLabels = Array(equation[arrow.upperBound...])
    guard operandLabels.count == inputs.count, (1...2).contains(inputs.count) else {
      throw KernelError(
        "Einsum '\(equation)' has \(operandLabels.count) operands but \(inputs.count) inputs.")
    }
    var sizes: [Character: Int] = [:]
    for (labels, tensor) in zip(operandLabels, inputs) {
      guard labels.count == tensor.shape.rank else {
        throw KernelError("Einsum labels '\(String(labels))' do not fit \(tensor.shape).")
      }
      for (label, size) in zip(labels, tensor.shape.dimensions) {
        if let known = sizes[label], known != size {
          throw KernelError("Einsum label '\(label)' has sizes \(known) and \(size).")
        }
        sizes[label] = size
      }
    }
    let contracted = Array(Set(sizes.keys).subtracting(outputLabels)).sorted()
    let all = outputLabels + contracted
    let allSizes = try all.map { label -> Int in
      guard let size = sizes[label] else {
        throw KernelError("Output label '\(label)' appears in no operand.")
      }
      return size
    }
    let operands = try inputs.map { try $0.requireFloats() }
    // For each operand, the stride of each label in `all` (0 when the operand lacks it).
    let labelStrides = zip(operandLabels, inputs).map { labels, tensor -> [Int] in
      let strides = StridedWalk.contiguous(tensor.shape.dimensions)
      return all.map { label in labels.firstIndex(of: label).map { strides[$0] } ?? 0 }
    }
    let outputCount = outputLabels.map { sizes[$0] ?? 0 }.reduce(1, *)
    let contractedCount = contracted.map { sizes[$0] ?? 0 }.reduce(1, *)
    var result = [Float](repeating: 0, count: outputCount)
    var coordinates = [Int](repeating: 0, count: all.count)
    for element in 0..<outputCount {
      var rest = element
      for axis in (0..<outputLabels.count).reversed() {
        coordinates[axis] = rest % allSizes[axis]
        rest /= allSizes[axis]
      }
      var sum: Float = 0
      for inner in 0..<contractedCount {
        var remaining = inner
        for axis in (outputLabels.count..<all.count).reversed() {
          coordinates[axis] = remaining % allSizes[axis]
          remaining /= allSizes[axis]
        }
        var product: Float = 1
        for (operand, strides) in zip(operands, labelStrides) {
          var offset = 0
          for axis in all.indices { offset += coordinates[axis] * strides[axis] }
          product *= operand[offset]
        }
        sum += product
      }
      result[element] = sum
    }
    return Tensor(shape: Shape(outputLabels.map { sizes[$0] ?? 0 }), floats: result)
  }

  /// A matrix product with float32 accumulation (attributes `transpose_a`, `transpose_b`).
  static func matmul(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let (a, b) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
    guard a.shape.rank == 2, b.shape.rank == 2 else {
      throw KernelError("MatMul needs matrices, got \(a.shape) and \(b.shape).")
    }
    let (x, y) = (try a.requireFloats(), try b.requireFloats())
    let (ta, tb) = (try context.bool("transpose_a"), try context.bool("transpose_b"))
    let (ra, ca, rb, cb) = (
      a.shape.dimensions[0], a.shape.dimensions[1], b.shape.dimensions[0], b.shape.dimensions[1]
    )
    let (m, k) = ta ? (ca, ra) : (ra, ca)
    let (k2, n) = tb ? (cb, rb) : (rb, cb)
    guard k == k2 else {
      throw KernelError("MatMul inner dimensions differ: \(a.shape) and \(b.shape).")
    }
    return Tensor(
      shape: try context.allocating([m, n], a.dtype),
      floats: Gemm.multiply(
        x, y, m: m, k: k, n: n, transposeA: ta, transposeB: tb, halfB: b.float16Bits,
        precision: Gemm.sharedPrecision(a, b), packs: context.weightPacks))
  }
}
