public import ModelFormats
internal import Foundation
internal import GraphIR
public import TensorCore

extension TrainStep {
  /// The name of the root's child that holds an exported step's new variables.
  public static let stateHolder = "tfmp_train_state"

  /// The step as a signature for the model's SavedModel: `key(inputs..., y) -> {loss,
  /// loss_scale, skipped}`, a TensorFlow function that reads the model's variables and the step's
  /// state (optimizer slots, update count, loss scale and its count of finite steps, as new
  /// variables), runs the same ops as ``trainSignature``, and assigns the new values, the
  /// outputs waiting on every assignment. The new variables start at `state` (a
  /// ``FineTuning/Outcome/state``, so that TensorFlow goes on where tfmp stopped; the state
  /// before a first step by default). TensorFlow running it N times on N batches trains as N
  /// steps of ``FineTuning`` do.
  ///
  /// - Throws: ``TrainingError`` (`unsupported`) when a trained variable is stored in a reduced
  ///   type (the exported step updates the model's variables themselves, which must then be the
  ///   float32 master weights: convert with `--weights float32`).
  public func exportedSignature(key: String = "train_step", state: [String: Tensor]? = nil)
    throws -> AddedSignature
  {
    if let reduced = variables.first(where: { $0.storedType != .float32 }) {
      throw TrainingError(
        code: .unsupported,
        "Variable '\(reduced.name)' is stored in \(reduced.storedType.name): an exported train "
          + "step updates the model's variables, which must be float32 master weights. Convert "
          + "the model with --weights float32.")
    }
    let graph = module.graph
    guard let train = module.signatures[Self.trainSignature] else {
      preconditionFailure("a step has its train signature")
    }
    let inputSources = Dictionary(
      train.inputs.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    let outputSources = Dictionary(
      train.outputs.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    let results = ["loss", "loss_scale", "skipped"]
    let wanted =
      results.compactMap { outputSources[$0]?.source }
      + stateNames.compactMap { outputSources["new/" + $0]?.source }

    // The arguments: the data inputs by name, then a resource per captured variable.
    let dataNames = (inputNames + ["y"]).sorted()
    var arguments: [Function.Argument] = []
    var argumentOf: [NodeID: Int] = [:]
    var endpoints: [AddedSignature.Endpoint] = []
    for name in dataNames {
      guard let endpoint = inputSources[name], let id = endpoint.source.node else { continue }
      argumentOf[id] = arguments.count
      arguments.append(Function.Argument(name: Self.argumentName(name), dtype: endpoint.dtype))
      endpoints.append(
        AddedSignature.Endpoint(
          name: name, dtype: endpoint.dtype ?? .float32, shape: endpoint.shape))
    }
    var captures: [AddedSignature.Capture] = []
    var resourceOfState: [String: Int] = [:]
    let initial = state ?? optimizerState()
    for name in stateNames {
      resourceOfState[name] = arguments.count
      arguments.append(
        Function.Argument(name: "state_\(captures.count)", dtype: .resource))
      if let index = variables.indices.first(where: { Self.weightState($0) == name }) {
        captures.append(.variable(checkpointKey: readKeys[index]))
      } else {
        guard let value = initial[name] else { preconditionFailure("no value for state \(name)") }
        captures.append(
          .newVariable(name: name.replacingOccurrences(of: "/", with: "_"), value: value))
      }
    }

    // The nodes the results and new state need, in order.
    let needed = graph.ancestors(of: wanted)
    let stateOfNode = Dictionary(
      stateNames.compactMap { name in inputSources[name]?.source.node.map { ($0, name) } },
      uniquingKeysWith: { first, _ in first })
    var builder = GradientBuilder(
      function: Function(
        name: "__inference_tfmp_\(key)_0", syntax: .function, arguments: arguments, nodes: []),
      schemas: schemas, scope: key)
    var mapped: [NodeID: NodeID] = [:]
    func map(_ input: Input) -> Input {
      guard case .output(let id, let slot) = input else { return input }
      if let argument = argumentOf[id] { return .argument(argument) }
      guard let node = mapped[id] else { preconditionFailure("nodes are copied in order") }
      return builder.output(node, slot.index)
    }
    for id in graph.topologicalOrder() where needed.contains(id) && argumentOf[id] == nil {
      let node = graph[id]
      if let state = stateOfNode[id], let resource = resourceOfState[state] {
        mapped[id] = builder.node(
          "ReadVariableOp", [.argument(resource)],
          ["dtype": .type(node.type("dtype") ?? .float32)], name: "read_\(state)")
      } else if node.op == "VarHandleOp" {
        // A variable the step reads but does not train (batch normalization's statistics).
        argumentOf[id] = arguments.count
        arguments.append(Function.Argument(name: "capture_\(arguments.count)", dtype: .resource))
        captures.append(.variable(checkpointKey: handleKeys[id] ?? node.name))
      } else {
        mapped[id] = builder.node(
          node.op, node.inputs.map(map), node.attributes, name: node.name)
      }
    }
    var assignments: [NodeID] = []
    for name in stateNames {
      guard let new = outputSources["new/" + name], let resource = resourceOfState[name] else {
        continue
      }
      assignments.append(
        builder.node(
          "AssignVariableOp", [.argument(resource), map(new.source)],
          ["dtype": .type(new.dtype ?? .float32), "validate_shape": .bool(false)],
          name: "assign_\(name)"))
    }
    var outputs: [(name: String, node: NodeID, type: DType)] = []
    for name in results {
      guard let output = outputSources[name] else { continue }
      let type = output.dtype ?? .float32
      outputs.append(
        (name, builder.node("Identity", [map(output.source)], ["T": .type(type)], name: name), type)
      )
    }
    var function = builder.function
    function.replaceArguments(with: arguments)
    for output in outputs {
      function[output.node].controlInputs = assignments.map { .output($0, OutputSlot()) }
    }
    function.results = outputs.map {
      Function.Result(name: $0.name, source: builder.output($0.node, 0), dtype: $0.type)
    }
    function.controlResults = assignments.map {
      Function.Result(name: function[$0].name, source: .output($0, OutputSlot()))
    }
    return AddedSignature(
      key: key, function: function, inputs: endpoints,
      outputs: outputs.map {
        AddedSignature.Endpoint(name: $0.name, dtype: $0.type, shape: ShapeValue(dimensions: []))
      }, captures: captures, holder: Self.stateHolder)
  }

  /// `name` as a function argument may be spelled (lower-case letters, digits, underscores,
  /// starting with a letter).
  private static func argumentName(_ name: String) -> String {
    let spelled = String(
      name.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
    return spelled.first?.isLetter == true ? spelled : "input_" + spelled
  }
}
