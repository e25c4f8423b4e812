public import TensorCore

/// An error caused by the contents of a model file, or by where it should be read or written.
///
/// Its ``description`` is one line for the user:
/// `<path> (<where>): <expected vs found>. <remedy>.`
public struct ModelFormatError: Error, Sendable, CustomStringConvertible {
  /// What kind of problem this is (the codes are in the extension below).
  public typealias Code = ErrorCode<ModelFormatError>

  /// The kind of problem.
  public var code: Code
  /// The file or folder concerned.
  public var path: String
  /// Where in the file, for example `tensor 'dense/kernel'` or `block at offset 0`; may be empty.
  public var location: String
  /// What was expected and what was found, then what to do.
  public var message: String
  /// A lower-level error this one wraps (a protobuf decoding error, an `errno`), if any.
  public var underlyingError: (any Error & Sendable)?

  /// Creates an error; see the properties for the meaning of each part.
  public init(
    code: Code, path: String, location: String = "", message: String,
    underlyingError: (any Error & Sendable)? = nil
  ) {
    self.code = code
    self.path = path
    self.location = location
    self.message = message
    self.underlyingError = underlyingError
  }

  /// `<path> (<location>): <message>`, or `<path>: <message>` without a location.
  public var description: String {
    location.isEmpty ? "\(path): \(message)" : "\(path) (\(location)): \(message)"
  }
}

extension ErrorCode where Domain == ModelFormatError {
  /// The input path does not exist.
  public static var missingInput: Self { Self(name: "missingInput") }
  /// The path exists but is not the kind of model expected.
  public static var notAModel: Self { Self(name: "notAModel") }
  /// A file's bytes do not follow its format (bad magic, bad protobuf, bad structure).
  public static var malformed: Self { Self(name: "malformed") }
  /// A file ends before the data it promises.
  public static var truncated: Self { Self(name: "truncated") }
  /// A stored checksum does not match the data.
  public static var checksumMismatch: Self { Self(name: "checksumMismatch") }
  /// The file is valid but uses a feature tfmp does not support.
  public static var unsupported: Self { Self(name: "unsupported") }
  /// The model already computes in reduced precision, so there is nothing to convert.
  public static var alreadyConverted: Self { Self(name: "alreadyConverted") }
  /// The output already exists and overwriting was not requested.
  public static var outputExists: Self { Self(name: "outputExists") }
  /// The operating system refused a file operation.
  public static var fileSystem: Self { Self(name: "fileSystem") }
}
