import Foundation
import GraphIR
import TFProtos
import TensorCore
import Testing
import _TestSupport

@testable import MixedPrecision
@testable import ModelFormats

/// Builds function bodies by hand: `x`, `w`, ... are float32 arguments.
struct BodyBuilder {
  var nodes: [Tensorflow_NodeDef] = []

  mutating func add(
    _ name: String, _ op: String, _ inputs: [String], type: Tensorflow_DataType = .dtFloat,
    attribute: String = "T"
  ) {
    var node = Tensorflow_NodeDef()
    node.name = name
    node.op = op
    node.input = inputs
    var value = Tensorflow_AttrValue()
    value.type = type
    node.attr[attribute] = value
    nodes.append(node)
  }

  mutating func constant(_ name: String, _ values: [Float]) {
    nodes.append(GraphProtos.constant(name, GraphProtos.tensor(values)))
  }

  func body(returning sinks: [String: String]) -> TestBody {
    TestBody(nodes: nodes, sinks: sinks)
  }
}

/// A function body as protobufs: what the passes are given (through GraphIR) and give back.
struct TestBody {
  var nodes: [Tensorflow_NodeDef]
  /// The results by name, as references.
  var sinks: [String: String]

  func node(_ name: String) -> Tensorflow_NodeDef? { nodes.first { $0.name == name } }
  var casts: [Tensorflow_NodeDef] { nodes.filter { $0.op == "Cast" } }

  /// The body as a GraphIR function named `f` whose float32 arguments are the bare names its
  /// nodes and results read.
  func function() throws -> Function {
    var proto = Tensorflow_FunctionDef()
    proto.signature.name = "f"
    let bare = Set(
      (nodes.flatMap(\.input) + sinks.values).filter { !$0.contains(":") && !$0.hasPrefix("^") })
    proto.signature.inputArg = bare.sorted().map { name in
      var argument = Tensorflow_OpDef.ArgDef()
      argument.name = name
      argument.type = .dtFloat
      return argument
    }
    proto.signature.outputArg = sinks.keys.sorted().map { name in
      var argument = Tensorflow_OpDef.ArgDef()
      argument.name = name
      argument.type = .dtFloat
      return argument
    }
    proto.nodeDef = nodes
    proto.ret = sinks
    return try GraphCoding.decode(proto)
  }

  /// The protobufs of `function`.
  init(_ function: Function) {
    let proto = GraphCoding.encode(function)
    nodes = proto.nodeDef
    sinks = proto.ret
  }

  init(nodes: [Tensorflow_NodeDef], sinks: [String: String]) {
    self.nodes = nodes
    self.sinks = sinks
  }
}

/// Paints and rewrites `body`; returns the decisions by node name and the rewritten body.
func convert(
  _ body: TestBody, precision: ReducedPrecision = .float16, float32Nodes: [String] = [],
  float32Ops: [String] = [], reducedOps: [String] = [], normalizationInFloat32: Bool = true
) throws -> (decisions: [String: PaintingPass.Decision], body: TestBody, casts: Int) {
  var lists = OpLists(for: precision)
  for op in reducedOps { lists.assign(op, to: .allow) }
  for op in float32Ops { lists.assign(op, to: .deny) }
  let painter = PaintingPass(
    lists: lists,
    float32NodePatterns: try float32Nodes.map { try NSRegularExpression(pattern: $0) },
    userReducedOps: Set(reducedOps), userFloat32Ops: Set(float32Ops))
  var function = try body.function()
  var sinks = Dictionary(uniqueKeysWithValues: function.results.map { ($0.name, $0.source) })
  let unfit = RangePass(precision: precision).unfitValues(in: function)
  let normalizations =
    normalizationInFloat32 ? NormalizationPass().normalizations(in: function) : []
  let islands =
    normalizations.map { PaintingPass.Island(nodes: $0, reason: .normalization) }
    + ChoicePass().choices(in: function).map { PaintingPass.Island(nodes: $0, reason: .choice) }
  let decisions = painter.paint(
    function, sinks: sinks, unfit: unfit, islands: islands)
  let statistics = CastInsertionPass(precision: precision).apply(
    to: &function, sinks: &sinks, decisions: decisions)
  for index in function.results.indices {
    if let source = sinks[function.results[index].name] { function.results[index].source = source }
  }
  let named = Dictionary(uniqueKeysWithValues: zip(body.nodes.map(\.name), decisions))
  return (named, TestBody(function), statistics.castsInserted)
}

@Suite("Painting and cast insertion")
struct PassTests {
  @Test("A MatMul, BiasAdd, Relu, MatMul chain converts with casts only at its ends")
  func chainWithoutPingPong() throws {
    var builder = BodyBuilder()
    builder.add("mm1", "MatMul", ["x", "w"])
    builder.add("bias", "BiasAdd", ["mm1:product:0", "b"])
    builder.add("relu", "Relu", ["bias:output:0"])
    builder.add("mm2", "MatMul", ["relu:activations:0", "v"])
    let (decisions, body, casts) = try convert(builder.body(returning: ["y": "mm2:product:0"]))
    #expect(["mm1", "bias", "relu", "mm2"].allSatisfy { decisions[$0]?.reduced == true })
    #expect(decisions["bias"]?.reason == .betweenAllowOps)
    #expect(decisions["relu"]?.reason == .betweenAllowOps)
    // x, w, b and v enter as float32; the result leaves as float32; nothing in between.
    #expect(casts == 5)
    #expect(body.node("bias")?.input[0] == "mm1:product:0")
    #expect(body.node("mm2")?.input[0] == "relu:activations:0")
    #expect(body.node("mm2")?.attr["T"]?.type == .dtHalf)
    let output = try #require(body.sinks["y"])
    #expect(output == "mm2_product_0/tfmp_cast_to_float32:y:0")
    #expect(body.node("mm2_product_0/tfmp_cast_to_float32")?.attr["SrcT"]?.type == .dtHalf)
  }

  @Test("Infer ops after a converted op follow it, and clear ops next to them too")
  func inferAfterAllow() throws {
    var builder = BodyBuilder()
    builder.add("mm", "MatMul", ["x", "w"])
    builder.add("bias", "BiasAdd", ["mm:product:0", "b"])
    builder.add("relu", "Relu", ["bias:output:0"])
    builder.add("residual", "AddV2", ["relu:activations:0", "x"])
    let (decisions, _, _) = try convert(builder.body(returning: ["y": "residual:z:0"]))
    #expect(decisions["bias"]?.reason == .inferAfterAllow)
    #expect(decisions["relu"]?.reason == .clearNeighbour)
    #expect(decisions["residual"]?.reason == .inferAfterAllow)
  }

  @Test("One cast per source tensor and type, shared by its readers")
  func castsAreShared() throws {
    var builder = BodyBuilder()
    builder.add("a", "MatMul", ["x", "w"])
    builder.add("b", "MatMul", ["x", "v"])
    builder.add("sum", "AddV2", ["a:product:0", "b:product:0"])
    let (_, body, _) = try convert(builder.body(returning: ["y": "sum:z:0"]))
    let castsOfX = body.casts.filter { $0.input == ["x"] }
    #expect(castsOfX.count == 1)
    #expect(body.node("a")?.input[0] == body.node("b")?.input[0])
  }

  @Test("A deny op keeps itself and the infer ops after it float32")
  func denySpreadsDownstream() throws {
    var builder = BodyBuilder()
    builder.add("mm", "MatMul", ["x", "w"])
    builder.add("exp", "Exp", ["mm:product:0"])
    builder.add("scaled", "Mul", ["exp:y:0", "b"])
    builder.add("mm2", "MatMul", ["scaled:z:0", "v"])
    let (decisions, _, _) = try convert(builder.body(returning: ["y": "mm2:product:0"]))
    #expect(decisions["exp"]?.reduced == false)
    #expect(decisions["exp"]?.reason == .denyList)
    #expect(decisions["scaled"]?.reason == .downstreamOfDeny)
    #expect(decisions["mm2"]?.reduced == true)
  }

  @Test("bfloat16 keeps Sum and Mean as infer ops")
  func bfloat16ReductionsInfer() throws {
    var builder = BodyBuilder()
    builder.add("mm", "MatMul", ["x", "w"])
    builder.add("sum", "Sum", ["mm:product:0", "b"])
    let body = builder.body(returning: ["y": "sum:output:0"])
    #expect(try convert(body, precision: .float16).decisions["sum"]?.reason == .denyList)
    #expect(try convert(body, precision: .bfloat16).decisions["sum"]?.reduced == true)
  }

  @Test("A constant read in reduced precision is stored in it; a shared one is copied")
  func constantsAreConverted() throws {
    var builder = BodyBuilder()
    builder.constant("scale", [0.5, 2])
    builder.constant("shared", [3])
    builder.add("mm", "MatMul", ["x", "w"])
    builder.add("scaled", "Mul", ["mm:product:0", "scale:output:0"])
    builder.add("shifted", "AddV2", ["scaled:z:0", "shared:output:0"])
    builder.add("plain", "Sub", ["x", "shared:output:0"])
    let (decisions, body, casts) = try convert(
      builder.body(returning: ["y": "shifted:z:0", "z": "plain:z:0"]))
    #expect(decisions["plain"]?.reduced == false)
    let scale = try #require(body.node("scale"))
    #expect(scale.attr["dtype"]?.type == .dtHalf)
    #expect(scale.attr["value"]?.tensor.tensorContent == Data([0x00, 0x38, 0x00, 0x40]))
    #expect(body.node("shared")?.attr["dtype"]?.type == .dtFloat)
    let copy = try #require(body.node("shared/tfmp_float16"))
    #expect(copy.attr["value"]?.tensor.halfVal == [0x4200])
    #expect(body.node("shifted")?.input[1] == "shared/tfmp_float16:output:0")
    #expect(
      !body.casts.contains {
        $0.input.first?.hasPrefix("scale") == true || $0.input.first?.hasPrefix("shared") == true
      })
    #expect(casts == 3)  // x and w in, the result out
  }

  @Test("A constant that overflows float16 keeps its reader, and what follows, float32")
  func attentionMaskConstant() throws {
    var builder = BodyBuilder()
    builder.constant("mask", [-1e9])
    builder.add("scores", "MatMul", ["x", "w"])
    builder.add("masked", "AddV2", ["scores:product:0", "mask:output:0"])
    builder.add("softmax", "Softmax", ["masked:z:0"])
    builder.add("context", "MatMul", ["softmax:softmax:0", "v"])
    let body = builder.body(returning: ["y": "context:product:0"])
    let float16 = try convert(body, precision: .float16)
    #expect(float16.decisions["masked"]?.reason == .constantRange)
    #expect(float16.decisions["softmax"]?.reason == .downstreamOfDeny)
    #expect(float16.body.node("mask")?.attr["dtype"]?.type == .dtFloat)
    let bfloat16 = try convert(body, precision: .bfloat16)
    #expect(bfloat16.decisions["masked"]?.reduced == true)
    #expect(bfloat16.decisions["softmax"]?.reduced == true)
  }

  @Test("A weight that overflows float16 keeps the MatMul reading it through an Identity float32")
  func unfitConstantBehindIdentity() throws {
    // Frozen graphs read their weights through Identity nodes (a read of a variable before).
    var builder = BodyBuilder()
    builder.constant("w", [7e4, 1])
    builder.add("read", "Identity", ["w:output:0"])
    builder.add("product", "MatMul", ["x", "read:output:0"])
    let (decisions, _, _) = try convert(builder.body(returning: ["y": "product:product:0"]))
    #expect(decisions["read"]?.reason == .constantRange)
    #expect(decisions["product"]?.reason == .constantRange)
    #expect(decisions["product"]?.reduced == false)
  }

  @Test("What a top-k choice is made on computes in float32, back to the matrix product")
  func choiceIsland() throws {
    // A router: hidden -> MatMul -> Softmax -> TopKV2; the hidden state's MatMul converts.
    var builder = BodyBuilder()
    builder.add("hidden", "MatMul", ["x", "w"])
    builder.add("relu", "Relu", ["hidden:product:0"])
    builder.add("router", "MatMul", ["relu:activations:0", "v"])
    builder.add("probabilities", "Softmax", ["router:product:0"])
    builder.add("top", "TopKV2", ["probabilities:softmax:0", "k"])
    let (decisions, _, _) = try convert(
      builder.body(returning: ["y": "top:values:0", "z": "relu:activations:0"]))
    #expect(decisions["hidden"]?.reduced == true)
    #expect(decisions["relu"]?.reduced == true)
    for name in ["router", "probabilities", "top"] {
      #expect(decisions[name]?.reduced == false, "\(name)")
      #expect(decisions[name]?.reason == .choice, "\(name)")
    }
    // Choosing from exponentials (a deny op): float32 spreads from the choice, and its matrix
    // product stays float32 all the same.
    var scores = BodyBuilder()
    scores.add("logits", "MatMul", ["x", "w"])
    scores.add("exp", "Exp", ["logits:product:0"])
    scores.add("top", "TopKV2", ["exp:y:0", "k"])
    let exponential = try convert(scores.body(returning: ["y": "top:values:0"])).decisions
    #expect(exponential["logits"]?.reduced == false)
    #expect(exponential["logits"]?.reason == .choice)
    #expect(exponential["exp"]?.reason == .denyList)
  }

  @Test("An output softmax or sigmoid stays float32 with its layer; one inside the model converts")
  func outputSoftmax() throws {
    var builder = BodyBuilder()
    builder.add("hidden", "MatMul", ["x", "w"])
    builder.add("relu", "Relu", ["hidden:product:0"])
    builder.add("logits", "MatMul", ["relu:activations:0", "w"])
    builder.add("bias", "BiasAdd", ["logits:product:0", "b"])
    builder.add("probabilities", "Softmax", ["bias:output:0"])
    builder.add("identity", "Identity", ["probabilities:softmax:0"])
    let atOutput = try convert(builder.body(returning: ["y": "identity:output:0"]))
    #expect(atOutput.decisions["probabilities"]?.reason == .outputSoftmax)
    for node in ["logits", "bias"] {
      #expect(atOutput.decisions[node]?.reason == .outputLayer, "\(node)")
    }
    #expect(atOutput.decisions["hidden"]?.reduced == true)
    #expect(atOutput.decisions["relu"]?.reduced == true)
    builder.add("next", "MatMul", ["probabilities:softmax:0", "v"])
    let inside = try convert(builder.body(returning: ["y": "next:product:0"]))
    #expect(inside.decisions["probabilities"]?.reduced == true)
    #expect(inside.decisions["logits"]?.reduced == true)
    // A binary classifier's sigmoid at the output too.
    var binary = BodyBuilder()
    binary.add("logit", "MatMul", ["x", "w"])
    binary.add("probability", "Sigmoid", ["logit:product:0"])
    let sigmoid = try convert(binary.body(returning: ["y": "probability:y:0"]))
    #expect(sigmoid.decisions["probability"]?.reason == .outputSoftmax)
    #expect(sigmoid.decisions["logit"]?.reason == .outputLayer)
    // A chain through another op is not the output layer: its product converts.
    var activated = BodyBuilder()
    activated.add("logit", "MatMul", ["x", "w"])
    activated.add("tanh", "Tanh", ["logit:product:0"])
    activated.add("probability", "Sigmoid", ["tanh:y:0"])
    let through = try convert(activated.body(returning: ["y": "probability:y:0"]))
    #expect(through.decisions["logit"]?.reduced == true)
  }

  @Test("An existing Cast takes the reduced type instead of gaining a neighbour")
  func existingCastAbsorbsBoundary() throws {
    var builder = BodyBuilder()
    builder.add("mm", "MatMul", ["x", "w"])
    builder.add("relu", "Relu", ["mm:product:0"])
    builder.add("toInt", "Cast", ["relu:activations:0"], attribute: "SrcT")
    let (_, body, casts) = try convert(builder.body(returning: ["y": "toInt:y:0"]))
    #expect(body.node("toInt")?.attr["SrcT"]?.type == .dtHalf)
    #expect(body.node("toInt")?.input == ["relu:activations:0"])
    #expect(casts == 2)
  }

  @Test("User overrides win over the lists")
  func overrides() throws {
    var builder = BodyBuilder()
    builder.add("dense/mm", "MatMul", ["x", "w"])
    builder.add("head/mm", "MatMul", ["dense/mm:product:0", "v"])
    builder.add("exp", "Exp", ["head/mm:product:0"])
    let body = builder.body(returning: ["y": "exp:y:0"])
    let byNode = try convert(body, float32Nodes: ["^head/"])
    #expect(byNode.decisions["head/mm"]?.reason == .userFloat32Node)
    #expect(byNode.decisions["dense/mm"]?.reduced == true)
    let byOp = try convert(body, float32Ops: ["MatMul"])
    #expect(byOp.decisions["dense/mm"]?.reason == .userFloat32Op)
    let forced = try convert(body, reducedOps: ["Exp"])
    #expect(forced.decisions["exp"]?.reason == .userReducedOp)
    #expect(forced.decisions["exp"]?.reduced == true)
  }
}
