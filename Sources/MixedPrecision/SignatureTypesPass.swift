internal import GraphIR
internal import ModelFormats
internal import TensorCore

/// Gives serving signatures reduced-precision float inputs and outputs (`--no-keep-io-types`).
///
/// For each signature, the float32 `Placeholder`s it feeds and the outputs it fetches change type
/// together with everything that records it: the signature, the top-level call's `Tin` and
/// `Tout`, the called signature function's argument and result types (its body casts at the
/// boundary, so the functions it calls are unchanged), and the object graph's TensorSpecs for that
/// function, which the TF2 loader checks calls against (returned, for the model to apply).
struct SignatureTypesPass {
  let precision: ReducedPrecision

  /// A signature function whose object-graph TensorSpecs take the reduced type: the names of
  /// its retyped inputs and outputs.
  struct Retyped {
    var function: String
    var inputs: Set<String>
    var outputs: Set<String>
  }

  /// Where a signature's tensor meets a call: call node, argument or result position, and name.
  private struct Crossing: Hashable {
    var call: NodeID
    var position: Int
    var name: String

    static func order(_ left: Crossing, _ right: Crossing) -> Bool {
      (left.call, left.position, left.name) < (right.call, right.position, right.name)
    }
  }

  /// Retypes the signatures of `module` (read from `modelPath`).
  ///
  /// - Returns: The signature functions whose object-graph TensorSpecs must follow.
  /// - Throws: ``ModelFormatError`` (code `unsupported`) for a signature whose inputs or outputs
  ///   do not meet a function call, or a function several calls share.
  func apply(to module: inout Module, modelPath: String) throws -> [Retyped] {
    let target = precision.dtype
    var graph = module.graph
    let consumers = graph.consumers()
    var inputs = Set<Crossing>()
    var outputs = Set<Crossing>()
    var placeholders = Set<NodeID>()
    func refuse(_ message: String) -> ModelFormatError {
      ModelFormatError(
        code: .unsupported, path: modelPath, location: "--no-keep-io-types",
        message: message + " Convert with the default --keep-io-types instead.")
    }
    for (key, signature) in module.signatures where key != Signature.initOperationKey {
      for input in signature.inputs where input.dtype == .float32 {
        guard case .output(let node, _) = input.source, graph[node].op == "Placeholder" else {
          throw refuse("Signature '\(key)' input '\(input.name)' is not a Placeholder.")
        }
        placeholders.insert(node)
        for consumer in consumers[node.index] {
          guard Self.isCall(graph[consumer.node]) else {
            throw refuse(
              "Signature '\(key)' input '\(input.name)' feeds \(graph[consumer.node].op) "
                + "'\(graph[consumer.node].name)' directly; tfmp changes the input types of "
                + "signatures that call a function (TF2 exports).")
          }
          inputs.insert(
            Crossing(call: consumer.node, position: consumer.position, name: input.name))
        }
      }
      for output in signature.outputs where output.dtype == .float32 {
        guard case .output(let node, let slot) = output.source, Self.isCall(graph[node]) else {
          throw refuse(
            "Signature '\(key)' output '\(output.name)' is not the result of a function call.")
        }
        outputs.insert(Crossing(call: node, position: slot.index, name: output.name))
      }
    }

    var retyped: [Retyped] = []
    let calls = Set(inputs.map(\.call)).union(outputs.map(\.call))
    for call in calls.sorted() {
      guard let callee = Self.callee(graph[call]), let index = module.index(ofFunction: callee)
      else { continue }
      let sharing = graph.nodeIDs.filter { other in
        other != call && Self.isCall(graph[other]) && Self.callee(graph[other]) == callee
      }
      guard sharing.isEmpty else {
        throw refuse("Function '\(callee)' serves several calls; their types cannot change alone.")
      }
      var function = module.functions[index]
      // In position order, so that the casts come in the same order on every run.
      for crossing in inputs.sorted(by: Crossing.order) where crossing.call == call {
        graph[call].setType("Tin", target, listIndex: crossing.position)
        let argument = function.arguments[crossing.position].name
        function.updateArgument(at: crossing.position) { $0.dtype = target }
        let id = NodeID(function.nodes.count)
        let cast = function.singleOutput(of: id, argument: "y")
        for node in function.nodeIDs {
          for slot in function[node].inputs.indices
          where function[node].inputs[slot] == .argument(crossing.position) {
            function[node].inputs[slot] = cast
          }
        }
        for result in function.results.indices
        where function.results[result].source == .argument(crossing.position) {
          function.results[result].source = cast
        }
        function.append(
          .cast(
            name: function.uniqueName("\(argument)/tfmp_cast_to_float32"),
            input: .argument(crossing.position),
            from: target, to: .float32))
      }
      for crossing in outputs.sorted(by: Crossing.order) where crossing.call == call {
        graph[call].setType("Tout", target, listIndex: crossing.position)
        guard crossing.position < function.results.count else { continue }
        let result = function.results[crossing.position]
        function.results[crossing.position].dtype = target
        let id = function.append(
          .cast(
            name: function.uniqueName("\(result.name)/tfmp_cast_to_\(precision.rawValue)"),
            input: result.source,
            from: .float32, to: target))
        function.results[crossing.position].source = function.singleOutput(of: id, argument: "y")
      }
      module.setFunction(function, at: index)
      retyped.append(
        Retyped(
          function: callee, inputs: Set(inputs.filter { $0.call == call }.map(\.name)),
          outputs: Set(outputs.filter { $0.call == call }.map(\.name))))
    }
    for node in placeholders { graph[node].setType("dtype", target) }
    module.graph = graph
    for key in module.signatures.keys where key != Signature.initOperationKey {
      for index in module.signatures[key]?.inputs.indices ?? 0..<0
      where module.signatures[key]?.inputs[index].dtype == .float32 {
        module.signatures[key]?.inputs[index].dtype = target
      }
      for index in module.signatures[key]?.outputs.indices ?? 0..<0
      where module.signatures[key]?.outputs[index].dtype == .float32 {
        module.signatures[key]?.outputs[index].dtype = target
      }
    }
    return retyped
  }

  private static func isCall(_ node: Node) -> Bool {
    node.op == "StatefulPartitionedCall" || node.op == "PartitionedCall"
  }

  private static func callee(_ node: Node) -> String? {
    if case .function(let function)? = node.attributes["f"] { return function.name }
    return nil
  }
}
