internal import CPURuntime
public import ModelFormats
public import TensorCore
internal import Foundation

/// Fine-tuning by running a ``TrainStep`` over the data in batches, epoch after epoch, as
/// Keras's `fit` does: the last `validationSplit` of the samples held out (taken before
/// shuffling), the rest shuffled each epoch (seeded), a last batch smaller when the batch size
/// does not divide the samples.
public struct FineTuning: Sendable {
  /// Passes over the training samples.
  public var epochs = 1
  /// Samples per step.
  public var batchSize = 32
  /// The share of the samples, taken from the end, held out for validation after each epoch.
  public var validationSplit = 0.0
  /// Whether the training samples are shuffled each epoch.
  public var shuffle = true
  /// The seed of the shuffles.
  public var seed: UInt64 = 0
  /// Whether the outcome has the kernel time by op type (``Outcome/profile``).
  public var profiling = false
  /// What running the training step may create.
  public var limits = ResourceLimits.standard

  /// Fine-tuning with the defaults: one epoch, batches of 32, no validation, shuffled.
  public init() {}

  /// What one step did.
  public struct StepRecord: Codable, Sendable, Equatable {
    /// The epoch, from 1.
    public var epoch: Int
    /// The step, counted over all epochs from 1.
    public var step: Int
    /// The batch's loss (unscaled).
    public var loss: Double
    /// The share of the batch predicted right, for the cross-entropies.
    public var accuracy: Double?
    /// The loss scale this step used.
    public var lossScale: Double
    /// Whether the update was skipped (a gradient was not finite).
    public var skipped: Bool
    /// For a step whose gradients were not all finite, the first variable (in the model's
    /// order) whose gradient was not.
    public var nonFiniteVariable: String?
  }

  /// What one epoch did.
  public struct EpochRecord: Codable, Sendable, Equatable {
    /// The epoch, from 1.
    public var epoch: Int
    /// The mean loss over its batches, weighted by their sizes (Keras's `loss`).
    public var loss: Double
    /// The mean accuracy, for the cross-entropies.
    public var accuracy: Double?
    /// The held-out samples' loss after the epoch.
    public var validationLoss: Double?
    /// The held-out samples' accuracy after the epoch.
    public var validationAccuracy: Double?
    /// Steps skipped in it.
    public var skippedSteps: Int
    /// The loss scale at its end.
    public var lossScale: Double
    /// Its wall time.
    public var seconds: Double
  }

  /// What fine-tuning gave.
  public struct Outcome: Sendable {
    /// Each trained variable's final value, by each of its checkpoint keys.
    public var values: [String: [Float]]
    /// The epochs.
    public var epochs: [EpochRecord]
    /// Steps run.
    public var steps: Int
    /// Steps skipped (a gradient was not finite).
    public var skippedSteps: Int
    /// Wall time of all epochs.
    public var seconds: Double
    /// The state after the last step, by ``TrainStep/stateNames`` entry.
    public var state: [String: Tensor]
    /// With ``FineTuning/profiling``: kernel time by op type over all steps.
    public var profile: [(op: String, count: Int, time: Duration)]?
  }

  /// Fine-tunes `step`'s model, its variables read from `checkpoint`, on `inputs` (one array
  /// per input of the signature, samples along the first dimension) and `targets`.
  /// `onStep` sees every step and `onEpoch` every epoch as they end.
  ///
  /// - Throws: ``TrainingError`` (`invalidData`) for inputs that do not fit the signature,
  ///   sample counts that differ, labels out of range or too few samples; the runtime's errors.
  public func run(
    _ step: TrainStep, checkpoint: CheckpointReader?, inputs: [String: Tensor], targets: Tensor,
    onStep: (StepRecord) -> Void = { _ in }, onEpoch: (EpochRecord) -> Void = { _ in }
  ) throws -> Outcome {
    let interpreter = Interpreter(
      module: step.module, checkpoint: checkpoint, profiling: profiling, limits: limits)
    let specs = try interpreter.inputSpecs(signature: TrainStep.trainSignature)
    let count = targets.shape.dimensions.first ?? 0
    var samples: [String: Tensor] = [:]
    for name in step.inputNames {
      guard let tensor = inputs[name] else {
        throw TrainingError(
          code: .invalidData,
          "The data has no array '\(name)' for the signature's input of that name; it has "
            + "\(inputs.keys.sorted().joined(separator: ", ")).")
      }
      guard tensor.dtype == specs[name]?.dtype else {
        throw TrainingError(
          code: .invalidData,
          "Array '\(name)' is \(tensor.dtype.name) but the signature's input is "
            + "\(specs[name]?.dtype.name ?? "?").")
      }
      guard tensor.shape.dimensions.first == count else {
        throw TrainingError(
          code: .invalidData,
          "Array '\(name)' has \(tensor.shape.dimensions.first ?? 0) samples but the targets "
            + "have \(count); every array holds one entry per sample along its first dimension.")
      }
      samples[name] = tensor
    }
    let held = Int((Double(count) * validationSplit).rounded(.down))
    guard count - held > 0, batchSize > 0, epochs > 0 else {
      throw TrainingError(
        code: .invalidData,
        "\(count) samples, \(held) of them held out, leave none to train on (or the batch "
          + "size or epoch count is not positive).")
    }
    var state = try initialState(step, checkpoint: checkpoint)
    var generator = SeededGenerator(seed: seed)
    var epochRecords: [EpochRecord] = []
    var stepCount = 0
    var skippedSteps = 0
    let start = ContinuousClock.now
    var labelsChecked = false
    for epoch in 1...epochs {
      let epochStart = ContinuousClock.now
      var order = Array(0..<(count - held))
      if shuffle { order.shuffle(using: &generator) }
      var totals = Totals()
      var skippedInEpoch = 0
      for batchStart in stride(from: 0, to: order.count, by: batchSize) {
        let rows = Array(order[batchStart..<min(batchStart + batchSize, order.count)])
        var feeds = samples.mapValues { $0.rows(rows) }
        let y = targets.rows(rows)
        feeds["y"] = y
        for (name, value) in state { feeds[name] = value }
        let results = try interpreter.run(signature: TrainStep.trainSignature, inputs: feeds)
        let prediction = results["prediction"]
        if !labelsChecked, let prediction {
          try checkLabels(targets, prediction: prediction, loss: step.options.loss)
          labelsChecked = true
        }
        for name in step.stateNames {
          if let value = results["new/" + name] { state[name] = value }
        }
        stepCount += 1
        let loss = Double(results["loss"]?.floats?.first ?? .nan)
        let skipped = results["skipped"]?.boolValues?.first ?? false
        let accuracy = prediction.flatMap { Self.accuracy($0, y, step: step) }
        totals.add(loss: loss, accuracy: accuracy, weight: rows.count)
        if skipped {
          skippedSteps += 1
          skippedInEpoch += 1
        }
        let nonFinite = step.variables.indices.first {
          results["finite/\($0)"]?.boolValues?.first == false
        }
        onStep(
          StepRecord(
            epoch: epoch, step: stepCount, loss: loss, accuracy: accuracy,
            lossScale: Double(results["loss_scale"]?.floats?.first ?? 1), skipped: skipped,
            nonFiniteVariable: nonFinite.map { step.variables[$0].name }))
      }
      var record = EpochRecord(
        epoch: epoch, loss: totals.loss, accuracy: totals.accuracy, skippedSteps: skippedInEpoch,
        lossScale: Double(state["loss_scale"]?.floats?.first ?? 1), seconds: 0)
      if held > 0 {
        let validation = try evaluate(
          step, interpreter: interpreter, samples: samples, targets: targets,
          rows: Array((count - held)..<count), state: state)
        record.validationLoss = validation.loss
        record.validationAccuracy = validation.accuracy
      }
      record.seconds = (ContinuousClock.now - epochStart).seconds
      epochRecords.append(record)
      onEpoch(record)
    }
    var values: [String: [Float]] = [:]
    for (index, variable) in step.variables.enumerated() {
      let floats = state[TrainStep.weightState(index)]?.floats ?? []
      for key in variable.checkpointKeys { values[key] = floats }
    }
    return Outcome(
      values: values, epochs: epochRecords, steps: stepCount, skippedSteps: skippedSteps,
      seconds: (ContinuousClock.now - start).seconds, state: state,
      profile: interpreter.profile?.totals)
  }

  /// The state before the first step: the variables' stored values widened to float32, and
  /// ``TrainStep/optimizerState()``.
  func initialState(_ step: TrainStep, checkpoint: CheckpointReader?) throws -> [String: Tensor] {
    var state = step.optimizerState()
    for (index, variable) in step.variables.enumerated() {
      guard let key = variable.checkpointKeys.first, let checkpoint,
        let entry = checkpoint.entry(forKey: key),
        let floats = try checkpoint.withBytes(
          of: entry, { FloatValues.decode($0, dtype: entry.dtype)?.allValues })
      else {
        throw TrainingError(
          code: .missing, "The checkpoint holds no float value of variable '\(variable.name)'.")
      }
      state[TrainStep.weightState(index)] = Tensor(shape: variable.shape, floats: floats)
    }
    return state
  }

  /// The loss and accuracy over `rows`, in batches, without updating.
  private func evaluate(
    _ step: TrainStep, interpreter: Interpreter, samples: [String: Tensor], targets: Tensor,
    rows: [Int], state: [String: Tensor]
  ) throws -> (loss: Double, accuracy: Double?) {
    var totals = Totals()
    for batchStart in stride(from: 0, to: rows.count, by: batchSize) {
      let batch = Array(rows[batchStart..<min(batchStart + batchSize, rows.count)])
      var feeds = samples.mapValues { $0.rows(batch) }
      let y = targets.rows(batch)
      feeds["y"] = y
      for index in step.variables.indices {
        feeds[TrainStep.weightState(index)] = state[TrainStep.weightState(index)]
      }
      let results = try interpreter.run(signature: TrainStep.evaluateSignature, inputs: feeds)
      totals.add(
        loss: Double(results["loss"]?.floats?.first ?? .nan),
        accuracy: results["prediction"].flatMap { Self.accuracy($0, y, step: step) },
        weight: batch.count)
    }
    return (totals.loss, totals.accuracy)
  }

  /// Sample-weighted means of batch losses and accuracies.
  private struct Totals {
    var lossSum = 0.0
    var accuracySum = 0.0
    var hasAccuracy = false
    var weight = 0

    mutating func add(loss: Double, accuracy: Double?, weight batch: Int) {
      lossSum += loss * Double(batch)
      if let accuracy {
        accuracySum += accuracy * Double(batch)
        hasAccuracy = true
      }
      weight += batch
    }

    var loss: Double { lossSum / Double(max(weight, 1)) }
    var accuracy: Double? { hasAccuracy ? accuracySum / Double(max(weight, 1)) : nil }
  }

  /// The share of the batch predicted right: the arg max of the last axis against the label
  /// (or the label's arg max), or for the binary cross-entropy the prediction thresholded
  /// (at 0.5 for probabilities, 0 for logits) against the label; `nil` for regression losses.
  static func accuracy(_ prediction: Tensor, _ y: Tensor, step: TrainStep) -> Double? {
    guard let predicted = prediction.floats, let classes = prediction.shape.dimensions.last,
      classes > 0, let labels = y.asDoubles
    else { return nil }
    let rows = predicted.count / classes
    func argMax(_ values: ArraySlice<Float>) -> Int {
      values.indices.max { values[$0] < values[$1] }.map { $0 - values.startIndex } ?? 0
    }
    var right = 0
    switch step.options.loss {
    case .sparseCategoricalCrossentropy:
      guard labels.count == rows else { return nil }
      for row in 0..<rows
      where argMax(predicted[row * classes..<(row + 1) * classes]) == Int(labels[row]) {
        right += 1
      }
      return Double(right) / Double(max(rows, 1))
    case .categoricalCrossentropy:
      guard labels.count == predicted.count else { return nil }
      for row in 0..<rows {
        let range = row * classes..<(row + 1) * classes
        if argMax(predicted[range]) == argMax(ArraySlice(labels[range].map(Float.init))) {
          right += 1
        }
      }
      return Double(right) / Double(max(rows, 1))
    case .binaryCrossentropy:
      guard labels.count == predicted.count else { return nil }
      let threshold: Float = step.predictsProbabilities ? 0.5 : 0
      for (value, label) in zip(predicted, labels) where (value > threshold) == (label > 0.5) {
        right += 1
      }
      return Double(right) / Double(max(predicted.count, 1))
    case .meanSquaredError, .meanAbsoluteError:
      return nil
    }
  }

  /// Throws for a class label outside the prediction's classes (sparse cross-entropy), which
  /// TensorFlow would turn into a NaN loss.
  private func checkLabels(_ targets: Tensor, prediction: Tensor, loss: Loss) throws {
    guard loss == .sparseCategoricalCrossentropy, let classes = prediction.shape.dimensions.last,
      let labels = targets.asDoubles
    else { return }
    if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= Double(classes) || $0 != $0.rounded() }
    ) {
      throw TrainingError(
        code: .invalidData,
        "Target \(bad) is \(labels[bad]), not a class of the prediction's \(classes) (0 to "
          + "\(classes - 1)); sparse_categorical_crossentropy takes integer labels.")
    }
  }
}

extension Tensor {
  /// The samples at `rows` along the first dimension.
  func rows(_ rows: [Int]) -> Tensor {
    let width =
      shape.dimensions.isEmpty ? 1 : (shape.elementCount ?? 0) / max(shape.dimensions[0], 1)
    func pick<T>(_ values: [T]) -> [T] {
      var picked: [T] = []
      picked.reserveCapacity(rows.count * width)
      for row in rows { picked += values[row * width..<(row + 1) * width] }
      return picked
    }
    var dimensions = shape.dimensions
    if !dimensions.isEmpty { dimensions[0] = rows.count }
    let storage: Storage =
      switch storage {
      case .float(let values): .float(pick(values))
      case .double(let values): .double(pick(values))
      case .int32(let values): .int32(pick(values))
      case .int64(let values): .int64(pick(values))
      case .bool(let values): .bool(pick(values))
      case .string(let values): .string(pick(values))
      }
    return Tensor(dtype: dtype, shape: Shape(dimensions), storage: storage)
  }

  /// The elements as doubles, for number tensors.
  var asDoubles: [Double]? {
    switch storage {
    case .float(let values): values.map(Double.init)
    case .double(let values): values
    case .int32(let values): values.map(Double.init)
    case .int64(let values): values.map(Double.init)
    case .bool(let values): values.map { $0 ? 1 : 0 }
    case .string: nil
    }
  }

  /// The elements, for bool tensors.
  var boolValues: [Bool]? {
    if case .bool(let values) = storage { return values }
    return nil
  }
}
