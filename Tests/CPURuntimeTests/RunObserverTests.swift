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

  func observe(function: String, node: String, op: String, outputs: [Tensor?]) {
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
