public import Foundation
public import TensorCore

/// The value of a node attribute, as TensorFlow's `AttrValue` holds it.
///
/// Decoded once, when a model is read; kernels and passes read these values and never the
/// file's protobuf. A value whose kind or type tfmp does not model is ``unsupported``: the node
/// keeps the file's original, and a kernel that needs it reports it.
public indirect enum AttrValue: Hashable, Sendable {
  /// Bytes, usually UTF-8 text (`padding`, `data_format`, an einsum `equation`).
  case bytes(Data)
  case int(Int64)
  case float(Float)
  case bool(Bool)
  /// A dtype (`T`, `DstT`).
  case type(DType)
  case shape(ShapeValue)
  case tensor(TensorLiteral)
  case list(AttrList)
  /// A function and the attributes it is instantiated with (`f`, `body`, `then_branch`).
  case function(FunctionReference)
  /// A placeholder inside a function definition, filled in when the function is instantiated.
  case placeholder(String)
  /// A value tfmp does not model (an empty oneof, or a dtype number tfmp does not know); the
  /// payload says what it was.
  case unsupported(String)

  /// The bytes as UTF-8 text, for ``bytes``.
  public var text: String? {
    if case .bytes(let data) = self { return String(decoding: data, as: UTF8.self) }
    return nil
  }
}

/// A shape attribute or a tensor's shape: dimensions with -1 for unknown, or an unknown rank.
public struct ShapeValue: Hashable, Sendable {
  /// The dimensions; -1 marks an unknown one. Empty for a scalar or an unknown rank.
  public var dimensions: [Int64]
  /// Whether even the rank is unknown.
  public var unknownRank: Bool

  /// A shape with these dimensions (-1 for unknown ones), or of unknown rank.
  public init(dimensions: [Int64], unknownRank: Bool = false) {
    self.dimensions = dimensions
    self.unknownRank = unknownRank
  }
}

/// A list attribute: TensorFlow allows one kind of element per list, kept in its own array.
public struct AttrList: Hashable, Sendable {
  /// Byte strings.
  public var bytes: [Data] = []
  /// Integers.
  public var ints: [Int64] = []
  /// Floats.
  public var floats: [Float] = []
  /// Booleans.
  public var bools: [Bool] = []
  /// Dtypes; a number tfmp does not know makes the whole attribute ``AttrValue/unsupported(_:)``.
  public var types: [DType] = []
  /// Shapes.
  public var shapes: [ShapeValue] = []
  /// Tensors.
  public var tensors: [TensorLiteral] = []
  /// Functions.
  public var functions: [FunctionReference] = []

  /// An empty list.
  public init() {}
}

/// A function named by an attribute, with the attributes it is instantiated with.
public struct FunctionReference: Hashable, Sendable {
  /// The function's name in the library.
  public var name: String
  /// The attributes it is instantiated with.
  public var attributes: [String: AttrValue]

  /// A reference to function `name`.
  public init(name: String, attributes: [String: AttrValue] = [:]) {
    self.name = name
    self.attributes = attributes
  }
}

/// A tensor stored in a graph (a `Const` node's `value`), as TensorFlow's `TensorProto` stores
/// it: either raw little-endian bytes, or typed value lists whose last value repeats to fill the
/// shape (TensorFlow's splat rule).
public struct TensorLiteral: Hashable, Sendable {
  /// The element type.
  public var dtype: DType
  /// The shape.
  public var shape: ShapeValue
  /// Little-endian element bytes (`tensor_content`); empty when the value lists are used.
  public var content: Data = Data()
  /// `float_val`: float32 values.
  public var floatValues: [Float] = []
  /// `double_val`: float64 values.
  public var doubleValues: [Double] = []
  /// `int_val`: int32, int16, int8, uint8 and uint16 values.
  public var intValues: [Int32] = []
  /// `int64_val`: int64 values.
  public var int64Values: [Int64] = []
  /// `bool_val`: bool values.
  public var boolValues: [Bool] = []
  /// `half_val`: float16 and bfloat16 bit patterns.
  public var halfValues: [Int32] = []
  /// `string_val`: byte strings.
  public var stringValues: [Data] = []

  /// A literal of `dtype` and `shape` with no values yet.
  public init(dtype: DType, shape: ShapeValue) {
    self.dtype = dtype
    self.shape = shape
  }
}

extension TensorLiteral {
  /// The number of elements the shape holds; `nil` for an unknown or negative dimension, an
  /// unknown rank, or a product that overflows.
  public var elementCount: Int? {
    guard !shape.unknownRank else { return nil }
    var count = 1
    for dimension in shape.dimensions {
      guard dimension >= 0, dimension <= Int64(Int.max) else { return nil }
      let (product, overflow) = count.multipliedReportingOverflow(by: Int(dimension))
      guard !overflow else { return nil }
      count = product
    }
    return count
  }
}
