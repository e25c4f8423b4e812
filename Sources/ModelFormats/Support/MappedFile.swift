#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A file mapped read-only into memory, so reading a multi-GB checkpoint copies nothing it does
/// not touch. Owns the mapping and unmaps it when released. (Or a file's bytes already in
/// memory, for the fuzz targets: the same reading code without the file system.)
final class MappedFile: @unchecked Sendable {
  // Sendable: the mapping is read-only and never changes after init.

  /// The path the file was opened from.
  let path: String
  private let base: UnsafeRawPointer?
  /// The file's size in bytes.
  let count: Int
  /// Whether `base` is memory of this object's own (``init(bytes:path:)``), not a mapping.
  private let inMemory: Bool

  /// A copy of `bytes`, read as the file at `path` would be.
  package init(bytes: [UInt8], path: String) {
    self.path = path
    count = bytes.count
    inMemory = true
    guard !bytes.isEmpty else {
      base = nil
      return
    }
    let memory = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
    memory.copyMemory(from: bytes, byteCount: bytes.count)
    base = UnsafeRawPointer(memory)
  }

  /// Maps the whole file at `path`.
  ///
  /// - Throws: `ModelFormatError` with code `missingInput` when the file does not exist, or
  ///   `fileSystem` when it cannot be opened or mapped.
  init(path: String) throws(ModelFormatError) {
    self.path = path
    inMemory = false
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
      let code = errno
      throw ModelFormatError(
        code: code == ENOENT ? .missingInput : .fileSystem, path: path,
        message: "The file cannot be opened (\(String(cString: strerror(code)))). "
          + "Check the path and its permissions.")
    }
    defer { close(descriptor) }
    var status = stat()
    guard fstat(descriptor, &status) == 0 else {
      throw ModelFormatError(
        code: .fileSystem, path: path,
        message: "The file's size cannot be read (\(String(cString: strerror(errno)))).")
    }
    count = Int(status.st_size)
    guard count > 0 else {
      base = nil
      return
    }
    let mapping = mmap(nil, count, PROT_READ, MAP_PRIVATE, descriptor, 0)
    guard let mapping, mapping != MAP_FAILED else {
      throw ModelFormatError(
        code: .fileSystem, path: path,
        message: "The file cannot be mapped into memory (\(String(cString: strerror(errno)))).")
    }
    base = UnsafeRawPointer(mapping)
  }

  deinit {
    if let base {
      if inMemory {
        UnsafeMutableRawPointer(mutating: base).deallocate()
      } else {
        munmap(UnsafeMutableRawPointer(mutating: base), count)
      }
    }
  }

  /// Calls `body` with the bytes in `range`, which must lie within the file.
  ///
  /// - Precondition: `range` is within `0..<count` (callers check file data against ``count``).
  func withBytes<R, E: Error>(
    in range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws(E) -> R
  ) throws(E) -> R {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "range outside the mapping")
    guard let base else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
    return try body(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
  }

  /// Drops the pages covering `range` from this process's memory; the next access reads them
  /// again from the page cache or the file. Keeps the resident size of a streaming pass over a
  /// multi-GB checkpoint near the size of one tensor.
  func release(_ range: Range<Int>) {
    guard let base, !range.isEmpty, !inMemory else { return }
    let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    let start = range.lowerBound / pageSize * pageSize
    let end = min(count, (range.upperBound + pageSize - 1) / pageSize * pageSize)
    madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, Int32(MADV_DONTNEED))
  }

  /// Calls `body` with all the bytes of the file.
  func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    try withBytes(in: 0..<count, body)
  }
}
