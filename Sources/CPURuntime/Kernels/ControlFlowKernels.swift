internal import GraphIR
internal import TensorCore

/// The control-flow and state family: function calls, `If`, `While`, identities, placeholders,
/// constants and variables. Their kernels work on values (handles and TensorLists pass through
/// identities and loops) and reach the interpreter through ``KernelContext/host``.
enum ControlFlowKernels {
  static func register(in registry: inout OpRegistry) {
    registry.add("NoOp", inputs: [], outputs: [], .values { _, _ in [] })
    for op in ["Identity", "Snapshot", "StopGradient", "PreventGradient"] {
      // Any value passes: tensors, variable handles and TensorLists in loop bodies.
      let traits: OpSchema.Traits =
        op == "PreventGradient" ? .movesElements : [.movesElements, .sharesInput]
      registry.add(
        op, inputs: ["input"], outputs: ["output"], traits: traits, precision: .clear,
        .values { _, inputs in
          guard let value = inputs.first else { throw KernelError("Expected one input.") }
          return [value]
        })
    }
    // A placeholder with a default: its input, when nothing is fed (a signature feeds the node
    // itself).
    registry.add(
      "PlaceholderWithDefault", inputs: [.init("input", type: "dtype")],
      outputs: [.init("output", type: "dtype")], attributes: [OpSchema.Attribute("shape", .shape)],
      traits: .movesElements, precision: .clear,
      .values { _, inputs in
        guard let value = inputs.first else { throw KernelError("Expected one input.") }
        return [value]
      })
    registry.add(
      "IdentityN", inputs: [.init("input", .typeList("T"))],
      outputs: [.init("output", .typeList("T"))],
      traits: .movesElements, .values { _, inputs in inputs })
    registry.add(
      "Placeholder", inputs: [], outputs: [.init("output", type: "dtype")],
      .values { _, _ in
        throw KernelError(
          "The placeholder is not a signature input; feed it through the signature.")
      })
    // Decoded once by the interpreter, which caches constants; this kernel is its decoder.
    registry.add(
      "Const", inputs: [], outputs: [.init("output", type: "dtype")],
      attributes: [OpSchema.Attribute("value", .tensor)]
    ) { context, _ in
      [try TensorDecoding.constant(context.node, limits: context.limits)]
    }
    registry.add(
      "VarHandleOp", inputs: [], outputs: [.fixed("resource", .resource)],
      attributes: [.type("dtype"), OpSchema.Attribute("shape", .shape)], traits: .stateful,
      .values { context, _ in
        guard let key = try context.requireHost().variableKey(of: context) else {
          throw KernelError(code: .missingVariable, "No checkpoint entry saves this variable.")
        }
        return [.variable(key: key)]
      })
    // A TF1 reference variable gives its value itself.
    for op in ["VariableV2", "Variable"] {
      registry.add(
        op, inputs: [], outputs: [.init("ref", type: "dtype")],
        attributes: [OpSchema.Attribute("shape", .shape)], traits: .stateful,
        .values { context, _ in
          let host = try context.requireHost()
          guard let key = host.variableKey(of: context) else {
            throw KernelError(code: .missingVariable, "No checkpoint entry saves this variable.")
          }
          return [.tensor(try host.variable(key))]
        })
    }
    registry.add(
      "ReadVariableOp", inputs: [.fixed("resource", .resource)],
      outputs: [.init("value", type: "dtype")], traits: .stateful,
      .values { context, inputs in
        guard case .variable(let key)? = inputs.first else {
          throw KernelError("Expected a variable handle.")
        }
        return [.tensor(try context.requireHost().variable(key))]
      })
    // Writes: the value, or the variable's value plus or minus it.
    for (op, function) in [
      ("AssignVariableOp", nil), ("AssignAddVariableOp", BinaryFunction.add),
      ("AssignSubVariableOp", BinaryFunction.sub),
    ] {
      registry.add(
        op, inputs: [.fixed("resource", .resource), .init("value", type: "dtype")], outputs: [],
        attributes: op == "AssignVariableOp" ? [.bool("validate_shape", false)] : [],
        traits: .stateful,
        .values { context, inputs in
          guard case .variable(let key)? = inputs.first, inputs.count == 2,
            case .tensor(let value) = inputs[1]
          else { throw KernelError("Expected a variable handle and a value.") }
          let host = try context.requireHost()
          try host.assign(
            key,
            try function.map { try $0.apply(try host.variable(key), value, limits: context.limits) }
              ?? value)
          return []
        })
    }
    // A gather from a variable (tf.nn.embedding_lookup of a resource variable): GatherV2 of its
    // value along axis 0.
    registry.add(
      "ResourceGather",
      inputs: [.fixed("resource", .resource), .init("indices", type: "Tindices")],
      outputs: [.init("output", type: "dtype")],
      attributes: [.int("batch_dims", 0), .bool("validate_indices", true)], traits: .stateful,
      .values { context, inputs in
        guard case .variable(let key)? = inputs.first, inputs.count == 2,
          case .tensor(let indices) = inputs[1]
        else { throw KernelError("Expected a variable handle and indices.") }
        return [
          .tensor(
            try ShapeKernels.gathered(
              try context.requireHost().variable(key), indices, axis: try context.int("batch_dims"),
              batchDimensions: try context.int("batch_dims"), limits: context.limits))
        ]
      })
    for (op, traits) in [
      ("StatefulPartitionedCall", OpSchema.Traits.stateful), ("PartitionedCall", []),
    ] {
      registry.add(
        op, inputs: [.init("args", .typeList("Tin"))],
        outputs: [.init("output", .typeList("Tout"))],
        attributes: [OpSchema.Attribute("f", .function)], traits: [.callsFunctions, traits],
        .values { context, inputs in try context.requireHost().call("f", of: context, inputs) })
    }
    for (op, traits) in [("If", OpSchema.Traits.stateful), ("StatelessIf", [])] {
      registry.add(
        op, inputs: [.init("cond", type: "Tcond"), .init("input", .typeList("Tin"))],
        outputs: [.init("output", .typeList("Tout"))],
        attributes: ["then_branch", "else_branch"].map { OpSchema.Attribute($0, .function) },
        traits: [.callsFunctions, traits], .values(conditional))
    }
    // TF1 conditionals (the interpreter does not run a node reading a dead value, but a Merge).
    for op in ["Switch", "RefSwitch"] {
      registry.add(
        op, inputs: ["data", .init("pred", type: .fixed(.bool))],
        outputs: ["output_false", "output_true"], traits: .movesElements,
        .values { _, inputs in
          guard inputs.count == 2, case .tensor(let predicate) = inputs[1],
            case .bool(let flags) = predicate.storage, flags.count == 1
          else { throw KernelError("The predicate must be a bool scalar.") }
          return flags[0] ? [.dead, inputs[0]] : [inputs[0], .dead]
        })
    }
    for op in ["Merge", "RefMerge"] {
      registry.add(
        op, inputs: [.init("inputs", .number("N"))],
        outputs: ["output", .init("value_index", type: .fixed(.int32))], traits: .movesElements,
        .values { _, inputs in
          guard let live = inputs.firstIndex(where: { if case .dead = $0 { false } else { true } })
          else { return [.dead] }
          return [
            inputs[live],
            .tensor(Tensor(dtype: .int32, shape: Shape([]), storage: .int32([Int32(live)]))),
          ]
        })
    }
    for (op, traits) in [("While", OpSchema.Traits.stateful), ("StatelessWhile", [])] {
      registry.add(
        op, inputs: [.init("input", .typeList("T"))], outputs: [.init("output", .typeList("T"))],
        attributes: ["cond", "body"].map { OpSchema.Attribute($0, .function) },
        traits: [.callsFunctions, traits], .values(loop))
    }
  }

  /// `If`: runs `then_branch` when the condition's first element is non-zero, else `else_branch`.
  private static func conditional(_ context: KernelContext, _ inputs: [Value]) throws -> [Value] {
    guard case .tensor(let condition)? = inputs.first else {
      throw KernelError("The condition must be a tensor.")
    }
    let truth = try Kernels.doubles(condition).first.map { $0 != 0 } ?? false
    return try context.requireHost().call(
      truth ? "then_branch" : "else_branch", of: context, Array(inputs.dropFirst()))
  }

  /// `While`: runs `body` while `cond` gives true, at most the limits' `maxLoopIterations` times.
  private static func loop(_ context: KernelContext, _ inputs: [Value]) throws -> [Value] {
    let host = try context.requireHost()
    var values = inputs
    let limit = context.limits.maxLoopIterations
    for _ in 0..<limit {
      guard case .tensor(let condition)? = try host.call("cond", of: context, values).first,
        case .bool(let flags) = condition.storage, let proceed = flags.first
      else { throw KernelError("The loop condition did not give a bool.") }
      if !proceed { return values }
      values = try host.call("body", of: context, values)
    }
    throw KernelError(
      code: .limitExceeded,
      "The loop ran \(limit) times without its condition turning false, the limit "
        + "(--max-loop-iterations); the loop does not end, or needs a higher limit.")
  }
}
