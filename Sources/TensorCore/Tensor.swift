/// A dense, row-major tensor whose elements live in a copy-on-write array.
///
/// Float types are held as `Float` (float64 as `Double`), integers at their width, booleans as
/// `Bool`, strings as bytes.
public struct Tensor: Sendable, Equatable {
  /// The element storage.
  public enum Storage: Sendable, Equatable {
    case float([Float])
    case double([Double])
    case int32([Int32])
    case int64([Int64])
    case bool([Bool])
    case string([[UInt8]])
  }

  /// The element type.
  public var dtype: DType
  /// The dimensions; every one is known.
  public var shape: Shape
  /// The elements, row-major.
  public var storage: Storage {
    didSet { float16Bits = nil }
  }

  /// For a float16 tensor read from a file, the IEEE binary16 bits of its elements, kept next to
  /// the floats so that kernels streaming weights read half the bytes; `nil` otherwise, and
  /// dropped whenever `storage` changes.
  public private(set) var float16Bits: [UInt16]?

  /// Creates a tensor.
  /// - Precondition: the storage holds `shape.elementCount` elements of a kind that fits `dtype`.
  public init(dtype: DType, shape: Shape, storage: Storage) {
    precondition(
      Self.count(storage) == shape.elementCount,
      "\(Self.count(storage)) elements for shape \(shape)")
    self.dtype = dtype
    self.shape = shape
    self.storage = storage
  }

  /// A float16 tensor from the bits of its elements, which it keeps (see ``float16Bits``).
  /// - Precondition: `bits` holds `shape.elementCount` elements.
  public init(shape: Shape, float16Bits bits: [UInt16]) {
    self.init(
      dtype: .float16, shape: shape, storage: .float(ReducedPrecision.widen(float16Bits: bits)))
    float16Bits = bits
  }

  /// Tensors are equal when their types, shapes and elements are (``float16Bits`` is a copy of
  /// the elements).
  public static func == (left: Tensor, right: Tensor) -> Bool {
    left.dtype == right.dtype && left.shape == right.shape && left.storage == right.storage
  }

  /// A float32 tensor.
  public init(shape: Shape, floats: [Float]) {
    self.init(dtype: .float32, shape: shape, storage: .float(floats))
  }

  /// The elements as floats, for float tensors.
  public var floats: [Float]? {
    if case .float(let values) = storage { return values }
    return nil
  }

  /// The elements widened to `Int`, for integer tensors.
  public var integers: [Int]? {
    switch storage {
    case .int32(let values): values.map(Int.init)
    case .int64(let values): values.map(Int.init)
    default: nil
    }
  }

  private static func count(_ storage: Storage) -> Int {
    switch storage {
    case .float(let values): values.count
    case .double(let values): values.count
    case .int32(let values): values.count
    case .int64(let values): values.count
    case .bool(let values): values.count
    case .string(let values): values.count
    }
  }
}
