/// Checks that a module is well formed: every input resolves to an argument or to an existing
/// output, input counts and attributes fit the ops' schemas, functions named by attributes exist,
/// node names are unique, and data dependencies have no cycle (except through TF1 loops'
/// `NextIteration`).
///
/// A cost paid in tests and in builds with `-DTFMP_INTERNAL_CHECKS` (after every conversion pass
/// over a well-formed module; `Scripts/test` runs the Swift tests so built too), never in release
/// builds; see ``checkInternally(_:schemas:)``.
public struct GraphVerifier: Sendable {
  /// Where op schemas come from; ops it does not know are checked for resolution only.
  public var schemas: any OpSchemaSource

  /// A verifier that checks arities and attributes against `schemas`.
  public init(schemas: any OpSchemaSource) { self.schemas = schemas }

  /// Every problem found in `module`, the functions in library order, then the top-level graph.
  public func problems(in module: Module) -> [GraphError] {
    (module.functions + [module.graph]).flatMap { problems(in: $0, module: module) }
  }

  /// Throws the first problem found in `module`.
  ///
  /// - Throws: ``GraphError`` describing it.
  public func verify(_ module: Module) throws(GraphError) {
    if let first = problems(in: module).first { throw first }
  }

  /// Whether `module` has no problems, when tfmp is built with `-DTFMP_INTERNAL_CHECKS`;
  /// `false` otherwise (without the cost of looking). Code that rewrites a module checks its
  /// result with ``checkInternally(_:schemas:)`` only when this held for its input.
  public static func isWellFormedForInternalChecks(_ module: Module, schemas: any OpSchemaSource)
    -> Bool
  {
    #if TFMP_INTERNAL_CHECKS
      return GraphVerifier(schemas: schemas).problems(in: module).isEmpty
    #else
      return false
    #endif
  }

  /// Verifies `module` when tfmp is built with `-DTFMP_INTERNAL_CHECKS`; does nothing otherwise.
  ///
  /// - Precondition: The module is well formed.
  public static func checkInternally(_ module: Module, schemas: any OpSchemaSource) {
    #if TFMP_INTERNAL_CHECKS
      let problems = GraphVerifier(schemas: schemas).problems(in: module)
      precondition(
        problems.isEmpty, "malformed module: \(problems.map(\.description).joined(separator: "; "))"
      )
    #endif
  }

  private func problems(in function: Function, module: Module) -> [GraphError] {
    var problems: [GraphError] = []
    func report(_ code: GraphError.Code, _ node: Node?, _ message: String) {
      problems.append(
        GraphError(
          code: code, function: function.name, location: node.map { "node '\($0.name)'" } ?? "",
          message: message))
    }
    var seen = Set<String>()
    for node in function.nodes {
      if !seen.insert(node.name).inserted {
        report(.duplicateName, node, "Another node has the same name.")
      }
      for input in node.inputs + node.controlInputs {
        check(input, of: function, at: node, report)
      }
      if let schema = schemas.schema(for: node.op) {
        do {
          _ = try schema.completing(node.attributes)
        } catch {
          report(.schemaMismatch, node, error.message)
        }
        let count = node.inputs.count
        if let expected = schema.inputCount(attributes: node.attributes), count != expected {
          report(
            .schemaMismatch, node,
            "\(node.op) takes \(expected) data inputs but the node has \(count).")
        }
      }
      for (name, value) in node.attributes {
        guard case .function(let callee) = value, module.function(named: callee.name) == nil else {
          continue
        }
        report(
          .missingFunction, node,
          "Attribute '\(name)' names function '\(callee.name)', which the library lacks.")
      }
    }
    for result in function.results + function.controlResults {
      check(result.source, of: function, at: nil, report)
    }
    if let cycle = cycleMember(in: function) {
      report(.cycle, function.nodes[cycle.index], "The node depends on its own outputs.")
    }
    return problems
  }

  private func check(
    _ input: Input, of function: Function, at node: Node?,
    _ report: (GraphError.Code, Node?, String) -> Void
  ) {
    switch input {
    case .argument(let position):
      if position >= function.arguments.count {
        report(
          .unresolvedInput, node,
          "Argument \(position) does not exist; the function has \(function.arguments.count).")
      }
    case .output(let producer, let slot):
      guard producer.index < function.nodes.count else {
        report(.unresolvedInput, node, "Node \(producer) does not exist.")
        return
      }
      let source = function[producer]
      if let schema = schemas.schema(for: source.op),
        schema.outputPosition(of: slot, attributes: source.attributes) == nil
      {
        report(
          .unresolvedInput, node,
          "'\(function.reference(to: input))' names no output of \(source.op) node '\(source.name)'."
        )
      }
    case .unresolved(let reference):
      report(
        .unresolvedInput, node,
        "The input '\(reference)' names no node or argument of the function.")
    }
  }

  /// A node on a data-dependency cycle, if any; edges into `Merge` from `NextIteration` (TF1
  /// loops) are the back edges a graph may have.
  private func cycleMember(in function: Function) -> NodeID? {
    var state = [UInt8](repeating: 0, count: function.nodes.count)  // 0 new, 1 on the path, 2 done
    for start in function.nodes.indices where state[start] == 0 {
      var stack: [(node: Int, next: Int)] = [(start, 0)]
      state[start] = 1
      while let (node, next) = stack.last {
        let inputs = function.nodes[node].inputs
        guard next < inputs.count else {
          state[node] = 2
          stack.removeLast()
          continue
        }
        stack[stack.count - 1].next += 1
        guard let producer = inputs[next].node?.index, producer < function.nodes.count else {
          continue
        }
        if function.nodes[node].op == "Merge", function.nodes[producer].op == "NextIteration" {
          continue
        }
        switch state[producer] {
        case 0:
          state[producer] = 1
          stack.append((producer, 0))
        case 1: return NodeID(producer)
        default: break
        }
      }
    }
    return nil
  }
}
