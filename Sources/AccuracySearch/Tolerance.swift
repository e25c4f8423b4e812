public import Validation

/// A bound on one accuracy metric of every output, as `tfmp convert --tolerance METRIC=VALUE`
/// gives it; the metrics are those `tfmp validate` reports.
public struct Tolerance: Sendable, Hashable, Codable, CustomStringConvertible {
  /// An accuracy metric of one output against the original's.
  public enum Metric: String, Sendable, Codable, CaseIterable {
    /// The largest |converted - original|; at most the value.
    case maxAbs = "max_abs"
    /// The largest |converted - original| / |original| over nonzero originals; at most the value.
    case maxRel = "max_rel"
    /// The mean of that relative error; at most the value.
    case meanRel = "mean_rel"
    /// The cosine similarity of the two outputs as vectors; at least the value.
    case cosine
    /// For classifier-shaped outputs ([batch, classes]), the share of rows whose arg max agrees;
    /// at least the value. Other outputs have none and meet it.
    case top1Agreement = "top1_agreement"

    /// Whether larger values are better (a lower bound).
    var isLowerBound: Bool { self == .cosine || self == .top1Agreement }
  }

  /// The metric bounded.
  public var metric: Metric
  /// The bound.
  public var value: Double

  /// A bound of `value` on `metric`.
  public init(_ metric: Metric, _ value: Double) {
    self.metric = metric
    self.value = value
  }

  /// Parses `METRIC=VALUE`, such as `max_abs=1e-3` or `cosine=0.9999`.
  ///
  /// - Throws: ``ToleranceError`` naming the metrics or the expected number.
  public init(parsing text: String) throws(ToleranceError) {
    let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
    guard parts.count == 2, let metric = Metric(rawValue: parts[0]) else {
      throw ToleranceError(
        text: text,
        reason: "expected METRIC=VALUE with METRIC one of "
          + Metric.allCases.map(\.rawValue).joined(separator: ", "))
    }
    guard let value = Double(parts[1]), value.isFinite, value >= 0 else {
      throw ToleranceError(text: text, reason: "the value must be a non-negative number")
    }
    if metric.isLowerBound && value > 1 {
      throw ToleranceError(text: text, reason: "\(metric.rawValue) is at most 1")
    }
    self.init(metric, value)
  }

  /// The output's value of the metric; `nil` when it has none (top-1 agreement of an output
  /// that is no classifier's).
  public func measure(_ output: AccuracyReport.Output) -> Double? {
    switch metric {
    case .maxAbs: output.maxAbsoluteError
    case .maxRel: output.maxRelativeError
    case .meanRel: output.meanRelativeError
    case .cosine: output.cosineSimilarity
    case .top1Agreement: output.top1Agreement
    }
  }

  /// Whether `output` meets the bound.
  public func isMet(by output: AccuracyReport.Output) -> Bool {
    guard let measured = measure(output) else { return true }
    return metric.isLowerBound ? measured >= value : measured <= value
  }

  /// The share of `output`'s error that may remain for it to meet the bound, to first order
  /// (the metrics scale with the error, cosine's distance from 1 with its square): at least 1
  /// when it meets it; `nil` for top-1 agreement, which does not scale so, and for no error.
  func allowedErrorShare(of output: AccuracyReport.Output) -> Double? {
    guard let measured = measure(output) else { return nil }
    switch metric {
    case .maxAbs, .maxRel, .meanRel:
      return measured > 0 ? value / measured : nil
    case .cosine:
      return measured < 1 ? ((1 - value) / (1 - measured)).squareRoot() : nil
    case .top1Agreement:
      return nil
    }
  }

  /// `max_abs <= 0.001`, `cosine >= 0.9999`.
  public var description: String {
    "\(metric.rawValue) \(metric.isLowerBound ? ">=" : "<=") \(value)"
  }
}

/// A `--tolerance` that cannot be read.
public struct ToleranceError: Error, Sendable, CustomStringConvertible {
  /// What was given.
  public var text: String
  /// What is wrong with it.
  public var reason: String

  /// `'<text>': <reason>.`
  public var description: String { "'\(text)': \(reason)." }
}
