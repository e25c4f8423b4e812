internal import GraphIR
internal import TensorCore
internal import ModelFormats
internal import Foundation

/// What the interpreter offers kernels that work on values: calling functions, variables.
protocol KernelHost: Sendable {
  /// Runs the function named by attribute `attribute` of the context's node on `inputs`.
  func call(_ attribute: String, of context: KernelContext, _ inputs: [Value]) throws -> [Value]
  /// The checkpoint key of the variable whose handle the context's node makes.
  func variableKey(of context: KernelContext) -> String?
  /// A variable's value.
  func variable(_ key: String) throws -> Tensor
  /// Gives a variable a new value, which later reads (in this run and later ones) see.
  func assign(_ key: String, _ value: Tensor) throws
  /// The lookup table `name`, made empty on first use with these types.
  func table(_ name: String, keyType: DType, valueType: DType) throws -> LookupTable
}

/// What a kernel sees of its node: the attributes, decoded once when the model was read and
/// completed with their defaults when the function was planned.
struct KernelContext {
  let node: Node
  /// The node's place in its function, and the function's name.
  var id = NodeID(0)
  var function = ""
  /// Set when input 1 is a weight, a value whose elements are the same on every run (a constant
  /// or a variable, perhaps reshaped): matrix products keep their packing of it here.
  var weightPacks: PackedWeights? = nil
  /// Set for value kernels (calls, loops, variables).
  var host: (any KernelHost)? = nil
  /// What the kernel may create; ``allocating(_:_:)`` checks a size against them.
  var limits = ResourceLimits.standard
  /// The calls the node's function is nested in (0 in a signature's graph).
  var depth = 0
  /// Whether the node runs in the model's init op, whose called functions run their control
  /// results too (the initializers of lookup tables).
  var initializing = false

  // Attributes, completed with their schema's defaults and checked when the function was
  // planned: a missing or mistyped one is an attribute the op's schema does not declare.

  private func attribute<T>(_ name: String, _ kind: String, _ read: (AttrValue) -> T?) throws -> T {
    guard let value = node.attributes[name].flatMap(read) else {
      throw KernelError(
        code: .malformedGraph, "The \(node.op) node has no \(kind) attribute '\(name)'.")
    }
    return value
  }

  func int(_ name: String) throws -> Int {
    try attribute(name, "int") { if case .int(let i) = $0 { Int(clamping: i) } else { nil } }
  }

  func float(_ name: String) throws -> Float {
    try attribute(name, "float") { if case .float(let f) = $0 { f } else { nil } }
  }

  func bool(_ name: String) throws -> Bool {
    try attribute(name, "bool") { if case .bool(let b) = $0 { b } else { nil } }
  }

  func string(_ name: String) throws -> String { try attribute(name, "string") { $0.text } }

  func ints(_ name: String) throws -> [Int] {
    try attribute(name, "list(int)") {
      if case .list(let list) = $0 { list.ints.map { Int(clamping: $0) } } else { nil }
    }
  }

  func strings(_ name: String) throws -> [String] {
    try attribute(name, "list(string)") {
      if case .list(let list) = $0 {
        list.bytes.map { String(decoding: $0, as: UTF8.self) }
      } else {
        nil
      }
    }
  }

  func floats(_ name: String) throws -> [Float] {
    try attribute(name, "list(float)") { if case .list(let list) = $0 { list.floats } else { nil } }
  }

  func type(_ name: String) throws -> DType {
    try attribute(name, "type") { if case .type(let type) = $0 { type } else { nil } }
  }

  func shape(_ name: String) throws -> ShapeValue {
    try attribute(name, "shape") { if case .shape(let shape) = $0 { shape } else { nil } }
  }

  /// `dimensions` as the shape of a `dtype` output the kernel is about to create, checked
  /// against ``limits``.
  ///
  /// - Throws: ``KernelError`` (`limitExceeded`) when the size is invalid or too large.
  func allocating(_ dimensions: [Int], _ dtype: DType) throws -> Shape {
    let shape = Shape(dimensions)
    if let problem = limits.problem(creating: shape, of: dtype) {
      throw KernelError(code: .limitExceeded, "The \(node.op) output: \(problem).")
    }
    return shape
  }

  /// The interpreter, for value kernels.
  func requireHost() throws -> any KernelHost {
    guard let host else { throw KernelError("The \(node.op) kernel needs the interpreter.") }
    return host
  }
}

extension Tensor {
  /// The float elements (float16 and bfloat16 tensors hold their values rounded), or a kernel
  /// error naming what was found.
  func requireFloats() throws -> [Float] {
    guard let values = floats, [.float32, .float16, .bfloat16].contains(dtype) else {
      throw KernelError("Expected a float tensor but got \(dtype).")
    }
    return values
  }

  func requireIntegers() throws -> [Int] {
    guard let values = integers else {
      throw KernelError("Expected an integer tensor but got \(dtype).")
    }
    return values
  }
}

/// Decodes stored tensors: checkpoint bytes and `Const` values. Float values come from
/// ModelFormats' `FloatValues`, the decoder inspection and conversion use.
enum TensorDecoding {
  /// The tensor types that hold their values as `Float`.
  private static let floatTypes: Set<DType> = [.float32, .float16, .bfloat16]

  /// A tensor from little-endian `bytes`, or `nil` for a dtype the runtime does not hold.
  static func tensor(_ bytes: UnsafeRawBufferPointer, dtype: DType, shape: Shape) -> Tensor? {
    guard let count = shape.elementCount, let size = dtype.byteSize, bytes.count == count * size
    else { return nil }
    func load<T: FixedWidthInteger>(_: T.Type) -> [T] {
      (0..<count).map {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self))
      }
    }
    if dtype == .float16 {
      return Tensor(shape: shape, float16Bits: load(UInt16.self))
    }
    if floatTypes.contains(dtype), let values = FloatValues.decode(bytes, dtype: dtype) {
      return Tensor(dtype: dtype, shape: shape, storage: .float(values.allValues))
    }
    switch dtype {
    case .float64:
      return Tensor(
        dtype: .float64, shape: shape,
        storage: .double(load(UInt64.self).map(Double.init(bitPattern:))))
    case .int32: return Tensor(dtype: .int32, shape: shape, storage: .int32(load(Int32.self)))
    case .int64: return Tensor(dtype: .int64, shape: shape, storage: .int64(load(Int64.self)))
    case .bool:
      return Tensor(dtype: .bool, shape: shape, storage: .bool(load(UInt8.self).map { $0 != 0 }))
    case .uint8:
      return Tensor(dtype: dtype, shape: shape, storage: .int32(load(UInt8.self).map(Int32.init)))
    case .int8:
      return Tensor(dtype: dtype, shape: shape, storage: .int32(load(Int8.self).map(Int32.init)))
    case .uint16:
      return Tensor(dtype: dtype, shape: shape, storage: .int32(load(UInt16.self).map(Int32.init)))
    case .int16:
      return Tensor(dtype: dtype, shape: shape, storage: .int32(load(Int16.self).map(Int32.init)))
    default: return nil
    }
  }

  /// The value of a `Const` node (TensorFlow's splat rule: missing values repeat the last),
  /// no larger than `limits` allow.
  static func constant(_ node: Node, limits: ResourceLimits) throws -> Tensor {
    guard case .tensor(let literal)? = node.attributes["value"] else {
      throw KernelError("The constant has no value tfmp can read.")
    }
    let dtype = literal.dtype
    if let problem = limits.problem(
      creating: Shape(literal.shape.dimensions.map { Int(clamping: $0) }), of: dtype)
    {
      throw KernelError(code: .limitExceeded, "The constant: \(problem).")
    }
    guard let count = literal.elementCount else {
      throw KernelError("The constant's shape \(literal.shape.dimensions) is invalid.")
    }
    let shape = Shape(literal.shape.dimensions.map { Int($0) })
    if !literal.content.isEmpty {
      guard let tensor = literal.content.withUnsafeBytes({ tensor($0, dtype: dtype, shape: shape) })
      else {
        throw KernelError("The \(dtype) constant cannot be decoded by tfmp yet.")
      }
      return tensor
    }
    func splat<T>(_ values: [T], zero: T) -> [T] {
      guard count > 0 else { return [] }
      return (0..<count).map { $0 < values.count ? values[$0] : values.last ?? zero }
    }
    if floatTypes.contains(dtype) {
      guard let values = FloatValues.decode(literal) else {
        throw KernelError("The \(dtype) constant is inconsistent.")
      }
      return Tensor(dtype: dtype, shape: shape, storage: .float(values.allValues))
    }
    switch dtype {
    case .float64:
      return Tensor(
        dtype: .float64, shape: shape, storage: .double(splat(literal.doubleValues, zero: 0)))
    case .int32:
      return Tensor(dtype: .int32, shape: shape, storage: .int32(splat(literal.intValues, zero: 0)))
    case _ where dtype.smallIntegerRange != nil:
      // Small integer types keep their values in the proto's int_val, as int32 does.
      return Tensor(
        dtype: dtype, shape: shape,
        storage: .int32(splat(literal.intValues, zero: 0).map { dtype.wrapping(Int64($0)) }))
    case .int64:
      return Tensor(
        dtype: .int64, shape: shape, storage: .int64(splat(literal.int64Values, zero: 0)))
    case .bool:
      return Tensor(
        dtype: .bool, shape: shape, storage: .bool(splat(literal.boolValues, zero: false)))
    case .string:
      return Tensor(
        dtype: .string, shape: shape,
        storage: .string(splat(literal.stringValues.map { [UInt8]($0) }, zero: [])))
    default: throw KernelError("The \(dtype) constant cannot be decoded by tfmp yet.")
    }
  }
}
