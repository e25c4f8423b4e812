public import TensorCore
public import ModelFormats
internal import CPURuntime
internal import Foundation

/// How a candidate model's outputs compare with a reference model's on the same inputs.
public struct AccuracyReport: Sendable, Codable {
  /// One output's comparison.
  public struct Output: Sendable, Codable {
    /// The output's name in the signature.
    public var name: String
    /// The largest |candidate - reference|.
    public var maxAbsoluteError: Double
    /// The largest |candidate - reference| / |reference| over nonzero references.
    public var maxRelativeError: Double
    /// The mean of that relative error.
    public var meanRelativeError: Double
    /// The cosine of the angle between the two outputs as vectors.
    public var cosineSimilarity: Double
    /// For classifier-shaped outputs ([batch, classes]): the share of rows with the same arg max.
    public var top1Agreement: Double?
    /// Elements outside atol + rtol * |reference|.
    public var elementsOutsideTolerance: Int
    /// Elements compared.
    public var elementCount: Int
  }

  /// The signature compared.
  public var signature: String
  /// The relative tolerance: an element passes when |candidate - reference| <= atol + rtol *
  /// |reference|.
  public var rtol: Double
  /// The absolute tolerance (see ``rtol``).
  public var atol: Double
  /// Where the inputs came from.
  public var inputs: String
  /// The outputs, sorted by name.
  public var outputs: [Output]
  /// Why outputs could not be compared: missing from one model, of different shapes, not
  /// numeric. Any makes the comparison fail.
  public var mismatches: [String]

  /// Whether both models give the same outputs and every element of every output is within
  /// tolerance.
  public var passed: Bool {
    mismatches.isEmpty && outputs.allSatisfy { $0.elementsOutsideTolerance == 0 }
  }

  /// The report `tfmp validate` prints.
  public var text: String {
    var lines = [
      "signature \(signature), inputs: \(inputs), tolerance |diff| <= \(atol) + \(rtol) * |reference|"
    ]
    for output in outputs {
      lines.append(
        "  \(output.name): max abs \(Self.format(output.maxAbsoluteError)), max rel \(Self.format(output.maxRelativeError)), "
          + "mean rel \(Self.format(output.meanRelativeError)), cosine \(String(format: "%.6f", output.cosineSimilarity))"
          + (output.top1Agreement.map { ", top-1 agreement \(String(format: "%.2f", 100 * $0))%" }
            ?? "")
          + ", \(output.elementsOutsideTolerance) of \(output.elementCount) outside tolerance")
    }
    for mismatch in mismatches { lines.append("  \(mismatch)") }
    lines.append(
      passed
        ? "PASS"
        : mismatches.isEmpty
          ? "FAIL: outputs differ beyond the tolerance" : "FAIL: the outputs do not correspond")
    return lines.joined(separator: "\n") + "\n"
  }

  private static func format(_ value: Double) -> String { String(format: "%.3e", value) }
}

/// Compares two SavedModels output by output.
public enum ModelComparison {
  /// Runs `reference` and `candidate` on the same inputs and compares their outputs.
  ///
  /// - Parameters:
  ///   - reference: The model whose outputs count as right.
  ///   - candidate: The model compared with it.
  ///   - signature: The signature key both models run.
  ///   - inputs: The inputs, keyed by signature input name; `nil` draws `samples` random rows
  ///     (seeded): floats from a standard normal, integers from {0, 1} (valid as indices),
  ///     strings from the reference's lookup-table keys and a few words of no model's.
  ///   - samples: The batch size of random inputs (unknown dimensions other than the first get 1).
  ///   - seed: The seed of the random inputs.
  ///   - rtol: The relative tolerance (see ``AccuracyReport/rtol``).
  ///   - atol: The absolute tolerance.
  ///   - limits: What running the models may create.
  /// - Returns: Each output's errors, and the outputs that do not correspond.
  /// - Throws: Whatever running the models throws; `RuntimeError` when the signatures differ.
  public static func compare(
    reference: GraphModel, candidate: GraphModel, signature: String, inputs: [String: Tensor]?,
    samples: Int = 8, seed: UInt64 = 0, rtol: Double, atol: Double,
    limits: ResourceLimits = .standard
  ) throws -> AccuracyReport {
    let referenceRunner = try Interpreter(model: reference, limits: limits)
    let candidateRunner = try Interpreter(model: candidate, limits: limits)
    let specs = try referenceRunner.inputSpecs(signature: signature)
    let candidateSpecs = try candidateRunner.inputSpecs(signature: signature)
    let given =
      try inputs
      ?? random(specs, samples: samples, seed: seed, words: referenceRunner.vocabulary())
    let expected = try referenceRunner.run(signature: signature, inputs: given)
    let actual = try candidateRunner.run(
      signature: signature, inputs: rounded(given, for: candidateSpecs))
    return report(
      signature: signature, expected: expected, actual: actual, rtol: rtol, atol: atol,
      inputs: inputs == nil ? "\(samples) random samples, seed \(seed)" : "given")
  }

  /// Compares the outputs `actual` of a candidate with the reference's `expected`, output by
  /// output, into a report saying where the inputs came from (`inputs`).
  public static func report(
    signature: String, expected: [String: Tensor], actual: [String: Tensor], rtol: Double,
    atol: Double, inputs: String
  ) -> AccuracyReport {
    var outputs: [AccuracyReport.Output] = []
    var mismatches: [String] = []
    for name in Set(expected.keys).union(actual.keys).sorted() {
      guard let reference = expected[name] else {
        mismatches.append("\(name): only the candidate has this output")
        continue
      }
      guard let candidate = actual[name] else {
        mismatches.append("\(name): the candidate lacks this output")
        continue
      }
      guard reference.shape == candidate.shape else {
        mismatches.append(
          "\(name): shape \(reference.shape) in the reference, \(candidate.shape) in the candidate")
        continue
      }
      guard let x = reference.floatLikeValues, let y = candidate.floatLikeValues else {
        mismatches.append(
          "\(name): \(reference.dtype) and \(candidate.dtype) values cannot be compared")
        continue
      }
      outputs.append(
        compare(
          name: name, reference: x, candidate: y, shape: reference.shape, rtol: rtol, atol: atol))
    }
    return AccuracyReport(
      signature: signature, rtol: rtol, atol: atol, inputs: inputs, outputs: outputs,
      mismatches: mismatches)
  }

  /// `inputs` for a model whose inputs have `specs`: a candidate with reduced-precision inputs
  /// (`--no-keep-io-types`) gets the same values rounded.
  package static func rounded(
    _ inputs: [String: Tensor], for specs: [String: (dtype: DType, shape: [Int])]
  ) -> [String: Tensor] {
    var rounded = inputs
    for (name, spec) in specs {
      if let tensor = inputs[name], let precision = ReducedPrecision(spec.dtype),
        case .float(let values) = tensor.storage
      {
        rounded[name] = Tensor(
          dtype: spec.dtype, shape: tensor.shape, storage: .float(values.map(precision.rounded)))
      }
    }
    return rounded
  }

  static func compare(
    name: String, reference: [Double], candidate: [Double], shape: Shape, rtol: Double, atol: Double
  ) -> AccuracyReport.Output {
    var (maxAbsolute, maxRelative, sumRelative, relativeCount, outside) = (0.0, 0.0, 0.0, 0, 0)
    var (dot, normReference, normCandidate) = (0.0, 0.0, 0.0)
    for (r, c) in zip(reference, candidate) {
      let difference = abs(c - r)
      maxAbsolute = max(maxAbsolute, difference.isNaN ? .infinity : difference)
      if r != 0 {
        let relative = difference / abs(r)
        maxRelative = max(maxRelative, relative)
        sumRelative += relative
        relativeCount += 1
      }
      if !(difference <= atol + rtol * abs(r)) { outside += 1 }
      dot += r * c
      normReference += r * r
      normCandidate += c * c
    }
    let cosine =
      normReference > 0 && normCandidate > 0
      ? dot / (normReference.squareRoot() * normCandidate.squareRoot()) : 1
    var agreement: Double?
    if shape.rank == 2, let classes = shape.dimensions.last, classes > 1,
      let rows = shape.dimensions.first, rows > 0
    {
      let matches = (0..<rows).filter { row in
        let slice = (row * classes)..<((row + 1) * classes)
        return reference[slice].indices.max { reference[$0] < reference[$1] }
          == candidate[slice].indices.max { candidate[$0] < candidate[$1] }
      }.count
      agreement = Double(matches) / Double(rows)
    }
    return AccuracyReport.Output(
      name: name, maxAbsoluteError: maxAbsolute, maxRelativeError: maxRelative,
      meanRelativeError: relativeCount > 0 ? sumRelative / Double(relativeCount) : 0,
      cosineSimilarity: cosine,
      top1Agreement: agreement, elementsOutsideTolerance: outside, elementCount: reference.count)
  }

  /// Seeded random inputs fitting each input's dtype and shape; strings are drawn from `words`
  /// (asked for only when an input is a string; ``CPURuntime/Interpreter/vocabulary()`` gives
  /// a model's).
  package static func random(
    _ specs: [String: (dtype: DType, shape: [Int])], samples: Int, seed: UInt64,
    words: @autoclosure () throws -> [[UInt8]]
  ) throws -> [String: Tensor] {
    var generator = SeededGenerator(seed: seed)
    var inputs: [String: Tensor] = [:]
    for name in specs.keys.sorted() {
      guard let spec = specs[name] else { continue }
      let dimensions = spec.shape.enumerated().map { axis, size in
        size >= 0 ? size : (axis == 0 ? samples : 1)
      }
      let count = dimensions.reduce(1, *)
      let shape = Shape(dimensions)
      switch spec.dtype {
      case .float32, .float16, .bfloat16:
        let values = (0..<count).map { _ in Float(generator.normal()) }
        let precision = ReducedPrecision(spec.dtype)
        inputs[name] = Tensor(
          dtype: spec.dtype, shape: shape,
          storage: .float(precision.map { p in values.map(p.rounded) } ?? values))
      case .int32:
        inputs[name] = Tensor(
          dtype: .int32, shape: shape,
          storage: .int32((0..<count).map { _ in Int32(generator.next() % 2) }))
      case .int64:
        inputs[name] = Tensor(
          dtype: .int64, shape: shape,
          storage: .int64((0..<count).map { _ in Int64(generator.next() % 2) }))
      case .bool:
        inputs[name] = Tensor(
          dtype: .bool, shape: shape,
          storage: .bool((0..<count).map { _ in generator.next() % 2 == 1 }))
      case .string:
        let words = try words()
        guard !words.isEmpty else {
          throw ModelFormatError(
            code: .unsupported, path: name,
            message: "Random strings need words to draw from; pass --inputs FILE.npz.")
        }
        inputs[name] = Tensor(
          dtype: .string, shape: shape,
          storage: .string(
            (0..<count).map { _ in words[Int(generator.next() % UInt64(words.count))] }))
      case _ where spec.dtype.smallIntegerRange != nil:
        // The whole range: a uint8 input is most often an image's pixels.
        let range = spec.dtype.smallIntegerRange ?? 0...1
        let size = UInt64(range.upperBound - range.lowerBound + 1)
        inputs[name] = Tensor(
          dtype: spec.dtype, shape: shape,
          storage: .int32(
            (0..<count).map { _ in Int32(range.lowerBound + Int64(generator.next() % size)) }))
      default:
        throw ModelFormatError(
          code: .unsupported, path: name,
          message: "Random \(spec.dtype) inputs cannot be drawn; pass --inputs FILE.npz.")
      }
    }
    return inputs
  }
}

extension Tensor {
  /// Float or integer elements as doubles, for comparing outputs.
  package var floatLikeValues: [Double]? {
    switch storage {
    case .float(let values): values.map(Double.init)
    case .double(let values): values
    case .int32(let values): values.map(Double.init)
    case .int64(let values): values.map(Double.init)
    default: nil
    }
  }
}
