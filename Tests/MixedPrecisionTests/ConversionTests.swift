import Foundation
import GraphIR
import MixedPrecision
import ModelFormats
import TFProtos
import TensorCore
import Testing
import _TestSupport

@Suite("Converting SavedModels")
struct ConversionTests {
  @Test(
    "Each fixture's conversion summary matches its snapshot",
    arguments: Fixtures.savedModels, ReducedPrecision.allCases)
  func summarySnapshot(fixture: String, precision: ReducedPrecision) throws {
    var options = ConversionOptions()
    options.precision = precision
    let (_, report) = try Converter(options: options).convert(
      SavedModel(contentsOf: Fixtures.path(fixture)))
    let mismatch = snapshotMismatch(report.summary, named: "convert-\(fixture)-\(precision)")
    #expect(mismatch == nil, "\(mismatch ?? "")")
  }

  @Test("A frozen graph converts into a frozen graph that fetches the same names, in float32")
  func frozenGraph() throws {
    let folder = TemporaryFolder()
    let path = folder.child("frozen.pb")
    try GraphProtos.write(GraphProtos.frozenGraph(), to: path)
    let (converted, report) = try Converter(options: ConversionOptions()).convert(
      GraphDefFile(contentsOf: path))
    #expect(report.convertedOpCount == 1 && report.constantsConverted == 1)
    #expect(report.weightsAreConstants && report.weightBytesBefore == 24)
    #expect(report.weightBytesAfter == 12)
    #expect(report.summary.contains("weights 24 B -> 12 B (constants of a frozen graph)\n"))
    try converted.write(to: folder.child("out.pb"))
    let graph = try GraphDefFile(contentsOf: folder.child("out.pb")).module().graph
    let logits = try #require(graph.id(of: "logits"))
    #expect(graph[logits].op == "Cast" && graph[logits].type("DstT") == .float32)
    let matMul = try #require(graph.id(of: "logits/tfmp_compute"))
    #expect(graph[matMul].op == "MatMul" && graph[matMul].type("T") == .float16)

    for (flag, edit) in [
      ("--weights float32", { (options: inout ConversionOptions) in options.weights = .float32 }),
      ("--no-keep-io-types", { (options: inout ConversionOptions) in options.keepIOTypes = false }),
    ] {
      var options = ConversionOptions()
      edit(&options)
      let error = #expect(throws: ModelFormatError.self) {
        _ = try Converter(options: options).convert(GraphDefFile(contentsOf: path))
      }
      #expect(error?.code == .unsupported && error?.location == flag)
    }
  }

  @Test("Identities chained in a cycle (a corrupt graph, found by fuzzing) convert without a trap")
  func identityCycle() throws {
    // Following the chain for the variable handle it might carry recursed without end.
    let folder = TemporaryFolder()
    var graph = Tensorflow_GraphDef()
    graph.node = [
      GraphProtos.node("x", "Placeholder"), GraphProtos.node("a", "Identity", ["b"]),
      GraphProtos.node("b", "Identity", ["a"]), GraphProtos.node("y", "MatMul", ["x", "a"]),
    ]
    let path = folder.child("cycle.pb")
    try GraphProtos.write(graph, to: path)
    let (_, report) = try Converter(options: ConversionOptions()).convert(
      GraphDefFile(contentsOf: path))
    #expect(report.nodes.first { $0.name == "y" }?.precision == "float16")
  }

  @Test("Converting a converted model is refused with a clear message")
  func convertingTwice() throws {
    let folder = TemporaryFolder()
    let (once, _) = try Converter(options: ConversionOptions()).convert(
      SavedModel(contentsOf: Fixtures.path("mlp")))
    try once.write(to: folder.child("once"))
    let converted = try SavedModel(contentsOf: folder.child("once"))
    let error = #expect(throws: ModelFormatError.self) {
      _ = try Converter(options: ConversionOptions()).convert(converted)
    }
    #expect(error?.code == .alreadyConverted)
    #expect(
      error?.description
        == "\(folder.child("once")) (node 'mlp_1/hidden_1/MatMul' in function "
        + "'__inference___call___937'): The MatMul already computes in float16; the model was "
        + "converted before or exported from mixed-precision training. tfmp converts float32 "
        + "models; convert the original float32 model instead.")
  }

  @Test("An invalid --fp32-node pattern is reported, not trapped")
  func invalidPattern() throws {
    var options = ConversionOptions()
    options.float32NodePatterns = ["(unclosed"]
    let error = #expect(throws: ModelFormatError.self) {
      _ = try Converter(options: options).convert(SavedModel(contentsOf: Fixtures.path("mlp")))
    }
    #expect(
      error?.description
        == "--fp32-node ('(unclosed'): The pattern is not a valid regular expression. Fix or quote it."
    )
  }

  @Test("The input model is left untouched by a conversion")
  func inputUntouched() throws {
    let folder = TemporaryFolder()
    let input = try folder.copyFixture("cnn_bn")
    let before = try snapshotOfFiles(input)
    let (model, _) = try Converter(options: ConversionOptions()).convert(
      SavedModel(contentsOf: input))
    try model.write(to: folder.child("out"))
    #expect(try snapshotOfFiles(input) == before)
  }

  private func snapshotOfFiles(_ folder: String) throws -> [String: Data] {
    var files: [String: Data] = [:]
    let enumerator = FileManager.default.enumerator(atPath: folder)
    while let path = enumerator?.nextObject() as? String {
      var isDirectory: ObjCBool = false
      let full = folder + "/" + path
      if FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory),
        !isDirectory.boolValue
      {
        files[path] = try Data(contentsOf: URL(fileURLWithPath: full))
      }
    }
    return files
  }

  @Test("Flipped bytes in saved_model.pb", arguments: [3, 4] as [UInt64])
  func flippedGraph(seed: UInt64) throws {
    let folder = TemporaryFolder()
    let model = try folder.copyFixture("mlp")
    let path = model + "/saved_model.pb"
    let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    var random = SeededGenerator(seed: seed)
    for _ in 0..<100 {
      var bytes = original
      for _ in 0..<3 {
        bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(
          in: 0...255, using: &random)
      }
      try Data(bytes).write(to: URL(fileURLWithPath: path))
      // Either an error or a model that can be summarized and converted; never a trap.
      if let loaded = try? SavedModel(contentsOf: model) {
        _ = try? loaded.summary()
        _ = try? Converter(options: ConversionOptions()).convert(loaded)
      }
    }
  }
}
