#if canImport(Glibc)
  import Glibc
  private let systemWrite = Glibc.write
#elseif canImport(Darwin)
  import Darwin
  private let systemWrite = Darwin.write
#endif

/// A file being written sequentially, with a buffer so small writes cost no system call each.
/// Large writes go straight to the file.
final class FileOutput {
  let path: String
  private let descriptor: Int32
  private var buffer: [UInt8] = []
  private static let bufferCapacity = 1 << 20
  /// Bytes written so far, buffered or not.
  private(set) var offset = 0

  /// Creates (or truncates) the file at `path`.
  init(path: String) throws(ModelFormatError) {
    self.path = path
    descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else { throw FileOutput.error(path: path, action: "created") }
    buffer.reserveCapacity(Self.bufferCapacity)
  }

  deinit {
    close(descriptor)
  }

  func write(_ bytes: UnsafeRawBufferPointer) throws {
    offset += bytes.count
    if buffer.count + bytes.count <= Self.bufferCapacity {
      buffer.append(contentsOf: bytes)
      return
    }
    try flush()
    if bytes.count >= Self.bufferCapacity {
      try writeAll(bytes)
    } else {
      buffer.append(contentsOf: bytes)
    }
  }

  func write(_ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { try write($0) }
  }

  /// Writes out buffered bytes; call before the object is released.
  func flush() throws {
    guard !buffer.isEmpty else { return }
    let pending = buffer
    buffer.removeAll(keepingCapacity: true)
    try pending.withUnsafeBytes { try writeAll($0) }
  }

  private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(ModelFormatError) {
    var written = 0
    while written < bytes.count {
      guard let start = bytes.baseAddress else { return }
      let result = systemWrite(descriptor, start + written, bytes.count - written)
      if result < 0 {
        if errno == EINTR { continue }
        throw FileOutput.error(path: path, action: "written")
      }
      written += result
    }
  }

  static func error(path: String, action: String) -> ModelFormatError {
    ModelFormatError(
      code: .fileSystem, path: path,
      message: "The file cannot be \(action) (\(String(cString: strerror(errno)))). "
        + "Check the folder's permissions and free space.")
  }
}
