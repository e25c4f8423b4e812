import AccuracySearch
import Foundation
import MixedPrecision
import ModelFormats
import Reports
import TensorCore
import Testing
import Validation
import _TestSupport

@Suite("Magnitude histograms")
struct MagnitudeHistogramTests {
  @Test("Each finite nonzero value counts in the bin of its binary exponent")
  func bins() {
    var histogram = MagnitudeHistogram()
    histogram.add([
      0, 1, -1.5, 3, 65504, 70000, 6e-8, .infinity, .nan, -0.0, .leastNonzeroMagnitude,
      -1e-40, -.greatestFiniteMagnitude,
    ])
    #expect(histogram.zeros == 2 && histogram.nonFinite == 2 && histogram.nonzeroCount == 9)
    func bin(_ exponent: Int) -> Int {
      histogram.counts[exponent - MagnitudeHistogram.lowestExponent]
    }
    #expect(bin(0) == 2 && bin(1) == 1 && bin(15) == 1 && bin(16) == 1 && bin(-24) == 1)
    #expect(bin(-149) == 1 && bin(-133) == 1 && bin(127) == 1)  // subnormals, the largest
    #expect(histogram.exponentRange == -149...127)
    #expect(histogram.count(atLeast: 16) == 2 && histogram.count(atLeast: 15) == 3)
    #expect(histogram.count(below: -14) == 3 && histogram.count(below: -149) == 0)
    var twice = histogram
    twice.merge(histogram)
    #expect(twice.nonzeroCount == 18 && twice.zeros == 4 && twice.nonFinite == 4)
    #expect(MagnitudeHistogram().exponentRange == nil)
  }
}

@Suite("Conversion reports")
struct ReportsTests {
  /// The attention fixture converted, with its record: verification, profile and search.
  private func record(_ folder: TemporaryFolder) throws -> ConversionRecord {
    let original = try GraphModel(contentsOf: Fixtures.path("attention"))
    let inputs = try NumPyFile.readArchive(at: Fixtures.path("attention.inputs.npz"))
    var searcher = PrecisionSearch(
      conversion: ConversionOptions(), tolerances: [Tolerance(.maxAbs, 1e-4)])
    searcher.inputs = inputs
    let search = try searcher.run(on: original).outcome
    var options = ConversionOptions()
    options.float32Nodes = Set(search.float32Nodes.map(\.node))
    let (model, conversion) = try Converter(options: options).convert(original)
    try model.write(to: folder.child("attention"))
    let converted = try GraphModel(contentsOf: folder.child("attention"))
    let verification = try ConversionCheck.check(
      original: original, converted: converted, inputs: inputs, tolerance: 0.1)
    let profile = try ConversionProfile.measure(
      original: original, converted: converted, inputs: inputs, precision: .float16)
    return ConversionRecord(
      input: "fixtures/<attention>", output: folder.child("attention"), conversion: conversion,
      search: search, verification: verification, profile: profile)
  }

  @Test("The profile measures every converted node, the magnitudes and the matrix dimensions")
  func profile() throws {
    let folder = TemporaryFolder()
    let profile = try #require(try record(folder).profile)
    #expect(profile.signatures == ["serve", "serving_default"] && profile.skipped.isEmpty)
    #expect(profile.modelRuns == 8)  // per signature: original, conversion, backward, fed
    // The backward pass ran: reduced-precision nodes have their share of the output error.
    #expect(profile.unattributed == nil)
    #expect(profile.nodes.contains { ($0.errorShare ?? 0) > 0 })
    // The original's activations and weights were seen; float32 weights are nonzero.
    #expect(profile.activations.nonzeroCount > 0 && profile.weights.nonzeroCount > 0)
    // Matrix products: k and n from the second operand and the output.
    let products = profile.matrixShapes.filter {
      $0.op == "MatMul" || $0.op.hasPrefix("BatchMatMul")
    }
    #expect(!products.isEmpty)
    for shape in products {
      let names = shape.dimensions.map(\.name)
      #expect(names == ["k", "n"], "\(shape)")
      let weights = try #require(shape.inputShapes.last)
      #expect(shape.dimensions.allSatisfy { weights.contains($0.size) }, "\(shape)")
    }
    // A reduced-precision node fed the original's values errs by a few ulps of float16 at most.
    let reduced = profile.nodes.filter { ["MatMul", "BatchMatMulV2", "Einsum"].contains($0.op) }
    #expect(!reduced.isEmpty)
    #expect(reduced.allSatisfy { $0.ownError < 0.05 && $0.magnitude > 0 && $0.inputMagnitude > 0 })
    #expect(profile.accuracy.count == 2 && profile.accuracy.allSatisfy { $0.mismatches.isEmpty })
  }

  @Test("The JSON report keeps the conversion's fields at the top level and reads back")
  func json() throws {
    let folder = TemporaryFolder()
    let record = try record(folder)
    let data = try ConversionRecord.encoder().encode(record)
    let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    for key in [
      "nodes", "castsInserted", "convertedOpCount", "variables", "input", "output", "search",
      "verification", "profile",
    ] {
      #expect(object[key] != nil, "\(key)")
    }
    let decoded = try ConversionRecord.decoder().decode(ConversionRecord.self, from: data)
    #expect(decoded.conversion.nodes == record.conversion.nodes)
    #expect(decoded.profile?.nodes == record.profile?.nodes)
    #expect(decoded.search?.float32Nodes == record.search?.float32Nodes)
  }

  @Test("The HTML page holds every section, escapes names and loads nothing from elsewhere")
  func html() throws {
    let folder = TemporaryFolder()
    let record = try record(folder)
    let page = HTMLReport.page(record)
    #expect(page.hasPrefix("<!DOCTYPE html>"))
    for section in [
      "Outputs against the original", "Magnitudes against the reduced types' limits",
      "Matrix ops and Tensor Cores", "Nodes by function", "Variables", "the lists alone",
      "Where the output error comes from", "share of the output error",
      "as written",
    ] {
      #expect(page.contains(section), "\(section)")
    }
    #expect(page.contains("fixtures/&lt;attention&gt;") && !page.contains("<attention>"))
    // Every node of the conversion report has its row; the search's nodes say so.
    for node in record.conversion.nodes {
      #expect(page.contains(">\(node.name)</td>"), "\(node.name)")
    }
    let search = try #require(record.search)
    #expect(!search.float32Nodes.isEmpty)
    #expect(page.contains("kept float32 by the accuracy search (own error"))
    // Self-contained: no script, no stylesheet or image from elsewhere.
    for forbidden in ["<script", "http://", "https://", "src=", "<link", "@import", "url("] {
      #expect(!page.contains(forbidden), "\(forbidden)")
    }
    // One bar per nonempty bin of the activations, on an axis that covers them.
    let profile = try #require(record.profile)
    let chart = HTMLReport.histogram(profile.activations, title: "a")
    let bars = chart.components(separatedBy: "class=\"bar\"").count - 1
    #expect(bars == profile.activations.counts.count { $0 > 0 })
  }

  @Test("A .keras page lists every layer with its policy")
  func keras() throws {
    let archive = try KerasArchive(contentsOf: Fixtures.path("keras_cnn.keras"))
    let (_, report) = try KerasConverter(options: KerasConversionOptions()).convert(archive)
    let page = HTMLReport.page(report, input: "cnn.keras", output: "out.keras")
    #expect(!report.layers.isEmpty)
    for layer in report.layers { #expect(page.contains(">\(layer.name)</td>"), "\(layer.name)") }
    #expect(page.contains("mixed_float16") && !page.contains("<script"))
  }
}
