public import ModelFormats
public import TensorCore
internal import TFProtos
internal import Foundation
internal import CTFMPKernels

/// Runs a SavedModel's signatures on the CPU, in float32.
///
/// The top-level graph is evaluated from the signature's outputs back to its inputs; function
/// calls run the called function's body the same way. Variables are read from the checkpoint on
/// first use. Only the nodes an output needs are evaluated, in dependency order (control
/// dependencies carry no data in inference graphs and are not followed).
public final class Interpreter: @unchecked Sendable {
  // Sendable: the variable, constant and plan caches are guarded by `lock`; everything else is
  // immutable.

  private let model: SavedModel
  private let graph: Tensorflow_GraphDef
  private let functions: [String: Tensorflow_FunctionDef]
  private let variableKeys: [String: String]
  private var variables: [String: Tensor] = [:]
  /// Decoded `Const` values by function and node name.
  private var constants: [String: Tensor] = [:]
  /// Evaluation plans by body, outputs and argument names.
  private var plans: [String: Plan] = [:]
  /// Weights packed for matrix products.
  private let packs = PackedWeights()
  private let lock = NSLock()

  /// Where the time of each op type goes, when profiling.
  public let profile: OpProfile?

  /// Prepares `model` for running; with `profiling`, ``profile`` collects each kernel's time.
  public init(model: SavedModel, profiling: Bool = false) {
    self.model = model
    profile = profiling ? OpProfile() : nil
    graph = model.proto.metaGraphs[0].graphDef
    functions = Dictionary(
      graph.library.function.map { ($0.signature.name, $0) }, uniquingKeysWith: { first, _ in first })
    variableKeys = Self.variableKeys(model.proto.metaGraphs[0], functions)
  }

  /// Makes the C allocator of this process keep memory it is given back for reuse, instead of
  /// returning blocks over 128 KiB to the system at once: a model's activations are allocated
  /// and freed on every run, and fresh pages cost a fault each (a fifth of a BERT run). Peak
  /// memory is unchanged. Process-wide, so left to the program to call; `tfmp run` and
  /// `tfmp validate` do.
  public static func keepFreedMemoryForReuse() {
    tfmp_keep_freed_memory()
  }

  /// The signature keys that can be run.
  public var signatureKeys: [String] {
    model.proto.metaGraphs[0].signatureDef.keys.filter { $0 != "__saved_model_init_op" }.sorted()
  }

  /// The dtype and shape (-1 for unknown dimensions) of each input of signature `key`.
  public func inputSpecs(signature key: String) throws -> [String: (dtype: DType, shape: [Int])] {
    guard let signature = model.proto.metaGraphs[0].signatureDef[key] else {
      throw RuntimeError(
        function: "<graph>", node: key,
        message: "The model has no signature '\(key)'; it has \(signatureKeys.joined(separator: ", ")).")
    }
    var specs: [String: (dtype: DType, shape: [Int])] = [:]
    for (name, info) in signature.inputs {
      specs[name] = (DType(rawValue: info.dtype.rawValue) ?? .float32, info.tensorShape.dim.map { Int($0.size) })
    }
    return specs
  }

  /// Runs signature `key` on `inputs` (keyed by the signature's input names).
  ///
  /// - Throws: ``RuntimeError`` for a missing or mistyped input, an op without a kernel, or a
  ///   kernel's complaint; ``ModelFormatError`` for a corrupt checkpoint tensor.
  public func run(signature key: String, inputs: [String: Tensor]) throws -> [String: Tensor] {
    guard let signature = model.proto.metaGraphs[0].signatureDef[key] else {
      throw RuntimeError(
        function: "<graph>", node: key,
        message: "The model has no signature '\(key)'; it has \(signatureKeys.joined(separator: ", ")).")
    }
    var feeds: [String: Value] = [:]
    for (name, info) in signature.inputs {
      guard let tensor = inputs[name] else {
        throw RuntimeError(
          function: "<graph>", node: name,
          message: "The signature needs input '\(name)' but none was given. Pass it with --input \(name)=FILE.npy.")
      }
      let expected = DType(rawValue: info.dtype.rawValue)
      guard tensor.dtype == expected else {
        throw RuntimeError(
          function: "<graph>", node: name,
          message: "Input '\(name)' must be \(expected.map(\.name) ?? "?") but is \(tensor.dtype).")
      }
      feeds[Self.nodeName(info.name)] = .tensor(tensor)
    }
    let names = signature.outputs.keys.sorted()
    let references = names.map { signature.outputs[$0]?.name ?? "" }
    let body = Body(name: "<graph>", nodes: graph.node, syntax: .graph)
    let values = try evaluate(body, arguments: feeds, outputs: references)
    var result: [String: Tensor] = [:]
    for (name, value) in zip(names, values) {
      guard case .tensor(let tensor) = value else { continue }
      result[name] = tensor
    }
    return result
  }

  /// A value flowing along an edge: a tensor, a variable (resource) handle, or a TensorList.
  enum Value {
    case tensor(Tensor)
    case variable(key: String)
    case list([Tensor?])
  }

  struct Body {
    enum Syntax { case graph, function }
    var name: String
    var nodes: [Tensorflow_NodeDef]
    var syntax: Syntax
  }

  /// How one body is evaluated for given arguments and outputs, worked out once: the nodes the
  /// outputs need in dependency order, where each input comes from, and after which step each
  /// result is no longer needed (so its memory is freed while the body still runs).
  struct Plan {
    enum Source {
      case node(Int, output: Int, reference: String)
      case argument(String)
      case undefined(String)
    }
    struct Step {
      var node: Int
      /// Set when the node is a fed placeholder of the top-level graph.
      var fed: String?
      var inputs: [Source]
      /// Elementwise nodes computed from the node's result, in order (see ``Fused``).
      var fused: [Fused] = []
      /// Members (0 the node, i the i-th fused node) other than the last whose results are read
      /// after the step, so kept as tensors of their own.
      var exports: [Int] = []
      /// Nodes whose results are last read by the node, freed before the fused nodes run (a
      /// Reshape's input shares its elements, which the fused nodes then update in place).
      var releasesAfterNode: [Int] = []
      /// Nodes whose results are last read by the fused nodes.
      var releases: [Int] = []
      /// Whether input 1 is a weight (a constant or variable, see ``Interpreter/sharesInput``),
      /// whose packing matrix products keep.
      var weightInput = false
    }
    /// An elementwise node that reads the result of a member of a step (the step's node or one
    /// of its fused nodes) and otherwise only values computed before the step began. The step
    /// computes its members block by block into the node's result, each block staying in cache
    /// through all of them, instead of writing and reading a tensor per node (a dense layer's
    /// BiasAdd and GELU, a layer normalization's scale and shift; see ``Interpreter/Segment``).
    struct Fused {
      enum Operation {
        case unary(UnaryFunction)
        case binary(BinaryFunction)
        /// A cast between float types: the values, rounded to the target type.
        case cast
      }
      /// Where an operand comes from: member `i` of the step (0 its node, i its i-th fused
      /// node), or a value computed before the step.
      enum Operand {
        case member(Int)
        case outside(Source)
      }
      var node: Int
      var operation: Operation
      /// The node's inputs, in order.
      var operands: [Operand]
    }
    var steps: [Step]
    var outputs: [Source]

    init(_ body: Body, arguments: Set<String>, outputs: [String]) {
      let index = Dictionary(body.nodes.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
      func source(_ reference: String) -> Source {
        let parts = reference.split(separator: ":", omittingEmptySubsequences: false)
        guard let node = index[String(parts[0])] else {
          return arguments.contains(reference) ? .argument(reference) : .undefined(reference)
        }
        switch body.syntax {
        case .graph: return .node(node, output: parts.count > 1 ? Int(parts[1]) ?? 0 : 0, reference: reference)
        case .function:
          guard parts.count > 1 else { return arguments.contains(reference) ? .argument(reference) : .undefined(reference) }
          let position = parts.count > 2 ? Int(parts[2]) ?? 0 : 0
          let offset = Kernels.outputArguments[body.nodes[node].op]?.firstIndex(of: String(parts[1])) ?? 0
          return .node(node, output: offset + position, reference: reference)
        }
      }
      func producer(_ source: Source) -> Int? {
        if case .node(let node, _, _) = source { return node }
        return nil
      }
      let sources = body.nodes.map { $0.input.filter { !$0.hasPrefix("^") }.map(source) }
      // The nodes the outputs need, in dependency order (depth-first post-order).
      var order: [Int] = []
      var state = [UInt8](repeating: 0, count: body.nodes.count)  // 0 new, 1 open, 2 done
      self.outputs = outputs.map(source)
      var stack = self.outputs.compactMap(producer).map { ($0, false) }
      while let (node, expanded) = stack.popLast() {
        if expanded {
          if state[node] != 2 { state[node] = 2; order.append(node) }
          continue
        }
        guard state[node] == 0 else { continue }
        state[node] = 1
        stack.append((node, true))
        for input in sources[node] {
          if let producer = producer(input), state[producer] == 0 { stack.append((producer, false)) }
        }
      }
      // Constants first: they are then ready for any fused node that reads one.
      order = order.filter { body.nodes[$0].op == "Const" } + order.filter { body.nodes[$0].op != "Const" }
      // Results that are the same array on every run: constants and variables, reshaped or not.
      var isWeight = [Bool](repeating: false, count: body.nodes.count)
      for node in order {
        let op = body.nodes[node].op
        isWeight[node] = ["Const", "ReadVariableOp"].contains(op)
          || (Interpreter.sharesInput.contains(op) && sources[node].first.flatMap(producer).map { isWeight[$0] } == true)
      }
      // Steps in order; an elementwise node joins the latest step one of whose members it reads,
      // when its other inputs were computed before that step began.
      var steps: [Step] = []
      var stepOf = [Int](repeating: -1, count: body.nodes.count)
      var member = [Int](repeating: 0, count: body.nodes.count)  // position in its step
      // Nodes with other outputs read too (a Split) do not start fused steps (a step keeps one
      // result), nor do constants (a scale or bias is an operand, not what a step computes on).
      var anchors = body.nodes.map { $0.op != "Const" }
      for inputs in sources {
        for case .node(let producer, let output, _) in inputs where output > 0 { anchors[producer] = false }
      }
      func fusion(_ node: Int) -> (step: Int, fused: Fused)? {
        let definition = body.nodes[node]
        let inputs = sources[node]
        guard let operation = Self.elementwiseOperation(definition, inputs: inputs.count) else { return nil }
        func step(_ input: Source) -> Int? {
          guard case .node(let producer, 0, _) = input, stepOf[producer] >= 0, anchors[producer] else { return nil }
          return stepOf[producer]
        }
        guard let target = inputs.compactMap(step).max() else { return nil }
        var operands: [Fused.Operand] = []
        for input in inputs {
          if step(input) == target, case .node(let producer, _, _) = input {
            operands.append(.member(member[producer]))
            continue
          }
          switch input {
          case .node(let producer, _, _): guard stepOf[producer] >= 0, stepOf[producer] < target else { return nil }
          case .argument: break
          case .undefined: return nil
          }
          operands.append(.outside(input))
        }
        return (target, Fused(node: node, operation: operation, operands: operands))
      }
      for node in order {
        let name = body.nodes[node].name
        let fed = body.syntax == .graph && arguments.contains(name) ? name : nil
        if fed == nil, let (step, fused) = fusion(node) {
          steps[step].fused.append(fused)
          stepOf[node] = step
          member[node] = steps[step].fused.count
          continue
        }
        let weightInput = sources[node].count > 1 && producer(sources[node][1]).map { isWeight[$0] } == true
        steps.append(Step(node: node, fed: fed, inputs: sources[node], weightInput: weightInput))
        stepOf[node] = steps.count - 1
      }
      // A member read outside its step (by a later step, another step's fused node, or as an
      // output) is exported; the last member is the step's result anyway.
      var readOutside = [Bool](repeating: false, count: body.nodes.count)
      for step in steps {
        for input in step.inputs { if let producer = producer(input) { readOutside[producer] = true } }
        for fused in step.fused {
          for case .outside(let input) in fused.operands { if let producer = producer(input) { readOutside[producer] = true } }
        }
      }
      for output in self.outputs { if let producer = producer(output) { readOutside[producer] = true } }
      for index in steps.indices where !steps[index].fused.isEmpty {
        let members = [steps[index].node] + steps[index].fused.map(\.node)
        steps[index].exports = members.indices.dropLast().filter { readOutside[members[$0]] }
      }
      // Each result is released after the last node that reads it (body outputs never): the
      // last use of a node is (step, 0) when it is the step's node, (step, 1) a fused node.
      var lastUse = [(step: Int, fused: Int)](repeating: (-1, 0), count: body.nodes.count)
      for (position, step) in steps.enumerated() {
        for input in step.inputs { if let producer = producer(input) { lastUse[producer] = (position, 0) } }
        for fused in step.fused {
          for case .outside(let input) in fused.operands { if let producer = producer(input) { lastUse[producer] = (position, 1) } }
        }
      }
      for output in self.outputs { if let producer = producer(output) { lastUse[producer] = (steps.count, 0) } }
      for (node, use) in lastUse.enumerated() where use.step >= 0 && use.step < steps.count {
        if use.fused == 0 { steps[use.step].releasesAfterNode.append(node) } else { steps[use.step].releases.append(node) }
      }
      self.steps = steps
    }

    /// How `node` is computed as a fused member, when it is an elementwise op of one float
    /// tensor (unary math, casts between float types) or of two (arithmetic).
    static func elementwiseOperation(_ node: Tensorflow_NodeDef, inputs: Int) -> Fused.Operation? {
      if inputs == 1, let function = UnaryFunction(rawValue: node.op) { return .unary(function) }
      let floats: [DType] = [.float32, .float16, .bfloat16]
      if inputs == 1, node.op == "Cast", let source = KernelContext(node: node).type("SrcT"), floats.contains(source),
        let target = KernelContext(node: node).type("DstT"), floats.contains(target)
      {
        return .cast
      }
      let functions: [String: BinaryFunction] = [
        "BiasAdd": .add, "AddV2": .add, "Add": .add, "Sub": .sub, "Mul": .mul, "RealDiv": .realDiv,
        "Maximum": .maximum, "Minimum": .minimum, "SquaredDifference": .squaredDifference,
      ]
      if inputs == 2, let function = functions[node.op] { return .binary(function) }
      return nil
    }
  }

  /// The plan for `body` with these arguments and outputs, made on first use.
  private func plan(_ body: Body, arguments: [String: Value], outputs: [String]) -> Plan {
    let key = body.name + "\u{0}" + outputs.joined(separator: ",") + "\u{0}" + arguments.keys.sorted().joined(separator: ",")
    if let plan = lock.withLock({ plans[key] }) { return plan }
    let plan = Plan(body, arguments: Set(arguments.keys), outputs: outputs)
    lock.withLock { plans[key] = plan }
    return plan
  }

  /// Evaluates the nodes of `body` that `outputs` need and returns those outputs.
  func evaluate(_ body: Body, arguments: [String: Value], outputs: [String]) throws -> [Value] {
    let plan = plan(body, arguments: arguments, outputs: outputs)
    var results: [[Value]] = Array(repeating: [], count: body.nodes.count)
    func value(_ source: Plan.Source, for node: String) throws -> Value {
      switch source {
      case .node(let producer, let output, let reference):
        guard output < results[producer].count else {
          throw RuntimeError(function: body.name, node: node, message: "Input '\(reference)' has no output \(output).")
        }
        return results[producer][output]
      case .argument(let name):
        guard let argument = arguments[name] else { preconditionFailure("the plan's arguments are the call's") }
        return argument
      case .undefined(let reference):
        throw RuntimeError(function: body.name, node: node, message: "Input '\(reference)' is not defined.")
      }
    }
    for step in plan.steps {
      let definition = body.nodes[step.node]
      if let fed = step.fed, let argument = arguments[fed] {
        results[step.node] = [argument]
      } else {
        do {
          let inputs = try step.inputs.map { try value($0, for: definition.name) }
          results[step.node] = definition.op == "Const"
            ? [.tensor(try constant(definition, in: body.name))]
            : try execute(definition, inputs: inputs, weightInput: step.weightInput)
        } catch let error as KernelError {
          throw RuntimeError(function: body.name, node: definition.name, message: error.message)
        }
      }
      for node in step.releasesAfterNode { results[node] = [] }
      if !step.fused.isEmpty {
        // Taken out of `results`, so that the members can be computed in place.
        var root = results[step.node].first
        results[step.node] = []
        for (member, result) in try runFused(step, in: body, root: &root, value) {
          results[member] = [result]
        }
      }
      for node in step.releases { results[node] = [] }
    }
    return try plan.outputs.map { source in
      if case .node(let producer, let output, let reference) = source, output >= results[producer].count {
        throw RuntimeError(function: body.name, node: reference, message: "The output '\(reference)' was not computed.")
      }
      return try value(source, for: "<outputs>")
    }
  }

  /// Runs `body`, reporting a kernel's complaint as a runtime error at `node`.
  func runtimeErrors<T>(_ function: Body, _ node: Tensorflow_NodeDef, _ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch let error as KernelError {
      throw RuntimeError(function: function.name, node: node.name, message: error.message)
    }
  }

  /// Runs `node`'s kernel on `inputs`; `weightInput` says that input 1 is a weight.
  func execute(_ node: Tensorflow_NodeDef, inputs: [Value], weightInput: Bool = false) throws -> [Value] {
    switch node.op {
    case "NoOp": return []
    case "Identity", "Snapshot", "StopGradient", "PreventGradient":
      // Any value passes: tensors, variable handles and TensorLists in loop bodies.
      guard let value = inputs.first else { throw KernelError("Expected one input.") }
      return [value]
    case "IdentityN": return inputs
    case "Placeholder":
      throw KernelError("The placeholder is not a signature input; feed it through the signature.")
    case "VarHandleOp":
      guard let key = variableKeys[node.name] else {
        throw KernelError("No checkpoint entry saves this variable.")
      }
      return [.variable(key: key)]
    case "ReadVariableOp":
      guard case .variable(let key)? = inputs.first else { throw KernelError("Expected a variable handle.") }
      return [.tensor(try variable(key))]
    case "StatefulPartitionedCall", "PartitionedCall":
      return try call(node, "f", inputs)
    case "If", "StatelessIf":
      guard case .tensor(let condition)? = inputs.first else { throw KernelError("The condition must be a tensor.") }
      let truth = try Kernels.doubles(condition).first.map { $0 != 0 } ?? false
      return try call(node, truth ? "then_branch" : "else_branch", Array(inputs.dropFirst()))
    case "While", "StatelessWhile":
      var values = inputs
      for _ in 0..<Self.iterationLimit {
        guard case .tensor(let condition)? = try call(node, "cond", values).first,
          case .bool(let flags) = condition.storage, let proceed = flags.first
        else { throw KernelError("The loop condition did not give a bool.") }
        if !proceed { return values }
        values = try call(node, "body", values)
      }
      throw KernelError("The loop ran \(Self.iterationLimit) times without ending.")
    case _ where node.op.hasPrefix("TensorList"):
      return try TensorListKernels.execute(KernelContext(node: node), inputs)
    default:
      guard let kernel = Kernels.table[node.op] else {
        throw KernelError("Op '\(node.op)' has no CPU kernel in tfmp yet.")
      }
      let tensors = try inputs.map { value -> Tensor in
        guard case .tensor(let tensor) = value else { throw KernelError("Expected a tensor input, got a variable handle.") }
        return tensor
      }
      let start = profile.map { _ in ContinuousClock.now }
      var outputs = try kernel(KernelContext(node: node, weightPacks: weightInput ? packs : nil), tensors)
      // Ops that only move elements pass reduced-precision values through unchanged.
      let exact = Self.movesElements.contains(node.op) && !tensors.contains(where: { $0.dtype == .float32 })
      for index in outputs.indices { Self.round(&outputs[index], for: node, alreadyExact: exact) }
      if let profile, let start { profile.add(node.op, ContinuousClock.now - start) }
      return outputs.map { .tensor($0) }
    }
  }

  /// Puts a kernel's float result in the type the node declares for it: kernels compute in
  /// float32, and an op typed float16 or bfloat16 rounds its results to that type (to nearest,
  /// ties to even), as a GPU's Tensor Cores do with float32 accumulation.
  /// With `alreadyExact`, the values are known to be in the declared type and are only labelled.
  static func round(_ tensor: inout Tensor, for node: Tensorflow_NodeDef, alreadyExact: Bool = false) {
    guard case .float(var values) = tensor.storage else { return }
    guard let declared = declaredType(of: node), let precision = ReducedPrecision(declared) else {
      tensor.dtype = .float32
      return
    }
    if alreadyExact {
      tensor.dtype = declared
      return
    }
    tensor.storage = .float([])  // so that `values` is the only reference and rounds in place
    precision.round(&values)
    tensor = Tensor(dtype: declared, shape: tensor.shape, storage: .float(values))
  }

  /// The float type a node declares for its result (attribute DstT, T, Tparams or dtype).
  static func declaredType(of node: Tensorflow_NodeDef) -> DType? {
    ["DstT", "T", "Tparams", "dtype"].lazy.compactMap { name -> DType? in
      if case .type(let type)? = node.attr[name]?.value { return DType(rawValue: type.rawValue) }
      return nil
    }.first
  }

  /// Ops whose result holds the elements array of their first input itself (the same buffer):
  /// applied to a constant or a variable, they give a weight too.
  static let sharesInput: Set<String> = ["Identity", "Snapshot", "StopGradient", "Reshape", "Squeeze", "ExpandDims"]

  /// Ops whose outputs are elements of their inputs: with float16 or bfloat16 inputs their
  /// outputs need no rounding.
  static let movesElements: Set<String> = [
    "Reshape", "Squeeze", "ExpandDims", "Transpose", "ConcatV2", "Pack", "Unpack", "Split", "SplitV", "Slice",
    "StridedSlice", "GatherV2", "Tile", "Pad", "SelectV2", "Relu", "MaxPool", "Neg", "Abs", "Maximum", "Minimum",
  ]

  /// The most iterations a While loop may run before the model is deemed stuck.
  static let iterationLimit = 10_000_000

  /// Runs the function named by attribute `attribute` of `node` on `inputs`.
  private func call(_ node: Tensorflow_NodeDef, _ attribute: String, _ inputs: [Value]) throws -> [Value] {
    guard case .func(let callee)? = node.attr[attribute]?.value, let function = functions[callee.name] else {
      throw KernelError("The function in attribute '\(attribute)' is not in the library.")
    }
    let arguments = Dictionary(
      zip(function.signature.inputArg.map(\.name), inputs).map { ($0, $1) }, uniquingKeysWith: { a, _ in a })
    let outputs = function.signature.outputArg.map { function.ret[$0.name] ?? "" }
    return try evaluate(
      Body(name: callee.name, nodes: function.nodeDef, syntax: .function), arguments: arguments, outputs: outputs)
  }

  /// The value of `Const` node `node` of function `function`, decoded once.
  private func constant(_ node: Tensorflow_NodeDef, in function: String) throws -> Tensor {
    let key = function + "/" + node.name
    if let cached = lock.withLock({ constants[key] }) { return cached }
    var tensor = try TensorDecoding.constant(node)
    Self.round(&tensor, for: node)
    lock.withLock { constants[key] = tensor }
    return tensor
  }

  /// A variable's value, read from the checkpoint once.
  private func variable(_ key: String) throws -> Tensor {
    if let cached = lock.withLock({ variables[key] }) { return cached }
    guard let checkpoint = model.checkpoint, let entry = checkpoint.entry(forKey: key) else {
      throw KernelError("The checkpoint has no entry '\(key)'.")
    }
    let tensor = try checkpoint.withBytes(of: entry) { bytes -> Tensor in
      guard let tensor = TensorDecoding.tensor(bytes, dtype: entry.dtype, shape: entry.shape) else {
        throw KernelError("The variable '\(key)' is \(entry.dtype), which tfmp cannot run yet.")
      }
      return tensor
    }
    lock.withLock { variables[key] = tensor }
    return tensor
  }

  static func nodeName(_ tensorName: String) -> String {
    String(tensorName.split(separator: ":").first ?? "")
  }

  /// The checkpoint key of each top-level variable handle, read off the save function: the
  /// handle passed as argument j is read inside and saved under SaveV2's tensor name.
  private static func variableKeys(
    _ metaGraph: Tensorflow_MetaGraphDef, _ functions: [String: Tensorflow_FunctionDef]
  ) -> [String: String] {
    let saveNode = nodeName(metaGraph.saverDef.saveTensorName)
    guard let call = metaGraph.graphDef.node.first(where: { $0.name == saveNode }),
      case .func(let callee)? = call.attr["f"]?.value, let save = functions[callee.name]
    else { return [:] }
    let callInputs = call.input.filter { !$0.hasPrefix("^") }
    var keys: [String: String] = [:]
    for saved in SavedVariables.slots(in: save.nodeDef) {
      guard let argument = save.nodeDef[saved.read].input.first,
        let position = save.signature.inputArg.firstIndex(where: { $0.name == argument }), position < callInputs.count
      else { continue }
      keys[nodeName(callInputs[position])] = saved.key
    }
    return keys
  }
}

/// The time spent in each op type's kernel (rounding to float16 or bfloat16 included), summed
/// over the runs since it was created.
public final class OpProfile: @unchecked Sendable {
  // Sendable: `entries` is guarded by `lock`.
  private var entries: [String: (count: Int, time: Duration)] = [:]
  private let lock = NSLock()

  func add(_ op: String, _ time: Duration) {
    lock.withLock {
      let entry = entries[op, default: (0, .zero)]
      entries[op] = (entry.count + 1, entry.time + time)
    }
  }

  /// Each op type with its number of kernel calls and their total time, the most time first.
  public var totals: [(op: String, count: Int, time: Duration)] {
    lock.withLock { entries.map { ($0.key, $0.value.count, $0.value.time) } }.sorted { $0.time > $1.time }
  }

  /// Forgets what was collected.
  public func reset() {
    lock.withLock { entries = [:] }
  }
}
