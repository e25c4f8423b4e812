import Foundation
import TensorCore

/// A progress bar on standard error, drawn only when standard error is a terminal: pipes and
/// log files see nothing of it.
final class ProgressBar: @unchecked Sendable {
  // Sendable: `lock` guards `start` and `drawn`.
  private let terminal = isatty(STDERR_FILENO) == 1
  private let lock = NSLock()
  private var start: ContinuousClock.Instant?
  private var drawn = false

  /// Draws `stage` with `done` of at most `total` steps.
  func show(_ stage: String, done: Int, total: Int) {
    guard terminal else { return }
    lock.withLock {
      let now = ContinuousClock.now
      let started = start ?? now
      start = started
      let width = 24
      let filled = total > 0 ? min(width, width * done / total) : 0
      let line =
        "\r\u{1B}[K\(stage) [" + String(repeating: "#", count: filled)
        + String(repeating: ".", count: width - filled) + "] \(done)/\(total) "
        + String(format: "%.1f s", (now - started).seconds)
      FileHandle.standardError.write(Data(line.utf8))
      drawn = true
    }
  }

  /// Erases the bar.
  func clear() {
    lock.withLock {
      guard drawn else { return }
      FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
      drawn = false
    }
  }
}
