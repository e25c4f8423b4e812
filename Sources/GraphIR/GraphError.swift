public import TensorCore

/// An error in a graph's structure: a reference that cannot be parsed or resolved, an input
/// count the op's schema does not allow, a cycle.
///
/// Its ``description`` is one line: `<function> (<where>): <what is wrong>.`
public struct GraphError: Error, Sendable, CustomStringConvertible {
  /// What kind of problem this is (the codes are in the extension below).
  public typealias Code = ErrorCode<GraphError>

  /// The kind of problem.
  public var code: Code
  /// The function concerned, `<graph>` for the top-level graph; empty when not known yet.
  public var function: String
  /// Where in the function, for example `node 'dense/MatMul'`; may be empty.
  public var location: String
  /// What was expected and what was found.
  public var message: String

  /// Creates an error; see the properties for the meaning of each part.
  public init(code: Code, function: String = "", location: String = "", message: String) {
    self.code = code
    self.function = function
    self.location = location
    self.message = message
  }

  /// `<function> (<location>): <message>`, leaving out the parts that are empty.
  public var description: String {
    let place = [function, location.isEmpty ? "" : "(\(location))"].filter { !$0.isEmpty }.joined(
      separator: " ")
    return place.isEmpty ? message : "\(place): \(message)"
  }

  /// The same error, placed at `location` of `function` where it had no place yet.
  public func placed(function: String, location: String) -> GraphError {
    var error = self
    if error.function.isEmpty { error.function = function }
    if error.location.isEmpty { error.location = location }
    return error
  }

  static func malformedReference(_ text: String, _ reason: String) -> GraphError {
    GraphError(
      code: .malformedReference,
      message: "The input '\(text)' is not a valid tensor reference: \(reason).")
  }
}

extension ErrorCode where Domain == GraphError {
  /// A tensor reference that does not follow its syntax.
  public static var malformedReference: Self { Self(name: "malformedReference") }
  /// An input naming no node, output or argument of its body.
  public static var unresolvedInput: Self { Self(name: "unresolvedInput") }
  /// A node whose inputs or outputs do not fit its op's schema.
  public static var schemaMismatch: Self { Self(name: "schemaMismatch") }
  /// Nodes that depend on each other in a cycle (outside the loop constructs that allow it).
  public static var cycle: Self { Self(name: "cycle") }
  /// Two nodes of one body with the same name.
  public static var duplicateName: Self { Self(name: "duplicateName") }
  /// A function call naming no function of the module.
  public static var missingFunction: Self { Self(name: "missingFunction") }
}
