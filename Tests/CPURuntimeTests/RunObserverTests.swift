import Foundation
import ModelFormats
import TensorCore
import Testing
import _TestSupport

@testable import CPURuntime

/// Keeps what it is shown.
private final class Recorder: RunObserver, @unchecked Sendable {
  // Sendable: `seen` is guarded by `lock`.
  private let lock = NSLock()
  private var seen: [(function: String, node: String, op: String, outputs: [Tensor?])] = []

  func observe(
    function: String, node: String, op: String, inputs: [Tensor?], outputs: [Tensor?]
  ) {
    lock.withLock { seen.append((function, node, op, outputs)) }
  }

  var observations: [(function: String, node: String, op: String, outputs: [Tensor?])] {
    lock.withLock { seen }
  }
}

@Suite("Run observer")
struct RunObserverTests {
  @Test(
    "An observed run sees every node, fused ones included, and gives the same outputs",
    arguments: ["cnn_bn", "attention", "lstm", "mlp"])
  func observedRun(fixture: String) throws {
    let model = try SavedModel(contentsOf: Fixtures.path(fixture))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("\(fixture).inputs.npz"))
    let plain = try Interpreter(model: .savedModel(model)).run(
      signature: "serving_default", inputs: inputs)
    let recorder = Recorder()
    let observed = try Interpreter(
      module: try model.module(), checkpoint: model.checkpoint, observer: recorder
    )
    .run(signature: "serving_default", inputs: inputs)
    #expect(observed == plain, "\(fixture)")
    let seen = recorder.observations
    // Each node is seen once per evaluation of its function, with a tensor for each data output.
    let ops = Set(seen.map(\.op))
    #expect(
      ops.contains("MatMul") || ops.contains("Conv2D") || ops.contains("Einsum"),
      "\(fixture): \(ops)")
    let elementwise = seen.filter { ["BiasAdd", "AddV2", "Relu", "Mul"].contains($0.op) }
    #expect(!elementwise.isEmpty, "\(fixture): \(ops)")
    for observation in elementwise {
      #expect(
        observation.outputs.count == 1 && observation.outputs[0] != nil,
        "\(fixture) \(observation.node)")
    }
    // The signature's outputs are among what was seen, at the top level.
    let graphOutputs = seen.filter { $0.function == "<graph>" }.flatMap {
      $0.outputs.compactMap { $0 }
    }
    for output in plain.values { #expect(graphOutputs.contains(output), "\(fixture)") }
  }
}

/// Replaces the outputs of the nodes named `node` with zeros of the same type and shape.
private final class Zeroing: RunObserver, @unchecked Sendable {
  let node: String
  init(node: String) { self.node = node }

  func observe(
    function: String, node: String, op: String, inputs: [Tensor?], outputs: [Tensor?]
  ) {}

  func replacement(function: String, node: String, outputs: [Tensor?]) -> [Tensor?]? {
    guard node == self.node else { return nil }
    return outputs.map { output in
      output.map {
        Tensor(
          dtype: $0.dtype, shape: $0.shape,
          storage: .float([Float](repeating: 0, count: $0.shape.elementCount ?? 0)))
      }
    }
  }
}

@Suite("Run observer replacements")
struct RunObserverReplacementTests {
  @Test("What an observer hands on is what the readers read")
  func replacedOutputsFlowOn() throws {
    let model = try SavedModel(contentsOf: Fixtures.path("mlp"))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("mlp.inputs.npz"))
    let plain = try Interpreter(model: .savedModel(model)).run(
      signature: "serving_default", inputs: inputs)
    // The hidden layer's activations zeroed: the output is the softmax of the output bias alone,
    // the same for every row.
    let recorder = Recorder()
    _ = try Interpreter(
      module: try model.module(), checkpoint: model.checkpoint, observer: recorder
    )
    .run(signature: "serving_default", inputs: inputs)
    let relu = try #require(recorder.observations.first { $0.op == "Relu" })
    let zeroed = try Interpreter(
      module: try model.module(), checkpoint: model.checkpoint,
      observer: Zeroing(node: relu.node)
    ).run(signature: "serving_default", inputs: inputs)
    let output = try #require(zeroed.values.first)
    let columns = try #require(output.shape.dimensions.last)
    let values = try #require(output.floats)
    let rows = values.count / columns
    #expect(rows > 1 && plain.values.first != output)
    for row in 1..<rows {
      #expect(Array(values[(row * columns)..<((row + 1) * columns)]) == Array(values[0..<columns]))
    }
  }
}
