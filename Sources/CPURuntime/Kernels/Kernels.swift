internal import GraphIR
internal import TensorCore

/// Helpers the op families share.
enum Kernels {
  static func input(_ inputs: [Tensor], _ index: Int) throws -> Tensor {
    guard index < inputs.count else {
      throw KernelError("Expected at least \(index + 1) inputs, got \(inputs.count).")
    }
    return inputs[index]
  }

  /// The elements of `input` when a `Const` node of the function `builder` extends gives it:
  /// an axis or a shape a gradient can be specialised to.
  static func constantIntegers(_ input: Input, in builder: GradientBuilder) -> [Int]? {
    guard let producer = input.node.map({ builder.function[$0] }), producer.op == "Const" else {
      return nil
    }
    return (try? TensorDecoding.constant(producer, limits: .standard))?.integers
  }

  /// `a * b`, or a kernel error when it overflows `Int` (sizes computed from values).
  static func product(_ a: Int, _ b: Int) throws -> Int {
    let (result, overflow) = a.multipliedReportingOverflow(by: b)
    guard !overflow else { throw KernelError(code: .limitExceeded, "\(a) × \(b) overflows Int.") }
    return result
  }

  /// `a + b`, or a kernel error when it overflows `Int` (sizes computed from values).
  static func sum(_ a: Int, _ b: Int) throws -> Int {
    let (result, overflow) = a.addingReportingOverflow(b)
    guard !overflow else { throw KernelError(code: .limitExceeded, "\(a) + \(b) overflows Int.") }
    return result
  }

  /// Compares elementwise with broadcasting; the result is bool, no larger than `limits` allow.
  /// Strings compare by `equality` (whether equal elements give true), for the ops that have it.
  static func compare(
    _ a: Tensor, _ b: Tensor, limits: ResourceLimits, equality: Bool? = nil,
    _ predicate: (Double, Double) -> Bool
  ) throws -> Tensor {
    let (shape, walk) = try StridedWalk.broadcast([a.shape, b.shape], of: .bool, within: limits)
    if case .string(let x) = a.storage, case .string(let y) = b.storage, let equality {
      return Tensor(
        dtype: .bool, shape: shape, storage: .bool(walk.map(x, y) { ($0 == $1) == equality }))
    }
    return Tensor(
      dtype: .bool, shape: shape,
      storage: .bool(walk.map(try doubles(a), try doubles(b), predicate)))
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

  /// `values` stored in the type of `prototype`.
  static func tensor(_ values: [Double], like prototype: Tensor, shape: Shape) throws -> Tensor {
    switch prototype.storage {
    case .float:
      return Tensor(dtype: prototype.dtype, shape: shape, storage: .float(values.map { Float($0) }))
    case .double: return Tensor(dtype: prototype.dtype, shape: shape, storage: .double(values))
    case .int32:
      // int32 elements hold int32 values, or a small integer type's, which wrap.
      let type = prototype.dtype
      return Tensor(
        dtype: type, shape: shape,
        storage: .int32(
          type.smallIntegerRange == nil
            ? values.map(ShapeKernels.truncated)
            : values.map { type.wrapping(ShapeKernels.truncated($0)) }))
    case .int64:
      return Tensor(
        dtype: .int64, shape: shape, storage: .int64(values.map(ShapeKernels.truncated)))
    case .bool: return Tensor(dtype: .bool, shape: shape, storage: .bool(values.map { $0 != 0 }))
    case .string: throw KernelError("String values cannot be computed on.")
    }
  }
}

extension OpSchema.ElementType {
  /// An index or shape argument's type attribute `name`, `defaultType` (int32 unless given)
  /// when a node leaves it out.
  static func index(_ name: String, _ defaultType: DType = .int32) -> Self {
    .attribute(name, defaultType: defaultType)
  }
}

extension OpSchema.Argument {
  /// An argument of one tensor of fixed dtype `type`.
  static func fixed(_ name: String, _ type: DType) -> Self { Self(name, type: .fixed(type)) }
}
