import CPURuntime
import Foundation
import GraphIR
import ModelFormats
import TFProtos
import TensorCore
import Testing
import _TestSupport

/// TF1 dataflow control flow, as `tf.compat.v1.while_loop` and `cond` build it and freezing a
/// functional loop leaves it (the interop tests run TensorFlow's own graphs of both kinds).
@Suite("TF1 dataflow loops and conditionals")
struct DataflowControlFlowTests {
  private func interpreter(_ graph: GraphModel) throws -> Interpreter {
    try Interpreter(model: graph)
  }

  private func model(_ graph: Tensorflow_GraphDef, in folder: TemporaryFolder) throws
    -> GraphModel
  {
    let path = folder.child("loop.pb")
    try GraphProtos.write(graph, to: path)
    return try GraphModel(contentsOf: path)
  }

  @Test("A loop frame becomes a While with a condition and a body function")
  func functionalized() throws {
    let folder = TemporaryFolder()
    let module = try model(GraphProtos.loopAndConditional(iterations: 5), in: folder).module()
    let rewritten = try module.functionalizingLoops()
    let ops = rewritten.graph.nodes.map(\.op)
    #expect(ops.filter { $0 == "While" }.count == 1)
    for op in ["Enter", "NextIteration", "LoopCond", "Exit"] { #expect(!ops.contains(op), "\(op)") }
    // The conditional's Switch and Merge stay.
    #expect(ops.filter { $0 == "Switch" }.count == 2 && ops.contains("Merge"))
    #expect(rewritten.functions.map(\.name) == ["loop/cond", "loop/body"])
    let body = try #require(rewritten.function(named: "loop/body"))
    // i, x and the loop-invariant 0.5, returned as it came.
    #expect(body.arguments.map(\.dtype) == [.int32, .float32, .float32])
    #expect(body.results.last?.source == .argument(2))
    let halved = try #require(rewritten.graph.id(of: "halved"))
    #expect(rewritten.graph[halved].op == "Identity")
    #expect(GraphVerifier(schemas: OpRegistry.standard).problems(in: rewritten).isEmpty)
  }

  @Test("The loop runs as many times as its condition says; the conditional takes one branch")
  func runs() throws {
    let folder = TemporaryFolder()
    let runner = try interpreter(
      try model(GraphProtos.loopAndConditional(iterations: 5), in: folder))
    let x = Tensor(shape: Shape([4]), floats: [1, 2, 3, -32])
    func run(flag: Bool) throws -> [Float] {
      let flag = Tensor(dtype: .bool, shape: Shape([]), storage: .bool([flag]))
      let outputs = try runner.run(signature: "serving_default", inputs: ["x": x, "flag": flag])
      return try #require(outputs["out"]?.floats)
    }
    let taken = try run(flag: true)
    #expect(taken == [1, 2, 3, -32].map { $0 / 32 * 2 }, "\(taken)")
    // The constant on the untaken branch has the pivot as a control input: it is dead too, so
    // the Merge takes the other branch's constant.
    #expect(try run(flag: false) == [7])
  }

  @Test("A loop frame without a LoopCond is refused when run, saying why")
  func malformed() throws {
    let folder = TemporaryFolder()
    var graph = GraphProtos.loopAndConditional(iterations: 5)
    graph.node.removeAll { $0.op == "LoopCond" }
    let module = try model(graph, in: folder).module()
    let error = #expect(throws: GraphError.self) { _ = try module.functionalizingLoops() }
    #expect(error?.code == .malformedLoop)
    #expect(
      error?.description
        == "<graph> (node 'enter_i'): Expected one LoopCond in loop frame 'loop', found 0.")
    let runner = try interpreter(try model(graph, in: folder))
    let x = Tensor(shape: Shape([1]), floats: [1])
    let flag = Tensor(dtype: .bool, shape: Shape([]), storage: .bool([true]))
    let runError = #expect(throws: RuntimeError.self) {
      _ = try runner.run(signature: "serving_default", inputs: ["x": x, "flag": flag])
    }
    #expect(runError?.code == .unsupported)
    #expect(
      runError?.message.contains(
        "could not rewrite as a While loop: <graph> (node 'enter_i'): Expected one LoopCond")
        == true, "\(String(describing: runError))")
  }
}
