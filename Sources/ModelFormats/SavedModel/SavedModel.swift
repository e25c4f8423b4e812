internal import Foundation
internal import Synchronization
package import TFProtos
package import TensorCore

/// A TensorFlow SavedModel folder read into memory: the `saved_model.pb` graph, function library,
/// signatures and object graph, plus the checkpoint in `variables/` (mapped, not loaded).
///
/// Writing it back with ``write(to:overwrite:)`` gives a folder TensorFlow loads as it loaded the
/// original; files tfmp does not interpret (assets, `assets.extra`, debug info) are copied as
/// they are.
public struct SavedModel: Sendable {
  /// The folder the model was read from.
  public let directory: String
  /// The decoded `saved_model.pb`.
  package var proto: Tensorflow_SavedModel {
    didSet { decodedModule = DecodedModule() }
  }
  /// ``module()`` once decoded from ``proto`` (an accuracy search converts one model many
  /// times); a change to the proto starts a new, empty one.
  private(set) var decodedModule = DecodedModule()

  /// Changes the first MetaGraph's object graph, which ``module()`` does not read: the module
  /// stays decoded.
  package mutating func updateObjectGraph(_ update: (inout Tensorflow_SavedObjectGraph) -> Void) {
    let decoded = decodedModule
    update(&proto.metaGraphs[0].objectGraphDef)
    decodedModule = decoded
  }
  /// The checkpoint in `variables/`, or `nil` for a model without one.
  package var checkpoint: CheckpointReader?
  /// The raw `fingerprint.pb`, or `nil` when absent. Tools that change the model drop it
  /// (TensorFlow loads without it; a stale one would misidentify the model).
  package var fingerprint: [UInt8]?
  /// Float32 checkpoint tensors to store in a reduced type when writing, by key.
  package var checkpointConversions: [String: ReducedPrecision] = [:]
  /// New values for float checkpoint tensors, by key, written in each tensor's stored type.
  package var checkpointValues: [String: [Float]] = [:]
  /// Tensors to add to the checkpoint (float32 or int64), after the others.
  package var checkpointAdditions: [(key: String, value: Tensor)] = []
  /// A new serialized object graph for the checkpoint (`_CHECKPOINTABLE_OBJECT_GRAPH`).
  package var checkpointObjectGraph: [UInt8]?

  /// The file names tfmp reads and writes itself; everything else in the folder is copied.
  static let graphFileName = "saved_model.pb"
  static let fingerprintFileName = "fingerprint.pb"
  static let checkpointPrefix = "variables/variables"

  /// Reads the SavedModel in the folder at `path`.
  ///
  /// - Throws: ``ModelFormatError``: `missingInput` when nothing is at `path`; `notAModel` when it
  ///   is not a SavedModel folder; `unsupported` for text or chunked SavedModels; `malformed`,
  ///   `truncated` or `checksumMismatch` for damaged files.
  public init(contentsOf path: String) throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw ModelFormatError(
        code: .missingInput, path: path,
        message: "Nothing exists at this path. Check the spelling, or export the model with "
          + "tf.saved_model.save first.")
    }
    guard isDirectory.boolValue else {
      throw ModelFormatError(
        code: .notAModel, path: path,
        message: "Expected a SavedModel folder (containing saved_model.pb) but found a file. "
          + "Pass the folder that tf.saved_model.save or model.export wrote.")
    }
    let graphPath = (path as NSString).appendingPathComponent(Self.graphFileName)
    guard FileManager.default.fileExists(atPath: graphPath) else {
      for (name, kind) in [("saved_model.pbtxt", "text"), ("saved_model.cpb", "chunked")]
      where FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(name))
      {
        throw ModelFormatError(
          code: .unsupported, path: path,
          message: "The folder holds a \(kind) SavedModel (\(name)); tfmp reads the binary "
            + "saved_model.pb. Re-save the model with tf.saved_model.save's defaults.")
      }
      throw ModelFormatError(
        code: .notAModel, path: path,
        message: "The folder has no saved_model.pb, so it is not a SavedModel. Pass the folder "
          + "that tf.saved_model.save or model.export wrote.")
    }
    let prefix = (path as NSString).appendingPathComponent(Self.checkpointPrefix)
    let fingerprintPath = (path as NSString).appendingPathComponent(Self.fingerprintFileName)
    try self.init(
      graph: try MappedFile(path: graphPath).withBytes { Data($0) }, directory: path,
      checkpoint: FileManager.default.fileExists(atPath: prefix + ".index")
        ? try CheckpointReader(prefix: prefix) : nil,
      fingerprint: FileManager.default.contents(atPath: fingerprintPath).map { [UInt8]($0) })
  }

  /// The SavedModel whose `saved_model.pb` is `graph`, as if read from folder `directory`.
  package init(graph: [UInt8], directory: String, checkpoint: CheckpointReader?) throws {
    try self.init(graph: Data(graph), directory: directory, checkpoint: checkpoint)
  }

  private init(
    graph graphBytes: Data, directory: String, checkpoint: CheckpointReader?,
    fingerprint: [UInt8]? = nil
  ) throws {
    let graphPath = (directory as NSString).appendingPathComponent(Self.graphFileName)
    self.directory = directory
    proto = try ProtobufDecoding.decode(
      graphBytes, as: Tensorflow_SavedModel.self, path: graphPath, what: "SavedModel protobuf",
      remedy: "It is truncated or corrupt; re-export the model.")
    guard !proto.metaGraphs.isEmpty else {
      throw ModelFormatError(
        code: .malformed, path: graphPath,
        message: "The SavedModel contains no MetaGraphDef (\(graphBytes.count) bytes read). "
          + "It is truncated or corrupt; re-export the model.")
    }
    self.checkpoint = checkpoint
    self.fingerprint = fingerprint
  }

  /// This model with new values for float variables (trained weights), by checkpoint key: each
  /// is written in the type its tensor is stored in (rounded to float16 or bfloat16 for a
  /// reduced one), the graph left as it is. The fingerprint, which identifies the weights, is
  /// dropped.
  ///
  /// - Throws: ``ModelFormatError`` (`malformed`) for a key the checkpoint does not have, a
  ///   tensor that is not float32, float16 or bfloat16, or a count that is not its element count.
  public func updatingVariables(_ values: [String: [Float]]) throws -> SavedModel {
    var model = self
    for (key, floats) in values {
      guard let entry = checkpoint?.entry(forKey: key),
        [.float32, .float16, .bfloat16].contains(entry.dtype),
        floats.count == entry.shape.elementCount
      else {
        throw ModelFormatError(
          code: .malformed, path: directory, location: "variable '\(key)'",
          message: "The checkpoint has no float32, float16 or bfloat16 tensor of "
            + "\(floats.count) elements under this key to update.")
      }
      model.checkpointValues[key] = floats
    }
    model.fingerprint = nil
    return model
  }

  /// Writes the model as a SavedModel folder at `path`.
  ///
  /// Everything is written into a temporary folder beside `path` and renamed into place, so a
  /// failure leaves no partial output. The checkpoint is rewritten tensor by tensor in its
  /// original data order (each tensor's checksum verified), which for an unchanged model
  /// reproduces TensorFlow's files byte for byte.
  ///
  /// - Parameters:
  ///   - path: The folder to create.
  ///   - overwrite: Whether to replace an existing file or folder at `path`.
  ///   - check: Runs on the complete temporary folder before it is renamed into place (to
  ///     verify what was written); when it throws, nothing is left behind.
  /// - Throws: ``ModelFormatError``: `outputExists` when `path` exists and `overwrite` is false,
  ///   or `path` would replace or lie inside the input folder; `fileSystem` when writing fails;
  ///   the checkpoint's errors when a tensor fails its checksum; whatever `check` throws.
  public func write(
    to path: String, overwrite: Bool = false, check: (String) throws -> Void = { _ in }
  ) throws {
    try OutputFolder.write(to: path, overwrite: overwrite, protecting: directory) { temporary in
      try writeContents(to: temporary)
      try check(temporary)
    }
  }

  /// Writes the folder's contents. The graph is serialized on a second core while the
  /// checkpoint streams to disk on this one; the two share nothing.
  private func writeContents(to folder: String) throws {
    let graph = Mutex<Result<Data, any Error>?>(nil)
    let checkpointResult = Mutex<Result<Void, any Error>?>(nil)
    DispatchQueue.concurrentPerform(iterations: 2) { part in
      if part == 0 {
        graph.withLock { $0 = Result { try SavedModelEncoding.encode(proto) } }
      } else {
        checkpointResult.withLock { $0 = Result { try writeCheckpoint(to: folder) } }
      }
    }
    try checkpointResult.withLock { try $0?.get() }
    let graphBytes = try graph.withLock { try $0?.get() } ?? Data()
    try OutputFolder.writeFile(
      graphBytes, to: (folder as NSString).appendingPathComponent(Self.graphFileName))
    if let fingerprint {
      try OutputFolder.writeFile(
        Data(fingerprint), to: (folder as NSString).appendingPathComponent(Self.fingerprintFileName)
      )
    }
  }

  /// Copies the other files of the folder and writes the checkpoint, converting the tensors
  /// listed in ``checkpointConversions``.
  private func writeCheckpoint(to folder: String) throws {
    let checkpointFiles = Set(
      checkpoint.map { reader in
        ["variables.index"]
          + (0..<reader.shardCount).map {
            (CheckpointReader.dataPath(prefix: "variables", shard: $0, of: reader.shardCount))
          }
      } ?? [])
    try OutputFolder.copyTree(
      from: directory, to: folder,
      skipping: [Self.graphFileName, Self.fingerprintFileName]
        + checkpointFiles.map { "variables/" + $0 })
    guard let checkpoint else { return }
    let writer = try CheckpointWriter(
      prefix: (folder as NSString).appendingPathComponent(Self.checkpointPrefix),
      shardCount: checkpoint.shardCount)
    for entry in checkpoint.entries.sorted(by: { ($0.shard, $0.offset) < ($1.shard, $1.offset) }) {
      if entry.key == CheckpointReader.objectGraphKey, let checkpointObjectGraph {
        try writer.add(
          key: entry.key, shape: entry.shape, shard: entry.shard, strings: [checkpointObjectGraph])
        continue
      }
      if let floats = checkpointValues[entry.key] {
        // The checkpoint is little-endian, as the machines tfmp runs on are.
        let precision = checkpointConversions[entry.key] ?? ReducedPrecision(entry.dtype)
        let bytes = floats.withUnsafeBytes {
          precision?.encode(float32LittleEndian: $0) ?? Array($0)
        }
        try bytes.withUnsafeBytes { output in
          try writer.add(
            key: entry.key, dtype: precision?.dtype ?? .float32, shape: entry.shape,
            shard: entry.shard, bytes: output)
        }
        continue
      }
      guard let precision = checkpointConversions[entry.key] else {
        try writer.copy(entry, from: checkpoint)
        continue
      }
      precondition(entry.dtype == .float32, "only float32 tensors are converted")
      try checkpoint.withBytes(of: entry) { bytes in
        let converted = precision.encode(float32LittleEndian: bytes)
        try converted.withUnsafeBytes { output in
          try writer.add(
            key: entry.key, dtype: precision.dtype, shape: entry.shape, shard: entry.shard,
            bytes: output)
        }
      }
    }
    for (key, value) in checkpointAdditions {
      // Little-endian, as the machines tfmp runs on are.
      let bytes: [UInt8] =
        switch value.storage {
        case .float(let floats): floats.withUnsafeBytes { Array($0) }
        case .int64(let integers): integers.withUnsafeBytes { Array($0) }
        default: preconditionFailure("only float32 and int64 tensors are added")
        }
      try bytes.withUnsafeBytes { raw in
        try writer.add(key: key, dtype: value.dtype, shape: value.shape, bytes: raw)
      }
    }
    try writer.finish()
  }
}
