import AccuracySearch
import CPURuntime
import Foundation
import MixedPrecision
import ModelFormats
import TensorCore
import Testing
import Validation
import _TestSupport

@Suite("Accuracy search")
struct PrecisionSearchTests {
  @Test("Tolerances parse as METRIC=VALUE and bound the metric from the right side")
  func tolerances() throws {
    let bound = try Tolerance(parsing: "max_abs=1e-3")
    #expect(bound.metric == .maxAbs && bound.value == 1e-3)
    #expect(bound.description == "max_abs <= 0.001")
    #expect(try Tolerance(parsing: "cosine=0.999").description == "cosine >= 0.999")
    for bad in ["max_abs", "mse=1", "max_abs=x", "cosine=-1", "cosine=1.5", "max_abs=inf"] {
      #expect(throws: ToleranceError.self, "\(bad)") { _ = try Tolerance(parsing: bad) }
    }
    let report = ModelComparison.report(
      signature: "s", expected: ["y": Tensor(shape: Shape([4]), floats: [1, 2, 3, 4])],
      actual: ["y": Tensor(shape: Shape([4]), floats: [1, 2.002, 3, 4])], rtol: 0, atol: 0,
      inputs: "given")
    let output = try #require(report.outputs.first)
    #expect(abs(output.maxAbsoluteError - 2e-3) < 1e-6)
    #expect(!bound.isMet(by: output))
    #expect(try Tolerance(parsing: "max_abs=2.5e-3").isMet(by: output))
    #expect(try Tolerance(parsing: "cosine=0.999").isMet(by: output))
    #expect(try Tolerance(parsing: "mean_rel=3e-4").isMet(by: output))
    #expect(!(try Tolerance(parsing: "mean_rel=2e-4").isMet(by: output)))
    // An output that is no classifier's has no top-1 agreement, and meets any bound on it.
    #expect(try Tolerance(parsing: "top1_agreement=1").isMet(by: output))
  }

  @Test("The nudged executions move every float32 value one ulp, seeded; zeros and others stay")
  func lastBitNudger() throws {
    let x = Tensor(shape: Shape([2, 3]), floats: [0.5, -1, 3, 0, 1e-3, -7])
    let ids = Tensor(dtype: .int32, shape: Shape([2]), storage: .int32([3, 4]))
    let nudger = LastBitNudger()
    func nudged(_ seed: UInt64) throws -> [Float] {
      nudger.reseed(seed)
      let replaced = try #require(nudger.replacement(function: "f", node: "n", outputs: [x, ids]))
      #expect(replaced.count == 2 && replaced[1] == nil)
      return try #require(replaced[0]?.floats)
    }
    let original = try #require(x.floats)
    let first = try nudged(1)
    #expect(
      zip(first, original).allSatisfy { $1 == 0 ? $0 == 0 : ($0 == $1.nextUp || $0 == $1.nextDown) }
    )
    #expect(try nudged(1) == first && nudged(2) != first)
  }

  @Test("A search judged on several executions meets the tolerance on each of them")
  func executions() throws {
    let model = try GraphModel(contentsOf: Fixtures.path("attention"))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("attention.inputs.npz"))
    let lists = try Converter(options: ConversionOptions()).convert(model).0
    let key = "serving_default"
    let reference = Interpreter(module: try model.module(), checkpoint: model.checkpoint)
    func error(of runner: Interpreter, on fed: [String: Tensor]) throws -> Double {
      let expected = try reference.run(signature: key, inputs: fed)
      let actual = try runner.run(signature: key, inputs: fed)
      return ModelComparison.report(
        signature: key, expected: expected, actual: actual, rtol: 0, atol: 0, inputs: "given"
      ).outputs.map(\.maxAbsoluteError).max() ?? .infinity
    }
    var search = PrecisionSearch(
      conversion: ConversionOptions(),
      tolerances: [Tolerance(.maxAbs, try error(of: Interpreter(model: lists), on: inputs) / 3)])
    search.inputs = inputs
    let (outcome, chosen) = try search.run(on: model)
    #expect(outcome.met && outcome.executions == 5, "\(outcome.summary)")
    #expect(outcome.summary.contains("each judged on up to 5 executions"))
    let converted = try #require(chosen?.model)
    let nudger = LastBitNudger()
    for execution in 0..<5 {
      nudger.reseed(UInt64(execution))
      let runner = try Interpreter(model: converted, observer: execution == 0 ? nil : nudger)
      #expect(try error(of: runner, on: inputs) <= search.tolerances[0].value)
    }
  }

  @Test("A conversion run in memory, as the search tries it, computes what it does written")
  func inMemoryTrial() throws {
    let original = try GraphModel(contentsOf: Fixtures.path("attention"))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("attention.inputs.npz"))
    let (converted, report) = try Converter(options: ConversionOptions()).convert(original)
    // Some variables are stored in float16 when written: read rounded in memory.
    #expect(report.variables.contains { $0.dtype == "float16" })
    let folder = TemporaryFolder()
    try converted.write(to: folder.child("converted"))
    let written = try GraphModel(contentsOf: folder.child("converted"))
    let key = "serving_default"
    let inMemory = try Interpreter(model: converted).run(signature: key, inputs: inputs)
    #expect(try Interpreter(model: written).run(signature: key, inputs: inputs) == inMemory)
    // Without the rounding (the original checkpoint read as it is), they would not.
    let unrounded = try? Interpreter(
      module: try converted.module(), checkpoint: converted.checkpoint
    ).run(signature: key, inputs: inputs)
    #expect(unrounded != inMemory)
  }

  @Test("A loose tolerance keeps nothing more; a tight one keeps nodes and meets it")
  func search() throws {
    let model = try GraphModel(contentsOf: Fixtures.path("attention"))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("attention.inputs.npz"))
    var loose = PrecisionSearch(
      conversion: ConversionOptions(), tolerances: [Tolerance(.maxAbs, 1)])
    loose.inputs = inputs
    let easy = try loose.run(on: model).outcome
    #expect(easy.met && easy.float32Nodes.isEmpty && easy.conversions == 1)
    let error = try #require(easy.before.first?.outputs.map(\.maxAbsoluteError).max())
    #expect(error > 0)
    // A third of the lists' error: the search keeps some nodes float32, not all.
    var tight = loose
    tight.tolerances = [Tolerance(.maxAbs, error / 3)]
    tight.executions = 1
    let (outcome, chosen) = try tight.run(on: model)
    #expect(outcome.met, "\(outcome.summary)")
    #expect(!outcome.float32Nodes.isEmpty)
    let reached = try #require(outcome.after.first?.outputs.map(\.maxAbsoluteError).max())
    #expect(reached <= error / 3)
    // The chosen conversion computes with fewer reduced nodes than the lists', but some.
    var options = ConversionOptions()
    options.float32Nodes = Set(outcome.float32Nodes.map(\.node))
    let (converted, report) = try Converter(options: options).convert(model)
    let (_, lists) = try Converter(options: ConversionOptions()).convert(model)
    // The conversion the search hands back is that one (its trials reuse the analysis).
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    let handed = try #require(chosen)
    #expect(try encoder.encode(handed.report) == encoder.encode(report))
    let folder = TemporaryFolder()
    try handed.model.write(to: folder.child("handed"))
    try converted.write(to: folder.child("converted"))
    for file in ["saved_model.pb", "variables/variables.data-00000-of-00001"] {
      #expect(
        FileManager.default.contents(atPath: folder.child("handed/" + file))
          == FileManager.default.contents(atPath: folder.child("converted/" + file)), "\(file)")
    }
    #expect(report.convertedOpCount < lists.convertedOpCount && report.convertedOpCount > 0)
    // A node kept float32 can take neighbours with it (an infer op it fed).
    #expect(report.convertedOpCount <= lists.convertedOpCount - outcome.float32Nodes.count)
    // The fixture's `serve` and `serving_default` give the same outputs: the original and the
    // lists' conversion run on both, the instrumented pass (the original forward and backward,
    // the conversion fed) and the search's tries on one, and the result is checked on both.
    #expect(outcome.before.map(\.signature) == ["serve", "serving_default"])
    #expect(outcome.modelRuns == 2 + 2 + 3 + (outcome.conversions - 2) + 2)
    // Ranked by each node's share of the lists' output error: the backward pass ran.
    #expect(outcome.rankedByOwnError == nil, "\(outcome.summary)")
    #expect(outcome.float32Nodes.allSatisfy { $0.errorShare != nil })
    #expect(outcome.after.count == 2)
  }
}
