public import GraphIR
public import ModelFormats
public import TensorCore
internal import Foundation

/// What to fine-tune, and how.
public struct TrainingOptions: Sendable {
  /// The signature whose forward pass is trained.
  public var signature = "serving_default"
  /// The output the loss compares with the targets; `nil`: the signature's only float output.
  public var prediction: String?
  /// The loss.
  public var loss: Loss
  /// Whether the prediction is logits; `nil`: detected (a prediction made by the loss's
  /// activation, a `Softmax` or `Sigmoid`, is probabilities and its input the logits, as
  /// Keras reads it; any other is logits).
  public var fromLogits: Bool?
  /// The optimizer.
  public var optimizer: Optimizer
  /// The loss scaling.
  public var lossScale: LossScale
  /// Regular expressions for the names of the variables to train; empty: those the model
  /// marks trainable (so batch normalization's moving statistics stay frozen).
  public var trainable: [String] = []

  /// Options training `loss` with `optimizer` and `lossScale`.
  public init(loss: Loss, optimizer: Optimizer, lossScale: LossScale) {
    self.loss = loss
    self.optimizer = optimizer
    self.lossScale = lossScale
  }
}

/// A variable being trained: updated as a float32 master weight, written back in the type the
/// model stores it in.
public struct TrainedVariable: Sendable, Hashable {
  /// Its name in the model (`dense/kernel`).
  public var name: String
  /// The checkpoint entries holding it (Keras exports store each weight twice).
  public var checkpointKeys: [String]
  /// The type the model stores it in.
  public var storedType: DType
  /// Its shape.
  public var shape: Shape
}

/// One fine-tuning step of a signature, built as graph ops that the runtime runs: the forward
/// pass with each trained variable's reads fed from a float32 master weight, the loss in float32,
/// its scaling, the gradients (``GraphIR/Function/appendingGradients(of:withRespectTo:using:scope:)``),
/// their finiteness, the optimizer's update and the loss scale's, with a step whose gradients
/// are not finite skipped.
///
/// The step is a function of its state: signature ``trainSignature`` takes the forward
/// signature's inputs, the targets `y` and every ``stateNames`` entry, and gives `loss`,
/// `loss_scale` (the scale used), `skipped`, `prediction`, `finite/<i>` for variable i's
/// gradient, and `new/<state>` for each state entry. Signature ``evaluateSignature`` takes the
/// inputs, `y` and the weights, and gives `loss` and `prediction`.
public struct TrainStep: Sendable {
  /// The signature of one step.
  public static let trainSignature = "tfmp_train_step"
  /// The signature computing the loss without updating.
  public static let evaluateSignature = "tfmp_evaluate"
  /// The state entry of the float32 master weight of variable `index`.
  public static func weightState(_ index: Int) -> String { "weight/\(index)" }

  /// The model's module with the two signatures added (its calls inlined).
  public let module: Module
  /// The options it was built with.
  public let options: TrainingOptions
  /// The variables trained, in state order.
  public let variables: [TrainedVariable]
  /// The float variables that stay as they are (not trainable, or not matched).
  public let frozen: [String]
  /// Trained variables that the loss does not depend on.
  public let unreached: [String]
  /// Whether the loss reads the prediction as logits.
  public let fromLogits: Bool
  /// Whether the prediction output is probabilities (accuracy thresholds it at 0.5, else 0).
  public let predictsProbabilities: Bool
  /// The state entries, in order: each weight, each optimizer slot of each weight, the update
  /// count, and the loss scale and its count of finite steps where the scaling has them.
  public let stateNames: [String]
  /// The signature's inputs that the step takes besides `y` and the state.
  public let inputNames: [String]
  /// For each trained variable, the checkpoint key of the handle the forward pass reads.
  let readKeys: [String]
  /// The checkpoint key of each variable handle of the graph.
  let handleKeys: [NodeID: String]
  /// Where the step's ops' schemas come from.
  let schemas: any OpSchemaSource

  /// Builds the step for `options.signature` of `module`, whose variables are `variables` (the
  /// model's ``ModelFormats/SavedModel/logicalVariables()``), for targets of type `targetType`.
  ///
  /// - Throws: ``TrainingError`` for a missing signature or output, no variable to train, an
  ///   invalid pattern, a trained variable read by an op tfmp does not train through (inside a
  ///   loop or conditional), or an op without a gradient between a variable and the loss.
  public init(
    module original: Module, variables records: [ModelSummary.Variable], options: TrainingOptions,
    targetType: DType, using source: some GradientSource
  ) throws {
    self.options = options
    schemas = source
    var module: Module
    do {
      module = try original.inliningCalls(schemas: source)
    } catch {
      throw TrainingError(code: .unsupported, "The model's calls cannot be inlined: \(error)")
    }
    guard let signature = module.signatures[options.signature],
      options.signature != Signature.initOperationKey
    else {
      throw TrainingError(
        code: .missing,
        "The model has no signature '\(options.signature)'; it has "
          + "\(original.distinctSignatureKeys.joined(separator: ", ")). Pass --signature.")
    }
    let floatOutputs = signature.outputs.filter { $0.dtype?.isFloatingPoint == true }
    let predicted: Signature.Endpoint
    if let name = options.prediction {
      guard let output = floatOutputs.first(where: { $0.name == name }) else {
        throw TrainingError(
          code: .missing,
          "Signature '\(options.signature)' has no float output '\(name)'; it has "
            + "\(floatOutputs.map(\.name).joined(separator: ", ")).")
      }
      predicted = output
    } else {
      guard floatOutputs.count == 1 else {
        throw TrainingError(
          code: .missing,
          "Signature '\(options.signature)' has \(floatOutputs.count) float outputs ("
            + "\(floatOutputs.map(\.name).joined(separator: ", "))); name the one the loss "
            + "compares with the targets with --prediction.")
      }
      predicted = floatOutputs[0]
    }
    inputNames = signature.inputs.map(\.name)

    // The variables to train: each handle once, with all its checkpoint keys.
    let recordByKey = Dictionary(
      records.flatMap { record in record.checkpointKeys.map { ($0, record) } },
      uniquingKeysWith: { first, _ in first })
    var patterns: [Regex<AnyRegexOutput>] = []
    for pattern in options.trainable {
      do {
        patterns.append(try Regex(pattern))
      } catch {
        throw TrainingError(
          code: .invalidData, "'\(pattern)' is not a regular expression: \(error).")
      }
    }
    // A weight may have several handles (a Keras export's signatures each have their own).
    var records: [ModelSummary.Variable] = []
    var handles: [NodeID: Int] = [:]
    var recordIndex: [String: Int] = [:]
    var frozen = Set<String>()
    for variable in module.variables {
      guard let record = recordByKey[variable.checkpointKey],
        let type = DType(name: record.dtype), type.isFloatingPoint
      else { continue }
      let chosen =
        patterns.isEmpty
        ? record.trainable : patterns.contains { record.name.contains($0) }
      guard chosen else {
        frozen.insert(record.name)
        continue
      }
      let identity = record.checkpointKeys[0]
      let index = recordIndex[identity] ?? records.count
      if index == records.count {
        records.append(record)
        recordIndex[identity] = index
      }
      handles[variable.node] = index
    }
    self.frozen = frozen.sorted()
    guard !records.isEmpty else {
      throw TrainingError(
        code: .missing,
        options.trainable.isEmpty
          ? "The model has no trainable float variable."
          : "No float variable's name matches --trainable "
            + "\(options.trainable.joined(separator: ", ")); the model has "
            + "\(frozen.sorted().prefix(20).joined(separator: ", ")).")
    }
    variables = records.map { record in
      TrainedVariable(
        name: record.name, checkpointKeys: record.checkpointKeys,
        storedType: DType(name: record.dtype) ?? .float32, shape: Shape(record.shape))
    }

    // Each read of a trained variable becomes a read of its fed float32 master weight.
    var builder = GradientBuilder(function: module.graph, schemas: source, scope: "tfmp_train")
    func placeholder(_ name: String, _ type: DType, _ shape: ShapeValue) -> Input {
      builder.add(
        "Placeholder", [], ["dtype": .type(type), "shape": .shape(shape)], name: name)
    }
    var weights: [Input] = []
    for (index, variable) in variables.enumerated() {
      weights.append(
        placeholder(
          Self.weightState(index), .float32,
          ShapeValue(dimensions: variable.shape.dimensions.map(Int64.init))))
    }
    var graph = builder.function
    let keyOfHandle = Dictionary(
      module.variables.map { ($0.node, $0.checkpointKey) }, uniquingKeysWith: { first, _ in first })
    var readKeys = variables.map { $0.checkpointKeys[0] }
    var read = Set<Int>()
    for id in graph.nodeIDs where graph[id].op == "ReadVariableOp" {
      guard let handle = graph[id].inputs.first?.node, let index = handles[handle] else {
        continue
      }
      if read.insert(index).inserted, let key = keyOfHandle[handle] { readKeys[index] = key }
      var node = graph[id]
      let stored = variables[index].storedType
      node.op = stored == .float32 ? "Identity" : "Cast"
      node.attributes =
        stored == .float32
        ? ["T": .type(.float32)]
        : ["SrcT": .type(.float32), "DstT": .type(stored), "Truncate": .bool(false)]
      node.inputs = [weights[index]]
      graph[id] = node
    }

    self.readKeys = readKeys
    self.handleKeys = keyOfHandle

    // The loss, on the prediction or on the logits its activation was computed from.
    builder = GradientBuilder(function: graph, schemas: source, scope: "tfmp_train")
    var prediction = builder.cast(
      predicted.source, from: predicted.dtype ?? .float32, to: .float32)
    var fromLogits = options.fromLogits ?? true
    var predictsProbabilities = false
    if let activation = options.loss.activation {
      var current = predicted.source
      var steps = 0  // at most one per node: a corrupt graph may chain them in a cycle
      while let id = current.node, ["Identity", "Cast"].contains(graph[id].op),
        let input = graph[id].inputs.first, steps < graph.nodes.count
      {
        current = input
        steps += 1
      }
      if let id = current.node, graph[id].op == activation, let logits = graph[id].inputs.first {
        predictsProbabilities = true
        if options.fromLogits != false {
          prediction = builder.cast(
            logits, from: graph[id].type("T") ?? .float32, to: .float32)
          fromLogits = true
        }
      } else if options.fromLogits == false {
        predictsProbabilities = true
      }
    }
    self.fromLogits = fromLogits
    self.predictsProbabilities = predictsProbabilities
    let target = placeholder("y", targetType, ShapeValue(dimensions: [], unknownRank: true))
    let loss = options.loss.append(
      to: &builder, prediction: prediction, fromLogits: fromLogits, target: target,
      targetType: targetType)

    // State besides the weights.
    let optimizer = options.optimizer
    let scalar = ShapeValue(dimensions: [])
    var stateNames = variables.indices.map(Self.weightState)
    var slots: [[Input]] = []
    for (index, variable) in variables.enumerated() {
      slots.append(
        optimizer.slots.map { slot in
          stateNames.append("\(slot)/\(index)")
          return placeholder(
            "\(slot)/\(index)", .float32,
            ShapeValue(dimensions: variable.shape.dimensions.map(Int64.init)))
        })
    }
    stateNames.append("iterations")
    let iterations = placeholder("iterations", .int64, scalar)
    var scale: Input?
    var goodSteps: Input?
    if options.lossScale != .none {
      stateNames.append("loss_scale")
      scale = placeholder("loss_scale", .float32, scalar)
    }
    if case .dynamic = options.lossScale {
      stateNames.append("good_steps")
      goodSteps = placeholder("good_steps", .int64, scalar)
    }
    self.stateNames = stateNames
    let scaledLoss = scale.map { builder.math("Mul", loss, $0, type: .float32) } ?? loss

    // The gradients, their finiteness, the updates.
    let differentiated: (function: Function, gradients: [Input?])
    do {
      try Self.refuseOtherReads(
        of: Set(handles.keys), in: builder.function, toward: scaledLoss)
      differentiated = try builder.function.appendingGradients(
        of: scaledLoss, withRespectTo: weights, using: source, scope: "tfmp_gradients")
    } catch {
      throw TrainingError(code: .unsupported, "The model cannot be fine-tuned: \(error)")
    }
    builder = GradientBuilder(
      function: differentiated.function, schemas: source, scope: "tfmp_update")
    let float = DType.float32
    func flatAll(_ x: Input) -> Input {
      builder.add(
        "All",
        [
          builder.add(
            "Reshape", [x, builder.integers([-1])], ["T": .type(.bool), "Tshape": .type(.int32)]),
          builder.integers([0]),
        ], ["Tidx": .type(.int32), "keep_dims": .bool(false)])
    }
    var finite: [Input] = []
    var allFinite: Input?
    for gradient in differentiated.gradients {
      guard let gradient else {
        finite.append(Constants.bool(&builder, true))
        continue
      }
      let isFinite = flatAll(builder.math("IsFinite", gradient, type: float))
      finite.append(isFinite)
      allFinite = allFinite.map { builder.add("LogicalAnd", [$0, isFinite]) } ?? isFinite
    }
    let allOfThem = allFinite ?? Constants.bool(&builder, true)
    let skips = options.lossScale.skipsNonFinite
    func kept(_ updated: Input, _ old: Input, _ type: DType) -> Input {
      skips ? builder.add("SelectV2", [allOfThem, updated, old], ["T": .type(type)]) : updated
    }
    let count = builder.math("AddV2", iterations, Constants.int64(&builder, 1), type: .int64)
    let step = builder.cast(count, from: .int64, to: float)
    var newState: [Input] = []
    var newSlots: [Input] = []
    var unreached: [String] = []
    for (index, gradient) in differentiated.gradients.enumerated() {
      guard var gradient else {
        unreached.append(variables[index].name)
        newState.append(weights[index])
        newSlots += slots[index]
        continue
      }
      if let scale { gradient = builder.math("RealDiv", gradient, scale, type: float) }
      let update = optimizer.update(
        &builder, variable: weights[index], gradient: gradient, slots: slots[index], step: step)
      newState.append(kept(update.variable, weights[index], float))
      newSlots += zip(update.slots, slots[index]).map { kept($0, $1, float) }
    }
    self.unreached = unreached
    newState += newSlots
    newState.append(kept(count, iterations, .int64))
    if let scale {
      let next = options.lossScale.next(
        &builder, scale: scale, count: goodSteps ?? iterations, finite: allOfThem)
      newState.append(next.scale)
      if goodSteps != nil { newState.append(next.count) }
    }
    let skipped = skips ? builder.add("LogicalNot", [allOfThem]) : Constants.bool(&builder, false)

    // The two signatures.
    func endpoint(_ name: String, _ source: Input, _ type: DType) -> Signature.Endpoint {
      Signature.Endpoint(
        name: name, source: source, dtype: type,
        shape: ShapeValue(dimensions: [], unknownRank: true))
    }
    let stateInputs = [
      weights, slots.flatMap { $0 }, [iterations], [scale, goodSteps].compactMap { $0 },
    ]
    .flatMap { $0 }
    let stateTypes = stateNames.map { name -> DType in
      ["iterations", "good_steps"].contains(name) ? .int64 : .float32
    }
    let forwardInputs = signature.inputs + [endpoint("y", target, targetType)]
    let reported = builder.cast(predicted.source, from: predicted.dtype ?? float, to: float)
    let usedScale = scale ?? builder.scalar(1, float)
    module.graph = builder.function
    module.signatures[Self.trainSignature] = Signature(
      key: Self.trainSignature,
      inputs: forwardInputs
        + zip(stateNames, zip(stateInputs, stateTypes)).map { endpoint($0, $1.0, $1.1) },
      outputs: [
        endpoint("loss", loss, float), endpoint("loss_scale", usedScale, float),
        endpoint("skipped", skipped, .bool), endpoint("prediction", reported, float),
      ] + finite.enumerated().map { endpoint("finite/\($0.offset)", $0.element, .bool) }
        + zip(stateNames, zip(newState, stateTypes)).map { endpoint("new/\($0)", $1.0, $1.1) })
    module.signatures[Self.evaluateSignature] = Signature(
      key: Self.evaluateSignature,
      inputs: forwardInputs
        + weights.enumerated().map { endpoint(Self.weightState($0.offset), $0.element, float) },
      outputs: [endpoint("loss", loss, float), endpoint("prediction", reported, float)])
    self.module = module
  }

  /// The state before the first step besides the weights: zero optimizer slots and counts, and
  /// the loss scale's initial value.
  public func optimizerState() -> [String: Tensor] {
    var state: [String: Tensor] = [:]
    for (index, variable) in variables.enumerated() {
      for slot in options.optimizer.slots {
        state["\(slot)/\(index)"] = Tensor(
          shape: variable.shape,
          floats: [Float](repeating: 0, count: variable.shape.elementCount ?? 0))
      }
    }
    let zero = Tensor(dtype: .int64, shape: Shape([]), storage: .int64([0]))
    state["iterations"] = zero
    if stateNames.contains("loss_scale") {
      state["loss_scale"] = Tensor(
        shape: Shape([]), floats: [Float(options.lossScale.initialScale)])
    }
    if stateNames.contains("good_steps") { state["good_steps"] = zero }
    return state
  }

  /// Throws when a trained variable's handle goes, on the way to `loss`, into an op other than
  /// the reads rewritten (a `While` loop or an `If` that reads it inside, a `ResourceGather`):
  /// its gradient would be lost without a word.
  private static func refuseOtherReads(
    of handles: Set<NodeID>, in graph: Function, toward loss: Input
  ) throws {
    for id in graph.ancestors(of: [loss]).sorted() {
      let node = graph[id]
      guard let handle = node.inputs.compactMap(\.node).first(where: handles.contains) else {
        continue
      }
      throw TrainingError(
        code: .unsupported,
        "Variable '\(graph[handle].name)' is read by \(node.op) node '\(node.name)' on the way "
          + "to the loss, which tfmp does not differentiate yet (loops, conditionals and "
          + "gathers from a variable). Leave it out with --trainable, or freeze it.")
    }
  }
}
