import GraphIR
import ModelFormats
import TensorCore
import Testing
import _TestSupport

@testable import CPURuntime

@Suite("Op registry")
struct OpRegistryTests {
  @Test(
    "Every fixture's module verifies against the registry's schemas",
    arguments: Fixtures.savedModels)
  func fixturesVerify(fixture: String) throws {
    let module = try SavedModel(contentsOf: Fixtures.path(fixture)).module()
    let problems = GraphVerifier(schemas: OpRegistry.standard).problems(in: module)
    #expect(problems.isEmpty, "\(fixture): \(problems.map(\.description))")
  }

  @Test("A node with the wrong number of inputs for its schema is reported")
  func arityMismatch() {
    let graph = Function(
      name: Function.graphName, syntax: .graph,
      nodes: [
        Node(name: "x", op: "Placeholder", attributes: ["dtype": .type(.float32)]),
        Node(
          name: "y", op: "MatMul", inputs: [.output(NodeID(0), OutputSlot())],
          attributes: ["T": .type(.float32)]),
      ])
    let problems = GraphVerifier(schemas: OpRegistry.standard).problems(
      in: Module(graph: graph, functions: []))
    #expect(
      problems.map(\.description) == [
        "<graph> (node 'y'): MatMul takes 2 data inputs but the node has 1."
      ])
  }

  @Test("Traits the runtime relies on are where they were")
  func traits() throws {
    let registry = OpRegistry.standard
    for op in ["Identity", "Snapshot", "StopGradient", "Reshape", "Squeeze", "ExpandDims"] {
      #expect(registry.schema(for: op)?.traits.contains(.sharesInput) == true, "\(op)")
    }
    for op in ["Transpose", "ConcatV2", "GatherV2", "Relu", "MaxPool", "Maximum", "BroadcastTo"] {
      #expect(registry.schema(for: op)?.traits.contains(.movesElements) == true, "\(op)")
    }
    for op in ["MatMul", "Exp", "Cast", "Mean"] {
      #expect(registry.schema(for: op)?.traits.contains(.movesElements) == false, "\(op)")
    }
    #expect(registry.schema(for: "Erfinv") == nil)
  }

  @Test("Cumsum, exclusive and reversed, along each axis")
  func cumulativeSum() throws {
    let x = Tensor(shape: Shape([2, 3]), floats: [1, 2, 3, 4, 5, 6])
    func run(_ axis: Int32, exclusive: Bool, reverse: Bool) throws -> [Float] {
      let node = Node(
        name: "c", op: "Cumsum",
        attributes: [
          "exclusive": .bool(exclusive), "reverse": .bool(reverse), "T": .type(.float32),
        ])
      let axisTensor = Tensor(dtype: .int32, shape: Shape([]), storage: .int32([axis]))
      return try ReductionKernels.cumulative(
        x, axis: axisTensor, product: false, try KernelContext(planned: node)
      )
      .floats ?? []
    }
    #expect(try run(1, exclusive: false, reverse: false) == [1, 3, 6, 4, 9, 15])
    #expect(try run(1, exclusive: true, reverse: true) == [5, 3, 0, 11, 6, 0])
    #expect(try run(-2, exclusive: false, reverse: false) == [1, 2, 3, 5, 7, 9])
    #expect(throws: KernelError.self) { try run(2, exclusive: false, reverse: false) }
  }
}
