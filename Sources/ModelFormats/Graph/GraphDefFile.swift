public import GraphIR
internal import Foundation
internal import TFProtos

/// A bare binary `GraphDef` (a frozen graph's `.pb`): a top-level graph and its function library,
/// without signatures or a checkpoint.
public struct GraphDefFile: Sendable {
  /// The file it was read from.
  public let path: String
  var proto: Tensorflow_GraphDef

  /// Reads the binary `GraphDef` at `path`.
  ///
  /// - Throws: ``ModelFormatError``: `missingInput`; `malformed` when the bytes are not a
  ///   `GraphDef` (protobuf nested deeper than 200 levels included).
  public init(contentsOf path: String) throws {
    self.path = path
    let bytes = try MappedFile(path: path).withBytes { Data($0) }
    proto = try ProtobufDecoding.decode(
      bytes, as: Tensorflow_GraphDef.self, path: path, what: "binary GraphDef",
      remedy: "Pass a .pb written by tf.io.write_graph(..., as_text=False), or a SavedModel folder."
    )
  }

  /// The graph as a GraphIR module (no signatures, no variables).
  ///
  /// - Throws: ``ModelFormatError`` (code `malformed`) for a tensor reference that cannot be parsed.
  public func module() throws -> Module { try GraphCoding.module(of: proto, path: path) }

  /// This file with its graph and library taken from `module` (versions and other fields kept).
  public func replacing(_ module: Module) -> GraphDefFile {
    var file = self
    GraphCoding.encode(module, into: &file.proto)
    return file
  }

  /// Writes the graph to `path` (through a temporary file renamed into place).
  ///
  /// - Throws: ``ModelFormatError``: `outputExists` without `overwrite`; `fileSystem` when the
  ///   file cannot be written.
  public func write(to path: String, overwrite: Bool = false) throws {
    let bytes = try SavedModelEncoding.encode(proto)
    try OutputFolder.write(to: path, kind: .file, overwrite: overwrite, protecting: self.path) {
      temporary in
      try OutputFolder.writeFile(bytes, to: temporary)
    }
  }
}
