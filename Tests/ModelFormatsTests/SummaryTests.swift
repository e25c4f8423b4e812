import Testing
import _TestSupport

@testable import ModelFormats

@Suite("tfmp inspect summaries")
struct SummaryTests {
  @Test("Each fixture's summary matches its snapshot", arguments: Fixtures.savedModels)
  func summarySnapshot(fixture: String) throws {
    var summary = try SavedModel(contentsOf: Fixtures.path(fixture)).summary()
    summary.path = "<fixtures>/\(fixture)"
    let mismatch = snapshotMismatch(summary.text, named: "inspect-\(fixture)")
    #expect(mismatch == nil, "\(mismatch ?? "")")
  }

  @Test("A Keras export's twice-stored weights count once")
  func kerasWeightsCountOnce() throws {
    let summary = try SavedModel(contentsOf: Fixtures.path("mlp")).summary()
    // Dense(32) and Dense(10): two kernels and two biases, each under variables/i and
    // _all_variables/j.
    #expect(summary.variables.count == 4)
    #expect(summary.variables.checkpointEntryCount == 8)
    #expect(summary.variables.bytesByDType == ["float32": (20 * 32 + 32 + 32 * 10 + 10) * 4])
    #expect(summary.variables.largest.first?.checkpointKeys.count == 2)
  }

  @Test("Magnitudes and byte counts print with fixed digits")
  func numberFormatting() {
    #expect(ModelSummary.scientific(12_345) == "1.23e+04")
    #expect(ModelSummary.scientific(9.996) == "1.00e+01")
    #expect(ModelSummary.scientific(6.1e-5) == "6.10e-05")
    #expect(ModelSummary.bytes(512) == "512 B")
    #expect(ModelSummary.bytes(1536) == "1.5 KiB")
    #expect(ModelSummary.bytes(440 * 1024 * 1024) == "440.0 MiB")
  }
}
