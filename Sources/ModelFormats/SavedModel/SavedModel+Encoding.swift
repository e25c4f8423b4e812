internal import Foundation
internal import SwiftProtobuf
internal import TFProtos

/// Serializes a SavedModel without swift-protobuf's cost of recomputing nested message sizes at
/// every level (which grows with nesting depth, about ten levels down to attribute shapes).
///
/// The outer messages (SavedModel, MetaGraphDef, GraphDef, FunctionDefLibrary, FunctionDef) are
/// written here: each with its large repeated field cleared and serialized as usual, then that
/// field's elements (each serialized alone) appended as length-delimited fields. Protobuf
/// parsers accept fields in any order, so the result decodes to the same message.
enum SavedModelEncoding {
  static func encode(_ model: Tensorflow_SavedModel) throws -> Data {
    var outer = model
    outer.metaGraphs = []
    var data = try serialize(outer)
    for metaGraph in model.metaGraphs {
      append(field: 2, try encode(metaGraph), to: &data)
    }
    return data
  }

  private static func encode(_ metaGraph: Tensorflow_MetaGraphDef) throws -> Data {
    var outer = metaGraph
    outer.clearGraphDef()
    var data = try serialize(outer)
    if metaGraph.hasGraphDef {
      append(field: 2, try encode(metaGraph.graphDef), to: &data)
    }
    return data
  }

  static func encode(_ graph: Tensorflow_GraphDef) throws -> Data {
    var outer = graph
    outer.node = []
    outer.clearLibrary()
    var data = try serialize(outer)
    for node in graph.node { append(field: 1, try serialize(node), to: &data) }
    if graph.hasLibrary {
      var library = graph.library
      library.function = []
      var libraryData = try serialize(library)
      for function in graph.library.function {
        var functionOuter = function
        functionOuter.nodeDef = []
        var functionData = try serialize(functionOuter)
        for node in function.nodeDef { append(field: 3, try serialize(node), to: &functionData) }
        append(field: 1, functionData, to: &libraryData)
      }
      append(field: 2, libraryData, to: &data)
    }
    return data
  }

  private static func serialize<M: Message>(_ message: M) throws -> Data {
    var options = BinaryEncodingOptions()
    options.useDeterministicOrdering = true
    return try message.serializedBytes(options: options)
  }

  /// Appends `bytes` as length-delimited field `field` (wire type 2).
  private static func append(field: Int, _ bytes: Data, to data: inout Data) {
    var prefix: [UInt8] = []
    prefix.appendVarint(UInt64(field << 3 | 2))
    prefix.appendVarint(UInt64(bytes.count))
    data.append(contentsOf: prefix)
    data.append(bytes)
  }
}
