internal import Foundation
internal import GraphIR
internal import TFProtos

/// Function bodies and graphs between TensorFlow's protobuf and GraphIR, losslessly.
///
/// Each node and function keeps its protobuf with what was decoded from it (``NodeRecord``,
/// ``FunctionRecord``); encoding starts from that record and re-encodes only the fields whose
/// GraphIR value differs from what was decoded, so an untouched body encodes to the same bytes
/// and fields tfmp does not model survive.
enum GraphCoding {
  /// A node as read: its protobuf and the GraphIR fields decoded from it.
  struct NodeRecord: Sendable {
    var proto: Tensorflow_NodeDef
    var inputs: [Input]
    var controlInputs: [Input]
    var attributes: [String: AttrValue]
  }

  /// A function as read: its protobuf without its nodes, and its decoded interface.
  struct FunctionRecord: Sendable {
    var proto: Tensorflow_FunctionDef
    var arguments: [Function.Argument]
    var results: [Function.Result]
    var controlResults: [Function.Result]
  }

  /// The body of `nodes` in `syntax`, with `arguments` and its results given as references.
  ///
  /// - Throws: ``GraphError`` (code `malformedReference`) for an input that cannot be parsed,
  ///   placed at its function and node.
  static func decode(
    name: String, syntax: ReferenceSyntax, nodes protos: [Tensorflow_NodeDef],
    arguments: [Function.Argument] = []
  ) throws(GraphError) -> Function {
    // Names first, so that references resolve whatever the node order.
    var function = Function(
      name: name, syntax: syntax, arguments: arguments,
      nodes: protos.map { Node(name: $0.name, op: $0.op) })
    for (index, proto) in protos.enumerated() {
      var node = Node(name: proto.name, op: proto.op, device: proto.device)
      for text in proto.input {
        let reference: TensorReference
        do {
          reference = try TensorReference(parsing: text, syntax: syntax)
        } catch {
          throw error.placed(function: name, location: "node '\(proto.name)'")
        }
        if reference.isControl {
          node.controlInputs.append(function.resolve(reference))
        } else {
          node.inputs.append(function.resolve(reference))
        }
      }
      node.attributes = proto.attr.mapValues(AttrValueCoding.decode)
      node.original = Preserved(
        NodeRecord(
          proto: proto, inputs: node.inputs, controlInputs: node.controlInputs,
          attributes: node.attributes))
      function[NodeID(index)] = node
    }
    return function
  }

  /// The protobuf of every node of `function`.
  static func encodeNodes(of function: Function) -> [Tensorflow_NodeDef] {
    function.nodes.map { encode($0, in: function) }
  }

  static func encode(_ node: Node, in function: Function) -> Tensorflow_NodeDef {
    guard let record = node.original?.value as? NodeRecord else {
      var proto = Tensorflow_NodeDef()
      proto.name = node.name
      proto.op = node.op
      proto.device = node.device
      proto.input = inputTexts(node, in: function)
      proto.attr = node.attributes.mapValues(AttrValueCoding.encode)
      return proto
    }
    var proto = record.proto
    if proto.name != node.name { proto.name = node.name }
    if proto.op != node.op { proto.op = node.op }
    if proto.device != node.device { proto.device = node.device }
    if node.inputs != record.inputs || node.controlInputs != record.controlInputs {
      proto.input = inputTexts(node, in: function)
    }
    if node.attributes != record.attributes {
      var attributes: [String: Tensorflow_AttrValue] = [:]
      for (name, value) in node.attributes {
        if let original = proto.attr[name], record.attributes[name] == value {
          attributes[name] = original
        } else {
          attributes[name] = AttrValueCoding.encode(value)
        }
      }
      proto.attr = attributes
    }
    return proto
  }

  private static func inputTexts(_ node: Node, in function: Function) -> [String] {
    node.inputs.map { function.reference(to: $0).text(in: function.syntax) }
      + node.controlInputs.map {
        function.reference(to: $0, control: true).text(in: function.syntax)
      }
  }

  /// A library function.
  ///
  /// - Throws: ``GraphError`` for a reference that cannot be parsed.
  static func decode(_ proto: Tensorflow_FunctionDef) throws(GraphError) -> Function {
    let name = proto.signature.name
    let arguments = proto.signature.inputArg.map { argument in
      Function.Argument(
        name: argument.name,
        dtype: argument.typeAttr.isEmpty ? AttrValueCoding.dtype(argument.type) : nil,
        handleDTypes: argument.handleData.map { AttrValueCoding.dtype($0.dtype) })
    }
    var function = try decode(
      name: name, syntax: .function, nodes: proto.nodeDef, arguments: arguments)
    func source(_ text: String?, for result: String) throws(GraphError) -> Input {
      guard let text else { return .unresolved(TensorReference(name: "")) }
      do {
        return function.resolve(try TensorReference(parsing: text, syntax: .function))
      } catch {
        throw error.placed(function: name, location: "result '\(result)'")
      }
    }
    for argument in proto.signature.outputArg {
      function.results.append(
        Function.Result(
          name: argument.name, source: try source(proto.ret[argument.name], for: argument.name),
          dtype: argument.typeAttr.isEmpty ? AttrValueCoding.dtype(argument.type) : nil))
    }
    for (result, node) in proto.controlRet.sorted(by: { $0.key < $1.key }) {
      function.controlResults.append(
        Function.Result(
          name: result, source: function.resolve(TensorReference(name: node, isControl: true))))
    }
    var record = proto
    record.nodeDef = []
    function.original = Preserved(
      FunctionRecord(
        proto: record, arguments: function.arguments, results: function.results,
        controlResults: function.controlResults))
    return function
  }

  static func encode(_ function: Function) -> Tensorflow_FunctionDef {
    var proto: Tensorflow_FunctionDef
    let record = function.original?.value as? FunctionRecord
    if let record {
      proto = record.proto
    } else {
      proto = Tensorflow_FunctionDef()
    }
    proto.signature.name = function.name
    if record?.arguments != function.arguments {
      proto.signature.inputArg = function.arguments.enumerated().map { position, argument in
        var definition =
          position < proto.signature.inputArg.count ? proto.signature.inputArg[position] : .init()
        definition.name = argument.name
        if let dtype = argument.dtype { definition.type = AttrValueCoding.encode(dtype) }
        for (index, dtype) in argument.handleDTypes.enumerated()
        where index < definition.handleData.count {
          if let dtype { definition.handleData[index].dtype = AttrValueCoding.encode(dtype) }
        }
        return definition
      }
    }
    if record?.results != function.results {
      proto.signature.outputArg = function.results.enumerated().map { position, result in
        var definition =
          position < proto.signature.outputArg.count ? proto.signature.outputArg[position] : .init()
        definition.name = result.name
        if let dtype = result.dtype { definition.type = AttrValueCoding.encode(dtype) }
        return definition
      }
      proto.ret = Dictionary(
        function.results.map { ($0.name, function.reference(to: $0.source).text(in: .function)) },
        uniquingKeysWith: { first, _ in first })
    }
    if record?.controlResults != function.controlResults {
      proto.controlRet = Dictionary(
        function.controlResults.map { ($0.name, function.reference(to: $0.source).name) },
        uniquingKeysWith: { first, _ in first })
    }
    proto.nodeDef = encodeNodes(of: function)
    return proto
  }

  /// The graph and library of `graph` as a module (no signatures, no variables).
  ///
  /// - Throws: ``ModelFormatError`` (code `malformed`, at `path`) for a reference that cannot
  ///   be parsed.
  static func module(of graph: Tensorflow_GraphDef, path: String) throws -> Module {
    do {
      let top = try decode(name: Function.graphName, syntax: .graph, nodes: graph.node)
      var functions: [Function] = []
      functions.reserveCapacity(graph.library.function.count)
      for function in graph.library.function { functions.append(try decode(function)) }
      return Module(graph: top, functions: functions)
    } catch {
      throw formatError(error, path: path)
    }
  }

  /// Puts the module's graph and library into `graph` (its other fields stay).
  static func encode(_ module: Module, into graph: inout Tensorflow_GraphDef) {
    graph.node = encodeNodes(of: module.graph)
    // Setting a field of an absent library would add an empty one.
    if graph.hasLibrary || !module.functions.isEmpty {
      graph.library.function = module.functions.map(encode)
    }
  }

  /// A graph error in the model file at `path`.
  static func formatError(_ error: GraphError, path: String) -> ModelFormatError {
    ModelFormatError(
      code: .malformed, path: path,
      location: error.function + (error.location.isEmpty ? "" : ", \(error.location)"),
      message: error.message + " The graph is corrupt; re-export the model.")
  }
}
