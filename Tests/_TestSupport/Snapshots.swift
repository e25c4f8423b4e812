import Foundation

/// Compares `text` with the golden file `Snapshots/<name>.txt` beside the calling test file.
///
/// With `RECORD_SNAPSHOTS=1` in the environment the file is (re)written instead and the check
/// passes; review the diff before committing.
/// - Returns: `nil` when they match, else a message with the first differing line.
public func snapshotMismatch(_ text: String, named name: String, testFile: String = #filePath)
  -> String?
{
  let folder = URL(fileURLWithPath: testFile).deletingLastPathComponent()
    .appendingPathComponent("Snapshots")
  let file = folder.appendingPathComponent(name + ".txt")
  if ProcessInfo.processInfo.environment["RECORD_SNAPSHOTS"] == "1" {
    try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    do {
      try text.write(to: file, atomically: true, encoding: .utf8)
    } catch {
      return "cannot record snapshot \(file.path): \(error)"
    }
    return nil
  }
  guard let expected = try? String(contentsOf: file, encoding: .utf8) else {
    return "no snapshot at \(file.path); run with RECORD_SNAPSHOTS=1 to record it"
  }
  guard expected != text else { return nil }
  let actualLines = text.split(separator: "\n", omittingEmptySubsequences: false)
  let expectedLines = expected.split(separator: "\n", omittingEmptySubsequences: false)
  for index in 0..<max(actualLines.count, expectedLines.count) {
    let actual = index < actualLines.count ? String(actualLines[index]) : "<end>"
    let wanted = index < expectedLines.count ? String(expectedLines[index]) : "<end>"
    if actual != wanted {
      return "\(name): line \(index + 1) differs\n  expected: \(wanted)\n  actual:   \(actual)"
    }
  }
  return "\(name): texts differ"
}
