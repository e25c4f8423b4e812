/// The element type of a tensor, numbered as TensorFlow's `DataType` enum.
///
/// The raw value is TensorFlow's enum value (`DT_FLOAT` = 1, `DT_HALF` = 19, ...), so a dtype read
/// from a file maps onto a case with `DType(rawValue:)`; an unknown number gives `nil`.
public enum DType: Int, Sendable, Hashable, CaseIterable, Codable {
  case float32 = 1
  case float64 = 2
  case int32 = 3
  case uint8 = 4
  case int16 = 5
  case int8 = 6
  case string = 7
  case complex64 = 8
  case int64 = 9
  case bool = 10
  case qint8 = 11
  case quint8 = 12
  case qint32 = 13
  case bfloat16 = 14
  case qint16 = 15
  case quint16 = 16
  case uint16 = 17
  case complex128 = 18
  case float16 = 19
  case resource = 20
  case variant = 21
  case uint32 = 22
  case uint64 = 23
  case float8E5M2 = 24
  case float8E4M3FN = 25
  case float8E4M3FNUZ = 26
  case float8E4M3B11FNUZ = 27
  case float8E5M2FNUZ = 28
  case int4 = 29
  case uint4 = 30
  case int2 = 31
  case uint2 = 32
  case float4E2M1FN = 33

  /// Bytes per element in a checkpoint or `tensor_content`, or `nil` for variable-size or opaque
  /// types (string, resource, variant) and sub-byte types.
  public var byteSize: Int? {
    switch self {
    case .bool, .int8, .uint8, .qint8, .quint8, .float8E5M2, .float8E4M3FN, .float8E4M3FNUZ,
      .float8E4M3B11FNUZ, .float8E5M2FNUZ:
      return 1
    case .int16, .uint16, .qint16, .quint16, .float16, .bfloat16:
      return 2
    case .float32, .int32, .uint32, .qint32:
      return 4
    case .float64, .int64, .uint64, .complex64:
      return 8
    case .complex128:
      return 16
    case .string, .resource, .variant, .int4, .uint4, .int2, .uint2, .float4E2M1FN:
      return nil
    }
  }

  /// Whether this is a real floating-point type (float16, bfloat16, float32, float64).
  public var isFloatingPoint: Bool {
    switch self {
    case .float16, .bfloat16, .float32, .float64: return true
    default: return false
    }
  }

  /// The dtype whose ``name`` is `name`, or `nil` for no such dtype.
  public init?(name: String) {
    guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
    self = match
  }

  /// The name TensorFlow and NumPy users know: `float32`, `float16`, `bfloat16`, `int64`, ...
  public var name: String {
    switch self {
    case .float32: "float32"
    case .float64: "float64"
    case .int32: "int32"
    case .uint8: "uint8"
    case .int16: "int16"
    case .int8: "int8"
    case .string: "string"
    case .complex64: "complex64"
    case .int64: "int64"
    case .bool: "bool"
    case .qint8: "qint8"
    case .quint8: "quint8"
    case .qint32: "qint32"
    case .bfloat16: "bfloat16"
    case .qint16: "qint16"
    case .quint16: "quint16"
    case .uint16: "uint16"
    case .complex128: "complex128"
    case .float16: "float16"
    case .resource: "resource"
    case .variant: "variant"
    case .uint32: "uint32"
    case .uint64: "uint64"
    case .float8E5M2: "float8_e5m2"
    case .float8E4M3FN: "float8_e4m3fn"
    case .float8E4M3FNUZ: "float8_e4m3fnuz"
    case .float8E4M3B11FNUZ: "float8_e4m3b11fnuz"
    case .float8E5M2FNUZ: "float8_e5m2fnuz"
    case .int4: "int4"
    case .uint4: "uint4"
    case .int2: "int2"
    case .uint2: "uint2"
    case .float4E2M1FN: "float4_e2m1fn"
    }
  }
}

extension DType: CustomStringConvertible {
  /// The same as ``name``.
  public var description: String { name }
}

extension DType {
  /// The integer types narrower than 32 bits (uint8, int8, uint16, int16), whose tensors tfmp
  /// holds as int32 elements, as it holds float16 and bfloat16 ones as float32: the values of
  /// this type's range, or `nil` for another type.
  public var smallIntegerRange: ClosedRange<Int64>? {
    switch self {
    case .uint8: 0...255
    case .int8: -128...127
    case .uint16: 0...65535
    case .int16: -32768...32767
    default: nil
    }
  }

  /// `value` in this small integer type's range, wrapped modulo its size as a C conversion to
  /// the type wraps (TensorFlow's casts and integer arithmetic do); `value` itself for another
  /// type, truncated to 32 bits.
  public func wrapping(_ value: Int64) -> Int32 {
    guard let range = smallIntegerRange else { return Int32(truncatingIfNeeded: value) }
    let size = range.upperBound - range.lowerBound + 1
    let offset = (value - range.lowerBound) % size
    return Int32(range.lowerBound + (offset < 0 ? offset + size : offset))
  }
}
