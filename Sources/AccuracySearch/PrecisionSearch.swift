public import MixedPrecision
public import ModelFormats
public import TensorCore
public import Validation
internal import CPURuntime
internal import Foundation
internal import GraphIR

/// Accuracy-budgeted conversion: finds few nodes to keep float32 so that every output of the
/// converted model meets every tolerance on the calibration inputs.
///
/// 1. The lists' conversion is tried first; when it meets the tolerances, nothing more is kept.
/// 2. Otherwise one instrumented pass (``Sensitivity``) measures each reduced-precision node's
///    own error, fed the original's values, and one backward pass of the original
///    (``ErrorAttribution``) the share of the lists' output error that each such error explains;
///    the nodes are ranked, those whose values overflow the reduced type first, then by that
///    share (by their own error where the model cannot be differentiated).
/// 3. The shortest prefix of that ranking that meets the tolerances is found by doubling its
///    length, then bisecting; then runs of kept nodes are tried without (half the set, then
///    quarters, down to single nodes, least sensitive first) and dropped when the tolerances
///    still hold. Each try is one conversion and one run.
///
/// Signatures that give the same outputs on the same inputs (a Keras export's `serve` and
/// `serving_default`) are searched on once; the result is then checked on every signature.
public struct PrecisionSearch: Sendable {
  /// How to convert, besides what the search keeps float32.
  public var conversion: ConversionOptions
  /// What every output must meet.
  public var tolerances: [Tolerance]
  /// Calibration inputs keyed by signature input name; `nil` draws ``samples`` seeded random
  /// rows (see `tfmp validate`).
  public var inputs: [String: Tensor]?
  /// The batch size of random inputs.
  public var samples = 8
  /// The seed of random inputs.
  public var seed: UInt64 = 0
  /// The most conversions tried after the sensitivity pass.
  public var trialLimit = 24
  /// How many reduced-precision executions each conversion tried is judged on: one as tfmp
  /// runs it, then runs with every float32 value that a cast rounds to the reduced type moved
  /// one ulp up or down at random first (seeded; ``LastBitNudger``), as another runtime's
  /// float32 kernels, adding in another order, would compute it. Where a float16 execution
  /// rounds depends on those last bits, and once one value rounds the other way its neighbours
  /// downstream follow: two runtimes (TensorFlow's and tfmp's) err by different amounts on the
  /// same model. A conversion must meet the tolerances on every one of these executions, so
  /// that TensorFlow's, another of the kind, meets them too.
  public var executions = 5
  /// What running the model and its conversions may create.
  public var limits = ResourceLimits.standard
  /// Whether signatures that give the same outputs on the same inputs (a Keras export's `serve`
  /// and `serving_default`) are searched on once, the result then checked on all of them.
  var searchesAliasesOnce = true
  /// Called before each conversion tried and the instrumented pass, with what is being done and
  /// how many of at most how many conversions have been tried (for a progress bar).
  public var progress: (@Sendable (_ stage: String, _ done: Int, _ total: Int) -> Void)?

  /// Embedding lookups: under `--weights auto` their tables are stored in the reduced type
  /// while they stay float32; the search keeps such a table float32 by keeping its lookup.
  static let lookupOps: Set<String> = ["GatherV2", "Gather", "GatherNd"]

  /// A search for `tolerances` under `conversion`.
  public init(conversion: ConversionOptions, tolerances: [Tolerance]) {
    self.conversion = conversion
    self.tolerances = tolerances
  }

  /// What the search found.
  public struct Outcome: Sendable, Codable {
    /// The nodes to keep float32, most sensitive first.
    public var float32Nodes: [NodeSensitivity] = []
    /// Each signature's accuracy with the lists alone.
    public var before: [AccuracyReport] = []
    /// Each signature's accuracy with ``float32Nodes`` kept float32.
    public var after: [AccuracyReport] = []
    /// Whether ``after`` meets every tolerance.
    public var met = false
    /// The casts the chosen conversion inserts.
    public var casts = 0
    /// Model runs used: the original's, each conversion tried (on each execution it is
    /// judged on), the instrumented pass's.
    public var modelRuns = 0
    /// Conversions tried.
    public var conversions = 0
    /// The executions a conversion is judged on (``PrecisionSearch/executions``).
    public var executions = 1
    /// Wall time of the search, in seconds.
    public var seconds = 0.0
    /// The tolerances searched for.
    public var tolerances: [Tolerance] = []
    /// Why the nodes were ranked by their own error, not by their share of the output error
    /// (the model could not be differentiated); `nil` when ranked by share.
    public var rankedByOwnError: String?

    /// What `tfmp convert --tolerance` prints.
    public var summary: String {
      var lines = [
        "accuracy search for " + tolerances.map(\.description).joined(separator: ", ") + ":"
      ]
      lines.append("  the lists alone: " + Self.describe(before))
      if let rankedByOwnError, !float32Nodes.isEmpty {
        lines.append("  ranked by own error (no share of the output error: \(rankedByOwnError))")
      }
      if float32Nodes.isEmpty {
        lines.append("  kept float32: nothing more")
      } else {
        lines.append("  kept float32 (\(float32Nodes.count)):")
        for node in float32Nodes {
          var why = "own error \(String(format: "%.2g", node.ownError))"
          if let share = node.errorShare {
            why += ", \(String(format: "%.1f", 100 * share))% of the output error"
          }
          if node.overflows { why += ", overflows" }
          if node.flushedShare > 0 {
            why += ", \(String(format: "%.1f", 100 * node.flushedShare))% flushed to zero"
          }
          lines.append("    \(node.op) '\(node.node.node)' in \(node.node.function) (\(why))")
        }
      }
      lines.append("  " + (met ? "met: " : "NOT met: ") + Self.describe(after))
      lines.append(
        "  casts: \(casts), conversions tried: \(conversions)"
          + (executions > 1 ? ", each judged on up to \(executions) executions" : "")
          + ", model runs: \(modelRuns), " + String(format: "%.2f s", seconds))
      return lines.joined(separator: "\n") + "\n"
    }

    private static func describe(_ reports: [AccuracyReport]) -> String {
      reports.flatMap { report in
        report.outputs.map { output in
          "\(report.signature).\(output.name) max_abs \(String(format: "%.3g", output.maxAbsoluteError)), "
            + "mean_rel \(String(format: "%.3g", output.meanRelativeError)), "
            + "cosine \(String(format: "%.6f", output.cosineSimilarity))"
            + (output.top1Agreement.map { ", top1 \(String(format: "%.1f", 100 * $0))%" } ?? "")
        }
      }.joined(separator: "; ")
    }
  }

  /// Searches the nodes of `original`'s conversion to keep float32.
  ///
  /// - Returns: What the search found and, when it met the tolerances, the conversion chosen
  ///   (what ``Converter`` gives with ``Outcome/float32Nodes`` kept float32).
  /// - Throws: ``ModelFormatError`` when the model cannot be read or converted; ``RuntimeError``
  ///   when the runtime cannot run it (the search needs to).
  public func run(on original: GraphModel) throws -> (
    outcome: Outcome, conversion: (model: GraphModel, report: ConversionReport)?
  ) {
    let start = ContinuousClock.now
    var outcome = Outcome(tolerances: tolerances)

    let module = try original.module()
    // The weights every conversion tried reads, decoded once.
    let shared = original.checkpoint.map { SharedVariables(checkpoint: $0) }
    let reference = Interpreter(
      module: module, checkpoint: original.checkpoint, limits: limits, sharing: shared)
    var given: [String: [String: Tensor]] = [:]
    var expected: [String: [String: Tensor]] = [:]
    for key in module.distinctSignatureKeys {
      let specs = try reference.inputSpecs(signature: key)
      let inputs =
        try self.inputs.flatMap { inputs in
          specs.keys.allSatisfy { inputs[$0] != nil } ? inputs : nil
        }
        ?? ModelComparison.random(
          specs, samples: samples, seed: seed, words: reference.vocabulary())
      given[key] = inputs
      expected[key] = try reference.run(signature: key, inputs: inputs)
      outcome.modelRuns += 1
    }
    let keys = given.keys.sorted()
    outcome.executions = max(1, executions)
    // The signatures searched on: one of each set giving the same outputs on the same inputs.
    var searched: [String] = []
    for key in keys
    where !searchesAliasesOnce
      || !searched.contains(where: { given[$0] == given[key] && expected[$0] == expected[key] })
    {
      searched.append(key)
    }

    // What every conversion tried shares, found once.
    let prepared = try Converter(options: conversion).prepare(original)
    // The sets of kept nodes tried that missed the tolerances: pruning would try some again
    // (the set without the last node kept is the prefix bisecting tried).
    var missed: Set<Set<QualifiedNodeName>> = []

    /// Converts keeping `kept` float32 and measures the conversion on the signatures `keys`
    /// (those searched on unless given), in memory: its graph as written, its variables stored
    /// reduced read rounded as a written checkpoint would give them.
    func trial(_ kept: Set<QualifiedNodeName>, on keys: [String]? = nil) throws -> Trial {
      progress?("accuracy search", outcome.conversions, trialLimit + 2)
      let (converted, report) = try prepared.convert(keepingFloat32: kept)
      outcome.conversions += 1
      let tried = Trial(
        met: true, reports: [], report: report, model: converted,
        runner: try Interpreter(model: converted, limits: limits, sharing: shared),
        outputs: [:])
      let result = try measured(tried, on: keys ?? searched)
      if !result.met { missed.insert(kept) }
      return result
    }

    /// `tried` also measured on the signatures `keys`: whether it meets the tolerances on all
    /// it has been measured on, each signature's report its executions' worst (``worst(of:)``;
    /// the next execution is run only while the executions so far meet them)..
    func measured(_ tried: Trial, on keys: [String]) throws -> Trial {
      var tried = tried
      let nudger = LastBitNudger()
      var nudged: Interpreter?
      for key in keys {
        guard let inputs = given[key], let reference = expected[key] else { continue }
        let fed = ModelComparison.rounded(inputs, for: try tried.runner.inputSpecs(signature: key))
        var reports: [AccuracyReport] = []
        for execution in 0..<max(1, executions) {
          let runner: Interpreter
          if execution == 0 {
            runner = tried.runner
          } else {
            nudger.reseed(seed &+ UInt64(execution))
            runner =
              try nudged
              ?? Interpreter(model: tried.model, observer: nudger, limits: limits, sharing: shared)
            nudged = runner
          }
          let actual = try runner.run(signature: key, inputs: fed)
          outcome.modelRuns += 1
          if execution == 0 { tried.outputs[key] = actual }
          reports.append(
            ModelComparison.report(
              signature: key, expected: reference, actual: actual, rtol: 0, atol: 0,
              inputs: self.inputs == nil ? "\(samples) random samples" : "calibration"))
          guard meets(reports[execution]) else { break }
        }
        tried.reports.append(Self.worst(of: reports))
      }
      tried.reports.sort { $0.signature < $1.signature }
      tried.met = tried.reports.allSatisfy(meets)
      return tried
    }

    func meets(_ report: AccuracyReport) -> Bool {
      report.mismatches.isEmpty
        && report.outputs.allSatisfy { output in tolerances.allSatisfy { $0.isMet(by: output) } }
    }

    let lists = try trial([], on: keys)
    outcome.before = lists.reports
    outcome.after = lists.reports
    outcome.casts = lists.report.castsInserted
    outcome.met = lists.met
    guard !lists.met else {
      outcome.seconds = (ContinuousClock.now - start).seconds
      return (outcome, (lists.model, lists.report))
    }

    // The reduced-precision nodes, and the embedding lookups (painted float32, they read the
    // rounded values of tables stored in the reduced type).
    let reduced = lists.report.nodes.filter { $0.precision != "float32" }.map {
      QualifiedNodeName(function: $0.function, node: $0.name)
    }
    let lookups = try lists.model.module().nodeNames { Self.lookupOps.contains($0.op) }
    // The instrumented pass, with the backward pass that attributes the lists' output error,
    // on every signature searched on; a node's sensitivity is its worst.
    var measurement = Measurement()
    progress?("instrumented pass", outcome.conversions, trialLimit + 2)
    for key in searched {
      guard let inputs = given[key] else { continue }
      let fed = ModelComparison.rounded(inputs, for: try lists.runner.inputSpecs(signature: key))
      let measured = try Sensitivity.measure(
        original: original, converted: lists.model, signature: key, inputs: inputs,
        convertedInputs: fed, precision: conversion.precision, limits: limits,
        attributing: lists.outputs[key], candidates: Set(reduced).union(lookups))
      measurement.merge(measured.measurement)
      if let reason = measured.unattributed { outcome.rankedByOwnError = reason }
      outcome.modelRuns += measured.unattributed == nil ? 3 : 2
    }
    let sensitivities = measurement.sensitivities
    let attributed = outcome.rankedByOwnError == nil
    let measuredLookups = lookups.filter { (sensitivities[$0]?.ownError ?? 0) > 0 }
    let ranked = Set(reduced).union(measuredLookups).map { name in
      var node = sensitivities[name] ?? NodeSensitivity(node: name, op: "?")
      if attributed && node.errorShare == nil { node.errorShare = 0 }
      return node
    }.sorted {
      ($0.overflows ? 1 : 0, $0.errorShare ?? 0, $0.ownError, $0.node.description)
        > ($1.overflows ? 1 : 0, $1.errorShare ?? 0, $1.ownError, $1.node.description)
    }

    // The shortest prefix meeting the tolerances: doubling, then bisecting. Doubling starts at
    // the shortest prefix whose shares of the lists' error add up to what the tolerances need
    // removed, to first order (nodes kept float32 remove less together than their shares add
    // up to: a value between two of them is still rounded when a neighbour is not kept).
    var best: (count: Int, result: Trial)?
    var latest = lists
    var failed = 0
    var length = 1
    let allowed = lists.reports.flatMap(\.outputs).flatMap { output in
      tolerances.compactMap { $0.allowedErrorShare(of: output) }
    }.min()
    if attributed, let allowed, allowed < 1 {
      var removed = 0.0
      length = ranked.count
      for (index, node) in ranked.enumerated() {
        removed += max(0, node.errorShare ?? 0)
        if removed >= 1 - allowed {
          length = index + 1
          break
        }
      }
    }
    while best == nil && outcome.conversions <= trialLimit {
      let count = min(length, ranked.count)
      latest = try trial(Set(ranked.prefix(count).map(\.node)))
      if latest.met { best = (count, latest) } else { failed = count }
      if count == ranked.count { break }
      length *= 2
    }
    guard var (count, result) = best else {
      outcome.float32Nodes = ranked
      outcome.after = latest.reports
      outcome.seconds = (ContinuousClock.now - start).seconds
      return (outcome, nil)
    }
    while count - failed > 1 && outcome.conversions <= trialLimit {
      let middle = (failed + count) / 2
      let attempt = try trial(Set(ranked.prefix(middle).map(\.node)))
      if attempt.met { (count, result) = (middle, attempt) } else { failed = middle }
    }
    // Pruning: runs of kept nodes tried without, halving the run's length from half the set
    // down to single nodes, the least sensitive first.
    var kept = Array(ranked.prefix(count))
    var run = max(1, kept.count / 2)
    pruning: while true {
      var end = kept.count
      while end > 0 && kept.count > 1 {
        guard outcome.conversions <= trialLimit else { break pruning }
        let start = max(0, end - run)
        let without = Array(kept[..<start] + kept[end...])
        let candidate = Set(without.map(\.node))
        if !without.isEmpty && !missed.contains(candidate) {
          let attempt = try trial(candidate)
          if attempt.met {
            kept = without
            result = attempt
          }
        }
        end = start
      }
      if run == 1 { break }
      run = max(1, run / 2)
    }
    if searched.count < keys.count {
      // The signatures not searched on too; should one miss, the search runs again on all.
      result = try measured(result, on: keys.filter { !searched.contains($0) })
      guard result.met else {
        var thorough = self
        thorough.searchesAliasesOnce = false
        var again = try thorough.run(on: original)
        again.outcome.modelRuns += outcome.modelRuns
        again.outcome.conversions += outcome.conversions
        again.outcome.seconds += (ContinuousClock.now - start).seconds
        return again
      }
    }
    outcome.float32Nodes = kept
    outcome.after = result.reports
    outcome.casts = result.report.castsInserted
    outcome.met = true
    outcome.seconds = (ContinuousClock.now - start).seconds
    return (outcome, (result.model, result.report))
  }
}

extension PrecisionSearch {
  /// One signature's reports of several executions as one, output by output: each metric's
  /// worst value.
  static func worst(of reports: [AccuracyReport]) -> AccuracyReport {
    guard var worst = reports.first else { preconditionFailure("no report") }
    for report in reports.dropFirst() {
      worst.mismatches += report.mismatches.filter { !worst.mismatches.contains($0) }
    }
    for (index, output) in worst.outputs.enumerated() {
      let all = reports.compactMap { $0.outputs.first { $0.name == output.name } }
      var merged = output
      merged.maxAbsoluteError = all.map(\.maxAbsoluteError).max() ?? 0
      merged.maxRelativeError = all.map(\.maxRelativeError).max() ?? 0
      merged.meanRelativeError = all.map(\.meanRelativeError).max() ?? 0
      merged.cosineSimilarity = all.map(\.cosineSimilarity).min() ?? 0
      merged.top1Agreement = all.compactMap(\.top1Agreement).min()
      merged.elementsOutsideTolerance = all.map(\.elementsOutsideTolerance).max() ?? 0
      worst.outputs[index] = merged
    }
    return worst
  }
}

/// Moves every float32 value each node computes one ulp up or down at random, seeded (zeros and
/// non-finite values stay): a run as another runtime, whose float32 kernels add in another
/// order, might compute it (see ``PrecisionSearch/executions``).
package final class LastBitNudger: RunObserver, @unchecked Sendable {
  // Sendable: runs are sequential here; `lock` guards the state all the same.
  private var generator = SeededGenerator(seed: 0)
  private let lock = NSLock()

  /// A nudger seeded with 0.
  package init() {}

  /// Starts the random directions again from `seed`.
  package func reseed(_ seed: UInt64) {
    lock.withLock { generator = SeededGenerator(seed: seed) }
  }

  package func observe(
    function: String, node: String, op: String, inputs: [Tensor?], outputs: [Tensor?]
  ) {}

  package func replacement(function: String, node: String, outputs: [Tensor?]) -> [Tensor?]? {
    lock.withLock {
      outputs.map { tensor in
        guard let tensor, tensor.dtype == .float32, case .float(let values) = tensor.storage
        else { return nil }
        return Tensor(dtype: .float32, shape: tensor.shape, storage: .float(nudged(values)))
      }
    }
  }

  /// `values`, each moved to a neighbour: one random bit per value says whether its magnitude's
  /// bit pattern steps up or down (to the next float away from zero or towards it).
  private func nudged(_ values: [Float]) -> [Float] {
    values.withUnsafeBufferPointer { source in
      [Float](unsafeUninitializedCapacity: source.count) { moved, count in
        var start = 0
        while start < source.count {
          let bits = generator.next()
          let end = min(start + 64, source.count)
          // Branch-free, so that it vectorizes: +1 or -1 (all ones) on the bit pattern, as bit
          // `index % 64` says, for nonzero magnitudes below the largest finite one.
          for index in start..<end {
            let pattern = source[index].bitPattern
            let magnitude = pattern & 0x7FFF_FFFF
            let step = UInt32(truncatingIfNeeded: (bits >> UInt64(index - start)) & 1) &* 2 &- 1
            let movable: UInt32 = magnitude != 0 && magnitude < 0x7F7F_FFFF ? 1 : 0
            moved[index] = Float(bitPattern: pattern &+ step &* movable)
          }
          start = end
        }
        count = source.count
      }
    }
  }
}

/// One conversion tried: whether it meets the tolerances, its accuracy per signature, its
/// report, and the conversion as written.
private struct Trial {
  var met: Bool
  var reports: [AccuracyReport]
  var report: ConversionReport
  var model: GraphModel
  var runner: Interpreter
  /// Each signature's outputs.
  var outputs: [String: [String: Tensor]]
}
