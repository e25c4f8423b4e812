package import TensorCore
internal import TFProtos

/// The changes a conversion makes to a SavedModel outside its graph: the checkpoint tensors
/// stored in a reduced type and the object graph's records of dtypes.
extension SavedModel {
  /// Stores the float32 checkpoint tensors `keys` in `precision` when the model is written, and
  /// gives the object graph's variables saved under them (and their distributed components)
  /// that dtype.
  ///
  /// - Throws: ``ModelFormatError`` when the checkpoint's object graph cannot be read.
  package mutating func storeReduced(_ keys: Set<String>, in precision: ReducedPrecision) throws {
    guard let checkpoint, !keys.isEmpty else { return }
    for key in keys { checkpointConversions[key] = precision }
    // A TF1 SavedModel has no object graph, and must not gain an empty one: TensorFlow's TF2
    // loader would then take it for a TF2 model.
    guard proto.metaGraphs[0].hasObjectGraphDef else { return }
    let target = precision.dtype.protoType
    let nodes = try checkpointKeysByNode(checkpoint).filter { keys.contains($0.value) }.keys
    updateObjectGraph { objectGraph in
      for node in nodes {
        guard node < objectGraph.nodes.count,
          case .variable(var variable)? = objectGraph.nodes[node].kind
        else { continue }
        variable.dtype = target
        for component in variable.experimentalDistributedVariableComponents.indices {
          variable.experimentalDistributedVariableComponents[component].dtype = target
        }
        objectGraph.nodes[node].variable = variable
      }
    }
  }

  /// Gives `dtype` to the float32 TensorSpecs of concrete function `function` in the object
  /// graph that are named in `inputs` (its input signature) or `outputs` (its output signature),
  /// or that stand under such a dictionary key: the TF2 loader checks calls against them.
  package mutating func retypeConcreteFunction(
    _ function: String, inputs: Set<String>, outputs: Set<String>, to dtype: DType
  ) {
    guard var concrete = proto.metaGraphs[0].objectGraphDef.concreteFunctions[function] else {
      return
    }
    Self.retype(&concrete.canonicalizedInputSignature, names: inputs, key: nil, dtype.protoType)
    Self.retype(&concrete.outputSignature, names: outputs, key: nil, dtype.protoType)
    updateObjectGraph { $0.concreteFunctions[function] = concrete }
  }

  private static func retype(
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

extension DType {
  /// The protobuf enum value of this dtype.
  fileprivate var protoType: Tensorflow_DataType {
    Tensorflow_DataType(rawValue: rawValue) ?? .dtInvalid
  }
}
