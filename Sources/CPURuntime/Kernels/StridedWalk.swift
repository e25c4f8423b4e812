internal import TensorCore

/// A walk over the elements of a shape in row-major order in which each of several operands
/// finds element (i0, i1, ...) at offset i0 * s0 + i1 * s1 + ... of its own storage: a stride of
/// 0 repeats the operand along that dimension (broadcasting, or the target of a reduction), and
/// permuted strides read a transpose.
///
/// Dimensions of size 1 are dropped and neighbours that every operand steps through as one are
/// merged, so the walk is a few long runs along the last dimension, each handed to a loop that
/// the compiler vectorizes.
struct StridedWalk {
  /// The merged dimensions; the last is the run length.
  private(set) var dimensions: [Int]
  /// For each operand, its stride along each merged dimension.
  private(set) var strides: [[Int]]

  init(dimensions: [Int], strides: [[Int]]) {
    var merged: [Int] = []
    var mergedStrides = strides.map { _ in [Int]() }
    for axis in dimensions.indices where dimensions[axis] != 1 {
      let size = dimensions[axis]
      if let last = merged.last,
        strides.indices.allSatisfy({
          mergedStrides[$0][mergedStrides[$0].count - 1] == strides[$0][axis] * size
        })
      {
        merged[merged.count - 1] = last * size
        for operand in strides.indices {
          mergedStrides[operand][mergedStrides[operand].count - 1] = strides[operand][axis]
        }
        continue
      }
      merged.append(size)
      for operand in strides.indices { mergedStrides[operand].append(strides[operand][axis]) }
    }
    if merged.isEmpty {
      merged = [dimensions.contains(0) ? 0 : 1]
      mergedStrides = strides.map { _ in [0] }
    }
    self.dimensions = merged
    self.strides = mergedStrides
  }

  /// The stride of each operand along the run.
  var runStrides: [Int] { strides.map { $0[$0.count - 1] } }

  /// The length of each run.
  var runLength: Int { dimensions[dimensions.count - 1] }

  /// Calls `body` with each operand's offset at the start of every run, in row-major order.
  @inline(__always)
  func forEachRun(_ body: (UnsafeBufferPointer<Int>) -> Void) {
    guard !dimensions.contains(0) else { return }
    let (operands, outer) = (strides.count, dimensions.count - 1)
    // Scratch in one allocation: offsets, then the counter of each outer axis, then each outer
    // axis's sizes and strides (operand-major per axis), so the loop touches no array.
    withUnsafeTemporaryAllocation(of: Int.self, capacity: operands + outer * (2 + operands)) {
      scratch in
      let base = scratch.start
      let offsets = base, counter = base + operands, sizes = counter + outer, steps = sizes + outer
      offsets.initialize(repeating: 0, count: operands)
      counter.initialize(repeating: 0, count: outer)
      for axis in 0..<outer {
        (sizes + axis).initialize(to: dimensions[axis])
        for operand in 0..<operands {
          (steps + axis * operands + operand).initialize(to: strides[operand][axis])
        }
      }
      let current = UnsafeBufferPointer(start: offsets, count: operands)
      while true {
        body(current)
        var axis = outer - 1
        while axis >= 0 {
          counter[axis] += 1
          let step = steps + axis * operands
          if counter[axis] < sizes[axis] {
            for operand in 0..<operands { offsets[operand] &+= step[operand] }
            break
          }
          for operand in 0..<operands { offsets[operand] &-= step[operand] &* (sizes[axis] - 1) }
          counter[axis] = 0
          axis -= 1
        }
        if axis < 0 { return }
      }
    }
  }

  /// Steps `counter` (one index per axis, each below its entry of `counts`) to the next index
  /// in row-major order; `false`, with the counter back at zeros, after the last.
  static func advance(_ counter: inout [Int], counts: [Int]) -> Bool {
    var axis = counter.count - 1
    while axis >= 0 {
      counter[axis] += 1
      if counter[axis] < counts[axis] { return true }
      counter[axis] = 0
      axis -= 1
    }
    return false
  }

  /// Row-major strides of `dimensions`.
  static func contiguous(_ dimensions: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: dimensions.count)
    for axis in dimensions.indices.dropLast().reversed() {
      strides[axis] = strides[axis + 1] * dimensions[axis + 1]
    }
    return strides
  }

  /// The broadcast (NumPy rules) of `shapes`.
  ///
  /// - Throws: ``KernelError`` when they do not broadcast, or their broadcast has more elements
  ///   than `Int` can count.
  static func broadcastShape(_ shapes: [Shape]) throws -> Shape {
    let rank = shapes.map(\.rank).max() ?? 0
    let padded = shapes.map { [Int](repeating: 1, count: rank - $0.rank) + $0.dimensions }
    var output: [Int] = []
    for axis in 0..<rank {
      let sizes = Set(padded.map { $0[axis] }).subtracting([1])
      guard sizes.count <= 1 else {
        throw KernelError(
          "Shapes \(shapes.map(\.description).joined(separator: " and ")) do not broadcast.")
      }
      output.append(sizes.first ?? (padded.contains { $0[axis] == 0 } ? 0 : 1))
    }
    guard Shape(output).elementCount != nil else {
      throw KernelError(
        code: .limitExceeded,
        "The broadcast of \(shapes.map(\.description).joined(separator: " and ")) has more "
          + "elements than Int can count.")
    }
    return Shape(output)
  }

  /// The broadcast (NumPy rules) of `shapes`, for a `dtype` result no larger than `limits`
  /// allow, and a walk over it whose operands are the output (contiguous) followed by each
  /// input.
  static func broadcast(_ shapes: [Shape], of dtype: DType, within limits: ResourceLimits) throws
    -> (shape: Shape, walk: StridedWalk)
  {
    let shape = try broadcastShape(shapes)
    if let problem = limits.problem(creating: shape, of: dtype) {
      throw KernelError(code: .limitExceeded, "The broadcast result: \(problem).")
    }
    let output = shape.dimensions
    let rank = output.count
    let padded = shapes.map { [Int](repeating: 1, count: rank - $0.rank) + $0.dimensions }
    let inputStrides = padded.map { dimensions in
      zip(dimensions, contiguous(dimensions)).map { size, stride in size == 1 ? 0 : stride }
    }
    return (
      Shape(output), StridedWalk(dimensions: output, strides: [contiguous(output)] + inputStrides)
    )
  }

  /// For each operand after the first (the output of ``broadcast(_:)``), the element it reads for
  /// each output element.
  func indices() -> [[Int]] {
    var result = strides.dropFirst().map { _ in [Int]() }
    let (length, step) = (runLength, runStrides)
    forEachRun { offsets in
      for operand in result.indices {
        let (start, stride) = (offsets[operand + 1], step[operand + 1])
        result[operand] += (0..<length).lazy.map { start + $0 * stride }
      }
    }
    return result
  }

  /// `function` of corresponding elements of `x` and `y` over a ``broadcast(_:)`` walk of two
  /// inputs, in loops specialised for the common runs (both contiguous, one repeating).
  @inline(__always)
  func map<A, B, R>(_ x: [A], _ y: [B], _ function: (A, B) -> R) -> [R] {
    let count = dimensions.reduce(1, *)
    let (length, step) = (runLength, runStrides)
    return [R](unsafeUninitializedCapacity: count) { output, initialized in
      x.withUnsafeBufferPointer { x in
        y.withUnsafeBufferPointer { y in
          guard
            let (x, y, output) = x.baseAddress.flatMap({ x in
              y.baseAddress.map { (x, $0, output.start) }
            })
          else { return }
          // Pointer offsets: the loops carry no overflow checks and vectorize.
          forEachRun { offsets in
            let (o, a, b) = (output + offsets[0], x + offsets[1], y + offsets[2])
            switch (step[1], step[2]) {
            case (1, 1): for i in 0..<length { (o + i).initialize(to: function(a[i], b[i])) }
            case (1, 0):
              let value = b.pointee
              for i in 0..<length { (o + i).initialize(to: function(a[i], value)) }
            case (0, 1):
              let value = a.pointee
              for i in 0..<length { (o + i).initialize(to: function(value, b[i])) }
            case (let sa, let sb):
              for i in 0..<length { (o + i).initialize(to: function(a[i &* sa], b[i &* sb])) }
            }
          }
        }
      }
      initialized = count
    }
  }
}
