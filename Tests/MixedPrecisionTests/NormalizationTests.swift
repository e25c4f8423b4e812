import GraphIR
import TFProtos
import TensorCore
import Testing

@testable import MixedPrecision

/// The normalizations as Keras 3 and keras-hub export them (node for node, names shortened),
/// found by ``NormalizationPass`` and kept float32.
@Suite("Normalizations compute in float32")
struct NormalizationTests {
  /// `BatchNormalization` in inference: `x * inv + (beta - mean * inv)`, with
  /// `inv = rsqrt(variance + eps) * gamma`, between two matrix products.
  private func batchNormalization() -> TestBody {
    var builder = BodyBuilder()
    builder.add("conv", "MatMul", ["x", "w"])
    for name in ["gamma", "beta", "mean", "variance"] { builder.constant(name, [0.5, 1, 2]) }
    builder.constant("epsilon", [1e-3])
    builder.add("add", "AddV2", ["variance:output:0", "epsilon:output:0"])
    builder.add("rsqrt", "Rsqrt", ["add:z:0"])
    builder.add("mul", "Mul", ["rsqrt:y:0", "gamma:output:0"])
    builder.add("mul_1", "Mul", ["conv:product:0", "mul:z:0"])
    builder.add("mul_2", "Mul", ["mean:output:0", "mul:z:0"])
    builder.add("sub", "Sub", ["beta:output:0", "mul_2:z:0"])
    builder.add("add_1", "AddV2", ["mul_1:z:0", "sub:z:0"])
    builder.add("relu", "Relu", ["add_1:z:0"])
    builder.add("next", "MatMul", ["relu:activations:0", "v"])
    return builder.body(returning: ["y": "next:product:0"])
  }

  @Test("Batch normalization's scale and affine transformation stay float32; the products convert")
  func batchNormalizationStaysFloat32() throws {
    let (decisions, body, _) = try convert(batchNormalization(), precision: .bfloat16)
    for name in ["add", "rsqrt", "mul", "mul_1", "mul_2", "sub", "add_1"] {
      #expect(decisions[name]?.reduced == false, "\(name)")
      #expect(decisions[name]?.reason == .normalization, "\(name)")
    }
    #expect(decisions["conv"]?.reduced == true)
    #expect(decisions["next"]?.reduced == true)
    // The activation enters in float32 and the result leaves in the reduced type.
    #expect(body.node("mul_1")?.input[0] == "conv_product_0/tfmp_cast_to_float32:y:0")
    #expect(body.node("mul_1")?.attr["T"]?.type == .dtFloat)
  }

  @Test("--reduced-normalization paints a normalization like any other ops")
  func reducedNormalization() throws {
    let (decisions, _, _) = try convert(
      batchNormalization(), precision: .bfloat16, normalizationInFloat32: false)
    #expect(decisions["mul_1"]?.reduced == true)
    #expect(decisions["add_1"]?.reduced == true)
  }

  @Test("Layer normalization: the moments, scale and result stay float32, the activation does not")
  func layerNormalization() throws {
    var builder = BodyBuilder()
    builder.add("x", "MatMul", ["a", "w"])
    builder.add("axis", "Const", [], type: .dtInt32, attribute: "dtype")
    builder.add("mean", "Mean", ["x:product:0", "axis:output:0"])
    builder.add("stop", "StopGradient", ["mean:output:0"])
    builder.add("difference", "SquaredDifference", ["x:product:0", "stop:output:0"])
    builder.add("variance", "Mean", ["difference:z:0", "axis:output:0"])
    builder.constant("epsilon", [1e-5])
    builder.constant("gamma", [1, 2, 3])
    builder.constant("beta", [0, 1, 0])
    builder.add("add", "AddV2", ["variance:output:0", "epsilon:output:0"])
    builder.add("rsqrt", "Rsqrt", ["add:z:0"])
    builder.add("mul", "Mul", ["rsqrt:y:0", "gamma:output:0"])
    builder.add("neg", "Neg", ["mean:output:0"])
    builder.add("mul_1", "Mul", ["neg:y:0", "mul:z:0"])
    builder.add("add_1", "AddV2", ["mul_1:z:0", "beta:output:0"])
    builder.add("mul_2", "Mul", ["x:product:0", "mul:z:0"])
    builder.add("add_2", "AddV2", ["mul_2:z:0", "add_1:z:0"])
    builder.add("other", "MatMul", ["a", "u"])
    builder.add("residual", "AddV2", ["add_2:z:0", "other:product:0"])
    builder.add("next", "MatMul", ["add_2:z:0", "v"])
    let body = builder.body(returning: ["y": "next:product:0", "r": "residual:z:0"])
    let function = try body.function()
    let found = NormalizationPass().normalizations(in: function)
    #expect(found.count == 1)
    let names = Set(found.joined().map { function[$0].name })
    #expect(
      names == [
        "mean", "stop", "difference", "variance", "add", "rsqrt", "mul", "neg", "mul_1", "add_1",
        "mul_2", "add_2",
      ])
    // float16's lists make Mean a deny op: its float32 spreads into the residual addition, as
    // TensorFlow's painting spreads it.
    let (float16, _, _) = try convert(body)
    #expect(float16["add_2"]?.reason == .normalization)
    #expect(float16["residual"]?.reason == .downstreamOfDeny)
    // bfloat16's make it an infer op: the normalization stays float32 anyway, on its own, and the
    // residual addition computes in bfloat16, as under Keras's policy.
    let (bfloat16, _, _) = try convert(body, precision: .bfloat16)
    #expect(bfloat16["variance"]?.reason == .normalization)
    #expect(bfloat16["variance"]?.reduced == false)
    #expect(bfloat16["x"]?.reduced == true)
    #expect(bfloat16["residual"]?.reduced == true)
  }

  @Test("keras-hub's RMS normalization: square, mean, reciprocal of the square root, scale")
  func rmsNormalization() throws {
    var builder = BodyBuilder()
    builder.add("axis", "Const", [], type: .dtInt32, attribute: "dtype")
    builder.add("square", "Square", ["x"])
    builder.add("mean", "Mean", ["square:y:0", "axis:output:0"])
    builder.constant("epsilon", [1e-6])
    builder.constant("one", [1])
    builder.constant("scale", [0.1, 0.2])
    builder.add("add", "AddV2", ["mean:output:0", "epsilon:output:0"])
    builder.add("sqrt", "Sqrt", ["add:z:0"])
    builder.add("reciprocal", "Reciprocal", ["sqrt:y:0"])
    builder.add("mul", "Mul", ["x", "reciprocal:y:0"])
    builder.add("add_1", "AddV2", ["one:output:0", "scale:output:0"])
    builder.add("mul_1", "Mul", ["mul:z:0", "add_1:z:0"])
    builder.add("next", "MatMul", ["mul_1:z:0", "v"])
    let body = builder.body(returning: ["y": "next:product:0"])
    let function = try body.function()
    let names = Set(
      NormalizationPass().normalizations(in: function).joined().map { function[$0].name })
    #expect(names == ["square", "mean", "add", "sqrt", "reciprocal", "mul", "add_1", "mul_1"])
  }

  @Test("Keras's Normalization layer: the deviation floored, then divided by")
  func kerasNormalizationLayer() throws {
    // (x - mean) / max(sqrt(variance), epsilon), the statistics passed in as arguments.
    var builder = BodyBuilder()
    builder.add("h", "MatMul", ["x", "w"])
    builder.add("sub", "Sub", ["h:product:0", "mean"])
    builder.add("sqrt", "Sqrt", ["variance"])
    builder.constant("epsilon", [1e-7])
    builder.add("floor", "Maximum", ["sqrt:y:0", "epsilon:output:0"])
    builder.add("truediv", "RealDiv", ["sub:z:0", "floor:z:0"])
    builder.add("clipped", "Maximum", ["truediv:z:0", "epsilon:output:0"])
    builder.add("next", "MatMul", ["clipped:z:0", "v"])
    let body = builder.body(returning: ["y": "next:product:0"])
    let function = try body.function()
    let names = Set(
      NormalizationPass().normalizations(in: function).joined().map { function[$0].name })
    // The floor of the applied value is not part of it.
    #expect(names == ["sqrt", "floor", "truediv"])
    let (decisions, _, _) = try convert(body)
    #expect(decisions["truediv"]?.reason == .normalization)
  }

  @Test("An attention scale, rsqrt of a constant scalar, is not a normalization")
  func attentionScale() throws {
    var builder = BodyBuilder()
    builder.add("query", "MatMul", ["x", "w"])
    builder.constant("depth", [64])
    builder.add("rsqrt", "Rsqrt", ["depth:output:0"])
    builder.add("scaled", "Mul", ["query:product:0", "rsqrt:y:0"])
    builder.add("logits", "MatMul", ["scaled:z:0", "k"])
    let body = builder.body(returning: ["y": "logits:product:0"])
    #expect(NormalizationPass().normalizations(in: try body.function()).isEmpty)
    let (decisions, _, _) = try convert(body)
    #expect(decisions["scaled"]?.reduced == true)
  }
}

@Suite("Positions compute in float32")
struct PositionTests {
  @Test("Rotary angles from a Range stay float32 up to their sine; the rotation converts")
  func rotaryAngles() throws {
    var builder = BodyBuilder()
    builder.add("shape", "Shape", ["x"], type: .dtFloat)
    builder.add("length", "StridedSlice", ["shape:output:0"], type: .dtInt32)
    builder.add("zero", "Const", [], type: .dtInt32, attribute: "dtype")
    builder.add(
      "range", "Range", ["zero:output:0", "length:output:0", "zero:output:0"],
      type: .dtInt32, attribute: "Tidx")
    builder.add("positions", "Cast", ["range:output:0"], type: .dtFloat, attribute: "DstT")
    builder.constant("frequencies", [1, 0.1, 0.01])
    // An outer product, as keras-hub's Einsum `i,j->ij` computes it.
    builder.add("angles", "MatMul", ["positions:y:0", "frequencies:output:0"])
    builder.add("sin", "Sin", ["angles:product:0"])
    builder.add("query", "MatMul", ["x", "w"])
    builder.add("rotated", "Mul", ["query:product:0", "sin:y:0"])
    builder.add("logits", "MatMul", ["rotated:z:0", "k"])
    let (decisions, _, _) = try convert(builder.body(returning: ["y": "logits:product:0"]))
    #expect(decisions["angles"]?.reduced == false)
    #expect(decisions["angles"]?.reason == .positions)
    #expect(decisions["rotated"]?.reduced == true)
    #expect(decisions["query"]?.reduced == true)
  }
}
