internal import Foundation
internal import SwiftProtobuf

/// Decodes a model file's protobuf with the same nesting limit and messages everywhere.
enum ProtobufDecoding {
  /// The deepest nesting of messages accepted (TensorFlow's graphs nest about ten levels).
  static let depthLimit = 200

  /// `bytes`, read from `path`, as a `M`.
  ///
  /// - Throws: ``ModelFormatError`` (code `malformed`): "The file is not a valid `what` (why).
  ///   `remedy`", wrapping swift-protobuf's error.
  static func decode<M: Message>(
    _ bytes: Data, as _: M.Type, path: String, what: String, remedy: String
  ) throws -> M {
    do {
      var options = BinaryDecodingOptions()
      options.messageDepthLimit = depthLimit
      return try M(serializedBytes: bytes, options: options)
    } catch {
      throw ModelFormatError(
        code: .malformed, path: path,
        message: "The file is not a valid \(what) (\(describe(error))). \(remedy)",
        underlyingError: error)
    }
  }

  private static func describe(_ error: any Error) -> String {
    switch error {
    case BinaryDecodingError.truncated: "the data ends in the middle of a field"
    case BinaryDecodingError.malformedProtobuf: "malformed protobuf data"
    case BinaryDecodingError.messageDepthLimit: "messages nested too deeply"
    default: String(describing: error)
    }
  }
}
