import CPURuntime
import Foundation
import GraphIR
import MixedPrecision
import ModelFormats
import TensorCore
import Testing
import Training
import _TestSupport

/// Fine-tuning's parts on their own: each loss against its formula, one optimizer step against
/// its closed form, the dynamic loss scale's state machine on a run with injected NaN inputs,
/// the choice of variables, the weights written back, and the errors for data that does not fit.
/// The interop tests compare whole runs with Keras.
@Suite("Fine-tuning")
struct TrainingTests {
  private let registry = OpRegistry.standard

  /// The mlp fixture (features [?, 20] -> dense relu 32 -> dense softmax 10), its variables,
  /// and a step built for `options` with int64 targets.
  private func step(_ options: TrainingOptions, targetType: DType = .int64) throws -> (
    SavedModel, TrainStep
  ) {
    let model = try SavedModel(contentsOf: Fixtures.path("mlp"))
    let step = try TrainStep(
      module: try model.module(), variables: try model.logicalVariables(), options: options,
      targetType: targetType, using: registry)
    return (model, step)
  }

  private func features(_ rows: Int, seed: UInt64 = 1) -> Tensor {
    var generator = SeededGenerator(seed: seed)
    return Tensor(
      shape: Shape([rows, 20]),
      floats: (0..<rows * 20).map { _ in Float(generator.normal()) })
  }

  private func labels(_ values: [Int64]) -> Tensor {
    Tensor(dtype: .int64, shape: Shape([values.count]), storage: .int64(values))
  }

  @Test("Each loss computes Keras's value on a small batch")
  func lossValues() throws {
    // A graph computing each loss of a fed prediction [2, 3] against a fed target.
    let cases: [(Loss, fromLogits: Bool, target: Tensor, expected: Double)] = {
      let p: [[Double]] = [[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]]
      let logits: [[Double]] = [[1, -1, 0.5], [0, 2, -3]]
      func logSoftmax(_ row: [Double]) -> [Double] {
        let total = log(row.map { exp($0) }.reduce(0, +))
        return row.map { $0 - total }
      }
      let sparse = Tensor(dtype: .int64, shape: Shape([2]), storage: .int64([1, 0]))
      let oneHot = Tensor(shape: Shape([2, 3]), floats: [0, 1, 0, 1, 0, 0])
      let binary = Tensor(shape: Shape([2, 3]), floats: [1, 0, 1, 0, 0, 1])
      let values = Tensor(shape: Shape([2, 3]), floats: [0.5, 0.5, 0, 1, 0, 0])
      let sigmoidLoss = zip(logits.joined(), [1.0, 0, 1, 0, 0, 1]).map { x, z in
        max(x, 0) - x * z + log(1 + exp(-abs(x)))
      }
      let probabilityLoss = zip(p.joined(), [1.0, 0, 1, 0, 0, 1]).map { q, z in
        -(z * log(q) + (1 - z) * log(1 - q))
      }
      let errors = zip(p.joined(), [0.5, 0.5, 0, 1, 0, 0]).map { $0 - $1 }
      return [
        (.sparseCategoricalCrossentropy, false, sparse, -(log(0.5) + log(0.7)) / 2),
        (
          .sparseCategoricalCrossentropy, true, sparse,
          -(logSoftmax(logits[0])[1] + logSoftmax(logits[1])[0]) / 2
        ),
        (.categoricalCrossentropy, false, oneHot, -(log(0.5) + log(0.7)) / 2),
        (
          .categoricalCrossentropy, true, oneHot,
          -(logSoftmax(logits[0])[1] + logSoftmax(logits[1])[0]) / 2
        ),
        (.binaryCrossentropy, true, binary, sigmoidLoss.reduce(0, +) / 6),
        (.binaryCrossentropy, false, binary, probabilityLoss.reduce(0, +) / 6),
        (.meanSquaredError, false, values, errors.map { $0 * $0 }.reduce(0, +) / 6),
        (.meanAbsoluteError, false, values, errors.map(abs).reduce(0, +) / 6),
      ]
    }()
    let probabilities = Tensor(shape: Shape([2, 3]), floats: [0.2, 0.5, 0.3, 0.7, 0.1, 0.2])
    let logits = Tensor(shape: Shape([2, 3]), floats: [1, -1, 0.5, 0, 2, -3])
    for (loss, fromLogits, target, expected) in cases {
      var options = TrainingOptions(
        loss: loss, optimizer: Optimizer(.sgd, learningRate: 0), lossScale: .none)
      options.fromLogits = fromLogits
      let module = try Self.identityModule()
      let step = try TrainStep(
        module: module, variables: Self.identityVariables, options: options,
        targetType: target.dtype, using: registry)
      let interpreter = Interpreter(module: step.module, checkpoint: nil)
      let result = try interpreter.run(
        signature: TrainStep.evaluateSignature,
        inputs: [
          "x": fromLogits ? logits : probabilities, "y": target,
          TrainStep.weightState(0): Tensor(shape: Shape([]), floats: [1]),
        ])
      let value = try #require(result["loss"]?.floats?.first)
      #expect(
        abs(Double(value) - expected) <= 1e-5 * max(1, abs(expected)),
        "\(loss.rawValue) from \(fromLogits ? "logits" : "probabilities"): \(value), not \(expected)"
      )
    }
  }

  /// A module computing `x * scale` with a trainable scalar variable `scale` read through
  /// `ReadVariableOp`: what a step needs of a model, no more.
  private static func identityModule() throws -> Module {
    var builder = GradientBuilder(
      function: Function(name: Function.graphName, syntax: .graph, nodes: []),
      schemas: OpRegistry.standard, scope: "model")
    let x = builder.add(
      "Placeholder", [],
      ["dtype": .type(.float32), "shape": .shape(ShapeValue(dimensions: [], unknownRank: true))],
      name: "x")
    let handle = builder.node(
      "VarHandleOp", [], ["dtype": .type(.float32), "shape": .shape(ShapeValue(dimensions: []))],
      name: "scale")
    let read = builder.add(
      "ReadVariableOp", [builder.output(handle, 0)], ["dtype": .type(.float32)])
    let y = builder.math("Mul", x, read, type: .float32)
    let endpoint = { (name: String, source: Input) in
      Signature.Endpoint(
        name: name, source: source, dtype: .float32,
        shape: ShapeValue(dimensions: [], unknownRank: true))
    }
    return Module(
      graph: builder.function, functions: [],
      signatures: [
        "serving_default": Signature(
          key: "serving_default", inputs: [endpoint("x", x)], outputs: [endpoint("y", y)])
      ],
      variables: [Variable(node: handle, checkpointKey: "scale")])
  }

  private static let identityVariables = [
    ModelSummary.Variable(
      name: "scale", dtype: "float32", shape: [], bytes: 4, checkpointKeys: ["scale"],
      trainable: true)
  ]

  @Test("One step of each optimizer moves a weight as its closed form says")
  func optimizerSteps() throws {
    // Loss mse of y = x * w against 0 on x = 1: 2 w is the gradient; w starts at 1.
    let g = 2.0
    let cases: [(Optimizer, Double)] = {
      var momentum = Optimizer(.sgd, learningRate: 0.1)
      momentum.momentum = 0.9
      var nesterov = momentum
      nesterov.nesterov = true
      let adam = Optimizer(.adam, learningRate: 0.01)
      let adamw = Optimizer(.adamw, learningRate: 0.01)
      // Adam's first step: alpha = lr sqrt(1 - b2) / (1 - b1), m = 0.1 g, v = 0.001 g^2.
      let alpha = 0.01 * (1 - 0.999).squareRoot() / (1 - 0.9)
      let adamStep = 0.1 * g * alpha / ((0.001 * g * g).squareRoot() + 1e-7)
      return [
        (Optimizer(.sgd, learningRate: 0.1), 1 - 0.1 * g),
        (momentum, 1 - 0.1 * g),
        (nesterov, 1 + 0.9 * (-0.1 * g) - 0.1 * g),
        (adam, 1 - adamStep),
        (adamw, 1 - 1 * 0.004 * 0.01 - adamStep),
      ]
    }()
    for (optimizer, expected) in cases {
      let options = TrainingOptions(
        loss: .meanSquaredError, optimizer: optimizer, lossScale: .none)
      let step = try TrainStep(
        module: try Self.identityModule(), variables: Self.identityVariables, options: options,
        targetType: .float32, using: registry)
      let interpreter = Interpreter(module: step.module, checkpoint: nil)
      var inputs: [String: Tensor] = [
        "x": Tensor(shape: Shape([1]), floats: [1]), "y": Tensor(shape: Shape([1]), floats: [0]),
        "iterations": Tensor(dtype: .int64, shape: Shape([]), storage: .int64([0])),
      ]
      for name in step.stateNames where name != "iterations" {
        inputs[name] = Tensor(shape: Shape([]), floats: [name == TrainStep.weightState(0) ? 1 : 0])
      }
      let result = try interpreter.run(signature: TrainStep.trainSignature, inputs: inputs)
      let weight = try #require(result["new/" + TrainStep.weightState(0)]?.floats?.first)
      #expect(
        abs(Double(weight) - expected) < 1e-6,
        "\(optimizer.kind.rawValue) momentum \(optimizer.momentum): \(weight), not \(expected)")
      #expect(result["new/iterations"]?.integers == [1])
    }
  }

  @Test("Dynamic loss scaling halves and skips on NaN, doubles after the growth steps")
  func dynamicLossScale() throws {
    var options = TrainingOptions(
      loss: .sparseCategoricalCrossentropy, optimizer: Optimizer(.sgd, learningRate: 0.1),
      lossScale: .dynamic(initial: 1024, growthSteps: 2))
    options.trainable = ["kernel"]
    let (model, step) = try step(options)
    #expect(step.variables.map(\.name) == ["hidden/kernel", "probabilities/kernel"])
    #expect(step.frozen == ["hidden/bias", "probabilities/bias"])
    // 7 batches of 2; batches 2 and 5 hold a NaN feature.
    var x = features(14)
    var values = try #require(x.floats)
    values[2 * 20] = .nan
    values[8 * 20 + 3] = .nan
    x = Tensor(shape: x.shape, floats: values)
    let y = labels((0..<14).map { Int64($0 % 10) })
    var tuning = FineTuning()
    tuning.batchSize = 2
    tuning.shuffle = false
    var records: [FineTuning.StepRecord] = []
    let outcome = try tuning.run(
      step, checkpoint: model.checkpoint, inputs: ["features": x], targets: y,
      onStep: { records.append($0) })
    #expect(records.map(\.lossScale) == [1024, 1024, 512, 512, 1024, 512, 512])
    #expect(records.map(\.skipped) == [false, true, false, false, true, false, false])
    #expect(
      records.map(\.nonFiniteVariable) == [
        nil, "hidden/kernel", nil, nil, "hidden/kernel", nil, nil,
      ])
    #expect(outcome.skippedSteps == 2)
    #expect(outcome.epochs.map(\.lossScale) == [1024])
    // Every checkpoint copy of each trained weight has its new value, all finite.
    let kernels = Set(step.variables.flatMap(\.checkpointKeys))
    #expect(Set(outcome.values.keys) == kernels)
    #expect(outcome.values.values.allSatisfy { $0.allSatisfy(\.isFinite) })
  }

  @Test("The trained weights are written in the stored type, the rest copied")
  func writesTrainedWeights() throws {
    let (model, step) = try step(
      TrainingOptions(
        loss: .sparseCategoricalCrossentropy, optimizer: Optimizer(.adam), lossScale: .none))
    #expect(step.variables.count == 4)
    #expect(step.fromLogits && step.predictsProbabilities)  // the Softmax's input is the logits
    var tuning = FineTuning()
    tuning.batchSize = 4
    tuning.epochs = 2
    tuning.validationSplit = 0.25
    let outcome = try tuning.run(
      step, checkpoint: model.checkpoint, inputs: ["features": features(16)],
      targets: labels((0..<16).map { Int64($0 % 10) }))
    #expect(outcome.steps == 6)
    #expect(outcome.epochs.allSatisfy { $0.validationLoss != nil && $0.validationAccuracy != nil })
    #expect(outcome.epochs[1].loss < outcome.epochs[0].loss)
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "tfmp-finetune-\(UUID().uuidString)"
    ).path
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try model.updatingVariables(outcome.values).write(to: folder)
    let written = try #require(try SavedModel(contentsOf: folder).checkpoint)
    let original = try #require(model.checkpoint)
    for entry in original.entries where entry.dtype == .float32 {
      let new = try #require(written.entry(forKey: entry.key))
      #expect(new.dtype == .float32 && new.shape == entry.shape)
      let bytes = try written.withBytes(of: new) { Array($0) }
      if let expected = outcome.values[entry.key] {
        #expect(bytes == expected.withUnsafeBytes { Array($0) }, "\(entry.key)")
      } else {
        #expect(bytes == (try original.withBytes(of: entry) { Array($0) }), "\(entry.key)")
      }
    }
    #expect(throws: ModelFormatError.self) {
      try model.updatingVariables(["hidden/kernel": [1, 2]])
    }
  }

  @Test("Data that does not fit the signature, and models that cannot train, are refused")
  func refusals() throws {
    let options = TrainingOptions(
      loss: .sparseCategoricalCrossentropy, optimizer: Optimizer(.sgd), lossScale: .none)
    let (model, step) = try step(options)
    let tuning = FineTuning()
    func message(_ body: () throws -> Void) -> String {
      do {
        try body()
        return "no error"
      } catch {
        return "\(error)"
      }
    }
    let y = labels([1, 2, 3, 4])
    #expect(
      message { _ = try tuning.run(step, checkpoint: model.checkpoint, inputs: [:], targets: y) }
        .contains("no array 'features'"))
    #expect(
      message {
        _ = try tuning.run(
          step, checkpoint: model.checkpoint, inputs: ["features": features(3)], targets: y)
      }.contains("has 3 samples but the targets have 4"))
    #expect(
      message {
        _ = try tuning.run(
          step, checkpoint: model.checkpoint, inputs: ["features": features(4)],
          targets: labels([1, 2, 10, 4]))
      }.contains("Target 2 is 10.0, not a class of the prediction's 10"))
    var other = options
    other.signature = "predict"
    #expect(message { _ = try self.step(other) }.contains("no signature 'predict'"))
    other = options
    other.trainable = ["nothing"]
    #expect(message { _ = try self.step(other) }.contains("No float variable's name matches"))
    other.trainable = ["("]
    #expect(message { _ = try self.step(other) }.contains("is not a regular expression"))
  }

  @Test("An exported step captures the weights and adds its state; reduced weights are refused")
  func exportedStep() throws {
    let options = TrainingOptions(
      loss: .sparseCategoricalCrossentropy, optimizer: Optimizer(.adam), lossScale: .keras)
    let (model, step) = try step(options)
    let signature = try step.exportedSignature()
    #expect(signature.inputs.map(\.name) == ["features", "y"])
    #expect(signature.outputs.map(\.name) == ["loss", "loss_scale", "skipped"])
    // 4 weights captured; m and v of each, the update count, the scale and its count new.
    var newNames: [String] = []
    var captured = 0
    for capture in signature.captures {
      switch capture {
      case .variable: captured += 1
      case .newVariable(let name, _): newNames.append(name)
      }
    }
    #expect(captured == 4)
    #expect(
      newNames.count == 11 && newNames.suffix(3) == ["iterations", "loss_scale", "good_steps"])
    #expect(signature.function.controlResults.count == 15)  // an assignment per state entry
    #expect(signature.function.arguments.count == 2 + 15)
    let added = try model.addingSignature(signature)
    #expect(throws: ModelFormatError.self) { try added.addingSignature(signature) }

    var conversion = ConversionOptions()
    conversion.weights = .auto
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
      "tfmp-export-\(UUID().uuidString)"
    ).path
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try Converter(options: conversion).convert(model).0.write(to: folder)
    let converted = try SavedModel(contentsOf: folder)
    let reduced = try TrainStep(
      module: try converted.module(), variables: try converted.logicalVariables(),
      options: options, targetType: .int64, using: registry)
    #expect(reduced.variables.contains { $0.storedType == .float16 })
    #expect(throws: TrainingError.self) { try reduced.exportedSignature() }
  }
}
