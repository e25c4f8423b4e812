internal import GraphIR
internal import TensorCore

extension Interpreter {
  /// How one body is evaluated for given arguments and outputs, worked out once: the nodes the
  /// outputs need in dependency order, where each input comes from, and after which step each
  /// result is no longer needed (so its memory is freed while the body still runs).
  struct Plan {
    enum Source {
      case node(Int, output: Int, reference: String)
      case argument(Int)
      /// An input that cannot be read, with why.
      case undefined(String)
    }
    struct Step {
      var node: Int
      /// Whether the node is a fed placeholder of the top-level graph.
      var fed: Bool
      var inputs: [Source]
      /// The nodes whose deadness the node inherits through control inputs (in functions with
      /// TF1 conditionals: a `Switch`'s branch pivots); see ``Plan/pivotOps``.
      var controls: [Int] = []
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
      /// Whether input 1 is a weight (a constant or variable, perhaps through ops that share
      /// their input's buffer, ``OpSchema/Traits/sharesInput``), whose packing matrix products keep.
      var weightInput = false
    }
    /// An elementwise node that reads the result of a member of a step (the step's node or one
    /// of its fused nodes) and otherwise only values computed before the step began. The step
    /// computes its members block by block into the node's result, each block staying in cache
    /// through all of them, instead of writing and reading a tensor per node (a dense layer's
    /// BiasAdd and GELU, a layer normalization's scale and shift; see ``Interpreter/Segment``).
    struct Fused {
      /// Where an operand comes from: member `i` of the step (0 its node, i its i-th fused
      /// node), or a value computed before the step.
      enum Operand {
        case member(Int)
        case outside(Source)
      }
      var node: Int
      /// How it computes (for ``FusionRule/floatCast``: the values, rounded to the target type).
      var operation: FusionRule
      /// The node's inputs, in order.
      var operands: [Operand]
    }
    /// The function planned, each planned node's attributes completed with its schema's
    /// defaults (checked once here, so kernels read them without checking).
    var function: Function
    var steps: [Step]
    var outputs: [Source]

    /// TF1's dataflow loop ops, which ``GraphIR/Module/functionalizingLoops()`` turns into
    /// `While` loops; one left means the loop could not be rewritten.
    static let dataflowLoopOps: Set<String> = [
      "Enter", "RefEnter", "Exit", "RefExit", "NextIteration", "RefNextIteration", "LoopCond",
    ]
    /// TF1 conditionals' ops: a `Switch` sends its value to one output and leaves the other
    /// dead, and a `Merge` passes on its live input.
    static let conditionalOps = Set(["Switch", "RefSwitch"]).union(mergeOps)
    static let mergeOps: Set<String> = ["Merge", "RefMerge"]
    /// The ops through whose control outputs a conditional's deadness reaches the nodes of a
    /// branch (its pivots: an `Identity` of a `Switch` output, the `NoOp` gathering them).
    static let pivotOps: Set<String> = conditionalOps.union(["Identity", "NoOp"])
    /// The ops that write a variable: a node with a control input on one runs after it (reads
    /// the written value), and a called function's writes among its control results run with it.
    static let variableWrites: Set<String> = [
      "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
    ]

    /// Plans `function` for computing `outputs`, with the placeholders `fed` given as values
    /// (top-level graphs) and the op definitions of `registry`; without `fusing`, every node is
    /// a step of its own. `loopProblem` is why the module's TF1 loops could not be rewritten,
    /// if they could not. The nodes `effects` are run too, for what they do (a variable write,
    /// an initializer filling a table), and with them what they depend on; `followingControls`,
    /// everything they depend on through control inputs too (the init op's dependencies).
    ///
    /// - Throws: ``RuntimeError`` with code `malformedGraph` for a node the outputs need whose
    ///   attributes do not fit its op's schema, `unsupported` for a TF1 loop op.
    init(
      _ function: Function, fed: Set<NodeID>, outputs: [Input], effects: [NodeID] = [],
      followingControls: Bool = false, registry: OpRegistry, fusing: Bool = true,
      loopProblem: String? = nil
    ) throws {
      var function = function
      func source(_ input: Input) -> Source {
        switch input {
        case .argument(let position): return .argument(position)
        case .unresolved(let reference):
          return .undefined("'\(reference)' names nothing in the function")
        case .output(let node, let slot):
          let producer = function[node]
          let reference = function.reference(to: input).text(in: function.syntax)
          guard let schema = registry.schema(for: producer.op) else {
            // An op without a schema has no kernel either: running the producer reports it
            // before anything reads this position.
            return .node(node.index, output: slot.index, reference: reference)
          }
          guard let position = schema.outputPosition(of: slot, attributes: producer.attributes)
          else {
            return .undefined("'\(reference)' names no output of \(producer.op)")
          }
          return .node(node.index, output: position, reference: reference)
        }
      }
      func producer(_ source: Source) -> Int? {
        if case .node(let node, _, _) = source { return node }
        return nil
      }
      let sources = function.nodes.map { $0.inputs.map(source) }
      // With conditionals, deadness also flows through control inputs from pivots, which are
      // then evaluated too; fused steps, which assume live inputs, are not formed.
      let hasConditionals = function.nodes.contains { Self.conditionalOps.contains($0.op) }
      let controls = function.nodes.map { node -> [Int] in
        guard hasConditionals else { return [] }
        return node.controlInputs.compactMap { input in
          guard let producer = input.node?.index,
            Self.pivotOps.contains(function.nodes[producer].op)
          else { return nil }
          return producer
        }
      }
      // The writes each node is ordered after; a write itself runs after everything it is
      // ordered after (the reads of the value it replaces).
      let writes = function.nodes.map { node -> [Int] in
        node.controlInputs.compactMap { input in
          guard let producer = input.node?.index,
            Self.variableWrites.contains(node.op)
              || Self.variableWrites.contains(function.nodes[producer].op)
          else { return nil }
          return producer
        }
      }
      let fusing = fusing && !hasConditionals
      // The nodes the outputs need, in dependency order (depth-first post-order).
      var order: [Int] = []
      var state = [UInt8](repeating: 0, count: function.nodes.count)  // 0 new, 1 open, 2 done
      self.outputs = outputs.map(source)
      var stack = (self.outputs.compactMap(producer) + effects.map(\.index)).map { ($0, false) }
      while let (node, expanded) = stack.popLast() {
        if expanded {
          if state[node] != 2 { state[node] = 2; order.append(node) }
          continue
        }
        guard state[node] == 0 else { continue }
        state[node] = 1
        stack.append((node, true))
        // With effects, everything before them; otherwise the pivots and the variable writes
        // the node is ordered after.
        let prerequisites =
          followingControls
          ? function.nodes[node].controlInputs.compactMap(\.node?.index)
          : controls[node] + writes[node]
        for producer in sources[node].compactMap(producer) + prerequisites
        where state[producer] == 0 {
          stack.append((producer, false))
        }
      }
      for node in order {
        let id = NodeID(node)
        if Self.dataflowLoopOps.contains(function[id].op) {
          throw RuntimeError(
            code: .unsupported, function: function.name, node: function[id].name,
            message: "\(function[id].op) belongs to a TF1 dataflow loop that tfmp could not "
              + "rewrite as a While loop: \(loopProblem ?? "it is not part of a loop frame")")
        }
        guard let schema = registry.schema(for: function[id].op) else { continue }
        do {
          function[id].attributes = try schema.completing(function[id].attributes)
        } catch {
          throw RuntimeError(
            code: .malformedGraph, function: function.name, node: function[id].name,
            message: error.message)
        }
      }
      self.function = function
      let nodes = function.nodes
      // Constants first: they are then ready for any fused node that reads one (but those that
      // a conditional's deadness reaches, which must follow their pivots).
      let early = { (node: Int) in nodes[node].op == "Const" && controls[node].isEmpty }
      order = order.filter(early) + order.filter { !early($0) }
      // Results that are the same array on every run: constants and variables, reshaped or not.
      var isWeight = [Bool](repeating: false, count: nodes.count)
      for node in order {
        let op = nodes[node].op
        let shares = registry.schema(for: op)?.traits.contains(.sharesInput) == true
        isWeight[node] =
          ["Const", "ReadVariableOp", "VariableV2", "Variable"].contains(op)
          || (shares && sources[node].first.flatMap(producer).map { isWeight[$0] } == true)
      }
      // Steps in order; an elementwise node joins the latest step one of whose members it reads,
      // when its other inputs were computed before that step began.
      var steps: [Step] = []
      var stepOf = [Int](repeating: -1, count: nodes.count)
      var member = [Int](repeating: 0, count: nodes.count)  // position in its step
      // Nodes with other outputs read too (a Split) do not start fused steps (a step keeps one
      // result), nor do constants (a scale or bias is an operand, not what a step computes on).
      var anchors = nodes.map { $0.op != "Const" }
      for inputs in sources {
        for case .node(let producer, let output, _) in inputs where output > 0 {
          anchors[producer] = false
        }
      }
      func fusion(_ node: Int) -> (step: Int, fused: Fused)? {
        let definition = nodes[node]
        let inputs = sources[node]
        guard
          let operation = Self.elementwiseOperation(
            definition, inputs: inputs.count, registry: registry)
        else {
          return nil
        }
        func step(_ input: Source) -> Int? {
          guard case .node(let producer, 0, _) = input, stepOf[producer] >= 0, anchors[producer]
          else { return nil }
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
          case .node(let producer, _, _):
            guard stepOf[producer] >= 0, stepOf[producer] < target else { return nil }
          case .argument: break
          case .undefined: return nil
          }
          operands.append(.outside(input))
        }
        return (target, Fused(node: node, operation: operation, operands: operands))
      }
      for node in order {
        let isFed = fed.contains(NodeID(node))
        if fusing, !isFed, let (step, fused) = fusion(node) {
          steps[step].fused.append(fused)
          stepOf[node] = step
          member[node] = steps[step].fused.count
          continue
        }
        let weightInput =
          sources[node].count > 1 && producer(sources[node][1]).map { isWeight[$0] } == true
        steps.append(
          Step(
            node: node, fed: isFed, inputs: sources[node], controls: controls[node],
            weightInput: weightInput))
        stepOf[node] = steps.count - 1
      }
      // A member read outside its step (by a later step, another step's fused node, or as an
      // output) is exported; the last member is the step's result anyway.
      var readOutside = [Bool](repeating: false, count: nodes.count)
      for step in steps {
        for input in step.inputs {
          if let producer = producer(input) { readOutside[producer] = true }
        }
        for fused in step.fused {
          for case .outside(let input) in fused.operands {
            if let producer = producer(input) { readOutside[producer] = true }
          }
        }
      }
      for output in self.outputs {
        if let producer = producer(output) { readOutside[producer] = true }
      }
      for index in steps.indices where !steps[index].fused.isEmpty {
        let members = [steps[index].node] + steps[index].fused.map(\.node)
        steps[index].exports = members.indices.dropLast().filter { readOutside[members[$0]] }
      }
      // Each result is released after the last node that reads it (body outputs never): the
      // last use of a node is (step, 0) when it is the step's node, (step, 1) a fused node.
      var lastUse = [(step: Int, fused: Int)](repeating: (-1, 0), count: nodes.count)
      for (position, step) in steps.enumerated() {
        for producer in step.inputs.compactMap(producer) + step.controls {
          lastUse[producer] = (position, 0)
        }
        for fused in step.fused {
          for case .outside(let input) in fused.operands {
            if let producer = producer(input) { lastUse[producer] = (position, 1) }
          }
        }
      }
      for output in self.outputs {
        if let producer = producer(output) { lastUse[producer] = (steps.count, 0) }
      }
      for (node, use) in lastUse.enumerated() where use.step >= 0 && use.step < steps.count {
        if use.fused == 0 {
          steps[use.step].releasesAfterNode.append(node)
        } else {
          steps[use.step].releases.append(node)
        }
      }
      self.steps = steps
    }

    /// How `node` is computed as a fused member, when it is an elementwise op of one float
    /// tensor (unary math, casts between float types) or of two (arithmetic).
    static func elementwiseOperation(_ node: Node, inputs: Int, registry: OpRegistry) -> FusionRule?
    {
      guard let rule = registry.definition(for: node.op)?.fusion else { return nil }
      switch rule {
      case .unary: return inputs == 1 ? rule : nil
      case .binary: return inputs == 2 ? rule : nil
      case .floatCast:
        let floats: [DType] = [.float32, .float16, .bfloat16]
        guard inputs == 1, let source = node.type("SrcT"), floats.contains(source),
          let target = node.type("DstT"),
          floats.contains(target)
        else { return nil }
        return rule
      }
    }
  }
}
