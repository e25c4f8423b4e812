public import TensorCore

/// Why a model cannot be fine-tuned as asked: a signature, output or variable that is not there,
/// training data that does not fit the signature, or a graph tfmp cannot differentiate.
///
/// Its ``description`` is one line: what is wrong, and what to do.
public struct TrainingError: Error, Sendable, CustomStringConvertible {
  /// What kind of problem this is (the codes are in the extension below).
  public typealias Code = ErrorCode<TrainingError>

  /// The kind of problem.
  public var code: Code
  /// What was expected, what was found, and what to do.
  public var message: String

  /// Creates an error.
  public init(code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  /// The message.
  public var description: String { message }
}

extension ErrorCode where Domain == TrainingError {
  /// The model lacks what training needs: the signature, an output to train, a variable.
  public static var missing: Self { Self(name: "missing") }
  /// The training data does not fit the signature (an input missing or mistyped, counts that
  /// differ, labels out of range).
  public static var invalidData: Self { Self(name: "invalidData") }
  /// The model's graph cannot be trained by tfmp (an op without a gradient, a variable read
  /// inside a loop).
  public static var unsupported: Self { Self(name: "unsupported") }
}
