public import Foundation

/// The committed test models made by `Scripts/make_fixtures.py`.
public enum Fixtures {
  /// The fixture SavedModels, each a folder under `Fixtures/`.
  public static let savedModels = [
    "mlp", "cnn_bn", "depthwise", "attention", "lstm", "two_io", "custom_math", "sharded", "op_zoo",
  ]

  /// The fixture Keras archives, each `<name>.keras` under `Fixtures/`.
  public static let kerasArchives = [
    "keras_dense", "keras_cnn", "keras_attention", "keras_lstm", "keras_nested",
  ]

  /// The folder holding every fixture.
  public static var root: URL {
    guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
      preconditionFailure("the Fixtures resource folder is missing from _TestSupport")
    }
    return url
  }

  /// The path of the fixture `name` (a folder or file under `Fixtures/`).
  public static func path(_ name: String) -> String {
    root.appendingPathComponent(name).path
  }

  /// The repository's root folder (for the example model and the built binary).
  public static var repositoryRoot: URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
  }
}

/// A temporary folder removed when the value is released.
public final class TemporaryFolder {
  /// The folder's path.
  public let path: String

  /// Creates an empty folder under the system's temporary directory.
  public init() {
    path =
      FileManager.default.temporaryDirectory
      .appendingPathComponent("tfmp-tests-\(UUID().uuidString)").path
    do {
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
      preconditionFailure("cannot create a temporary folder: \(error)")
    }
  }

  deinit {
    try? FileManager.default.removeItem(atPath: path)
  }

  /// The path of `name` inside the folder.
  public func child(_ name: String) -> String {
    (path as NSString).appendingPathComponent(name)
  }

  /// Copies the fixture `name` into the folder and returns the copy's path.
  public func copyFixture(_ name: String) throws -> String {
    let destination = child(name)
    try FileManager.default.copyItem(atPath: Fixtures.path(name), toPath: destination)
    return destination
  }
}
