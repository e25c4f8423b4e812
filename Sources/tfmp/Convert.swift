import AccuracySearch
import ArgumentParser
import Foundation
import MixedPrecision
import ModelFormats
import Reports
import TensorCore
import Validation

/// CLI spelling of ``ReducedPrecision``, as Keras names its policies.
enum PolicyArgument: String, CaseIterable, ExpressibleByArgument {
  case mixedFloat16 = "mixed_float16"
  case mixedBfloat16 = "mixed_bfloat16"

  var precision: ReducedPrecision { self == .mixedFloat16 ? .float16 : .bfloat16 }
}

/// CLI spelling of ``WeightStorage``.
enum WeightsArgument: String, CaseIterable, ExpressibleByArgument {
  case auto, float32

  var storage: WeightStorage { self == .auto ? .auto : .float32 }
}

struct Convert: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Converts a float32 SavedModel, frozen graph or .keras model to mixed precision, in the "
      + "same format.",
    discussion: """
      SavedModel: matrix multiplications and convolutions compute in the reduced type; ops that \
      are numerically risky (exp, large sums, softmax at the output, constants that do not fit) \
      stay float32, with casts only where precision changes. Signatures and their dtypes are kept.

      Frozen graph (a binary GraphDef .pb): converted the same way into a .pb; its placeholders \
      and the nodes nothing reads keep their names and dtypes, so a Session feeds and fetches it \
      as before.

      .keras: every layer gets the mixed policy, as keras.mixed_precision would give it, except \
      softmax outputs, preprocessing layers and the layers you name; for mixed_float16 the \
      optimizer is wrapped in a LossScaleOptimizer. The weights file is copied unchanged.
      """)

  @Argument(help: "The float32 SavedModel folder, frozen graph .pb or .keras file.")
  var input: String

  @Argument(help: "The folder (SavedModel) or file (.pb, .keras) to write.")
  var output: String

  @Option(help: "The mixed-precision policy.")
  var policy: PolicyArgument = .mixedFloat16

  @Option(
    help: ArgumentHelp(
      "How to store variables: 'float32' keeps float32 master weights (for fine-tuning), cast "
        + "after each read; 'auto' stores a variable in the reduced type when all its readers "
        + "compute in it and its values fit."))
  var weights: WeightsArgument = .auto

  @Flag(
    inversion: .prefixedNo,
    help: "Keep the signatures' float32 inputs and outputs (--no-keep-io-types: the reduced type).")
  var keepIoTypes = true

  @Option(name: .customLong("fp32-op"), help: "An op type to keep float32 (repeatable).")
  var float32Ops: [String] = []

  @Option(
    name: .customLong("fp32-node"),
    help: "A regular expression; nodes whose name matches stay float32 (repeatable).")
  var float32Nodes: [String] = []

  @Option(name: .customLong("lowp-op"), help: "An op type to always convert (repeatable).")
  var reducedOps: [String] = []

  @Flag(
    name: .customLong("reduced-normalization"),
    help: ArgumentHelp(
      "Let normalizations (batch, layer, RMS) compute in the reduced type like the ops around "
        + "them, instead of in float32 as Keras computes them (more ops in the reduced type, less "
        + "accuracy)."))
  var reducedNormalization = false

  @Option(
    name: .customLong("fp32-layer"), help: ".keras: a layer name to keep float32 (repeatable).")
  var float32Layers: [String] = []

  @Option(
    name: .customLong("fp32-class"), help: ".keras: a layer class to keep float32 (repeatable).")
  var float32Classes: [String] = []

  @Option(help: ".keras, mixed_float16: the loss scale to start from (default 32768).")
  var initialScale: Double?

  @Option(help: ".keras, mixed_float16: finite steps before the loss scale doubles (default 2000).")
  var growthSteps: Int?

  @Flag(help: ".keras: leave the optimizer without loss scaling.")
  var noLossScale = false

  @Flag(
    inversion: .prefixedNo,
    help: ArgumentHelp(
      "Run the original and the converted SavedModel on the CPU before writing, and refuse "
        + "(exit 2, nothing written) a conversion that gives inf or NaN where the original does "
        + "not, or drifts beyond --verify-tolerance."))
  var verify = true

  @Option(
    help: ArgumentHelp(
      "Inputs to verify with, as a .npz keyed by signature input name (default: 2 seeded random "
        + "samples)."))
  var calibration: String?

  @Option(help: "The largest error verification allows, as a share of each output's scale.")
  var verifyTolerance = 0.1

  @Option(
    name: .customLong("tolerance"),
    help: ArgumentHelp(
      "An accuracy every output must meet, as METRIC=VALUE (max_abs, max_rel, mean_rel: at most; "
        + "cosine, top1_agreement: at least), on the --calibration inputs (else --samples random "
        + "rows); repeatable. The accuracy search then keeps float32 the fewest nodes it finds "
        + "that meet them all.",
      valueName: "metric=value"))
  var tolerances: [String] = []

  @Option(help: "With --tolerance and no --calibration: the random rows searched on.")
  var samples = 8

  @Option(
    help: ArgumentHelp(
      "With --tolerance: the executions each conversion tried must meet it on.",
      discussion: "The inputs, then copies one float32 ulp apart: a float16 execution's error "
        + "varies with the order its kernels add in, so TensorFlow's differs from tfmp's."))
  var executions = 5

  @Option(
    help: ArgumentHelp(
      "Write a report to this file: .html, a page to read (every node's precision and why, its "
        + "own error and magnitudes, each output's error, activation and weight magnitudes "
        + "against the float16 and bfloat16 limits, matrix ops Tensor Cores run slower); any "
        + "other name, the same facts as JSON. For a SavedModel this runs the conversion once "
        + "more on the CPU, observed.",
      valueName: "file"))
  var report: String?

  @Flag(help: "Replace the output if it exists.")
  var force = false

  @OptionGroup var limits: LimitOptions
  @OptionGroup var reporting: ErrorReporting

  func validate() throws {
    if let initialScale, !(initialScale > 0 && initialScale.isFinite) {
      throw ValidationError("--initial-scale must be a positive number.")
    }
    if let growthSteps, growthSteps < 1 {
      throw ValidationError("--growth-steps must be at least 1.")
    }
    if !(verifyTolerance > 0 && verifyTolerance.isFinite) {
      throw ValidationError("--verify-tolerance must be a positive number.")
    }
    for tolerance in tolerances {
      do {
        _ = try Tolerance(parsing: tolerance)
      } catch {
        throw ValidationError("--tolerance \(error)")
      }
    }
    if samples < 1 { throw ValidationError("--samples must be at least 1.") }
    if executions < 1 { throw ValidationError("--executions must be at least 1.") }
    if let report {
      let folder = URL(fileURLWithPath: report).deletingLastPathComponent().path
      var isFolder: ObjCBool = false
      guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder),
        isFolder.boolValue
      else {
        throw ValidationError("--report \(report): the folder \(folder) does not exist.")
      }
    }
  }

  func run() throws {
    if input.hasSuffix(".keras") {
      let savedModelOnly = [
        ("--weights", weights != .auto), ("--no-keep-io-types", !keepIoTypes),
        ("--fp32-op", !float32Ops.isEmpty), ("--fp32-node", !float32Nodes.isEmpty),
        ("--lowp-op", !reducedOps.isEmpty), ("--calibration", calibration != nil),
        ("--no-verify", !verify), ("--reduced-normalization", reducedNormalization),
        ("--tolerance", !tolerances.isEmpty),
      ]
      if let (flag, _) = savedModelOnly.first(where: \.1) {
        throw ValidationError("\(flag) applies to SavedModels; '\(input)' is a .keras file.")
      }
      return try convertKeras()
    }
    let kerasOnly = [
      ("--fp32-layer", !float32Layers.isEmpty), ("--fp32-class", !float32Classes.isEmpty),
      ("--initial-scale", initialScale != nil), ("--growth-steps", growthSteps != nil),
      ("--no-loss-scale", noLossScale),
    ]
    if let (flag, _) = kerasOnly.first(where: \.1) {
      throw ValidationError("\(flag) applies to .keras files; '\(input)' is not one.")
    }
    try reporting.reportingErrors {
      var options = ConversionOptions()
      options.precision = policy.precision
      options.weights = weights.storage
      options.keepIOTypes = keepIoTypes
      options.float32Ops = float32Ops
      options.float32NodePatterns = float32Nodes
      options.reducedOps = reducedOps
      options.normalizationInFloat32 = !reducedNormalization
      let original = try GraphModel(contentsOf: input)
      let inputs = try calibration.map { try NumPyFile.readArchive(at: $0) }
      var search: PrecisionSearch.Outcome?
      var searched: (model: GraphModel, report: ConversionReport)?
      if !tolerances.isEmpty {
        var searcher = PrecisionSearch(
          conversion: options, tolerances: try tolerances.map { try Tolerance(parsing: $0) })
        searcher.inputs = inputs
        searcher.samples = samples
        searcher.executions = executions
        searcher.limits = limits.limits
        let bar = ProgressBar()
        searcher.progress = { bar.show($0, done: $1, total: $2) }
        let (outcome, conversion) = try searcher.run(on: original)
        bar.clear()
        guard outcome.met, let conversion else { throw SearchFailure(outcome: outcome) }
        search = outcome
        searched = conversion
      }
      let (model, conversion) = try searched ?? Converter(options: options).convert(original)
      var verification: ConversionCheck.Outcome?
      var profile: ConversionProfile?
      try model.write(to: output, overwrite: force) { written in
        guard verify || report != nil else { return }
        let converted = try GraphModel(contentsOf: written)
        if verify {
          let outcome = try ConversionCheck.check(
            original: original, converted: converted, inputs: inputs, tolerance: verifyTolerance,
            limits: limits.limits)
          verification = outcome
          if let failure = outcome.failure { throw VerificationFailure(failure: failure) }
        }
        if report != nil {
          profile = try ConversionProfile.measure(
            original: original, converted: converted, inputs: inputs,
            precision: options.precision, limits: limits.limits)
        }
      }
      let record = ConversionRecord(
        input: input, output: output, conversion: conversion, search: search,
        verification: verification, profile: profile)
      try writeReport(record, page: { HTMLReport.page(record) })
      print(conversion.summary, terminator: "")
      if let search { print(search.summary, terminator: "") }
      if let verification { print(verification.summary) }
      if let profile, let report {
        print(
          "report \(report): profiled in \(String(format: "%.2f", profile.seconds)) s, "
            + "\(profile.modelRuns) model runs")
      }
      print("wrote \(output)")
    }
  }

  /// A conversion verification refused: reported, with what to do, and exit code 2.
  struct VerificationFailure: Error, CustomStringConvertible {
    var failure: ConversionCheck.Failure

    var description: String {
      let hint =
        failure.node.map {
          "Keep that node float32 with --fp32-node '^\($0.name)$' (or its op "
            + "with --fp32-op \($0.op)), "
        } ?? "Keep the ops involved float32 with --fp32-node, "
      return "The conversion was not written: \(failure). \(hint)or pass --no-verify to write "
        + "it anyway."
    }
  }

  /// No conversion the search tried meets the tolerances: reported, and exit code 2.
  struct SearchFailure: Error, CustomStringConvertible {
    var outcome: PrecisionSearch.Outcome

    var description: String {
      "The conversion was not written: keeping float32 every node the search ranked "
        + "(\(outcome.float32Nodes.count)) still does not meet "
        + outcome.tolerances.map(\.description).joined(separator: ", ")
        + ". Loosen the tolerance, or keep more float32 with --fp32-op.\n" + outcome.summary
    }
  }

  private func convertKeras() throws {
    try reporting.reportingErrors {
      var options = KerasConversionOptions()
      options.precision = policy.precision
      options.float32Layers = float32Layers
      options.float32Classes = float32Classes
      options.lossScaling = !noLossScale
      options.initialScale = initialScale ?? options.initialScale
      options.growthSteps = growthSteps ?? options.growthSteps
      let (archive, conversion) = try KerasConverter(options: options).convert(
        KerasArchive(contentsOf: input))
      try archive.write(to: output, overwrite: force)
      try writeReport(
        conversion, page: { HTMLReport.page(conversion, input: input, output: output) })
      print(conversion.summary, terminator: "")
      print("wrote \(output)")
    }
  }

  /// Writes `facts` to `--report`: as the HTML `page` gives it for a `.html` name, else as JSON.
  private func writeReport(_ facts: some Encodable, page: () -> String) throws {
    guard let report else { return }
    do {
      let data: Data
      if report.lowercased().hasSuffix(".html") || report.lowercased().hasSuffix(".htm") {
        data = Data(page().utf8)
      } else {
        data = try ConversionRecord.encoder().encode(facts)
      }
      try data.write(to: URL(fileURLWithPath: report), options: .atomic)
    } catch {
      throw ModelFormatError(
        code: .fileSystem, path: report,
        message: "The report cannot be written (\(error.localizedDescription)); the conversion "
          + "was written. Give --report a path in a folder that exists and can be written.",
        underlyingError: error)
    }
  }
}
