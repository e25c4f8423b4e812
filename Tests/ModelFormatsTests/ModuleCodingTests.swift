import Foundation
import GraphIR
import TFProtos
import TensorCore
import Testing
import _TestSupport

@testable import ModelFormats

@Suite("SavedModels to GraphIR modules and back")
struct ModuleCodingTests {
  @Test(
    "An untouched module writes back the same bytes", arguments: Fixtures.savedModels + ["<digits>"]
  )
  func untouchedRoundTrip(fixture: String) throws {
    let path =
      fixture == "<digits>"
      ? Fixtures.repositoryRoot.appendingPathComponent("Examples/digits").path
      : Fixtures.path(fixture)
    let model = try SavedModel(contentsOf: path)
    let module = try model.module()
    let written = model.replacing(module)
    #expect(try SavedModelEncoding.encode(written.proto) == SavedModelEncoding.encode(model.proto))
  }

  @Test("Every input resolves to a node output or an argument", arguments: Fixtures.savedModels)
  func referencesResolve(fixture: String) throws {
    let module = try SavedModel(contentsOf: Fixtures.path(fixture)).module()
    for function in module.functions + [module.graph] {
      for node in function.nodes {
        for input in node.inputs + node.controlInputs {
          if case .unresolved(let reference) = input {
            Issue.record(
              "\(fixture) \(function.name) node '\(node.name)': '\(reference)' unresolved")
          }
        }
      }
      for result in function.results {
        if case .unresolved = result.source {
          Issue.record("\(fixture) \(function.name): result \(result.name)")
        }
      }
    }
    for signature in module.signatures.values {
      for endpoint in signature.inputs + signature.outputs {
        guard case .output(let node, _) = endpoint.source else {
          Issue.record("\(fixture) signature \(signature.key): '\(endpoint.name)' unresolved")
          continue
        }
        if signature.inputs.contains(where: { $0.name == endpoint.name }) {
          #expect(
            module.graph[node].op == "Placeholder", "\(fixture) \(signature.key) \(endpoint.name)")
        }
      }
    }
  }

  @Test(
    "Each variable is found with the key its checkpoint saves it under",
    arguments: Fixtures.savedModels)
  func variables(fixture: String) throws {
    let model = try SavedModel(contentsOf: Fixtures.path(fixture))
    let module = try model.module()
    let checkpoint = try #require(model.checkpoint)
    let keys = Set(checkpoint.entries.map(\.key))
    #expect(!module.variables.isEmpty)
    for variable in module.variables {
      #expect(module.graph[variable.node].op == "VarHandleOp")
      #expect(keys.contains(variable.checkpointKey), "\(fixture): \(variable.checkpointKey)")
    }
  }

  @Test("Edited nodes write their new fields; the rest of each node is kept")
  func editedNodes() throws {
    let model = try SavedModel(contentsOf: Fixtures.path("mlp"))
    var module = try model.module()
    let index = try #require(
      module.functions.firstIndex { $0.nodes.contains { $0.op == "MatMul" } })
    var function = module.functions[index]
    let matmul = try #require(function.nodes.firstIndex { $0.op == "MatMul" })
    var node = function[NodeID(matmul)]
    node.attributes["T"] = .type(.float16)
    node.inputs.swapAt(0, 1)
    function[NodeID(matmul)] = node
    let added = function.append(
      Node(
        name: function.uniqueName("Cast"), op: "Cast", inputs: [node.inputs[0]],
        attributes: ["DstT": .type(.float16)]))
    function.results[0].source = .output(added, OutputSlot(argument: "y", index: 0))
    module.setFunction(function, at: index)

    let written = model.replacing(module).proto.metaGraphs[0].graphDef.library.function[index]
    let original = model.proto.metaGraphs[0].graphDef.library.function[index]
    let before = original.nodeDef[matmul]
    let after = written.nodeDef[matmul]
    #expect(after.attr["T"]?.type == .dtHalf)
    #expect(after.input == [before.input[1], before.input[0]] + before.input.dropFirst(2))
    #expect(after.attr["transpose_a"] == before.attr["transpose_a"])
    #expect(Array(written.nodeDef.prefix(matmul)) == Array(original.nodeDef.prefix(matmul)))
    #expect(written.nodeDef.last?.op == "Cast")
    #expect(written.ret[original.signature.outputArg[0].name] == "Cast:y:0")
    // Read back, the edit is what was written.
    let reread = try GraphCoding.decode(written)
    #expect(reread[NodeID(matmul)].attributes["T"] == .type(.float16))
    #expect(reread.results[0].source == .output(added, OutputSlot(argument: "y", index: 0)))
  }

  @Test("A malformed tensor reference names its function and node")
  func malformedReference() throws {
    var proto = Tensorflow_FunctionDef()
    proto.signature.name = "f"
    var node = Tensorflow_NodeDef()
    node.name = "bad"
    node.op = "Identity"
    node.input = ["x:out:one"]
    proto.nodeDef = [node]
    #expect {
      _ = try GraphCoding.decode(proto)
    } throws: { error in
      "\(error)"
        == "f (node 'bad'): The input 'x:out:one' is not a valid tensor reference: 'one' is not an output index."
    }
  }
}
