internal import TensorCore

extension ModelSummary {
  /// The report `tfmp inspect` prints: stable text (sorted, fixed digits) for people and for
  /// snapshot tests.
  public var text: String {
    var lines: [String] = []
    lines.append("\(format)  \(path)")
    if metaGraphCount == 0 {
      lines.append(
        "  a frozen graph: its placeholders are the inputs, the nodes nothing reads the outputs")
    } else {
      lines.append(
        "  tags: \(tags.joined(separator: ", "))"
          + (tensorflowVersion.isEmpty ? "" : "   written by TensorFlow \(tensorflowVersion)")
          + (metaGraphCount > 1 ? "   (first of \(metaGraphCount) MetaGraphDefs)" : ""))
    }
    lines.append("")
    lines.append("Signatures (\(signatures.count))")
    for signature in signatures {
      lines.append("  \(signature.key)  [\(signature.methodName)]")
      for (label, specs) in [("in ", signature.inputs), ("out", signature.outputs)] {
        for spec in specs {
          let shape = spec.shape.map { Shape($0).description } ?? "unknown rank"
          lines.append("    \(label) \(spec.name): \(spec.dtype) \(shape)  <- \(spec.tensor)")
        }
      }
    }
    lines.append("")
    let nodeCount = opCounts.values.reduce(0, +)
    lines.append("Functions (\(functions.count)), \(nodeCount) nodes in all")
    for function in functions {
      lines.append("  \(function.name)  \(function.nodeCount) nodes")
    }
    lines.append("Ops by type: " + Self.counts(opCounts))
    lines.append("")
    lines.append(
      metaGraphCount == 0
        ? "Variables: none (a frozen graph's weights are constants)"
        : "Variables: \(variables.count) (\(variables.checkpointEntryCount) checkpoint entries, "
          + "\(Self.bytes(variables.checkpointBytes)) of tensor data)")
    if !variables.bytesByDType.isEmpty {
      lines.append(
        "  by dtype: "
          + variables.bytesByDType.sorted { $0.key < $1.key }.map {
            "\($0.key) \(Self.bytes($0.value))"
          }
          .joined(separator: ", "))
    }
    if !variables.largest.isEmpty {
      lines.append("  largest:")
      for variable in variables.largest {
        let copies =
          variable.checkpointKeys.count > 1 ? "  (stored \(variable.checkpointKeys.count)x)" : ""
        lines.append(
          "    \(variable.name)  \(variable.dtype) \(Shape(variable.shape))  "
            + "\(Self.bytes(variable.bytes))\(copies)")
      }
    }
    lines.append("")
    lines += rangeReport.lines(of: "variables and constants")
    return lines.joined(separator: "\n") + "\n"
  }
}

extension ModelSummary.RangeReport {
  /// The range report's text lines; `kinds` says what the tensors are.
  func lines(of kinds: String) -> [String] {
    let rangeReport = self
    var lines: [String] = []
    lines.append(
      "Range report: \(rangeReport.tensorCount) float tensors (\(kinds)), "
        + "\(rangeReport.float16.total) values")
    for (name, counts) in [("float16", rangeReport.float16), ("bfloat16", rangeReport.bfloat16)] {
      lines.append(
        "  \(name + String(repeating: " ", count: 9 - name.count)) \(Self.describe(counts))")
    }
    lines.append(
      "  largest magnitude: \(ModelSummary.scientific(rangeReport.float16.largestMagnitude))")
    if rangeReport.worst.isEmpty {
      lines.append("  every value fits both types.")
    } else {
      lines.append(
        "  affected tensors: \(rangeReport.affectedTensorCount)"
          + (rangeReport.affectedTensorCount > rangeReport.worst.count
            ? " (worst \(rangeReport.worst.count) shown)" : ""))
      for entry in rangeReport.worst {
        lines.append(
          "    \(entry.kind) \(entry.name)  \(entry.dtype), \(entry.float16.total) values")
        lines.append("      float16:  \(Self.describe(entry.float16))")
        lines.append("      bfloat16: \(Self.describe(entry.bfloat16))")
      }
    }
    return lines
  }

  private static func describe(_ counts: RangeCounts) -> String {
    "overflow \(counts.overflow), flush to zero \(counts.flushToZero), "
      + "subnormal \(counts.subnormal)"
      + (counts.nonFinite > 0 ? ", already inf/NaN \(counts.nonFinite)" : "")
  }

}

extension ModelSummary {
  static func counts(_ counts: [String: Int]) -> String {
    counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { "\($0.key) \($0.value)" }
      .joined(separator: ", ")
  }

  /// Bytes with a binary unit and one decimal: `2.5 KiB`; plain for under 1 KiB.
  package static func bytes(_ count: Int) -> String {
    let units = ["KiB", "MiB", "GiB", "TiB"]
    guard count >= 1024 else { return "\(count) B" }
    var value = Double(count) / 1024
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
      value /= 1024
      unit += 1
    }
    return "\(fixed(value, digits: 1)) \(units[unit])"
  }

  /// `value` with exactly `digits` decimals, rounded half away from zero.
  static func fixed(_ value: Double, digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (value * scale).rounded()
    let whole = Int(scaled / scale)
    let fraction = Int(abs(scaled) - abs(Double(whole)) * scale)
    let fractionText = String(fraction)
    return "\(whole)." + String(repeating: "0", count: digits - fractionText.count) + fractionText
  }

  /// A magnitude in scientific notation with 3 significant digits: `1.23e+04`.
  static func scientific(_ value: Float) -> String {
    guard value > 0, value.isFinite else { return value == 0 ? "0" : "\(value)" }
    var exponent = 0
    var mantissa = Double(value)
    while mantissa >= 10 {
      mantissa /= 10
      exponent += 1
    }
    while mantissa < 1 {
      mantissa *= 10
      exponent -= 1
    }
    if (mantissa * 100).rounded() >= 1000 {
      mantissa /= 10
      exponent += 1
    }
    let sign = exponent < 0 ? "-" : "+"
    let digits = String(abs(exponent))
    return "\(fixed(mantissa, digits: 2))e\(sign)\(digits.count < 2 ? "0" + digits : digits)"
  }
}
