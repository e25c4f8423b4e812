/// An error while running a model: which node, what is wrong, what to do.
public struct RuntimeError: Error, Sendable, CustomStringConvertible {
  /// The function holding the node, or `<graph>`.
  public var function: String
  /// The node's name.
  public var node: String
  /// What was expected and found, then what to do.
  public var message: String

  /// `<function> (node '<node>'): <message>`
  public var description: String { "\(function) (node '\(node)'): \(message)" }
}

/// A kernel's complaint about its inputs or attributes; the interpreter adds where it happened.
struct KernelError: Error {
  var message: String
  init(_ message: String) { self.message = message }
}
