internal import GraphIR

/// The bodies a conversion rewrites, by name: every library function and the top-level graph
/// (``GraphIR/Function/graphName``), each with the values leaving it.
extension Module {
  /// Every library function's name, then the top-level graph's.
  var bodyNames: [String] { functions.map(\.name) + [Function.graphName] }

  /// The body named `name`.
  ///
  /// - Precondition: `name` is one of ``bodyNames``.
  func body(named name: String) -> Function {
    if name == Function.graphName { return graph }
    guard let function = function(named: name) else { preconditionFailure("no body '\(name)'") }
    return function
  }

  /// Edits body `name` in place (a copy would copy all its nodes).
  ///
  /// - Precondition: `name` is one of ``bodyNames``.
  mutating func modifyBody<T>(named name: String, _ edit: (inout Function) throws -> T) rethrows
    -> T
  {
    if name == Function.graphName { return try edit(&graph) }
    guard let index = index(ofFunction: name) else { preconditionFailure("no body '\(name)'") }
    return try modifyFunction(at: index, edit)
  }

  /// Puts `body` back in place of the body of the same name.
  mutating func replaceBody(_ body: Function) {
    if body.name == Function.graphName {
      graph = body
    } else if let index = index(ofFunction: body.name) {
      setFunction(body, at: index)
    } else {
      preconditionFailure("no body '\(body.name)'")
    }
  }

  /// The values leaving body `name`, by key: a function's results by result name, the top-level
  /// graph's signature outputs as `signature\u{0}output`.
  func sinks(of name: String) -> [String: Input] {
    if name == Function.graphName {
      var sinks: [String: Input] = [:]
      for (key, signature) in signatures {
        for output in signature.outputs { sinks["\(key)\u{0}\(output.name)"] = output.source }
      }
      return sinks
    }
    return Dictionary(
      body(named: name).results.map { ($0.name, $0.source) },
      uniquingKeysWith: { first, _ in first })
  }

  /// Sets the values leaving body `name` (keys as ``sinks(of:)`` gives them).
  mutating func setSinks(_ sinks: [String: Input], of name: String) {
    if name == Function.graphName {
      for (sink, source) in sinks {
        let parts = sink.split(separator: "\u{0}", maxSplits: 1).map(String.init)
        guard parts.count == 2,
          let position = signatures[parts[0]]?.outputs.firstIndex(where: { $0.name == parts[1] })
        else { continue }
        signatures[parts[0]]?.outputs[position].source = source
      }
      return
    }
    modifyBody(named: name) { function in
      for index in function.results.indices {
        if let source = sinks[function.results[index].name] {
          function.results[index].source = source
        }
      }
    }
  }
}
