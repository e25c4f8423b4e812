public import TensorCore

/// An error while running a model: which node, what is wrong.
///
/// Its ``description`` is one line: `<function> (node '<node>'): <message>`. Library messages say
/// what is wrong; the command line adds which flag to use.
public struct RuntimeError: Error, Sendable, CustomStringConvertible {
  /// What kind of problem this is (the codes are in the extension below).
  public typealias Code = ErrorCode<RuntimeError>

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

extension ErrorCode where Domain == RuntimeError {
  /// A kernel found its inputs or attributes invalid.
  public static var invalidInput: Self { Self(name: "invalidInput") }
  /// A signature input was not given.
  public static var missingInput: Self { Self(name: "missingInput") }
  /// The model has no signature of that name.
  public static var missingSignature: Self { Self(name: "missingSignature") }
  /// An op has no CPU kernel in tfmp.
  public static var missingKernel: Self { Self(name: "missingKernel") }
  /// A variable has no checkpoint entry.
  public static var missingVariable: Self { Self(name: "missingVariable") }
  /// The graph's structure does not allow running it (an input naming nothing, a call to a
  /// missing function, a wrong number of arguments).
  public static var malformedGraph: Self { Self(name: "malformedGraph") }
  /// The model is valid but uses a dtype or feature tfmp cannot run yet.
  public static var unsupported: Self { Self(name: "unsupported") }
  /// A loop ran past the iteration limit.
  public static var limitExceeded: Self { Self(name: "limitExceeded") }
}
