package import TensorCore
public import GraphIR
internal import Foundation

/// A model whose computation is a TensorFlow graph, as `tfmp convert`, `run`, `validate` and
/// `inspect` take it: a SavedModel folder, or a frozen graph's binary `GraphDef` file.
public enum GraphModel: Sendable {
  /// A SavedModel folder (TF2 or TF1-style), with its checkpoint.
  case savedModel(SavedModel)
  /// A bare `GraphDef` whose weights are constants.
  case frozenGraph(GraphDefFile)

  /// Reads the model at `path`: a file is a binary `GraphDef`, anything else a SavedModel.
  ///
  /// - Throws: ``ModelFormatError`` from ``SavedModel/init(contentsOf:)`` or
  ///   ``GraphDefFile/init(contentsOf:)``.
  public init(contentsOf path: String) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
      !isDirectory.boolValue
    {
      self = .frozenGraph(try GraphDefFile(contentsOf: path))
    } else {
      self = .savedModel(try SavedModel(contentsOf: path))
    }
  }

  /// The folder or file it was read from.
  public var path: String {
    switch self {
    case .savedModel(let model): model.directory
    case .frozenGraph(let file): file.path
    }
  }

  /// The model as a GraphIR module, with its signatures and variables.
  ///
  /// - Throws: ``ModelFormatError`` (code `malformed`) for a graph that cannot be read.
  public func module() throws -> Module {
    switch self {
    case .savedModel(let model): try model.module()
    case .frozenGraph(let file): try file.module()
    }
  }

  /// The checkpoint keys whose float32 tensors a conversion stores in a reduced type when the
  /// model is written (a conversion not yet written); empty for a frozen graph, whose
  /// constants are converted in its graph.
  package var storedReduced: [String: ReducedPrecision] {
    if case .savedModel(let model) = self { return model.checkpointConversions }
    return [:]
  }

  /// The checkpoint holding the variables' values; `nil` for a frozen graph.
  package var checkpoint: CheckpointReader? {
    if case .savedModel(let model) = self { return model.checkpoint }
    return nil
  }

  /// Describes the model for `tfmp inspect`.
  ///
  /// - Throws: ``ModelFormatError`` when a tensor or the graph is corrupt.
  public func summary() throws -> ModelSummary {
    switch self {
    case .savedModel(let model): try model.summary()
    case .frozenGraph(let file): try file.summary()
    }
  }

  /// Writes the model to `path` (a folder or a file, as it was read) through a temporary path
  /// that `check` sees complete before it is renamed into place.
  ///
  /// - Throws: ``ModelFormatError`` from the format's writer; whatever `check` throws.
  public func write(
    to path: String, overwrite: Bool = false, check: (String) throws -> Void = { _ in }
  ) throws {
    switch self {
    case .savedModel(let model): try model.write(to: path, overwrite: overwrite, check: check)
    case .frozenGraph(let file): try file.write(to: path, overwrite: overwrite, check: check)
    }
  }
}
