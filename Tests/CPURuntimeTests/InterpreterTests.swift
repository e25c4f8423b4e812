import CPURuntime
import Foundation
import GraphIR
import ModelFormats
import TFProtos
import TensorCore
import Testing
import _TestSupport

@Suite("Running SavedModels in float32")
struct InterpreterTests {
  /// The fixtures whose every op has a kernel so far.
  static let runnable = [
    "mlp", "cnn_bn", "custom_math", "sharded", "two_io", "depthwise", "attention", "lstm", "op_zoo",
  ]

  @Test("Outputs match TensorFlow's to 1e-5 of the output scale", arguments: runnable)
  func matchesTensorFlow(fixture: String) throws {
    let model = try SavedModel(contentsOf: Fixtures.path(fixture))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path(fixture + ".inputs.npz"))
    let expected = try NumPyFile.readArchive(at: Fixtures.path(fixture + ".outputs.npz"))
    let outputs = try Interpreter(model: .savedModel(model)).run(
      signature: "serving_default", inputs: inputs)
    #expect(Set(outputs.keys) == Set(expected.keys))
    for (name, reference) in expected {
      let result = try #require(outputs[name])
      #expect(result.shape == reference.shape, "\(fixture)/\(name)")
      let (ours, theirs) = (result.floats ?? [], reference.floats ?? [])
      let scale = max(1, theirs.map(abs).max() ?? 0)
      let error = zip(ours, theirs).map { abs($0 - $1) }.max() ?? 0
      // Float32 with different summation orders: a few ulps of the largest values.
      #expect(error <= 1e-5 * scale, "\(fixture)/\(name): max error \(error), scale \(scale)")
    }
  }

  @Test("An op without a kernel is named with its node")
  func missingKernel() throws {
    var model = try SavedModel(contentsOf: Fixtures.path("mlp"))
    // Replace the hidden layer's Relu with an op tfmp has no kernel for.
    for index in model.proto.metaGraphs[0].graphDef.library.function.indices {
      for node in model.proto.metaGraphs[0].graphDef.library.function[index].nodeDef.indices
      where model.proto.metaGraphs[0].graphDef.library.function[index].nodeDef[node].op == "Relu" {
        model.proto.metaGraphs[0].graphDef.library.function[index].nodeDef[node].op = "Erfinv"
      }
    }
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("mlp.inputs.npz"))
    let error = #expect(throws: RuntimeError.self) {
      _ = try Interpreter(model: .savedModel(model)).run(
        signature: "serving_default", inputs: inputs)
    }
    #expect(
      error?.description
        == "__inference___call___937 (node 'mlp_1/hidden_1/Relu'): Op 'Erfinv' has no CPU kernel in tfmp yet."
    )
  }

  @Test("A node's attributes are checked when its function is planned; defaults fill gaps")
  func attributesCheckedWhenPlanned() throws {
    let original = try SavedModel(contentsOf: Fixtures.path("mlp"))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("mlp.inputs.npz"))
    /// The model with `change` made to every MatMul's attributes.
    func edited(_ change: (inout [String: Tensorflow_AttrValue]) -> Void) -> SavedModel {
      var model = original
      let library = model.proto.metaGraphs[0].graphDef.library
      for index in library.function.indices {
        for node in library.function[index].nodeDef.indices
        where library.function[index].nodeDef[node].op == "MatMul" {
          change(&model.proto.metaGraphs[0].graphDef.library.function[index].nodeDef[node].attr)
        }
      }
      return model
    }
    func run(_ model: SavedModel) throws -> [String: Tensor] {
      try Interpreter(model: .savedModel(model)).run(signature: "serving_default", inputs: inputs)
    }
    // As TensorFlow does, a left-out attribute takes its default (transpose_a/b: false).
    let defaulted = edited {
      $0["transpose_a"] = nil
      $0["transpose_b"] = nil
    }
    #expect(try run(defaulted).mapValues(\.floats) == (try run(original)).mapValues(\.floats))
    let untyped = #expect(throws: RuntimeError.self) { _ = try run(edited { $0["T"] = nil }) }
    #expect(untyped?.code == .malformedGraph)
    #expect(
      untyped?.message == "MatMul needs attribute 'T' (type), which the node lacks.")
    var integer = Tensorflow_AttrValue()
    integer.i = 1
    let mistyped = #expect(throws: RuntimeError.self) {
      _ = try run(edited { $0["transpose_a"] = integer })
    }
    #expect(
      mistyped?.message
        == "Attribute 'transpose_a' of MatMul must be a bool, but the node's is int.")
  }

  @Test("A missing or mistyped input is refused")
  func badInputs() throws {
    let interpreter = try Interpreter(
      model: .savedModel(try SavedModel(contentsOf: Fixtures.path("mlp"))))
    #expect(throws: RuntimeError.self) {
      _ = try interpreter.run(signature: "serving_default", inputs: [:])
    }
    let ints = Tensor(
      dtype: .int32, shape: Shape([1, 20]), storage: .int32(Array(repeating: 0, count: 20)))
    let error = #expect(throws: RuntimeError.self) {
      _ = try interpreter.run(signature: "serving_default", inputs: ["features": ints])
    }
    #expect(
      error?.description
        == "<graph> (node 'features'): Input 'features' must be float32 but is int32.")
  }

  @Test("A module with more nodes than the limits allow is refused before it runs")
  func nodeLimit() throws {
    let model = try SavedModel(contentsOf: Fixtures.path("mlp"))
    let module = try GraphModel.savedModel(model).module()
    let count = module.functions.reduce(module.graph.nodes.count) { $0 + $1.nodes.count }
    let interpreter = Interpreter(
      module: module, checkpoint: model.checkpoint, limits: ResourceLimits(maxNodes: count - 1))
    let error = #expect(throws: RuntimeError.self) {
      _ = try interpreter.run(signature: "serving_default", inputs: [:])
    }
    #expect(error?.code == .limitExceeded)
    #expect(
      error?.message == "The model has \(count) nodes, more than the limit of \(count - 1).")
  }

  @Test("NumPy arrays round-trip through .npy and .npz")
  func numPyRoundTrip() throws {
    let folder = TemporaryFolder()
    let arrays: [String: Tensor] = [
      "a": Tensor(shape: Shape([2, 3]), floats: [1, -2, 3.5, 0, 1e-8, 65504]),
      "b": Tensor(dtype: .int64, shape: Shape([3]), storage: .int64([1, -1, Int64.max])),
      "c": Tensor(dtype: .bool, shape: Shape([]), storage: .bool([true])),
      "d": Tensor(
        dtype: .string, shape: Shape([3]), storage: .string([Array("cat".utf8), [], [0xC3, 0xA9]])),
    ]
    try NumPyFile.writeArchive(arrays, to: folder.child("x.npz"))
    #expect(try NumPyFile.readArchive(at: folder.child("x.npz")) == arrays)
    try NumPyFile.writeArray(arrays["a"]!, to: folder.child("a.npy"))
    #expect(try NumPyFile.readArray(at: folder.child("a.npy")) == arrays["a"])
  }
}
