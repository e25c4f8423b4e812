/// An error while running a model: which node, what is wrong.
///
/// Its ``description`` is one line: `<function> (node '<node>'): <message>`. Library messages say
/// what is wrong; the command line adds which flag to use.
public struct RuntimeError: Error, Sendable, CustomStringConvertible {
  /// What kind of problem this is; a set that grows, so a struct rather than an enum.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    /// A short stable name, such as `missingKernel`.
    public let name: String

    /// A kernel found its inputs or attributes invalid.
    public static let invalidInput = Code(name: "invalidInput")
    /// A signature input was not given.
    public static let missingInput = Code(name: "missingInput")
    /// The model has no signature of that name.
    public static let missingSignature = Code(name: "missingSignature")
    /// An op has no CPU kernel in tfmp.
    public static let missingKernel = Code(name: "missingKernel")
    /// A variable has no checkpoint entry.
    public static let missingVariable = Code(name: "missingVariable")
    /// The graph's structure does not allow running it (an input naming nothing, a call to a
    /// missing function, a wrong number of arguments).
    public static let malformedGraph = Code(name: "malformedGraph")
    /// The model is valid but uses a dtype or feature tfmp cannot run yet.
    public static let unsupported = Code(name: "unsupported")
    /// A loop ran past the iteration limit.
    public static let limitExceeded = Code(name: "limitExceeded")

    /// The same as ``name``.
    public var description: String { name }
  }

  /// The kind of problem.
  public var code: Code
  /// The function holding the node, or `<graph>`.
  public var function: String
  /// The node's name.
  public var node: String
  /// What was expected and found.
  public var message: String
  /// A lower-level error this one wraps, if any.
  public var underlyingError: (any Error & Sendable)?

  /// Creates an error; see the properties for the meaning of each part.
  public init(
    code: Code, function: String, node: String, message: String,
    underlyingError: (any Error & Sendable)? = nil
  ) {
    self.code = code
    self.function = function
    self.node = node
    self.message = message
    self.underlyingError = underlyingError
  }

  /// `<function> (node '<node>'): <message>`
  public var description: String { "\(function) (node '\(node)'): \(message)" }
}

/// A kernel's complaint about its inputs or attributes; the interpreter adds where it happened.
struct KernelError: Error {
  var code: RuntimeError.Code
  var message: String

  init(code: RuntimeError.Code = .invalidInput, _ message: String) {
    self.code = code
    self.message = message
  }
}
