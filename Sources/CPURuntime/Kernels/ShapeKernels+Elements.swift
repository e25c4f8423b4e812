internal import GraphIR
internal import TensorCore

/// How the shape family (and others) move elements: transposes, gathers by index, takes by
/// ranges with padding, and integer truncation.
extension ShapeKernels {
  /// `value` rounded toward zero, as x86-64's conversion instructions give it (and so TensorFlow
  /// on this CPU): NaN and values outside the integer type's range become its smallest value.
  static func truncated<T: FixedWidthInteger>(_ value: Double) -> T {
    T(exactly: value.rounded(.towardZero)) ?? T.min
  }

  /// The elements of a row-major array of `dimensions` with its axes reordered: axis i of the
  /// result is axis `permutation[i]` of the input.
  static func transpose<Element>(_ values: [Element], _ dimensions: [Int], _ permutation: [Int])
    -> [Element]
  {
    let strides = StridedWalk.contiguous(dimensions)
    let output = permutation.map { dimensions[$0] }
    let walk = StridedWalk(
      dimensions: output,
      strides: [StridedWalk.contiguous(output), permutation.map { strides[$0] }])
    let (length, step) = (walk.runLength, walk.runStrides[1])
    return [Element](unsafeUninitializedCapacity: values.count) { result, initialized in
      values.withUnsafeBufferPointer { values in
        guard let source = values.baseAddress, let target = result.baseAddress else { return }
        walk.forEachRun { offsets in
          let (output, input) = (target + offsets[0], source + offsets[1])
          if step == 1 {
            output.initialize(from: input, count: length)
          } else {
            for i in 0..<length { (output + i).initialize(to: input[i &* step]) }
          }
        }
      }
      initialized = values.count
    }
  }

  /// Elements picked from `inputs` by (input, index) pairs.
  static func gather(_ inputs: [Tensor], _ order: [(Int, Int)], dtype: DType, shape: Shape) throws
    -> Tensor
  {
    guard inputs.allSatisfy({ $0.dtype == inputs[0].dtype }) else {
      throw KernelError(
        "The inputs are of different types: \(inputs.map(\.dtype.description).joined(separator: ", "))."
      )
    }
    switch inputs[0].storage {
    case .float:
      let arrays = inputs.map { $0.floats ?? [] }
      return Tensor(dtype: dtype, shape: shape, storage: .float(order.map { arrays[$0.0][$0.1] }))
    case .int32:
      let arrays: [[Int32]] = inputs.map { if case .int32(let v) = $0.storage { v } else { [] } }
      return Tensor(dtype: dtype, shape: shape, storage: .int32(order.map { arrays[$0.0][$0.1] }))
    case .int64:
      let arrays: [[Int64]] = inputs.map { if case .int64(let v) = $0.storage { v } else { [] } }
      return Tensor(dtype: dtype, shape: shape, storage: .int64(order.map { arrays[$0.0][$0.1] }))
    case .double:
      let arrays: [[Double]] = inputs.map { if case .double(let v) = $0.storage { v } else { [] } }
      return Tensor(dtype: dtype, shape: shape, storage: .double(order.map { arrays[$0.0][$0.1] }))
    case .bool:
      let arrays: [[Bool]] = inputs.map { if case .bool(let v) = $0.storage { v } else { [] } }
      return Tensor(dtype: dtype, shape: shape, storage: .bool(order.map { arrays[$0.0][$0.1] }))
    case .string:
      let arrays: [[[UInt8]]] = inputs.map { if case .string(let v) = $0.storage { v } else { [] } }
      return Tensor(dtype: dtype, shape: shape, storage: .string(order.map { arrays[$0.0][$0.1] }))
    }
  }

  /// The elements of `x` at every combination of `ranges` (one index list per dimension; -1
  /// takes `fill`'s single element, zero without one).
  static func take(_ x: Tensor, ranges: [[Int]], shape: Shape, fill: Tensor? = nil) throws -> Tensor
  {
    let strides = StridedWalk.contiguous(x.shape.dimensions)
    // For each axis, the offset each output index adds, or -1 for padding.
    let offsets = ranges.enumerated().map { axis, indices in
      indices.map { $0 < 0 ? -1 : $0 * strides[axis] }
    }
    func padding<T>(_ values: (Tensor.Storage) -> [T]?, zero: T) throws -> T {
      guard let fill else { return zero }
      guard let value = values(fill.storage)?.first else {
        throw KernelError("The padding value must be a scalar of the input's type \(x.dtype).")
      }
      return value
    }
    let storage: Tensor.Storage
    switch x.storage {
    case .float(let values):
      storage = .float(
        pick(
          values, offsets,
          fill: try padding({ if case .float(let v) = $0 { v } else { nil } }, zero: 0)))
    case .double(let values):
      storage = .double(
        pick(
          values, offsets,
          fill: try padding({ if case .double(let v) = $0 { v } else { nil } }, zero: 0)))
    case .int32(let values):
      storage = .int32(
        pick(
          values, offsets,
          fill: try padding({ if case .int32(let v) = $0 { v } else { nil } }, zero: 0)))
    case .int64(let values):
      storage = .int64(
        pick(
          values, offsets,
          fill: try padding({ if case .int64(let v) = $0 { v } else { nil } }, zero: 0)))
    case .bool(let values):
      storage = .bool(
        pick(
          values, offsets,
          fill: try padding({ if case .bool(let v) = $0 { v } else { nil } }, zero: false)))
    case .string(let values):
      storage = .string(
        pick(
          values, offsets,
          fill: try padding({ if case .string(let v) = $0 { v } else { nil } }, zero: [])))
    }
    return Tensor(dtype: x.dtype, shape: shape, storage: storage)
  }

  /// The elements of `values` at the sums of one offset per axis (row-major over the offset
  /// lists), or `fill` where any of the offsets is -1.
  private static func pick<T>(_ values: [T], _ offsets: [[Int]], fill: T) -> [T] {
    let count = offsets.map(\.count).reduce(1, *)
    guard let last = offsets.last else { return values.isEmpty ? [] : [values[0]] }
    guard count > 0 else { return [] }
    return [T](unsafeUninitializedCapacity: count) { output, initialized in
      var counter = [Int](repeating: 0, count: offsets.count - 1)
      let counts = offsets.dropLast().map(\.count)
      var position = 0
      while true {
        var (base, padded) = (0, false)
        for axis in counter.indices {
          let offset = offsets[axis][counter[axis]]
          padded = padded || offset < 0
          base += offset
        }
        for (i, offset) in last.enumerated() {
          (output.start + position + i).initialize(
            to: padded || offset < 0 ? fill : values[base + offset])
        }
        position += last.count
        if !StridedWalk.advance(&counter, counts: counts) { break }
      }
      initialized = count
    }
  }

  /// A scalar zero of `x`'s type.
  static func zero(like x: Tensor) throws -> Tensor {
    try Kernels.tensor([0], like: x, shape: Shape([]))
  }
}
