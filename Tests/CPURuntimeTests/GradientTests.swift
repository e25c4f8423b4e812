import CPURuntime
import Foundation
import GraphIR
import ModelFormats
import TensorCore
import Testing
import _TestSupport

/// Differentiation on the graph: the gradients the registry emits, run by the runtime, against
/// central finite differences of the same runtime; and the inlining they rely on. The interop
/// tests compare with TensorFlow's GradientTape.
@Suite("Gradients")
struct GradientTests {
  private let registry = OpRegistry.standard

  /// A graph of fed x [3, 4], w [4, 5], b [5] computing a scalar loss through most of the ops
  /// with gradients: a dense layer with ReLU, tanh, sigmoid, broadcasting arithmetic, softmax,
  /// log-softmax, a slice, a mean; and the gradients of the loss with respect to x, w and b.
  private func module() throws -> Module {
    var builder = GradientBuilder(
      function: Function(name: Function.graphName, syntax: .graph, nodes: []), schemas: registry,
      scope: "forward")
    let float: [String: AttrValue] = ["T": .type(.float32)]
    func placeholder(_ name: String, _ shape: [Int64]) -> Input {
      builder.add(
        "Placeholder", [],
        ["dtype": .type(.float32), "shape": .shape(ShapeValue(dimensions: shape))],
        name: name)
    }
    let (x, w, b) = (placeholder("x", [3, 4]), placeholder("w", [4, 5]), placeholder("b", [5]))
    let product = builder.add(
      "MatMul", [x, w],
      float.merging(["transpose_a": .bool(false), "transpose_b": .bool(false)]) {
        $1
      })
    let h = builder.math("Relu", builder.add("BiasAdd", [product, b], float), type: .float32)
    let gated = builder.math(
      "Mul", builder.math("Tanh", h, type: .float32), builder.math("Sigmoid", h, type: .float32),
      type: .float32)
    let t = builder.math(
      "Sub", gated, builder.math("RealDiv", h, builder.scalar(3, .float32), type: .float32),
      type: .float32)
    var literal = TensorLiteral(dtype: .float32, shape: ShapeValue(dimensions: [3, 5]))
    literal.floatValues = (0..<15).map { Float($0 % 7) / 3 - 1 }
    let c = builder.add("Const", [], ["dtype": .type(.float32), "value": .tensor(literal)])
    func total(_ value: Input, mean: Bool = false) -> Input {
      let flat = builder.add(
        "Reshape", [value, builder.integers([-1])], float.merging(["Tshape": .type(.int32)]) { $1 })
      return builder.add(
        mean ? "Mean" : "Sum", [flat, builder.integers([0])],
        float.merging(["Tidx": .type(.int32), "keep_dims": .bool(false)]) { $1 })
    }
    let softmax = builder.math("Softmax", t, type: .float32)
    let logSoftmax = builder.math("LogSoftmax", t, type: .float32)
    let column = builder.add(
      "StridedSlice",
      [h, builder.integers([0, 1]), builder.integers([0, 4]), builder.integers([1, 2])],
      float.merging(["Index": .type(.int32), "begin_mask": .int(1), "end_mask": .int(1)]) { $1 })
    let loss = builder.add(
      "AddN",
      [
        total(builder.math("Mul", softmax, c, type: .float32)),
        total(builder.math("Mul", logSoftmax, c, type: .float32)),
        total(builder.math("Square", column, type: .float32), mean: true),
      ], float.merging(["N": .int(3)]) { $1 })
    let (graph, gradients) = try builder.function.appendingGradients(
      of: loss, withRespectTo: [x, w, b], using: registry)
    let inputs = [("x", x), ("w", w), ("b", b)].map {
      Signature.Endpoint(
        name: $0.0, source: $0.1, dtype: .float32,
        shape: ShapeValue(dimensions: [], unknownRank: true))
    }
    func outputs(_ named: [(String, Input?)]) throws -> [Signature.Endpoint] {
      try named.map {
        Signature.Endpoint(
          name: $0.0, source: try #require($0.1), dtype: .float32,
          shape: ShapeValue(dimensions: [], unknownRank: true))
      }
    }
    return Module(
      graph: graph, functions: [],
      signatures: [
        "loss": Signature(key: "loss", inputs: inputs, outputs: try outputs([("loss", loss)])),
        "gradients": Signature(
          key: "gradients", inputs: inputs,
          outputs: try outputs([("x", gradients[0]), ("w", gradients[1]), ("b", gradients[2])])),
      ])
  }

  @Test("Each gradient matches central finite differences of the loss")
  func finiteDifferences() throws {
    let runner = Interpreter(module: try module(), checkpoint: nil)
    var generator = SeededGenerator(seed: 3)
    func random(_ shape: [Int]) -> Tensor {
      Tensor(
        shape: Shape(shape),
        floats: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1.5...1.5, using: &generator)
        })
    }
    let fed = ["x": random([3, 4]), "w": random([4, 5]), "b": random([5])]
    let gradients = try runner.run(signature: "gradients", inputs: fed)
    func loss(_ inputs: [String: Tensor]) throws -> Double {
      Double(try #require(try runner.run(signature: "loss", inputs: inputs)["loss"]?.floats?.first))
    }
    let step: Float = 1e-2
    for name in ["x", "w", "b"] {
      let analytic = try #require(gradients[name]?.floats)
      let value = try #require(fed[name])
      #expect(gradients[name]?.shape == value.shape)
      let scale = analytic.map(abs).max() ?? 0
      #expect(scale > 0.05, "\(name): \(analytic)")
      for index in 0..<analytic.count {
        var (up, down) = (fed, fed)
        var values = try #require(value.floats)
        values[index] += step
        up[name] = Tensor(shape: value.shape, floats: values)
        values[index] -= 2 * step
        down[name] = Tensor(shape: value.shape, floats: values)
        let numeric = (try loss(up) - (try loss(down))) / (2 * Double(step))
        // Central differences err by O(step^2) times the third derivative, and float32 losses
        // by about 1e-7 / step.
        #expect(
          abs(numeric - Double(analytic[index])) <= 2e-3 + 2e-2 * Double(scale),
          "\(name)[\(index)]: \(numeric) numerically, \(analytic[index]) emitted")
      }
    }
  }

  @Test("An op without a gradient between a target and the loss is named")
  func missingGradient() throws {
    var builder = GradientBuilder(
      function: Function(name: Function.graphName, syntax: .graph, nodes: []), schemas: registry,
      scope: "forward")
    let x = builder.add(
      "Placeholder", [], ["dtype": .type(.float32), "shape": .shape(ShapeValue(dimensions: [2]))],
      name: "x")
    let y = builder.math("Sign", x, type: .float32)
    #expect(registry.gradient(for: "Sign") == nil)
    do {
      _ = try builder.function.appendingGradients(of: y, withRespectTo: [x], using: registry)
      Issue.record("Sign has no gradient; differentiation must say so")
    } catch {
      #expect(error.code == .noGradient)
      #expect(
        error.description.contains("node 'forward/Sign'")
          && error.description.contains("Sign"))
    }
    // A target the loss does not depend on gets no gradient.
    let z = builder.add(
      "Placeholder", [], ["dtype": .type(.float32), "shape": .shape(ShapeValue(dimensions: [2]))],
      name: "z")
    let doubled = builder.math("Neg", z, type: .float32)
    let (_, gradients) = try builder.function.appendingGradients(
      of: doubled, withRespectTo: [x, z], using: registry)
    #expect(gradients[0] == nil && gradients[1] != nil)
  }

  @Test("Inlining a Keras export's calls keeps its outputs and leaves no call in the graph")
  func inlining() throws {
    let model = try GraphModel(contentsOf: Fixtures.path("attention"))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("attention.inputs.npz"))
    let module = try model.module()
    let inlined = try module.inliningCalls(schemas: registry)
    #expect(module.graph.nodes.contains { Module.callOps.contains($0.op) })
    #expect(!inlined.graph.nodes.contains { Module.callOps.contains($0.op) })
    #expect(inlined.graph.nodes.count > module.graph.nodes.count)
    #expect(inlined.variables.count == module.variables.count)
    #expect(GraphVerifier(schemas: registry).problems(in: inlined).isEmpty)
    for key in module.signatureKeys {
      let expected = try Interpreter(model: model).run(signature: key, inputs: inputs)
      let actual = try Interpreter(module: inlined, checkpoint: model.checkpoint).run(
        signature: key, inputs: inputs)
      #expect(actual == expected, "\(key)")
    }
  }
}
