import Foundation

/// The kernel time of an interpreter's runs by op type, the 15 largest, as `run --profile` and
/// `finetune --profile` print it: milliseconds per run, share, calls per run.
func profileTable(_ totals: [(op: String, count: Int, time: Duration)], runs: Int) -> String {
  let all = totals.reduce(Duration.zero) { $0 + $1.time }
  var text = "kernel time per run by op type (\(runs) run\(runs == 1 ? "" : "s")):\n"
  for (op, count, time) in totals.prefix(15) {
    let milliseconds =
      Double(time.components.attoseconds) / 1e15 + Double(time.components.seconds) * 1000
    let share = all == .zero ? 0 : 100 * (time / all)
    let calls = count / runs
    text +=
      "  \(op.padding(toLength: 24, withPad: " ", startingAt: 0)) "
      + String(
        format: "%9.2f ms %5.1f%%  %d call%@\n", milliseconds / Double(runs), share, calls,
        calls == 1 ? "" : "s")
  }
  return text
}
