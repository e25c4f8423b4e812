public import GraphIR
internal import Foundation
internal import TFProtos
internal import Synchronization

extension SavedModel {
  /// The model's first MetaGraph as a GraphIR module: its top-level graph, library, signatures
  /// and the checkpoint key of each variable.
  ///
  /// - Throws: ``ModelFormatError`` (code `malformed`) when a tensor reference in the graph
  ///   cannot be parsed; the message names the function and node.
  public func module() throws -> Module {
    if let module = decodedModule.value.withLock({ $0 }) { return module }
    let metaGraph = proto.metaGraphs[0]
    let graphPath = (directory as NSString).appendingPathComponent(Self.graphFileName)
    var module = try GraphCoding.module(of: metaGraph.graphDef, path: graphPath)
    do {
      module.signatures = try Self.signatures(metaGraph, graph: module.graph)
    } catch {
      throw GraphCoding.formatError(error, path: graphPath)
    }
    module.variables = Self.variables(metaGraph, module: module)
    decodedModule.value.withLock { $0 = module }
    return module
  }

  /// This model with its first MetaGraph's graph, library and signatures taken from `module`
  /// (everything else, the checkpoint included, as it is). Its ``module()`` is `module` with
  /// the signatures and variables read back, not decoded again (a conversion is run in memory
  /// right away; what is written is read back from the file and checked there).
  public func replacing(_ module: Module) -> SavedModel {
    var model = self
    var metaGraph = model.proto.metaGraphs[0]
    GraphCoding.encode(module, into: &metaGraph.graphDef)
    for (key, signature) in module.signatures {
      guard var definition = metaGraph.signatureDef[key] else { continue }
      for endpoint in signature.inputs {
        Self.update(&definition.inputs[endpoint.name], endpoint, graph: module.graph)
      }
      for endpoint in signature.outputs {
        Self.update(&definition.outputs[endpoint.name], endpoint, graph: module.graph)
      }
      metaGraph.signatureDef[key] = definition
    }
    model.proto.metaGraphs[0] = metaGraph
    if let signatures = try? Self.signatures(metaGraph, graph: module.graph) {
      var decoded = module
      decoded.signatures = signatures
      decoded.variables = Self.variables(metaGraph, module: decoded)
      model.decodedModule.value.withLock { $0 = decoded }
    }
    return model
  }

  /// Sets a signature entry's tensor name and dtype from `endpoint` where they differ (a
  /// renamed output, a reduced-precision input).
  private static func update(
    _ info: inout Tensorflow_TensorInfo?, _ endpoint: Signature.Endpoint, graph: Function
  ) {
    guard var entry = info else { return }
    if case .name(let name)? = entry.encoding,
      (try? graph.resolve(TensorReference(parsing: name, syntax: .graph))) != endpoint.source
    {
      let reference = graph.reference(to: endpoint.source)
      entry.name = "\(reference.name):\(reference.index)"
    }
    if let dtype = endpoint.dtype, AttrValueCoding.dtype(entry.dtype) != dtype {
      entry.dtype = AttrValueCoding.encode(dtype)
    }
    info = entry
  }

  private static func signatures(_ metaGraph: Tensorflow_MetaGraphDef, graph: Function)
    throws(GraphError) -> [String: Signature]
  {
    var signatures: [String: Signature] = [:]
    for (key, definition) in metaGraph.signatureDef {
      func endpoints(_ entries: [String: Tensorflow_TensorInfo]) throws(GraphError) -> [Signature
        .Endpoint]
      {
        var endpoints: [Signature.Endpoint] = []
        for (name, info) in entries {
          var source = Input.unresolved(TensorReference(name: name))
          if case .name(let text)? = info.encoding {
            do {
              source = graph.resolve(try TensorReference(parsing: text, syntax: .graph))
            } catch {
              throw error.placed(function: "signature '\(key)'", location: "tensor '\(name)'")
            }
          }
          endpoints.append(
            Signature.Endpoint(
              name: name, source: source, dtype: AttrValueCoding.dtype(info.dtype),
              shape: AttrValueCoding.decode(info.tensorShape)))
        }
        return endpoints
      }
      signatures[key] = Signature(
        key: key, inputs: try endpoints(definition.inputs),
        outputs: try endpoints(definition.outputs))
    }
    // A TF1 export names its init op (which fills lookup tables) in a collection instead, and
    // TensorFlow's loader runs it as it runs the signature's: it is that pseudo-signature here
    // (which writing a model leaves out, as it has no signature definition).
    let collections = ["saved_model_main_op", "legacy_init_op"]
    if signatures[Signature.initOperationKey] == nil,
      let name = collections.lazy.compactMap({ metaGraph.collectionDef[$0]?.nodeList.value.first })
        .first
    {
      let source = graph.resolve(TensorReference(name: name))
      signatures[Signature.initOperationKey] = Signature(
        key: Signature.initOperationKey, inputs: [],
        outputs: [
          Signature.Endpoint(
            name: Signature.initOperationKey, source: source, dtype: nil,
            shape: ShapeValue(dimensions: [], unknownRank: true))
        ])
    }
    return signatures
  }

  /// The checkpoint key of each top-level variable: read off the save function its saver calls
  /// (TF2: the handle passed as argument j is read inside and saved under SaveV2's tensor name),
  /// else off the `SaveV2` nodes of the top-level graph (a TF1 `Saver`: the variable node or the
  /// handle a read reads).
  private static func variables(_ metaGraph: Tensorflow_MetaGraphDef, module: Module) -> [Variable]
  {
    guard
      let saveReference = try? TensorReference(
        parsing: metaGraph.saverDef.saveTensorName, syntax: .graph),
      let call = module.graph.id(of: saveReference.name)
    else { return [] }
    guard case .function(let callee)? = module.graph[call].attributes["f"],
      let save = module.function(named: callee.name)
    else {
      return SavedVariables.slots(in: module.graph).compactMap { slot in
        let read = module.graph[slot.read]
        let node = read.op == "ReadVariableOp" ? read.inputs.first?.node : slot.read
        return node.map { Variable(node: $0, checkpointKey: slot.key) }
      }
    }
    let callInputs = module.graph[call].inputs
    var variables: [Variable] = []
    for slot in SavedVariables.slots(in: save) {
      guard case .argument(let position)? = save[slot.read].inputs.first,
        position < callInputs.count,
        case .output(let handle, _) = callInputs[position]
      else { continue }
      variables.append(Variable(node: handle, checkpointKey: slot.key))
    }
    return variables
  }
}

/// A SavedModel's module, decoded once (see ``SavedModel/module()``).
final class DecodedModule: Sendable {
  let value = Mutex<Module?>(nil)
}
