internal import Foundation

/// Writes an output folder or file atomically: into a temporary one beside the destination,
/// renamed into place only when complete.
enum OutputFolder {
  /// What is being written.
  enum Kind { case folder, file }

  /// Runs `body` to fill a temporary folder (or write a temporary file), then moves it to `path`.
  ///
  /// - Parameters:
  ///   - path: The destination.
  ///   - kind: Whether the output is a folder (created empty for `body`) or a file.
  ///   - overwrite: Whether an existing `path` may be replaced.
  ///   - input: The input; `path` may not be it, contain it or lie inside it.
  ///   - body: Writes the output at the temporary path it is given.
  /// - Throws: ``ModelFormatError`` when the output exists (without `overwrite`), would touch the
  ///   input, or cannot be written; whatever `body` throws (nothing is left behind then).
  static func write(
    to path: String, kind: Kind = .folder, overwrite: Bool, protecting input: String,
    _ body: (String) throws -> Void
  ) throws {
    let fileManager = FileManager.default
    let destination = canonical(path)
    let source = canonical(input)
    if destination == source || source.hasPrefix(destination + "/")
      || destination.hasPrefix(source + "/")
    {
      throw ModelFormatError(
        code: .outputExists, path: path,
        message:
          "The output would \(destination.hasPrefix(source + "/") ? "lie inside" : "replace") "
          + "the input model '\(input)'. tfmp never modifies its input; choose another output path."
      )
    }
    let exists = fileManager.fileExists(atPath: destination)
    if exists && !overwrite {
      throw ModelFormatError(
        code: .outputExists, path: path,
        message: "The output already exists. Choose another path, or pass --force to replace it.")
    }
    let parent = (destination as NSString).deletingLastPathComponent
    var isDirectory: ObjCBool = false
    guard fileManager.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue
    else {
      throw ModelFormatError(
        code: .fileSystem, path: path,
        message: "The output's parent folder '\(parent)' does not exist. Create it first.")
    }
    let name = (destination as NSString).lastPathComponent
    let unique = UUID().uuidString.prefix(8)
    let temporary = (parent as NSString).appendingPathComponent(".\(name).tfmp-partial-\(unique)")
    if kind == .folder { try createFolder(temporary) }
    do {
      try body(temporary)
      if exists {
        let old = (parent as NSString).appendingPathComponent(".\(name).tfmp-replaced-\(unique)")
        try move(destination, to: old)
        try move(temporary, to: destination)
        try? fileManager.removeItem(atPath: old)
      } else {
        try move(temporary, to: destination)
      }
    } catch {
      try? fileManager.removeItem(atPath: temporary)
      throw error
    }
  }

  /// The absolute, symlink-resolved form of `path` (of its parent when it does not exist yet).
  static func canonical(_ path: String) -> String {
    let absolute = URL(fileURLWithPath: path).standardizedFileURL
    if FileManager.default.fileExists(atPath: absolute.path) {
      return absolute.resolvingSymlinksInPath().path
    }
    let parent = absolute.deletingLastPathComponent().resolvingSymlinksInPath()
    return parent.appendingPathComponent(absolute.lastPathComponent).path
  }

  static func createFolder(_ path: String) throws {
    do {
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    } catch {
      throw ModelFormatError(
        code: .fileSystem, path: path,
        message: "The folder cannot be created. Check the permissions and free space.",
        underlyingError: error)
    }
  }

  static func writeFile(_ data: Data, to path: String) throws {
    do {
      try data.write(to: URL(fileURLWithPath: path))
    } catch {
      throw ModelFormatError(
        code: .fileSystem, path: path,
        message: "The file cannot be written. Check the permissions and free space.",
        underlyingError: error)
    }
  }

  /// Copies every file and folder under `source` into the existing folder `destination`,
  /// except the relative paths in `skipping`.
  static func copyTree(from source: String, to destination: String, skipping: [String]) throws {
    let skipped = Set(skipping)
    try copyChildren(from: source, to: destination, relativePath: "", skipping: skipped)
  }

  private static func copyChildren(
    from source: String, to destination: String, relativePath: String, skipping: Set<String>
  ) throws {
    let fileManager = FileManager.default
    let folder = (source as NSString).appendingPathComponent(relativePath)
    let children: [String]
    do {
      children = try fileManager.contentsOfDirectory(atPath: folder).sorted()
    } catch {
      throw ModelFormatError(
        code: .fileSystem, path: folder, message: "The folder cannot be listed.",
        underlyingError: error)
    }
    for child in children {
      let relative = relativePath.isEmpty ? child : relativePath + "/" + child
      if skipping.contains(relative) { continue }
      let from = (source as NSString).appendingPathComponent(relative)
      let to = (destination as NSString).appendingPathComponent(relative)
      if skipping.contains(where: { $0.hasPrefix(relative + "/") }) {
        try createFolder(to)
        try copyChildren(from: source, to: destination, relativePath: relative, skipping: skipping)
        continue
      }
      do {
        try fileManager.copyItem(atPath: from, toPath: to)
      } catch {
        throw ModelFormatError(
          code: .fileSystem, path: from, message: "The file cannot be copied to '\(to)'.",
          underlyingError: error)
      }
    }
  }

  private static func move(_ source: String, to destination: String) throws {
    do {
      try FileManager.default.moveItem(atPath: source, toPath: destination)
    } catch {
      throw ModelFormatError(
        code: .fileSystem, path: source,
        message: "The folder cannot be renamed to '\(destination)'.",
        underlyingError: error)
    }
  }
}
