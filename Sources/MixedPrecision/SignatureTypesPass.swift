internal import ModelFormats
internal import TFProtos
internal import TensorCore

/// Gives serving signatures reduced-precision float inputs and outputs (`--no-keep-io-types`).
///
/// For each signature, the float32 `Placeholder`s it feeds and the outputs it fetches change type
/// together with everything that records it: the SignatureDef, the top-level call's `Tin` and
/// `Tout`, the called signature function's argument and result types (its body casts at the
/// boundary, so the functions it calls are unchanged), and the object graph's TensorSpecs for that
/// function, which the TF2 loader checks calls against.
struct SignatureTypesPass {
  let precision: ReducedPrecision

  /// Where a signature's tensor meets a call: call node, argument or result position, and name.
  private struct Crossing: Hashable {
    var call: Int
    var position: Int
    var name: String
  }

  func apply(to metaGraph: inout Tensorflow_MetaGraphDef, modelPath: String) throws {
    let target: Tensorflow_DataType = precision == .float16 ? .dtHalf : .dtBfloat16
    var graph = GraphBody(
      name: "<graph>", syntax: .graph, nodes: metaGraph.graphDef.node, sinks: [:])
    var inputs = Set<Crossing>()
    var outputs = Set<Crossing>()
    var placeholders = Set<Int>()
    func refuse(_ message: String) -> ModelFormatError {
      ModelFormatError(
        code: .unsupported, path: modelPath, location: "--no-keep-io-types",
        message: message + " Convert with the default --keep-io-types instead.")
    }
    for (key, signature) in metaGraph.signatureDef where key != "__saved_model_init_op" {
      for (name, info) in signature.inputs where info.dtype == .dtFloat {
        guard case .name(let tensor)? = info.encoding,
          case .output(let node, _, _)? = graph.source(of: tensor),
          graph.nodes[node].op == "Placeholder"
        else { throw refuse("Signature '\(key)' input '\(name)' is not a Placeholder.") }
        placeholders.insert(node)
        for consumer in graph.consumers[node] {
          guard Self.isCall(graph.nodes[consumer.node]) else {
            throw refuse(
              "Signature '\(key)' input '\(name)' feeds \(graph.nodes[consumer.node].op) "
                + "'\(graph.nodes[consumer.node].name)' directly; tfmp changes the input types of "
                + "signatures that call a function (TF2 exports).")
          }
          inputs.insert(Crossing(call: consumer.node, position: consumer.position, name: name))
        }
      }
      for (name, info) in signature.outputs where info.dtype == .dtFloat {
        guard case .name(let tensor)? = info.encoding,
          case .output(let node, _, let index)? = graph.source(of: tensor),
          Self.isCall(graph.nodes[node])
        else {
          throw refuse("Signature '\(key)' output '\(name)' is not the result of a function call.")
        }
        outputs.insert(Crossing(call: node, position: index, name: name))
      }
    }

    var functionIndex: [String: Int] = [:]
    for (index, function) in metaGraph.graphDef.library.function.enumerated() {
      functionIndex[function.signature.name] = index
    }
    let calls = Set(inputs.map(\.call)).union(outputs.map(\.call))
    for call in calls.sorted() {
      guard case .func(let callee)? = graph.nodes[call].attr["f"]?.value,
        let index = functionIndex[callee.name]
      else { continue }
      let sharing = graph.nodes.indices.filter { other in
        other != call && Self.isCall(graph.nodes[other])
          && {
            if case .func(let f)? = graph.nodes[other].attr["f"]?.value {
              f.name == callee.name
            } else {
              false
            }
          }()
      }
      guard sharing.isEmpty else {
        throw refuse(
          "Function '\(callee.name)' serves several calls; their types cannot change alone.")
      }
      var function = metaGraph.graphDef.library.function[index]
      var body = GraphBody(
        name: callee.name, syntax: .function, nodes: function.nodeDef, sinks: function.ret)
      let argumentNames = Set(function.signature.inputArg.map(\.name))
      for crossing in inputs where crossing.call == call {
        graph.nodes[call].setType("Tin", target, listIndex: crossing.position)
        let argument = function.signature.inputArg[crossing.position].name
        function.signature.inputArg[crossing.position].type = target
        let cast = Tensorflow_NodeDef.cast(
          name: body.uniqueName("\(argument)/tfmp_cast_to_float32", avoiding: argumentNames),
          input: argument, from: target, to: .dtFloat)
        let reference = body.singleOutputReference(nodeName: cast.name, argument: "y")
        for node in body.nodes.indices {
          for slot in body.nodes[node].input.indices where body.nodes[node].input[slot] == argument
          {
            body.nodes[node].input[slot] = reference
          }
        }
        for (key, value) in body.sinks where value == argument { body.sinks[key] = reference }
        body.append(cast)
      }
      for crossing in outputs where crossing.call == call {
        graph.nodes[call].setType("Tout", target, listIndex: crossing.position)
        let result = function.signature.outputArg[crossing.position].name
        function.signature.outputArg[crossing.position].type = target
        guard let value = body.sinks[result] else { continue }
        let cast = Tensorflow_NodeDef.cast(
          name: body.uniqueName(
            "\(result)/tfmp_cast_to_\(precision.rawValue)", avoiding: argumentNames),
          input: value, from: .dtFloat, to: target)
        body.sinks[result] = body.singleOutputReference(nodeName: cast.name, argument: "y")
        body.append(cast)
      }
      function.nodeDef = body.nodes
      function.ret = body.sinks
      metaGraph.graphDef.library.function[index] = function
      if var concrete = metaGraph.objectGraphDef.concreteFunctions[callee.name] {
        let inputNames = Set(inputs.filter { $0.call == call }.map(\.name))
        let outputNames = Set(outputs.filter { $0.call == call }.map(\.name))
        retype(&concrete.canonicalizedInputSignature, names: inputNames, key: nil, target)
        retype(&concrete.outputSignature, names: outputNames, key: nil, target)
        metaGraph.objectGraphDef.concreteFunctions[callee.name] = concrete
      }
    }
    for node in placeholders { graph.nodes[node].setType("dtype", target) }
    metaGraph.graphDef.node = graph.nodes
    for key in metaGraph.signatureDef.keys where key != "__saved_model_init_op" {
      for (name, info) in metaGraph.signatureDef[key]?.inputs ?? [:] where info.dtype == .dtFloat {
        metaGraph.signatureDef[key]?.inputs[name]?.dtype = target
      }
      for (name, info) in metaGraph.signatureDef[key]?.outputs ?? [:] where info.dtype == .dtFloat {
        metaGraph.signatureDef[key]?.outputs[name]?.dtype = target
      }
    }
  }

  private static func isCall(_ node: Tensorflow_NodeDef) -> Bool {
    node.op == "StatefulPartitionedCall" || node.op == "PartitionedCall"
  }

  /// Sets the dtype of float TensorSpecs named in `names` (or under a dict key in `names`).
  private func retype(
    _ value: inout Tensorflow_StructuredValue, names: Set<String>, key: String?,
    _ target: Tensorflow_DataType
  ) {
    switch value.kind {
    case .tensorSpecValue(var spec)?:
      if spec.dtype == .dtFloat && (names.contains(spec.name) || key.map(names.contains) == true) {
        spec.dtype = target
        value.tensorSpecValue = spec
      }
    case .tupleValue(var tuple)?:
      for index in tuple.values.indices {
        retype(&tuple.values[index], names: names, key: nil, target)
      }
      value.tupleValue = tuple
    case .listValue(var list)?:
      for index in list.values.indices {
        retype(&list.values[index], names: names, key: nil, target)
      }
      value.listValue = list
    case .dictValue(var dictionary)?:
      for field in dictionary.fields.keys {
        if var inner = dictionary.fields[field] {
          retype(&inner, names: names, key: field, target)
          dictionary.fields[field] = inner
        }
      }
      value.dictValue = dictionary
    default:
      break
    }
  }
}
