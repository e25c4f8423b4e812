import Foundation
import GraphIR
import SwiftProtobuf
import TFProtos
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
    #expect(module.signatures.isEmpty && module.variables.isEmpty)
    #expect(module.functions.count == file.proto.library.function.count)
    let output = folder.child("out.pb")
    try file.replacing(module).write(to: output)
    #expect(
      try Data(contentsOf: URL(fileURLWithPath: output))
        == Data(contentsOf: URL(fileURLWithPath: path)))
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
