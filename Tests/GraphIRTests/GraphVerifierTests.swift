import Foundation
import GraphIR
import TensorCore
import Testing

/// A few schemas, as the runtime's registry would give them.
private struct TestSchemas: OpSchemaSource {
  func schema(for op: String) -> OpSchema? {
    switch op {
    case "MatMul":
      OpSchema("MatMul", inputs: [.init("a"), .init("b")], outputs: [.init("product")])
    case "MaxPool":
      OpSchema(
        "MaxPool", inputs: [.init("input")], outputs: [.init("output")],
        attributes: [.ints("ksize"), .string("data_format", "NHWC")])
    case "Split":
      OpSchema(
        "Split", inputs: [.init("split_dim"), .init("value")],
        outputs: [.init("output", .number("num_split"))])
    case "ConcatV2":
      OpSchema(
        "ConcatV2", inputs: [.init("values", .number("N")), .init("axis")],
        outputs: [.init("output")])
    case "FusedBatchNormV3":
      OpSchema(
        "FusedBatchNormV3", inputs: ["x", "scale", "offset", "mean", "variance"].map { .init($0) },
        outputs: [
          "y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2",
          "reserve_space_3",
        ].map {
          .init($0)
        })
    default: nil
    }
  }
}

@Suite("Graph verifier")
struct GraphVerifierTests {
  private func module(_ nodes: [Node], arguments: [String] = [], results: [Input] = []) -> Module {
    let function = Function(
      name: "f", syntax: .function, arguments: arguments.map { .init(name: $0, dtype: .float32) },
      results: results.enumerated().map { .init(name: "r\($0.offset)", source: $0.element) },
      nodes: nodes)
    return Module(
      graph: Function(name: Function.graphName, syntax: .graph, nodes: []), functions: [function])
  }

  private let float: [String: AttrValue] = ["T": .type(.float32)]

  private func messages(_ module: Module) -> [String] {
    GraphVerifier(schemas: TestSchemas()).problems(in: module).map(\.description)
  }

  @Test("A well-formed function has no problems")
  func wellFormed() {
    let nodes = [
      Node(name: "m", op: "MatMul", inputs: [.argument(0), .argument(1)], attributes: float),
      Node(
        name: "s", op: "Split",
        inputs: [.argument(0), .output(NodeID(0), OutputSlot(argument: "product", index: 0))],
        attributes: ["num_split": .int(2), "T": .type(.float32)]),
    ]
    let results = [Input.output(NodeID(1), OutputSlot(argument: "output", index: 1))]
    #expect(messages(module(nodes, arguments: ["a", "b"], results: results)).isEmpty)
  }

  @Test("Each kind of problem is reported where it is")
  func problems() {
    let nodes = [
      Node(name: "m", op: "MatMul", inputs: [.argument(0)], attributes: float),
      Node(name: "m", op: "Unknown", inputs: [.unresolved(TensorReference(name: "ghost"))]),
      Node(
        name: "s", op: "Split", inputs: [.argument(0), .argument(3)],
        attributes: ["num_split": .int(2), "T": .type(.float32)]),
      Node(
        name: "call", op: "PartitionedCall",
        attributes: ["f": .function(FunctionReference(name: "missing"))]),
      Node(
        name: "loop", op: "MatMul",
        inputs: [.output(NodeID(4), OutputSlot(argument: "product", index: 0)), .argument(0)],
        attributes: float),
    ]
    let results = [Input.output(NodeID(2), OutputSlot(argument: "output", index: 2))]
    #expect(
      messages(module(nodes, arguments: ["a"], results: results)) == [
        "f (node 'm'): MatMul takes 2 data inputs but the node has 1.",
        "f (node 'm'): Another node has the same name.",
        "f (node 'm'): The input 'ghost' names no node or argument of the function.",
        "f (node 's'): Argument 3 does not exist; the function has 1.",
        "f (node 'call'): Attribute 'f' names function 'missing', which the library lacks.",
        "f: 's:output:2' names no output of Split node 's'.",
        "f (node 'loop'): The node depends on its own outputs.",
      ])
  }

  @Test("Attributes take their defaults; a required one missing or one of another kind is an error")
  func attributes() throws {
    let pool = try #require(TestSchemas().schema(for: "MaxPool"))
    var list = AttrList()
    list.ints = [1, 2]
    let given: [String: AttrValue] = ["T": .type(.float32), "ksize": .list(list)]
    var completed = given
    completed["data_format"] = .bytes(Data("NHWC".utf8))
    #expect(try pool.completing(given) == completed)
    // An empty list is a list of any kind.
    #expect(throws: Never.self) {
      try pool.completing(["T": .type(.float32), "ksize": .list(AttrList())])
    }
    func problem(_ attributes: [String: AttrValue]) -> String? {
      do {
        _ = try pool.completing(attributes)
        return nil
      } catch {
        return error.message
      }
    }
    #expect(
      problem(["T": .type(.float32)])
        == "MaxPool needs attribute 'ksize' (list(int)), which the node lacks.")
    #expect(
      problem(["T": .int(1), "ksize": .list(list)])
        == "Attribute 'T' of MaxPool must be a type, but the node's is int.")
    var floats = AttrList()
    floats.floats = [1]
    #expect(
      problem(["T": .type(.float32), "ksize": .list(floats)])
        == "Attribute 'ksize' of MaxPool must be a list(int), but the node's is list(float).")
    #expect(
      problem(["T": .placeholder("T"), "ksize": .list(list)])
        == "Attribute 'T' of MaxPool must be a type, but the node's is placeholder 'T' (the function is not instantiated)."
    )
  }

  @Test("Output arguments are counted through the attributes that size them")
  func outputPositions() throws {
    let schemas = TestSchemas()
    let split = try #require(schemas.schema(for: "Split"))
    #expect(
      split.outputPosition(
        of: OutputSlot(argument: "output", index: 2), attributes: ["num_split": .int(3)]) == 2)
    #expect(
      split.outputPosition(
        of: OutputSlot(argument: "output", index: 3), attributes: ["num_split": .int(3)]) == nil)
    let norm = try #require(schemas.schema(for: "FusedBatchNormV3"))
    #expect(
      norm.outputPosition(of: OutputSlot(argument: "batch_variance", index: 0), attributes: [:])
        == 2)
    #expect(
      norm.outputPosition(of: OutputSlot(argument: "nothing", index: 0), attributes: [:]) == nil)
    #expect(norm.outputPosition(of: OutputSlot(index: 4), attributes: [:]) == 4)
    let concat = try #require(schemas.schema(for: "ConcatV2"))
    #expect(concat.inputCount(attributes: ["N": .int(3)]) == 4)
  }

  @Test("TF1 loops close through NextIteration without being a cycle")
  func loopBackEdge() {
    let nodes = [
      Node(name: "enter", op: "Enter", inputs: [.argument(0)]),
      Node(
        name: "merge", op: "Merge",
        inputs: [
          .output(NodeID(0), OutputSlot(argument: "output", index: 0)),
          .output(NodeID(2), OutputSlot(argument: "output", index: 0)),
        ]),
      Node(
        name: "next", op: "NextIteration",
        inputs: [.output(NodeID(1), OutputSlot(argument: "output", index: 0))]),
    ]
    #expect(messages(module(nodes, arguments: ["x"])).isEmpty)
  }
}
