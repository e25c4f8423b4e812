import Foundation
import ModelFormats
import TFProtos
import TensorCore
import Testing
import _TestSupport

@testable import CPURuntime

/// Builds a top-level graph by hand.
private struct GraphBuilder {
  var nodes: [Tensorflow_NodeDef] = []

  mutating func add(
    _ name: String, _ op: String, _ inputs: [String],
    attributes: [String: Tensorflow_AttrValue] = [:]
  ) {
    var node = Tensorflow_NodeDef()
    node.name = name
    node.op = op
    node.input = inputs
    node.attr = ["T": GraphProtos.type(.dtFloat)].merging(attributes) { _, given in given }
    nodes.append(node)
  }

  mutating func constant(_ name: String, _ values: [Float], shape: [Int]) {
    nodes.append(GraphProtos.constant(name, GraphProtos.tensor(values, shape: shape)))
  }

  mutating func integers(_ name: String, _ values: [Int32]) {
    nodes.append(GraphProtos.constant(name, GraphProtos.tensor(values)))
  }

  static func flag(_ flag: Bool) -> Tensorflow_AttrValue {
    var value = Tensorflow_AttrValue()
    value.b = flag
    return value
  }

  static func integer(_ integer: Int) -> Tensorflow_AttrValue {
    var value = Tensorflow_AttrValue()
    value.i = Int64(integer)
    return value
  }
}

@Suite("Fused elementwise nodes")
struct FusionTests {
  /// A layer normalization, GELU, an intermediate read after its step, a Split whose second
  /// output feeds a unary function, and a round trip through float16, as one signature.
  private func model(batch: Int, rows: Int, width: Int, gamma: [Float], beta: [Float]) throws
    -> SavedModel
  {
    var graph = GraphBuilder()
    graph.add("x", "Placeholder", [], attributes: ["dtype": GraphProtos.type(.dtFloat)])
    graph.constant("gamma", gamma, shape: [width])
    graph.constant("beta", beta, shape: [width])
    graph.constant("epsilon", [1e-3], shape: [])
    graph.constant("half", [0.5], shape: [])
    graph.constant("scale", [Float(0.5).squareRoot()], shape: [])
    graph.integers("axis", [2])
    graph.integers("split_axis", [2])
    let keep = ["keep_dims": GraphBuilder.flag(true), "Tidx": GraphProtos.type(.dtInt32)]
    graph.add("mean", "Mean", ["x", "axis"], attributes: keep)
    graph.add("stop", "StopGradient", ["mean"])
    graph.add("squares", "SquaredDifference", ["x", "stop"])
    graph.add("variance", "Mean", ["squares", "axis"], attributes: keep)
    graph.add("shifted", "AddV2", ["variance", "epsilon"])
    graph.add("rsqrt", "Rsqrt", ["shifted"])
    graph.add("mul", "Mul", ["rsqrt", "gamma"])
    graph.add("neg_mean", "Neg", ["mean"])
    graph.add("mul_1", "Mul", ["neg_mean", "mul"])
    graph.add("add_1", "AddV2", ["mul_1", "beta"])
    graph.add("mul_2", "Mul", ["x", "mul"])
    graph.add("normalized", "AddV2", ["mul_2", "add_1"])
    graph.add("gelu_half", "Mul", ["half", "normalized"])
    graph.add("gelu_neg", "Neg", ["normalized"])
    graph.add("gelu_scaled", "Mul", ["gelu_neg", "scale"])
    graph.add("gelu_erfc", "Erfc", ["gelu_scaled"])
    graph.add("gelu", "Mul", ["gelu_half", "gelu_erfc"])
    graph.add(
      "split", "Split", ["split_axis", "gelu"], attributes: ["num_split": GraphBuilder.integer(2)])
    graph.add("tanh", "Tanh", ["split:1"])
    graph.add(
      "to_half", "Cast", ["gelu"],
      attributes: ["SrcT": GraphProtos.type(.dtFloat), "DstT": GraphProtos.type(.dtHalf)])
    graph.add(
      "from_half", "Cast", ["to_half"],
      attributes: ["SrcT": GraphProtos.type(.dtHalf), "DstT": GraphProtos.type(.dtFloat)])
    return try Self.model(graph, outputs: ["normalized", "mul", "gelu", "tanh", "from_half"])
  }

  /// A SavedModel whose signature "fused" feeds `x` and returns the nodes `outputs`.
  private static func model(_ graph: GraphBuilder, outputs: [String]) throws -> SavedModel {
    var model = try SavedModel(contentsOf: Fixtures.path("mlp"))
    model.proto.metaGraphs[0].graphDef.node = graph.nodes
    var signature = Tensorflow_SignatureDef()
    var input = Tensorflow_TensorInfo()
    input.name = "x:0"
    input.dtype = .dtFloat
    signature.inputs["x"] = input
    for name in outputs {
      var output = Tensorflow_TensorInfo()
      output.name = name + ":0"
      output.dtype = .dtFloat
      signature.outputs[name] = output
    }
    model.proto.metaGraphs[0].signatureDef = ["fused": signature]
    return model
  }

  @Test(
    "A fused layer normalization and GELU equal the formulas, with intermediates kept where read",
    arguments: [(2, 3, 40), (4, 128, 768)])
  func layerNormalizationAndGELU(batch: Int, rows: Int, width: Int) throws {
    var generator = SeededGenerator(seed: 41)
    let count = batch * rows * width
    let x = (0..<count).map { _ in Float.random(in: -3...3, using: &generator) }
    let gamma = (0..<width).map { _ in Float.random(in: 0.5...1.5, using: &generator) }
    let beta = (0..<width).map { _ in Float.random(in: -0.5...0.5, using: &generator) }
    let interpreter = try Interpreter(
      model: .savedModel(
        try model(batch: batch, rows: rows, width: width, gamma: gamma, beta: beta)))
    let outputs = try interpreter.run(
      signature: "fused", inputs: ["x": Tensor(shape: Shape([batch, rows, width]), floats: x)])

    // The same arithmetic, element by element.
    var (normalized, scales, gelu) = ([Float](), [Float](), [Float]())
    for row in 0..<(batch * rows) {
      let values = x[(row * width)..<((row + 1) * width)]
      let mean = Float(values.reduce(0.0) { $0 + Double($1) } / Double(width))
      let variance = Float(
        values.reduce(0.0) { $0 + Double(($1 - mean) * ($1 - mean)) } / Double(width))
      let rsqrt = 1 / (variance + 1e-3).squareRoot()
      for (column, value) in values.enumerated() {
        let scale = rsqrt * gamma[column]
        let y = value * scale + (-mean * scale + beta[column])
        scales.append(scale)
        normalized.append(y)
        gelu.append(0.5 * y * Float(Foundation.erfc(Double(-y * Float(0.5).squareRoot()))))
      }
    }
    func error(_ name: String, _ expected: [Float]) -> Float {
      let result = outputs[name]?.floats ?? []
      guard result.count == expected.count else { return .infinity }
      return zip(result, expected).map { abs($0 - $1) }.max() ?? 0
    }
    #expect(outputs["normalized"]?.shape == Shape([batch, rows, width]))
    #expect(error("normalized", normalized) <= 1e-5, "seed 41")
    #expect(error("mul", scales) <= 1e-6, "seed 41: the scale, read after its step")
    #expect(error("gelu", gelu) <= 1e-5, "seed 41")
    let half = width / 2
    let tanh = (0..<(batch * rows)).flatMap { row in
      (half..<width).map { Foundation.tanh(gelu[row * width + $0]) }
    }
    #expect(outputs["tanh"]?.shape == Shape([batch, rows, half]))
    #expect(error("tanh", tanh) <= 1e-5, "seed 41: the second output of a Split")
    #expect(error("from_half", gelu.map { Float(Float16($0)) }) <= 2e-3, "seed 41: through float16")
    #expect(
      outputs["from_half"]?.floats?.allSatisfy { Float(Float16($0)) == $0 } == true,
      "seed 41: float16 values")
  }

  @Test(
    "Broadcast patterns: scalars, trailing and leading runs, ones inside; other layouts are refused"
  )
  func broadcastPatterns() {
    let shape = Shape([2, 3, 4])
    let cases: [([Int], (Int, Int)?)] = [
      ([], (1, 1)), ([1], (1, 1)), ([4], (1, 4)), ([3, 4], (1, 12)), ([2, 3, 4], (1, 24)),
      ([2, 3, 1], (4, 6)),
      ([2, 1, 1], (12, 2)), ([1, 3, 1], (4, 3)), ([3, 1], (4, 3)), ([2, 1, 4], nil), ([5], nil),
      ([1, 2, 3, 4], nil),
      ([3], nil),
    ]
    for (side, expected) in cases {
      let pattern = Interpreter.broadcastPattern(of: Shape(side), over: shape)
      #expect(
        pattern?.repeatCount == expected?.0 && pattern?.period == expected?.1,
        "\(side) over \(shape)")
    }
    #expect(Interpreter.broadcastPattern(of: Shape([1, 3, 1]), over: Shape([2, 3, 1]))! == (1, 3))
  }

  @Test(
    "Fused segments equal the kernels run one by one: random shapes (empty ones too), operands broadcast any way",
    arguments: [51, 52] as [UInt64])
  func matchesKernels(seed: UInt64) throws {
    var generator = SeededGenerator(seed: seed)
    for _ in 0..<25 {
      let dimensions = (0..<3).map { _ in [0, 1, 2, 3, 5, 40].randomElement(using: &generator)! }
      // Each side keeps some of the dimensions (others 1), perhaps dropping leading ones.
      func sideShape() -> [Int] {
        let kept = dimensions.map { Bool.random(using: &generator) ? $0 : 1 }
        return Array(kept.dropFirst(Int.random(in: 0...2, using: &generator)))
      }
      let (first, second) = (sideShape(), sideShape())
      func values(_ shape: [Int]) -> [Float] {
        (0..<shape.reduce(1, *)).map { _ in Float.random(in: -2...2, using: &generator) }
      }
      let (x, s1, s2) = (values(dimensions), values(first), values(second))
      var graph = GraphBuilder()
      graph.add("x", "Placeholder", [], attributes: ["dtype": GraphProtos.type(.dtFloat)])
      graph.constant("s1", s1, shape: first)
      graph.constant("s2", s2, shape: second)
      graph.add("scaled", "Mul", ["x", "s1"])
      graph.add("relu", "Relu", ["scaled"])
      graph.add("residual", "AddV2", ["relu", "x"])
      graph.add("out", "SquaredDifference", ["s2", "residual"])
      let interpreter = try Interpreter(
        model: .savedModel(try Self.model(graph, outputs: ["relu", "out"])))
      let input = Tensor(shape: Shape(dimensions), floats: x)
      let outputs = try interpreter.run(signature: "fused", inputs: ["x": input])
      // The same nodes through their own kernels.
      let scaled = try BinaryFunction.mul.apply(
        input, Tensor(shape: Shape(first), floats: s1), limits: .standard)
      let relu = Tensor(shape: scaled.shape, floats: UnaryFunction.relu.apply(scaled.floats ?? []))
      let residual = try BinaryFunction.add.apply(relu, input, limits: .standard)
      let out = try BinaryFunction.squaredDifference.apply(
        Tensor(shape: Shape(second), floats: s2), residual, limits: .standard)
      let context = "seed \(seed): x \(dimensions), sides \(first) and \(second)"
      let (sameRelu, sameOut) = (outputs["relu"] == relu, outputs["out"] == out)
      #expect(sameRelu && sameOut, "\(context)")
    }
  }
}
