internal import Foundation
internal import GraphIR
internal import TFProtos
internal import TensorCore

/// Attribute values between TensorFlow's protobuf and GraphIR.
enum AttrValueCoding {
  static func decode(_ proto: Tensorflow_AttrValue) -> AttrValue {
    switch proto.value {
    case .s(let bytes): return .bytes(bytes)
    case .i(let value): return .int(value)
    case .f(let value): return .float(value)
    case .b(let value): return .bool(value)
    case .type(let type):
      guard let dtype = dtype(type) else { return .unsupported("dtype number \(type.rawValue)") }
      return .type(dtype)
    case .shape(let shape): return .shape(decode(shape))
    case .tensor(let tensor):
      guard let literal = decode(tensor) else {
        return .unsupported("a tensor of dtype number \(tensor.dtype.rawValue)")
      }
      return .tensor(literal)
    case .list(let proto):
      var list = AttrList()
      list.bytes = proto.s
      list.ints = proto.i
      list.floats = proto.f
      list.bools = proto.b
      for type in proto.type {
        guard let dtype = dtype(type) else {
          return .unsupported("a list holding dtype number \(type.rawValue)")
        }
        list.types.append(dtype)
      }
      list.shapes = proto.shape.map(decode)
      for tensor in proto.tensor {
        guard let literal = decode(tensor) else {
          return .unsupported("a list holding a tensor of dtype number \(tensor.dtype.rawValue)")
        }
        list.tensors.append(literal)
      }
      list.functions = proto.func.map(decode)
      return .list(list)
    case .func(let function): return .function(decode(function))
    case .placeholder(let name): return .placeholder(name)
    case nil: return .unsupported("an empty attribute value")
    }
  }

  /// The protobuf of `value`.
  ///
  /// - Precondition: `value` is not ``AttrValue/unsupported(_:)`` (such values come only from
  ///   files, and a node keeps its original protobuf for them).
  static func encode(_ value: AttrValue) -> Tensorflow_AttrValue {
    var proto = Tensorflow_AttrValue()
    switch value {
    case .bytes(let bytes): proto.s = bytes
    case .int(let value): proto.i = value
    case .float(let value): proto.f = value
    case .bool(let value): proto.b = value
    case .type(let dtype): proto.type = encode(dtype)
    case .shape(let shape): proto.shape = encode(shape)
    case .tensor(let literal): proto.tensor = encode(literal)
    case .list(let list):
      var encoded = Tensorflow_AttrValue.ListValue()
      encoded.s = list.bytes
      encoded.i = list.ints
      encoded.f = list.floats
      encoded.b = list.bools
      encoded.type = list.types.map(encode)
      encoded.shape = list.shapes.map(encode)
      encoded.tensor = list.tensors.map(encode)
      encoded.func = list.functions.map(encode)
      proto.list = encoded
    case .function(let function): proto.func = encode(function)
    case .placeholder(let name): proto.placeholder = name
    case .unsupported(let what):
      preconditionFailure("an unsupported attribute value (\(what)) cannot be encoded")
    }
    return proto
  }

  static func dtype(_ type: Tensorflow_DataType) -> DType? { DType(rawValue: type.rawValue) }

  static func encode(_ dtype: DType) -> Tensorflow_DataType {
    Tensorflow_DataType(rawValue: dtype.rawValue) ?? .dtInvalid
  }

  static func decode(_ shape: Tensorflow_TensorShapeProto) -> ShapeValue {
    ShapeValue(dimensions: shape.dim.map(\.size), unknownRank: shape.unknownRank)
  }

  static func encode(_ shape: ShapeValue) -> Tensorflow_TensorShapeProto {
    var proto = Tensorflow_TensorShapeProto()
    proto.unknownRank = shape.unknownRank
    proto.dim = shape.dimensions.map { size in
      var dimension = Tensorflow_TensorShapeProto.Dim()
      dimension.size = size
      return dimension
    }
    return proto
  }

  static func decode(_ proto: Tensorflow_TensorProto) -> TensorLiteral? {
    guard let dtype = dtype(proto.dtype) else { return nil }
    var literal = TensorLiteral(dtype: dtype, shape: decode(proto.tensorShape))
    literal.content = proto.tensorContent
    literal.floatValues = proto.floatVal
    literal.doubleValues = proto.doubleVal
    literal.intValues = proto.intVal
    literal.int64Values = proto.int64Val
    literal.boolValues = proto.boolVal
    literal.halfValues = proto.halfVal
    literal.stringValues = proto.stringVal
    return literal
  }

  static func encode(_ literal: TensorLiteral) -> Tensorflow_TensorProto {
    var proto = Tensorflow_TensorProto()
    proto.dtype = encode(literal.dtype)
    proto.tensorShape = encode(literal.shape)
    proto.tensorContent = literal.content
    proto.floatVal = literal.floatValues
    proto.doubleVal = literal.doubleValues
    proto.intVal = literal.intValues
    proto.int64Val = literal.int64Values
    proto.boolVal = literal.boolValues
    proto.halfVal = literal.halfValues
    proto.stringVal = literal.stringValues
    return proto
  }

  static func decode(_ proto: Tensorflow_NameAttrList) -> FunctionReference {
    FunctionReference(name: proto.name, attributes: proto.attr.mapValues(decode))
  }

  static func encode(_ function: FunctionReference) -> Tensorflow_NameAttrList {
    var proto = Tensorflow_NameAttrList()
    proto.name = function.name
    proto.attr = function.attributes.mapValues(encode)
    return proto
  }
}
