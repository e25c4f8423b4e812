import ArgumentParser
import CPURuntime
import Foundation
import GraphIR
import MixedPrecision
import ModelFormats
import TensorCore
import Training

/// `tfmp finetune`: trains a SavedModel's variables further on a `.npz` of examples, in the
/// precision its graph computes in, with float32 master weights and loss scaling.
struct Finetune: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Fine-tune a SavedModel (a converted one too) on examples; write the trained model.",
    discussion: """
      The signature's graph is the forward pass, as exported: inference mode, so dropout is off \
      and batch normalization uses its moving statistics, which stay frozen (they are not \
      trainable variables). Each trained variable is updated as a float32 master weight and \
      written back in the type the model stores it in (or, with --weights auto, in the reduced \
      type where convert --weights auto would store it). The loss is computed in float32. With \
      float16 compute, the loss is scaled dynamically as Keras's LossScaleOptimizer scales it.
      """)

  enum LossArgument: String, CaseIterable, ExpressibleByArgument {
    case sparseCategoricalCrossentropy = "sparse_categorical_crossentropy"
    case categoricalCrossentropy = "categorical_crossentropy"
    case binaryCrossentropy = "binary_crossentropy"
    case mse, mae

    var loss: Loss { Loss(rawValue: rawValue) ?? .meanSquaredError }
  }

  @Argument(help: "The SavedModel folder to fine-tune.")
  var input: String

  @Argument(help: "The SavedModel folder to write.")
  var output: String

  @Option(help: "A .npz with one array per signature input, by name, and the targets.")
  var data: String

  @Option(help: "The loss.")
  var loss: LossArgument

  @Option(help: "The signature to train.")
  var signature = "serving_default"

  @Option(help: "The array of --data holding the targets.")
  var targetKey = "y"

  @Option(help: "The output the loss compares with the targets (needed when there are several).")
  var prediction: String?

  @Flag(
    help: """
      Whether the prediction is logits or probabilities (default: probabilities when a Softmax \
      or Sigmoid makes it, and then the loss is computed from its input, as Keras does; else \
      logits).
      """)
  var logits: LogitsFlag?

  enum LogitsFlag: String, EnumerableFlag {
    case fromLogits, fromProbabilities
  }

  enum OptimizerArgument: String, CaseIterable, ExpressibleByArgument {
    case sgd, adam, adamw

    var kind: Optimizer.Kind { Optimizer.Kind(rawValue: rawValue) ?? .adam }
  }

  @Option(help: "The optimizer (float32 state).")
  var optimizer: OptimizerArgument = .adam

  @Option(help: "The learning rate (default: 0.01 for sgd, 0.001 for adam and adamw).")
  var learningRate: Double?

  @Option(help: "sgd: the momentum.")
  var momentum = 0.0

  @Flag(help: "sgd: Nesterov momentum.")
  var nesterov = false

  @Option(help: "adamw: the weight decay.")
  var weightDecay = 0.004

  @Option(help: "Passes over the training samples.")
  var epochs = 1

  @Option(help: "Samples per step.")
  var batchSize = 32

  @Option(help: "The share of the samples, from the end, held out to validate after each epoch.")
  var validationSplit = 0.0

  @Flag(help: "Keep the samples in order (default: shuffled each epoch).")
  var noShuffle = false

  @Option(help: "The seed of the shuffles.")
  var seed: UInt64 = 0

  @Option(
    help: """
      dynamic, none or a fixed scale (default: dynamic when the model computes in float16, \
      else none).
      """)
  var lossScale: String?

  @Option(help: "dynamic: the loss scale to start from.")
  var initialScale = 32768.0

  @Option(help: "dynamic: finite steps in a row before the loss scale doubles.")
  var growthSteps = 2000

  @Option(
    help: """
      A regular expression for the names of variables to train (repeatable; default: the \
      variables the model marks trainable).
      """)
  var trainable: [String] = []

  @Flag(
    help: """
      Add a signature train_step(inputs..., y) -> {loss, loss_scale, skipped} that runs this \
      fine-tuning's step in TensorFlow (TF2 loader), its optimizer state and loss scale as \
      variables starting where this run ended.
      """)
  var exportTrainStep = false

  enum WeightsArgument: String, CaseIterable, ExpressibleByArgument {
    case kept, auto
  }

  @Option(
    help: """
      How to store the trained weights: 'kept' writes each in the type the input stores it in \
      (float32 master weights stay float32, to train further); 'auto' stores each float32 \
      master weight in the reduced type where convert --weights auto would (every read cast \
      to that type, the trained values in its range), for serving at half the size.
      """)
  var weights: WeightsArgument = .kept

  @Flag(help: "Print the kernel time per step by op type.")
  var profile = false

  @Option(help: "Write a JSON line per step and per epoch to this file.")
  var log: String?

  @Flag(help: "Replace OUTPUT if it exists.")
  var force = false

  @OptionGroup var limits: LimitOptions
  @OptionGroup var reporting: ErrorReporting

  func validate() throws {
    guard epochs > 0, batchSize > 0 else {
      throw ValidationError("--epochs and --batch-size must be positive.")
    }
    guard (0..<1).contains(validationSplit) else {
      throw ValidationError("--validation-split must be at least 0 and below 1.")
    }
    _ = try scaling(standard: .none)
    guard !(exportTrainStep && weights == .auto) else {
      throw ValidationError(
        "--export-train-step trains float32 master weights; it cannot go with --weights auto.")
    }
  }

  /// The loss scaling asked for; `standard` when none is.
  func scaling(standard: LossScale) throws -> LossScale {
    switch lossScale {
    case nil: return standard
    case "dynamic"?: return .dynamic(initial: initialScale, growthSteps: growthSteps)
    case "none"?: return LossScale.none
    case let text?:
      guard let scale = Double(text), scale > 0, scale.isFinite else {
        throw ValidationError(
          "--loss-scale must be dynamic, none or a positive number, not '\(text)'.")
      }
      return .fixed(scale)
    }
  }

  func run() throws {
    try reporting.reportingErrors {
      guard case .savedModel(let model) = try GraphModel(contentsOf: input) else {
        throw TrainingError(
          code: .missing,
          "'\(input)' is a frozen graph, whose weights are constants; fine-tune the SavedModel "
            + "it was frozen from.")
      }
      var arrays = try NumPyFile.readArchive(at: data)
      guard let targets = arrays.removeValue(forKey: targetKey) else {
        throw TrainingError(
          code: .invalidData,
          "\(data) has no array '\(targetKey)' of targets; it has "
            + "\(arrays.keys.sorted().joined(separator: ", ")). Name it with --target-key.")
      }
      let module = try model.module()
      var optimizerOptions = Optimizer(optimizer.kind, learningRate: learningRate)
      optimizerOptions.momentum = momentum
      optimizerOptions.nesterov = nesterov
      optimizerOptions.weightDecay = weightDecay
      let standard = LossScale.standard(
        for: module, initial: initialScale, growthSteps: growthSteps)
      var options = TrainingOptions(
        loss: loss.loss, optimizer: optimizerOptions, lossScale: try scaling(standard: standard))
      options.signature = signature
      options.prediction = prediction
      options.fromLogits = logits.map { $0 == .fromLogits }
      options.trainable = trainable
      let step = try TrainStep(
        module: module, variables: try model.logicalVariables(), options: options,
        targetType: targets.dtype, using: OpRegistry.standard)
      print(summary(step))
      var tuning = FineTuning()
      tuning.epochs = epochs
      tuning.batchSize = batchSize
      tuning.validationSplit = validationSplit
      tuning.shuffle = !noShuffle
      tuning.seed = seed
      tuning.profiling = profile
      tuning.limits = limits.limits
      let logFile = try log.map { path -> FileHandle in
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
          throw ValidationError("--log \(path): the file cannot be created.")
        }
        return try FileHandle(forWritingTo: URL(fileURLWithPath: path))
      }
      defer { try? logFile?.close() }
      let encoder = JSONEncoder()
      encoder.outputFormatting = .sortedKeys
      // A step that overflowed has an infinite loss: written as the report's JSON writes it.
      encoder.nonConformingFloatEncodingStrategy = .convertToString(
        positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
      func write(_ record: some Encodable) {
        guard let logFile, let line = try? encoder.encode(record) else { return }
        logFile.write(line + Data("\n".utf8))
      }
      let bar = ProgressBar()
      let samples = targets.shape.dimensions.first ?? 0
      let trainingSamples = samples - Int(Double(samples) * validationSplit)
      let stepsPerEpoch = (trainingSamples + batchSize - 1) / batchSize
      let start = ContinuousClock.now
      let outcome = try tuning.run(
        step, checkpoint: model.checkpoint, inputs: arrays, targets: targets,
        onStep: { record in
          write(record)
          let rate = Double(record.step) / max((ContinuousClock.now - start).seconds, 1e-9)
          let accuracy = record.accuracy.map { String(format: " acc %.3f", $0) } ?? ""
          bar.show(
            String(
              format: "epoch %d/%d loss %.4f%@ scale %g %.1f steps/s", record.epoch, epochs,
              record.loss, accuracy, record.lossScale, rate),
            done: record.step - (record.epoch - 1) * stepsPerEpoch, total: stepsPerEpoch)
        },
        onEpoch: { record in
          bar.clear()
          write(record)
          print(describe(record))
        })
      var trained = try model.updatingVariables(outcome.values)
      if weights == .auto { trained = try storingReduced(trained, in: module.reducedCompute) }
      if exportTrainStep {
        trained = try trained.addingSignature(step.exportedSignature(state: outcome.state))
      }
      try trained.write(to: output, overwrite: force) { written in
        _ = try GraphModel(contentsOf: written).module()
      }
      print(
        "\(outcome.steps) steps in \(String(format: "%.1f", outcome.seconds)) s, "
          + "\(outcome.skippedSteps) skipped")
      if let totals = outcome.profile {
        print(profileTable(totals, runs: max(outcome.steps, 1)), terminator: "")
      }
      if exportTrainStep { print("signature train_step added") }
      print("wrote \(output)")
    }
  }

  /// `model` with its float32 master weights stored in `precision`, the reduced type its graph
  /// computes in, where `convert --weights auto` would store them; says what it stored.
  private func storingReduced(_ model: SavedModel, in precision: ReducedPrecision?) throws
    -> SavedModel
  {
    guard let precision else {
      print("--weights auto: the model computes in float32, so its weights stay float32")
      return model
    }
    var options = ConversionOptions()
    options.precision = precision
    let (stored, report) = try Converter(options: options).storingMasterWeights(of: model)
    let reduced = report.variables.filter { $0.dtype == precision.rawValue }
    var line =
      "weights \(ModelSummary.bytes(report.weightBytesBefore)) -> "
      + "\(ModelSummary.bytes(report.weightBytesAfter)), \(reduced.count) of "
      + "\(report.variables.count) variables stored in \(precision.rawValue)"
    if let kept = report.variables.first(where: { $0.dtype == "float32" }) {
      line += "; \(kept.name) \(kept.reason)"
    }
    print(line)
    return stored
  }

  private func summary(_ step: TrainStep) -> String {
    var lines = [
      "training \(step.variables.count) variables (\(step.frozen.count) frozen), loss "
        + step.options.loss.rawValue
        + (step.options.loss.activation == nil
          ? ""
          : step.fromLogits
            ? (step.predictsProbabilities
              ? " from the logits of the output's activation" : " from logits")
            : " from probabilities") + ", "
        + "\(step.options.optimizer.kind.rawValue) at \(step.options.optimizer.learningRate), "
        + "loss scale \(describe(step.options.lossScale))"
    ]
    if !step.unreached.isEmpty {
      lines.append(
        "the loss does not depend on \(step.unreached.count) of them: "
          + step.unreached.prefix(5).joined(separator: ", "))
    }
    return lines.joined(separator: "\n")
  }

  private func describe(_ scale: LossScale) -> String {
    switch scale {
    case .none: "none"
    case .fixed(let value): "fixed \(value)"
    case .dynamic(let initial, let growth): "dynamic (from \(initial), doubling after \(growth))"
    }
  }

  private func describe(_ record: FineTuning.EpochRecord) -> String {
    var text = "epoch \(record.epoch): loss \(String(format: "%.4f", record.loss))"
    if let accuracy = record.accuracy { text += String(format: ", accuracy %.4f", accuracy) }
    if let loss = record.validationLoss { text += String(format: ", val_loss %.4f", loss) }
    if let accuracy = record.validationAccuracy {
      text += String(format: ", val_accuracy %.4f", accuracy)
    }
    text += ", \(record.skippedSteps) skipped, loss scale \(record.lossScale)"
    return text + String(format: ", %.1f s", record.seconds)
  }
}
