import Foundation
import GraphIR
import SwiftProtobuf
import TFProtos
import TensorCore
import Testing
import _TestSupport

@testable import ModelFormats

@Suite("Bare GraphDef files")
struct GraphDefFileTests {
  /// Writes the graph of a fixture's SavedModel as a bare `.pb`.
  private func graphFile(_ fixture: String, in folder: TemporaryFolder) throws -> String {
    let graph = try SavedModel(contentsOf: Fixtures.path(fixture)).proto.metaGraphs[0].graphDef
    let path = folder.child("\(fixture).pb")
    try SavedModelEncoding.encode(graph).write(to: URL(fileURLWithPath: path))
    return path
  }

  @Test("An untouched module writes back the same bytes", arguments: Fixtures.savedModels)
  func roundTrip(fixture: String) throws {
    let folder = TemporaryFolder()
    let path = try graphFile(fixture, in: folder)
    let file = try GraphDefFile(contentsOf: path)
    let module = try file.module()
    #expect(module.signatures.keys.sorted() == ["serving_default"] && module.variables.isEmpty)
    #expect(module.functions.count == file.proto.library.function.count)
    let output = folder.child("out.pb")
    try file.replacing(module).write(to: output)
    #expect(
      try Data(contentsOf: URL(fileURLWithPath: output))
        == Data(contentsOf: URL(fileURLWithPath: path)))
  }

  @Test("A frozen graph is fed its read placeholders and fetches the nodes nothing reads")
  func derivedSignature() throws {
    let folder = TemporaryFolder()
    let path = folder.child("frozen.pb")
    try GraphProtos.write(GraphProtos.frozenGraph(), to: path)
    let module = try GraphDefFile(contentsOf: path).module()
    let signature = try #require(module.signatures["serving_default"])
    #expect(signature.inputs.map(\.name) == ["x"])
    #expect(signature.inputs.first?.dtype == .float32)
    #expect(signature.inputs.first?.shape.unknownRank == true)
    #expect(signature.outputs.map(\.name) == ["logits"])
    #expect(signature.outputs.first?.source == .output(NodeID(3), OutputSlot()))
  }

  @Test("Writing back keeps the fetched names when an output moved to another node")
  func fetchNamesKept() throws {
    let folder = TemporaryFolder()
    let path = folder.child("frozen.pb")
    try GraphProtos.write(GraphProtos.frozenGraph(), to: path)
    let file = try GraphDefFile(contentsOf: path)
    var module = try file.module()
    let logits = try #require(module.graph.id(of: "logits"))
    let cast = module.graph.append(
      Node(name: "logits/cast", op: "Identity", inputs: [.output(logits, OutputSlot())]))
    module.signatures["serving_default"]?.outputs[0].source = .output(cast, OutputSlot())
    let written = file.replacing(module).proto
    #expect(
      written.node.map(\.name) == ["x", "unused", "w", "logits/tfmp_compute", "init", "logits"])
    #expect(written.node.last?.op == "Identity")
    #expect(written.node.last?.input == ["logits/tfmp_compute"])
  }

  @Test("inspect describes a frozen graph: its signature, ops and constants")
  func summary() throws {
    let folder = TemporaryFolder()
    let path = folder.child("frozen.pb")
    try GraphProtos.write(GraphProtos.frozenGraph(), to: path)
    let text = try GraphModel(contentsOf: path).summary().text
    #expect(text.hasPrefix("GraphDef  \(path)\n  a frozen graph: "))
    #expect(
      text.contains("    in  x: float32 unknown rank  <- x:0\n    out logits: ? unknown rank"))
    #expect(text.contains("Ops by type: Placeholder 2, Const 1, MatMul 1, NoOp 1\n"))
    #expect(text.contains("Range report: 1 float tensors (variables and constants), 6 values"))
  }

  @Test("A file that is not a GraphDef, and a missing one, give one-line errors")
  func badFiles() throws {
    let folder = TemporaryFolder()
    let path = folder.child("bad.pb")
    try Data([0x0A, 0xFF, 0xFF, 0xFF]).write(to: URL(fileURLWithPath: path))
    #expect {
      _ = try GraphDefFile(contentsOf: path)
    } throws: { error in
      "\(error)".hasPrefix("\(path): The file is not a valid binary GraphDef (")
        && "\(error)".hasSuffix(
          "). Pass a .pb written by tf.io.write_graph(..., as_text=False), or a SavedModel folder.")
    }
    #expect {
      _ = try GraphDefFile(contentsOf: folder.child("missing.pb"))
    } throws: { error in
      (error as? ModelFormatError)?.code == .missingInput
    }
  }

  @Test("Writing over an existing file needs overwrite, and never touches the input")
  func overwrite() throws {
    let folder = TemporaryFolder()
    let path = try graphFile("mlp", in: folder)
    let file = try GraphDefFile(contentsOf: path)
    let output = folder.child("out.pb")
    try file.write(to: output)
    #expect(throws: ModelFormatError.self) { try file.write(to: output) }
    try file.write(to: output, overwrite: true)
    #expect(throws: ModelFormatError.self) { try file.write(to: path, overwrite: true) }
  }

  @Test("A graph without a library does not gain an empty one")
  func noLibrary() throws {
    let folder = TemporaryFolder()
    var graph = Tensorflow_GraphDef()
    var node = Tensorflow_NodeDef()
    node.name = "x"
    node.op = "Placeholder"
    graph.node = [node]
    let path = folder.child("plain.pb")
    try SavedModelEncoding.encode(graph).write(to: URL(fileURLWithPath: path))
    let file = try GraphDefFile(contentsOf: path)
    let written = file.replacing(try file.module())
    #expect(!written.proto.hasLibrary)
    #expect(written.proto == graph)
  }
}
