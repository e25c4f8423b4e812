internal import Foundation

/// A Keras 3 `.keras` archive: `metadata.json`, `config.json` (the model's architecture, layer
/// dtype policies and compile settings) and `model.weights.h5`.
///
/// Only `config.json` is decoded; writing copies every other entry byte for byte.
public struct KerasArchive: Sendable {
  /// The file the archive was read from.
  public let path: String
  /// The Keras version that saved it (`metadata.json`).
  public let kerasVersion: String
  /// The decoded `config.json`.
  package var config: JSONValue
  private let zip: ZipArchive

  /// The Keras versions whose archives tfmp knows: 3.0 to 3.15.
  public static let knownVersions = 0...15

  /// Reads the archive at `path`.
  ///
  /// - Throws: ``ModelFormatError``: `missingInput`; `notAModel` for a file that is not a zip
  ///   with `config.json`; `malformed` when `config.json` or `metadata.json` does not parse;
  ///   `unsupported` for a Keras version outside ``knownVersions`` or compressed entries.
  public init(contentsOf path: String) throws {
    try self.init(try MappedFile(path: path))
  }

  /// The archive in `bytes`, as if read from `path`.
  package init(bytes: [UInt8], path: String) throws {
    try self.init(MappedFile(bytes: bytes, path: path))
  }

  private init(_ file: MappedFile) throws {
    path = file.path
    zip = try ZipArchive(file)
    guard let configEntry = zip.entry(named: "config.json"),
      let metadataEntry = zip.entry(named: "metadata.json")
    else {
      throw ModelFormatError(
        code: .notAModel, path: path,
        message: "The zip file has no config.json and metadata.json, so it is not a Keras "
          + "archive. Pass a file written by model.save('model.keras').")
    }
    let metadata = try Self.parse(
      try zip.contents(of: metadataEntry), path: path, entry: "metadata.json")
    config = try Self.parse(try zip.contents(of: configEntry), path: path, entry: "config.json")
    kerasVersion = metadata["keras_version"]?.stringValue ?? "unknown"
    let parts = kerasVersion.split(separator: ".").map { Int($0) }
    guard parts.count >= 2, parts[0] == 3, let minor = parts[1], Self.knownVersions.contains(minor)
    else {
      throw ModelFormatError(
        code: .unsupported, path: path, location: "metadata.json",
        message: "The archive was saved by Keras \(kerasVersion); tfmp knows the archives of Keras "
          + "3.\(Self.knownVersions.lowerBound) to 3.\(Self.knownVersions.upperBound). Re-save the "
          + "model with one of those versions.")
    }
  }

  /// Writes the archive to `path` with the current `config.json`; every other entry is copied
  /// byte for byte. Written to a temporary file beside `path` and renamed into place.
  ///
  /// - Throws: ``ModelFormatError`` with code `outputExists` when `path` exists and `overwrite`
  ///   is false or `path` is the input; `fileSystem` when writing fails.
  public func write(to path: String, overwrite: Bool = false) throws {
    try OutputFolder.write(to: path, kind: .file, overwrite: overwrite, protecting: self.path) {
      temporary in
      let output = try FileOutput(path: temporary)
      try zip.write(to: output, replacing: ["config.json": Array(config.serialized().utf8)])
    }
  }

  /// The bytes of `model.weights.h5`.
  func weightsBytes() throws -> [UInt8] {
    guard let entry = zip.entry(named: "model.weights.h5") else {
      throw ModelFormatError(
        code: .notAModel, path: path,
        message: "The archive has no model.weights.h5 (Keras can also save model.weights.npz, "
          + "which tfmp does not read yet). Re-save the model with model.save.")
    }
    return try zip.contents(of: entry)
  }

  /// The path of each entry whose bytes the archive holds, for tests and reports.
  public var entryNames: [String] { zip.entries.map(\.name) }

  private static func parse(_ bytes: [UInt8], path: String, entry: String) throws -> JSONValue {
    var parser = JSONParser(bytes)
    do {
      return try parser.parse()
    } catch {
      throw ModelFormatError(
        code: .malformed, path: path, location: "\(entry), byte \(error.offset)",
        message:
          "The JSON does not parse: \(error.message). The archive is corrupt; re-save the model.")
    }
  }
}
