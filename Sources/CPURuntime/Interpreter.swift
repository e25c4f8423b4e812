public import GraphIR
public import ModelFormats
public import TensorCore
internal import Foundation
internal import CTFMPKernels

/// Runs a module's signatures on the CPU, in float32 (and float16 or bfloat16 where the graph
/// says so).
///
/// The top-level graph is evaluated from the signature's outputs back to its inputs; function
/// calls run the called function's body the same way. Only the nodes an output needs are
/// evaluated, in dependency order (control dependencies carry no data in inference graphs and
/// are not followed). Each op runs the kernel its ``OpRegistry`` definition gives; calls, loops
/// and conditionals are kernels too, calling back into the interpreter.
public final class Interpreter: @unchecked Sendable {
  // Sendable: the caches are guarded by `lock` (plans) or are Sendable classes; everything else
  // is immutable.

  private let module: Module
  /// Why the module's TF1 dataflow loops could not be rewritten as While loops, if they could
  /// not (the plan of a graph that needs one says so).
  private let loopProblem: String?
  /// Why the module is too large to run, if it is (more nodes than the limits allow).
  private let sizeProblem: String?
  private let registry: OpRegistry
  private let variableKeys: [NodeID: String]
  private let store: VariableStore
  /// Evaluation plans by function (or signature, for the top-level graph).
  private var plans: [String: Plan] = [:]
  /// The lookup tables the model made, by name.
  private var tables: [String: LookupTable] = [:]
  /// Whether the module makes lookup tables, which its init op fills before the first run.
  private let makesTables: Bool
  /// How running the init op went, once it ran.
  private var initialization: Result<Void, RuntimeError>?
  private let initializationLock = NSLock()
  /// Weights packed for matrix products.
  let packs = PackedWeights()
  private let lock = NSLock()

  /// Where the time of each op type goes, when profiling.
  public let profile: OpProfile?
  /// What sees every node's outputs, if anything.
  public let observer: (any RunObserver)?
  /// The ceilings on tensor sizes, loop iterations and call nesting.
  public let limits: ResourceLimits

  /// Prepares `module` for running, its variables read from `checkpoint`; with `profiling`,
  /// ``profile`` collects each kernel's time; `observer` sees every node's outputs; `limits`
  /// bound what running may create (a kernel or a constant that would exceed them throws);
  /// variables of `checkpoint` that `shared` has decoded are taken from it, and those decoded
  /// here are given to it.
  ///
  /// TF1 dataflow loops are run as the While loops they stand for
  /// (``GraphIR/Module/functionalizingLoops()``): the observer sees their nodes in the
  /// functions made for their conditions and bodies.
  public init(
    module: Module, checkpoint: CheckpointReader?,
    storedReduced: [String: ReducedPrecision] = [:], profiling: Bool = false,
    observer: (any RunObserver)? = nil, limits: ResourceLimits = .standard,
    sharing shared: SharedVariables? = nil
  ) {
    do {
      self.module = try module.functionalizingLoops()
      loopProblem = nil
    } catch {
      self.module = module
      loopProblem = error.description
    }
    self.observer = observer
    self.limits = limits
    let nodeCount = module.functions.reduce(module.graph.nodes.count) { $0 + $1.nodes.count }
    sizeProblem =
      nodeCount > limits.maxNodes
      ? "The model has \(nodeCount) nodes, more than the limit of \(limits.maxNodes)." : nil
    registry = .standard
    store = VariableStore(
      checkpoint: checkpoint, storedReduced: storedReduced, limits: limits, sharing: shared)
    profile = profiling ? OpProfile() : nil
    variableKeys = Dictionary(
      module.variables.map { ($0.node, $0.checkpointKey) }, uniquingKeysWith: { first, _ in first })
    makesTables = ([module.graph] + module.functions).contains { function in
      function.nodes.contains { $0.op == "HashTableV2" }
    }
  }

  /// Prepares `model` (a SavedModel or a frozen graph) for running, seen by `observer`, within
  /// `limits`, sharing decoded variables through `shared`.
  ///
  /// - Throws: ``ModelFormatError`` when its graph cannot be read into a module.
  public convenience init(
    model: GraphModel, profiling: Bool = false, observer: (any RunObserver)? = nil,
    limits: ResourceLimits = .standard, sharing shared: SharedVariables? = nil
  ) throws {
    self.init(
      module: try model.module(), checkpoint: model.checkpoint,
      storedReduced: model.storedReduced, profiling: profiling, observer: observer,
      limits: limits, sharing: shared)
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
  public var signatureKeys: [String] { module.signatureKeys }

  /// The dtype and shape (-1 for unknown dimensions) of each input of signature `key`.
  ///
  /// - Throws: ``RuntimeError`` for an unknown signature or an input of a dtype tfmp does not know.
  public func inputSpecs(signature key: String) throws -> [String: (dtype: DType, shape: [Int])] {
    let signature = try self.signature(key)
    var specs: [String: (dtype: DType, shape: [Int])] = [:]
    for input in signature.inputs {
      guard let dtype = input.dtype else {
        throw RuntimeError(
          code: .unsupported, function: "signature '\(key)'", node: input.name,
          message: "The input's dtype is not one tfmp knows.")
      }
      specs[input.name] = (dtype, input.shape.dimensions.map { Int($0) })
    }
    return specs
  }

  /// Runs signature `key` on `inputs` (keyed by the signature's input names).
  ///
  /// - Throws: ``RuntimeError`` for a missing or mistyped input, an op without a kernel, a
  ///   kernel's complaint, or what would go beyond ``limits`` (code `limitExceeded`: a tensor
  ///   too large, a loop that does not end, calls nested too deep, too many nodes);
  ///   ``ModelFormatError`` for a corrupt checkpoint tensor.
  public func run(signature key: String, inputs: [String: Tensor]) throws -> [String: Tensor] {
    if let sizeProblem {
      throw RuntimeError(
        code: .limitExceeded, function: Function.graphName, node: key, message: sizeProblem)
    }
    let signature = try self.signature(key)
    if makesTables { try initialize() }
    var feeds: [NodeID: Value] = [:]
    for input in signature.inputs {
      guard let tensor = inputs[input.name] else {
        throw RuntimeError(
          code: .missingInput, function: Function.graphName, node: input.name,
          message: "The signature needs input '\(input.name)' but none was given.")
      }
      guard tensor.dtype == input.dtype else {
        throw RuntimeError(
          code: .invalidInput, function: Function.graphName, node: input.name,
          message:
            "Input '\(input.name)' must be \(input.dtype.map(\.name) ?? "?") but is \(tensor.dtype)."
        )
      }
      guard case .output(let placeholder, _) = input.source else {
        throw RuntimeError(
          code: .malformedGraph, function: Function.graphName, node: input.name,
          message: "The signature input names no node of the graph.")
      }
      feeds[placeholder] = .tensor(tensor)
    }
    let values = try evaluate(
      module.graph, planKey: "\u{0}" + key, arguments: [], feeds: feeds,
      outputs: signature.outputs.map(\.source), depth: 0)
    var result: [String: Tensor] = [:]
    for (output, value) in zip(signature.outputs, values) {
      guard case .tensor(let tensor) = value else {
        throw RuntimeError(
          code: .malformedGraph, function: Function.graphName, node: output.name,
          message: "The signature output is not a tensor (a variable handle, a TensorList, or "
            + "the output of a conditional's branch not taken).")
      }
      result[output.name] = tensor
    }
    return result
  }

  /// Runs the module's init op (`__saved_model_init_op`) once, which fills its lookup tables:
  /// the op's control inputs, and in the functions they call, the control results too (an
  /// initializer's `LookupTableImportV2` is one). A failure is the failure of every run.
  private func initialize() throws {
    let result = initializationLock.withLock {
      if let initialization { return initialization }
      var outcome = Result<Void, RuntimeError>.success(())
      if let operation = module.signatures[Signature.initOperationKey] {
        do {
          _ = try evaluate(
            module.graph, planKey: "\u{1}" + Signature.initOperationKey, arguments: [],
            feeds: [:], outputs: [], effects: operation.outputs.compactMap(\.source.node),
            depth: 0, initializing: true)
        } catch {
          let known = error as? RuntimeError
          outcome = .failure(
            RuntimeError(
              code: known?.code ?? .malformedGraph, function: known?.function ?? Function.graphName,
              node: known?.node ?? Signature.initOperationKey,
              message: "Running the init op, which fills the lookup tables: "
                + (known?.message ?? "\(error)")))
        }
      }
      initialization = outcome
      return outcome
    }
    try result.get()
  }

  /// Words to draw random string inputs from: a few of no model's, and the string keys of the
  /// model's lookup tables (its init op run for them), sorted.
  ///
  /// - Throws: ``RuntimeError`` when the init op fails.
  public func vocabulary() throws -> [[UInt8]] {
    if makesTables { try initialize() }
    let keys = lock.withLock { tables.values.flatMap(\.stringKeys) }
    return Set(keys + ["", "a", "tfmp"].map { Array($0.utf8) }).sorted {
      $0.lexicographicallyPrecedes($1)
    }
  }

  private func signature(_ key: String) throws -> Signature {
    guard let signature = module.signatures[key], key != Signature.initOperationKey else {
      throw RuntimeError(
        code: .missingSignature, function: Function.graphName, node: key,
        message:
          "The model has no signature '\(key)'; it has \(signatureKeys.joined(separator: ", ")).")
    }
    return signature
  }

  /// The plan for `function` under `key`, made on first use.
  private func plan(
    _ function: Function, key: String, fed: Set<NodeID>, outputs: [Input], effects: [NodeID],
    initializing: Bool
  ) throws -> Plan {
    if let plan = lock.withLock({ plans[key] }) { return plan }
    let plan = try Plan(
      function, fed: fed, outputs: outputs, effects: effects, followingControls: initializing,
      registry: registry, fusing: observer == nil, loopProblem: loopProblem)
    lock.withLock { plans[key] = plan }
    return plan
  }

  /// Evaluates the nodes of `function` that `outputs` and `effects` need (see
  /// ``Plan/init(_:fed:outputs:effects:registry:fusing:loopProblem:)``) and returns those
  /// outputs; `depth` counts the calls it is nested in; `initializing` says it runs in the init
  /// op.
  func evaluate(
    _ function: Function, planKey: String, arguments: [Value], feeds: [NodeID: Value],
    outputs: [Input], effects: [NodeID] = [], depth: Int, initializing: Bool = false
  ) throws -> [Value] {
    let plan = try plan(
      function, key: planKey, fed: Set(feeds.keys), outputs: outputs, effects: effects,
      initializing: initializing)
    // The planned copy, whose nodes' attributes are complete.
    let function = plan.function
    var results: [[Value]] = Array(repeating: [], count: function.nodes.count)
    func value(_ source: Plan.Source, for node: String) throws -> Value {
      switch source {
      case .node(let producer, let output, let reference):
        if isDead(producer) { return .dead }
        guard output < results[producer].count else {
          throw RuntimeError(
            code: .malformedGraph, function: function.name, node: node,
            message: "Input '\(reference)' has no output \(output).")
        }
        return results[producer][output]
      case .argument(let position):
        guard position < arguments.count else {
          throw RuntimeError(
            code: .malformedGraph, function: function.name, node: node,
            message:
              "The function was called with \(arguments.count) arguments; argument \(position) is missing."
          )
        }
        return arguments[position]
      case .undefined(let reason):
        throw RuntimeError(
          code: .malformedGraph, function: function.name, node: node,
          message: "An input cannot be read: \(reason).")
      }
    }
    /// Whether every output of `node` is dead (see ``Value/dead``).
    func isDead(_ node: Int) -> Bool {
      if results[node].count == 1, case .dead = results[node][0] { return true }
      return false
    }
    for step in plan.steps {
      let id = NodeID(step.node)
      let node = function[id]
      var inputs: [Value] = []
      if step.fed, let feed = feeds[id] {
        results[step.node] = [feed]
      } else {
        inputs = try step.inputs.map { try value($0, for: node.name) }
        // A node on a branch not taken is not run; a Merge takes its live input whatever
        // reaches it through control inputs, as in TensorFlow's executor.
        let readsDead =
          inputs.contains { if case .dead = $0 { true } else { false } }
          || step.controls.contains(where: isDead)
        if readsDead && !Plan.mergeOps.contains(node.op) {
          results[step.node] = [.dead]
        } else {
          results[step.node] = try runtimeErrors(function, node) {
            node.op == "Const"
              ? [.tensor(try store.constant(node, id: id, in: function.name))]
              : try execute(
                node, id: id, in: function, inputs: inputs, weightInput: step.weightInput,
                depth: depth, initializing: initializing)
          }
        }
      }
      if let observer {
        func tensor(_ value: Value) -> Tensor? {
          if case .tensor(let tensor) = value { tensor } else { nil }
        }
        let tensors = results[step.node].map(tensor)
        observer.observe(
          function: function.name, node: node.name, op: node.op, inputs: inputs.map(tensor),
          outputs: tensors)
        if let replacements = observer.replacement(
          function: function.name, node: node.name, outputs: tensors)
        {
          for (index, replacement) in zip(results[step.node].indices, replacements) {
            if let replacement { results[step.node][index] = .tensor(replacement) }
          }
        }
      }
      for node in step.releasesAfterNode { results[node] = [] }
      if !step.fused.isEmpty {
        // Taken out of `results`, so that the members can be computed in place.
        var root = results[step.node].first
        results[step.node] = []
        for (member, result) in try runFused(step, in: function, root: &root, depth: depth, value) {
          results[member] = [result]
        }
      }
      for node in step.releases { results[node] = [] }
    }
    return try plan.outputs.map { source in
      if case .node(let producer, let output, let reference) = source,
        output >= results[producer].count
      {
        throw RuntimeError(
          code: .malformedGraph, function: function.name, node: reference,
          message: "The output '\(reference)' was not computed.")
      }
      return try value(source, for: "<outputs>")
    }
  }

  /// Runs `body`, reporting a kernel's complaint as a runtime error at `node` of `function`.
  func runtimeErrors<T>(_ function: Function, _ node: Node, _ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch let error as KernelError {
      throw RuntimeError(
        code: error.code, function: function.name, node: node.name, message: error.message)
    }
  }

  /// Runs `node`'s kernel on `inputs`; `weightInput` says that input 1 is a weight; `depth`
  /// counts the calls the node's function is nested in; `initializing` that it runs in the init
  /// op.
  func execute(
    _ node: Node, id: NodeID, in function: Function, inputs: [Value], weightInput: Bool = false,
    depth: Int, initializing: Bool = false
  ) throws -> [Value] {
    guard let kernel = registry.definition(for: node.op)?.kernel else {
      throw KernelError(code: .missingKernel, "Op '\(node.op)' has no CPU kernel in tfmp yet.")
    }
    let context = KernelContext(
      node: node, id: id, function: function.name, weightPacks: weightInput ? packs : nil,
      host: self, limits: limits, depth: depth, initializing: initializing)
    switch kernel {
    case .values(let kernel):
      return try kernel(context, inputs)
    case .tensors(let kernel):
      let tensors = try inputs.map { value -> Tensor in
        guard case .tensor(let tensor) = value else {
          throw KernelError("Expected a tensor input, got a variable handle or a list.")
        }
        return tensor
      }
      let start = profile.map { _ in ContinuousClock.now }
      var outputs = try kernel(context, tensors)
      // Ops that only move elements pass reduced-precision values through unchanged.
      let exact = movesElements(node.op) && !tensors.contains(where: { $0.dtype == .float32 })
      for index in outputs.indices {
        Rounding.round(&outputs[index], for: node, alreadyExact: exact)
      }
      if let profile, let start { profile.add(node.op, ContinuousClock.now - start) }
      return outputs.map { .tensor($0) }
    }
  }

  /// Whether `op` only moves elements (see ``OpSchema/Traits/movesElements``).
  func movesElements(_ op: String) -> Bool {
    registry.schema(for: op)?.traits.contains(.movesElements) == true
  }
}

extension Interpreter: KernelHost {
  func call(_ attribute: String, of context: KernelContext, _ inputs: [Value]) throws -> [Value] {
    guard case .function(let callee)? = context.node.attributes[attribute],
      let function = module.function(named: callee.name)
    else {
      throw KernelError(
        code: .malformedGraph, "The function in attribute '\(attribute)' is not in the library.")
    }
    guard inputs.count == function.arguments.count else {
      throw KernelError(
        code: .malformedGraph,
        "Function '\(callee.name)' takes \(function.arguments.count) arguments but is given \(inputs.count)."
      )
    }
    guard context.depth < limits.maxCallDepth else {
      throw KernelError(
        code: .limitExceeded,
        "Calling '\(callee.name)' nests calls \(context.depth + 1) deep, more than the limit of "
          + "\(limits.maxCallDepth): the function library calls itself, directly or through "
          + "others, or nests calls deeper than any model TensorFlow writes.")
    }
    // A function runs its variable writes among its control results (as TensorFlow runs a
    // stateful call's), and in the init op all of them, under a plan of its own.
    let effects = function.controlResults.compactMap(\.source.node).filter {
      context.initializing || Plan.variableWrites.contains(function[$0].op)
    }
    return try evaluate(
      function, planKey: (context.initializing ? "\u{1}" : "") + callee.name, arguments: inputs,
      feeds: [:], outputs: function.results.map(\.source), effects: effects,
      depth: context.depth + 1, initializing: context.initializing)
  }

  func variableKey(of context: KernelContext) -> String? {
    context.function == Function.graphName ? variableKeys[context.id] : nil
  }

  func variable(_ key: String) throws -> Tensor { try store.variable(key) }

  func assign(_ key: String, _ value: Tensor) throws { try store.assign(key, value) }

  func table(_ name: String, keyType: DType, valueType: DType) throws -> LookupTable {
    try lock.withLock {
      if let table = tables[name] {
        guard table.keyType == keyType, table.valueType == valueType else {
          throw KernelError(
            "The lookup table '\(name)' is made twice, with different key or value types.")
        }
        return table
      }
      let table = LookupTable(name: name, keyType: keyType, valueType: valueType)
      tables[name] = table
      return table
    }
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
    lock.withLock { entries.map { ($0.key, $0.value.count, $0.value.time) } }.sorted {
      $0.time > $1.time
    }
  }

  /// Forgets what was collected.
  public func reset() {
    lock.withLock { entries = [:] }
  }
}
