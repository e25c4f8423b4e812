import Foundation
import MixedPrecision
import ModelFormats
import TensorCore
import Testing
import _TestSupport

@Suite("Converting Keras archives")
struct KerasConversionTests {
  @Test(
    "Each archive's conversion summary matches its snapshot",
    arguments: Fixtures.kerasArchives, ReducedPrecision.allCases)
  func summarySnapshot(name: String, precision: ReducedPrecision) throws {
    var options = KerasConversionOptions()
    options.precision = precision
    let (_, report) = try KerasConverter(options: options).convert(
      KerasArchive(contentsOf: Fixtures.path(name + ".keras")))
    let mismatch = snapshotMismatch(report.summary, named: "keras-\(name)-\(precision)")
    #expect(mismatch == nil, "\(mismatch ?? "")")
  }

  @Test("Converting a converted archive is refused with a clear message")
  func convertingTwice() throws {
    let folder = TemporaryFolder()
    let (once, _) = try KerasConverter(options: KerasConversionOptions()).convert(
      KerasArchive(contentsOf: Fixtures.path("keras_dense.keras")))
    try once.write(to: folder.child("once.keras"))
    let error = #expect(throws: ModelFormatError.self) {
      _ = try KerasConverter(options: KerasConversionOptions()).convert(
        KerasArchive(contentsOf: folder.child("once.keras")))
    }
    #expect(
      error?.description
        == "\(folder.child("once.keras")) (layer 'hidden'): The layer's dtype policy is already "
        + "'mixed_float16'; the model was converted before or built in mixed precision. Convert "
        + "the float32 model instead.")
  }

  @Test("An existing LossScaleOptimizer keeps its inner optimizer and takes the new settings")
  func existingLossScaleOptimizer() throws {
    let original = try KerasArchive(contentsOf: Fixtures.path("keras_dense.keras"))
    let (wrapped, _) = try KerasConverter(options: KerasConversionOptions()).convert(original)
    var float32WithWrapper = original
    float32WithWrapper.config.set("compile_config", try #require(wrapped.config["compile_config"]))
    var options = KerasConversionOptions()
    options.initialScale = 1024
    options.growthSteps = 10
    let (converted, report) = try KerasConverter(options: options).convert(float32WithWrapper)
    #expect(
      report.optimizer
        == "LossScaleOptimizer kept, now dynamic, initial scale 1024.0, growth every 10 steps")
    let optimizer = try #require(converted.config["compile_config"]?["optimizer"])
    #expect(optimizer["config"]?["inner_optimizer"]?["class_name"]?.stringValue == "Adam")
    #expect(optimizer["config"]?["dynamic_growth_steps"] == .number("10"))
  }
}
