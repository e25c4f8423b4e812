import Foundation
import GraphIR
import MixedPrecision
import ModelFormats
import TensorCore
import Testing
import _TestSupport

@testable import Validation

@Suite("Comparing models")
struct ValidationTests {
  @Test("The error measures are what their definitions say")
  func metrics() {
    let output = ModelComparison.compare(
      name: "y", reference: [1, 2, 3, 4, 0, 1], candidate: [1, 2, 3, 5, 0.5, 0],
      shape: Shape([2, 3]),
      rtol: 0.1, atol: 0.05)
    #expect(output.maxAbsoluteError == 1)
    #expect(output.maxRelativeError == 1)  // the last element: |0 - 1| / 1
    #expect(abs(output.meanRelativeError - (0.25 + 1) / 5) < 1e-12)
    let dot = 1.0 + 4 + 9 + 20
    let norms = (1.0 + 4 + 9 + 16 + 1).squareRoot() * (1.0 + 4 + 9 + 25 + 0.25).squareRoot()
    #expect(abs(output.cosineSimilarity - dot / norms) < 1e-12)
    // Row 0: [1, 2, 3] vs [1, 2, 3] agree; row 1: [4, 0, 1] vs [5, 0.5, 0] agree on index 0.
    #expect(output.top1Agreement == 1)
    // Outside 0.05 + 0.1 * |r|: 5 vs 4, 0.5 vs 0, 0 vs 1.
    #expect(output.elementsOutsideTolerance == 3)
  }

  @Test("A converted model passes within tolerance, and fails when none is allowed")
  func convertedModel() throws {
    let folder = TemporaryFolder()
    let reference = try SavedModel(contentsOf: Fixtures.path("cnn_bn"))
    let (converted, _) = try Converter(options: ConversionOptions()).convert(reference)
    try converted.write(to: folder.child("cnn"))
    let candidate = try SavedModel(contentsOf: folder.child("cnn"))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("cnn_bn.inputs.npz"))
    let loose = try ModelComparison.compare(
      reference: .savedModel(reference), candidate: .savedModel(candidate),
      signature: "serving_default", inputs: inputs,
      rtol: 1e-2, atol: 1e-3)
    #expect(loose.passed, "\(loose.text)")
    #expect(loose.outputs.first?.top1Agreement == 1)
    let strict = try ModelComparison.compare(
      reference: .savedModel(reference), candidate: .savedModel(candidate),
      signature: "serving_default", inputs: inputs,
      rtol: 0, atol: 0)
    #expect(!strict.passed)
  }

  @Test("Random inputs are reproducible and fit the signature")
  func randomInputs() throws {
    let specs: [String: (dtype: DType, shape: [Int])] = [
      "x": (.float32, [-1, 3]), "ids": (.int32, [-1, -1]),
    ]
    // Words are asked for only for string inputs.
    struct Unasked: Error {}
    func unasked() throws -> [[UInt8]] { throw Unasked() }
    let first = try ModelComparison.random(specs, samples: 4, seed: 9, words: unasked())
    #expect(first == (try ModelComparison.random(specs, samples: 4, seed: 9, words: [])))
    #expect(first["x"]?.shape == Shape([4, 3]))
    #expect(first["ids"]?.shape == Shape([4, 1]))
    #expect(first["ids"]?.integers?.allSatisfy { $0 == 0 || $0 == 1 } == true)
    // Pixels over the whole of uint8's range, written and read back as NumPy's |u1.
    let pixels = try #require(
      try ModelComparison.random(
        ["image": (.uint8, [-1, 16, 16])], samples: 2, seed: 3, words: [])["image"])
    let values = try #require(pixels.integers)
    #expect(pixels.dtype == .uint8 && values.allSatisfy { (0...255).contains($0) })
    #expect(values.contains { $0 > 200 } && values.contains { $0 < 50 })
    let folder = TemporaryFolder()
    try NumPyFile.writeArchive(["image": pixels], to: folder.child("pixels.npz"))
    #expect(try NumPyFile.readArchive(at: folder.child("pixels.npz"))["image"] == pixels)
    // Strings from the words given, each of them drawn.
    let words = ["cat", "dog", ""].map { Array($0.utf8) }
    let text = try #require(
      try ModelComparison.random(["text": (.string, [-1, 5])], samples: 6, seed: 1, words: words)[
        "text"])
    guard case .string(let drawn) = text.storage else { throw Unasked() }
    #expect(text.shape == Shape([6, 5]) && Set(drawn) == Set(words))
    #expect(throws: ModelFormatError.self) {
      _ = try ModelComparison.random(["text": (.string, [2])], samples: 1, seed: 1, words: [])
    }
  }

  @Test("Outputs that do not correspond fail the comparison, never pass it")
  func mismatchedOutputs() throws {
    let reference = try SavedModel(contentsOf: Fixtures.path("two_io"))
    var module = try reference.module()
    let key = "serving_default"
    let signature = try #require(module.signatures[key])
    // The candidate's first output reads the first input instead: another shape.
    module.signatures[key]?.outputs[0].source = signature.inputs[0].source
    let candidate = reference.replacing(module)
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("two_io.inputs.npz"))
    let report = try ModelComparison.compare(
      reference: .savedModel(reference), candidate: .savedModel(candidate), signature: key,
      inputs: inputs, rtol: 1, atol: 1)
    #expect(!report.passed)
    #expect(report.mismatches.count == 1, "\(report.text)")
    #expect(report.text.hasSuffix("FAIL: the outputs do not correspond\n"))
  }

  @Test("Verification counts inf and NaN only where the original is finite, and drift by scale")
  func verificationProblems() {
    func tensor(_ values: [Float]) -> Tensor {
      Tensor(shape: Shape([values.count]), floats: values)
    }
    let reference = tensor([1, .infinity, -3, 0.5])
    #expect(ConversionCheck.problem(reference, tensor([1, .nan, -3, 0.5]), tolerance: 0.1) == nil)
    #expect(
      ConversionCheck.problem(reference, tensor([1, .infinity, .infinity, 0.5]), tolerance: 0.1)
        == "is inf or NaN in 1 of 3 elements where the original's is finite")
    // The scale is the largest finite magnitude (3): 0.25 off is within 0.1 of it, 0.5 is not.
    #expect(ConversionCheck.problem(reference, tensor([1, 0, -3, 0.25]), tolerance: 0.1) == nil)
    #expect(ConversionCheck.problem(reference, tensor([1, 0, -3, 1.0]), tolerance: 0.1) != nil)
  }

  @Test("Every fixture's conversion verifies, and a corrupted one is refused at its first bad node")
  func verification() throws {
    let folder = TemporaryFolder()
    for fixture in Fixtures.savedModels {
      let original = try SavedModel(contentsOf: Fixtures.path(fixture))
      let (converted, _) = try Converter(options: ConversionOptions()).convert(original)
      try converted.write(to: folder.child(fixture))
      let outcome = try ConversionCheck.check(
        original: .savedModel(original),
        converted: .savedModel(try SavedModel(contentsOf: folder.child(fixture))),
        inputs: nil, tolerance: 0.1)
      #expect(
        outcome.failure == nil, "\(fixture): \(outcome.failure.map(String.init(describing:)) ?? "")"
      )
      #expect(!outcome.checked.isEmpty, "\(fixture): \(outcome.skipped)")
    }
    // mlp with its hidden Relu turned into an Elu: the outputs drift, first at that node.
    let original = try SavedModel(contentsOf: Fixtures.path("mlp"))
    var module = try original.module()
    for index in module.functions.indices {
      module.modifyFunction(at: index) { function in
        for id in function.nodeIDs where function[id].op == "Relu" { function[id].op = "Elu" }
      }
    }
    let outcome = try ConversionCheck.check(
      original: .savedModel(original), converted: .savedModel(original.replacing(module)),
      inputs: nil, tolerance: 1e-3)
    let failure = try #require(outcome.failure, "\(outcome.skipped)")
    #expect(failure.node?.op == "Elu")
    #expect(failure.node?.name == "mlp_1/hidden_1/Relu")
  }
}
