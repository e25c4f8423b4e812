public import MixedPrecision
internal import AccuracySearch
internal import Foundation
package import TensorCore
internal import Validation
internal import ModelFormats

/// The conversion report as one self-contained HTML page (inline styles and SVG, no script, no
/// request to anywhere), for `tfmp convert --report FILE.html`: what was converted and kept, each
/// output's error, the magnitudes of activations and weights against the float16 and bfloat16
/// limits, the matrix ops whose dimensions Tensor Cores run slower, and every node by function.
public enum HTMLReport {
  /// The page for a SavedModel or frozen-graph conversion.
  public static func page(_ record: ConversionRecord) -> String {
    var body = header(record)
    body += outputs(record)
    if let profile = record.profile {
      body += errorSources(profile)
      body += magnitudes(profile, conversion: record.conversion)
      body += matrixShapes(profile)
    }
    body += nodes(record)
    body += variables(record.conversion)
    return document(title: "tfmp: \(record.input)", body: body)
  }

  /// The page for a `.keras` conversion: every layer's policy and why.
  public static func page(_ report: KerasConversionReport, input: String, output: String)
    -> String
  {
    let mixed = report.layers.filter { $0.policy == report.policy }.count
    var body = "<h1>\(escape(input)) &rarr; \(escape(output))</h1>\n"
    body += cards([
      ("policy", report.policy),
      ("layers set to \(report.policy)", "\(mixed) of \(report.layers.count)"),
      ("optimizer", report.optimizer),
    ])
    body += "<h2>Layers</h2>\n"
    body += table(
      ["layer", "class", "policy", "why"],
      report.layers.map { layer in
        [
          escape(layer.name), escape(layer.className),
          badge(layer.policy, reduced: layer.policy == report.policy), escape(layer.reason),
        ]
      })
    return document(title: "tfmp: \(input)", body: body)
  }

  // MARK: Sections

  private static func header(_ record: ConversionRecord) -> String {
    let conversion = record.conversion
    let precision = conversion.precision.rawValue
    let percent =
      conversion.computeOpCount == 0
      ? 0 : 100 * conversion.convertedOpCount / conversion.computeOpCount
    var facts: [(String, String)] = [
      ("policy", "mixed_\(precision), weights \(conversion.weights.rawValue)"),
      (
        "compute ops in \(precision)",
        "\(conversion.convertedOpCount) of \(conversion.computeOpCount) (\(percent)%)"
      ),
      ("casts inserted", "\(conversion.castsInserted)"),
      (
        "weights",
        "\(ModelSummary.bytes(conversion.weightBytesBefore)) &rarr; "
          + "\(ModelSummary.bytes(conversion.weightBytesAfter))"
      ),
    ]
    if let verification = record.verification {
      facts.append(
        (
          "verification",
          verification.failure != nil
            ? "refused" : verification.checked.isEmpty ? "not run" : "passed"
        ))
    }
    if let search = record.search {
      facts.append(
        (
          "accuracy search",
          "\(search.met ? "met" : "not met"), \(search.float32Nodes.count) kept float32, "
            + "\(search.modelRuns) runs, \(format(search.seconds, digits: 2)) s"
        ))
    }
    var html = "<h1>\(escape(record.input)) &rarr; \(escape(record.output))</h1>\n"
    html += cards(facts)
    if let failure = record.verification?.failure {
      html +=
        "<p class=\"bad\">Verification refused the conversion: \(escape(failure.description)).</p>\n"
    }
    for skipped in (record.verification?.skipped ?? []) + (record.profile?.skipped ?? []) {
      html += "<p class=\"note\">Not run: \(escape(skipped))</p>\n"
    }
    return html
  }

  private static func outputs(_ record: ConversionRecord) -> String {
    let columns: [(String, (AccuracyReport.Output) -> String)] = [
      ("max abs", { format($0.maxAbsoluteError) }),
      ("max rel", { format($0.maxRelativeError) }),
      ("mean rel", { format($0.meanRelativeError) }),
      ("cosine", { String(format: "%.6f", $0.cosineSimilarity) }),
      ("top-1", { $0.top1Agreement.map { String(format: "%.1f%%", 100 * $0) } ?? "" }),
    ]
    var runs: [(String, [AccuracyReport])] = []
    if let search = record.search {
      runs.append(("the lists alone", search.before))
      runs.append(("as written", search.after))
    } else if let profile = record.profile {
      runs.append(("as written", profile.accuracy))
    }
    guard !runs.isEmpty else { return "" }
    var html = "<h2>Outputs against the original</h2>\n"
    let inputs = record.profile?.inputs ?? record.search?.after.first?.inputs ?? ""
    html +=
      "<p class=\"note\">On \(inputs == "calibration" ? "the calibration inputs" : escape(inputs)).</p>\n"
    if let search = record.search {
      html +=
        "<p>Tolerances: \(search.tolerances.map { escape($0.description) }.joined(separator: ", ")).</p>\n"
    }
    var rows: [[String]] = []
    for (label, reports) in runs {
      for report in reports {
        for output in report.outputs {
          let met = record.search.map { search in
            search.tolerances.allSatisfy { $0.isMet(by: output) }
          }
          let name = escape("\(report.signature).\(output.name)")
          rows.append(
            [name, label] + columns.map { $0.1(output) }
              + [
                met.map {
                  $0 ? "<span class=\"good\">met</span>" : "<span class=\"bad\">not met</span>"
                } ?? ""
              ])
        }
      }
    }
    html += table(["output", "conversion"] + columns.map(\.0) + [""], rows)
    return html
  }

  private static func magnitudes(_ profile: ConversionProfile, conversion: ConversionReport)
    -> String
  {
    let precision = conversion.precision
    var html = "<h2>Magnitudes against the reduced types' limits</h2>\n"
    html +=
      "<p class=\"note\">|x| of the original's values, on a base-2 scale; float16 keeps "
      + "2<sup>-24</sup> to 65504 (normal from 2<sup>-14</sup>), bfloat16 2<sup>-133</sup> to "
      + "3.4&times;10<sup>38</sup>. Shaded: where float16 flushes to zero or overflows (red) "
      + "and where it is subnormal (amber). Counts on a logarithmic axis.</p>\n"
    html += "<div class=\"row\">\n"
    html += histogram(profile.activations, title: "activations (every node's outputs)")
    html += histogram(profile.weights, title: "weights and constants")
    html += "</div>\n"
    // The compute nodes whose original values the reduced type cannot hold, overflow first.
    let precisions = Dictionary(
      conversion.nodes.map {
        (QualifiedNodeName(function: $0.function, node: $0.name), $0.precision)
      },
      uniquingKeysWith: { first, _ in first })
    let risky = profile.nodes.filter { node in
      precisions[node.node] != nil && (node.overflows || node.flushedShare > 0)
    }.sorted {
      ($0.overflows ? 1 : 0, $0.flushedShare, $0.magnitude)
        > ($1.overflows ? 1 : 0, $1.flushedShare, $1.magnitude)
    }
    if !risky.isEmpty {
      html += "<h3>Compute nodes whose values \(precision.rawValue) cannot hold</h3>\n"
      html += table(
        [
          "node", "op", "function", "largest |output|", "overflows", "flushed to zero",
          "computes in",
        ],
        risky.prefix(50).map { node in
          let computes = precisions[node.node] ?? "float32"
          return [
            escape(node.node.node), escape(node.op), escape(node.node.function),
            format(node.magnitude), node.overflows ? "<span class=\"bad\">yes</span>" : "no",
            String(format: "%.2f%%", 100 * node.flushedShare),
            badge(computes, reduced: computes != "float32"),
          ]
        })
    }
    return html
  }

  /// The nodes that make most of the outputs' error, by their share of it.
  private static func errorSources(_ profile: ConversionProfile) -> String {
    var html = "<h2>Where the output error comes from</h2>\n"
    if let unattributed = profile.unattributed {
      return html + "<p class=\"note\">Not measured: \(escape(unattributed)).</p>\n"
    }
    let sources = profile.nodes.filter { ($0.errorShare ?? 0) > 0 }.sorted {
      ($0.errorShare ?? 0, $0.node.description) > ($1.errorShare ?? 0, $1.node.description)
    }
    guard !sources.isEmpty else { return "" }
    html +=
      "<p class=\"note\">Each reduced-precision node's share of the error the outputs show, to "
      + "first order: its own error (fed the original's values, rounded to the types it reads) "
      + "carried to the outputs by the original's gradient and projected on the outputs' "
      + "error. A negative share cancels some of the error. A value rounded between two "
      + "reduced-precision nodes counts in both, so neighbours' shares overlap and add up to "
      + "more than 100%: keeping a node float32 (<code>--fp32-node</code>) removes at most its "
      + "share, and only what its float32 neighbours no longer round.</p>\n"
    html += table(
      ["node", "op", "function", "share of the output error", "own error"],
      sources.prefix(15).map { node in
        [
          escape(node.node.node), escape(node.op), escape(node.node.function),
          String(format: "%.1f%%", 100 * (node.errorShare ?? 0)), format(node.ownError),
        ]
      })
    return html
  }

  private static func matrixShapes(_ profile: ConversionProfile) -> String {
    let misaligned = profile.matrixShapes.filter { !$0.misaligned.isEmpty }
    var html = "<h2>Matrix ops and Tensor Cores</h2>\n"
    html +=
      "<p>\(misaligned.count) of \(profile.matrixShapes.count) matrix ops have a dimension the "
      + "model fixes that is not a multiple of 8 (a dense layer's input or output size, a "
      + "convolution's channels): Tensor Cores run those slower, or not at all.</p>\n"
    guard !misaligned.isEmpty else { return html }
    html += table(
      ["node", "op", "function", "input shapes", "not a multiple of 8"],
      misaligned.prefix(200).map { shape in
        [
          escape(shape.node.node), escape(shape.op), escape(shape.node.function),
          shape.inputShapes.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }
            .joined(separator: " &middot; "),
          shape.misaligned.map { "\($0.name) = \($0.size)" }.joined(separator: ", "),
        ]
      })
    return html
  }

  private static func nodes(_ record: ConversionRecord) -> String {
    let conversion = record.conversion
    let measured = Dictionary(
      (record.profile?.nodes ?? []).map { ($0.node, $0) }, uniquingKeysWith: { first, _ in first })
    let searched = Dictionary(
      (record.search?.float32Nodes ?? []).map { ($0.node, $0) },
      uniquingKeysWith: { first, _ in first })
    var order: [String] = []
    var byFunction: [String: [ConversionReport.Node]] = [:]
    for node in conversion.nodes {
      if byFunction[node.function] == nil { order.append(node.function) }
      byFunction[node.function, default: []].append(node)
    }
    var html = "<h2>Nodes by function</h2>\n"
    html +=
      "<p class=\"note\">Own error: the node's largest error relative to its output's scale when "
      + "fed the original's values, apart from what flows into it.</p>\n"
    let open = conversion.nodes.count <= 400
    for function in order {
      let nodes = byFunction[function] ?? []
      let reduced = nodes.filter { $0.precision != "float32" }.count
      html +=
        "<details\(open ? " open" : "")><summary><code>\(escape(function))</code>: \(reduced) of "
        + "\(nodes.count) in \(conversion.precision.rawValue)</summary>\n"
      html += table(
        [
          "node", "op", "precision", "why", "own error", "share of output error",
          "largest |input|", "largest |output|",
        ],
        nodes.map { node in
          let name = QualifiedNodeName(function: node.function, node: node.name)
          let measurement = measured[name]
          var why = escape(node.reason.rawValue)
          if let kept = searched[name] {
            why += " (own error \(format(kept.ownError)) when reduced)"
          }
          return [
            escape(node.name), escape(node.op),
            badge(node.precision, reduced: node.precision != "float32"), why,
            measurement.map { format($0.ownError) } ?? "",
            measurement?.errorShare.map { String(format: "%.1f%%", 100 * $0) } ?? "",
            measurement.map { format($0.inputMagnitude) } ?? "",
            measurement.map { format($0.magnitude) } ?? "",
          ]
        })
      html += "</details>\n"
    }
    return html
  }

  private static func variables(_ conversion: ConversionReport) -> String {
    guard !conversion.variables.isEmpty else { return "" }
    var html = "<h2>Variables</h2>\n<details><summary>\(conversion.variables.count) variables"
    html += "</summary>\n"
    html += table(
      ["variable", "stored as", "why"],
      conversion.variables.map { variable in
        [
          escape(variable.name), badge(variable.dtype, reduced: variable.dtype != "float32"),
          escape(variable.reason),
        ]
      })
    return html + "</details>\n"
  }

  // MARK: The histogram

  /// An SVG bar chart of `histogram`'s bins on a base-2 axis, float16's ranges shaded.
  package static func histogram(_ histogram: MagnitudeHistogram, title: String) -> String {
    let (width, height, left, right, bottom, top) = (520.0, 200.0, 44.0, 20.0, 34.0, 22.0)
    let data = histogram.exponentRange ?? 0...0
    // The axis spans the data and float16's limits, on whole multiples of 8.
    let low = (min(data.lowerBound, -26) - 7) / 8 * 8
    let high = (max(data.upperBound, 17) + 8) / 8 * 8
    let span = Double(high - low)
    func x(_ exponent: Int) -> Double {
      left + (width - left - right) * Double(exponent - low) / span
    }
    let peak = log10(Double(max(histogram.counts.max() ?? 1, 1)) + 1)
    func y(_ count: Int) -> Double {
      let plot = height - bottom - top
      return height - bottom - plot * log10(Double(count) + 1) / max(peak, 1e-9)
    }
    var svg =
      "<svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" "
      + "height=\"\(Int(height))\" role=\"img\" aria-label=\"\(escape(title))\">\n"
    svg +=
      "<text x=\"\(left)\" y=\"14\" class=\"title\">\(escape(title)): "
      + "\(histogram.nonzeroCount) nonzero, \(histogram.zeros) zero</text>\n"
    // float16: flushed to zero below 2^-25, subnormal to 2^-14, overflow from 2^16.
    let zones: [(Int, Int, String, String)] = [
      (low, -25, "flush", "float16 flushes to zero"),
      (-25, -14, "subnormal", "float16 subnormal"),
      (16, high, "overflow", "float16 overflows"),
    ]
    for (from, to, style, label) in zones where from < to {
      svg +=
        "<rect class=\"\(style)\" x=\"\(x(from))\" y=\"\(top)\" width=\"\(x(to) - x(from))\" "
        + "height=\"\(height - bottom - top)\"><title>\(label)</title></rect>\n"
    }
    let bar = max((width - left - right) / span - 1, 1)
    for (index, count) in histogram.counts.enumerated() where count > 0 {
      let exponent = index + MagnitudeHistogram.lowestExponent
      guard (low..<high).contains(exponent) else { continue }
      svg +=
        "<rect class=\"bar\" x=\"\(x(exponent))\" y=\"\(y(count))\" width=\"\(bar)\" "
        + "height=\"\(height - bottom - y(count))\"><title>\(count) in [2^\(exponent), "
        + "2^\(exponent + 1))</title></rect>\n"
    }
    svg +=
      "<line class=\"axis\" x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - right)\" "
      + "y2=\"\(height - bottom)\"/>\n"
    for exponent in stride(from: low, through: high, by: 8) {
      svg +=
        "<text x=\"\(x(exponent))\" y=\"\(height - bottom + 16)\" class=\"tick\">"
        + "2<tspan dy=\"-5\" font-size=\"9\">\(exponent)</tspan></text>\n"
    }
    svg += "<text x=\"4\" y=\"\(top + 8)\" class=\"tick\">\(histogram.counts.max() ?? 0)</text>\n"
    svg += "</svg>\n"
    let overflow = histogram.count(atLeast: 16)
    let flushed = histogram.count(below: -25)
    let subnormal = histogram.count(below: -14) - flushed
    let bfloat16 = histogram.count(atLeast: 128) + histogram.count(below: -133)
    return "<figure>\n" + svg
      + "<figcaption>float16: \(overflow) at or above 2<sup>16</sup>, \(flushed) flushed to zero, "
      + "\(subnormal) subnormal; bfloat16: \(bfloat16) out of range"
      + (histogram.nonFinite > 0 ? "; \(histogram.nonFinite) inf or NaN in the original" : "")
      + ".</figcaption>\n</figure>\n"
  }

  // MARK: HTML

  private static func document(title: String, body: String) -> String {
    """
    <!DOCTYPE html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>\(escape(title))</title>
    <style>
    body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330;
      margin: 0 auto; padding: 16px 24px 48px; max-width: 1180px; }
    h1 { font-size: 20px; margin: 8px 0 14px; word-break: break-all; }
    h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d8dce4; padding-bottom: 4px; }
    h3 { font-size: 15px; margin: 18px 0 6px; }
    .cards { display: flex; flex-wrap: wrap; gap: 10px; }
    .card { border: 1px solid #d8dce4; border-radius: 6px; padding: 8px 12px; min-width: 150px; }
    .card .label { color: #5a6375; font-size: 12px; }
    .card .value { font-size: 16px; font-weight: 600; }
    table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
    th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eceef3; vertical-align: top; }
    th { background: #f3f5f9; position: sticky; top: 0; }
    td { word-break: break-word; }
    .badge { border-radius: 4px; padding: 0 6px; font-size: 12px; white-space: nowrap; }
    .reduced { background: #d9f2e3; color: #145c32; }
    .full { background: #fde9d9; color: #7a3608; }
    .good { color: #1a7f45; font-weight: 600; }
    .bad { color: #b42318; font-weight: 600; }
    .note { color: #5a6375; }
    details { margin: 4px 0; }
    summary { cursor: pointer; padding: 3px 0; }
    .row { display: flex; flex-wrap: wrap; gap: 16px; }
    figure { margin: 0; }
    figcaption { font-size: 12px; color: #5a6375; max-width: 520px; }
    svg .bar { fill: #3b6fd4; }
    svg .flush { fill: #f4c7c3; }
    svg .subnormal { fill: #fbe7c6; }
    svg .overflow { fill: #f4c7c3; }
    svg .axis { stroke: #1d2330; }
    svg .tick { font-size: 11px; fill: #5a6375; }
    svg .title { font-size: 12px; fill: #1d2330; }
    </style>
    </head>
    <body>
    \(body)<p class="note">Written by tfmp.</p>
    </body>
    </html>

    """
  }

  private static func cards(_ facts: [(String, String)]) -> String {
    "<div class=\"cards\">\n"
      + facts.map { label, value in
        "<div class=\"card\"><div class=\"label\">\(escape(label))</div>"
          + "<div class=\"value\">\(value)</div></div>\n"
      }.joined() + "</div>\n"
  }

  /// A table of `rows` (cells already HTML) under `headers`.
  private static func table(_ headers: [String], _ rows: [[String]]) -> String {
    "<table>\n<thead><tr>" + headers.map { "<th>\(escape($0))</th>" }.joined()
      + "</tr></thead>\n<tbody>\n"
      + rows.map { "<tr>" + $0.map { "<td>\($0)</td>" }.joined() + "</tr>\n" }.joined()
      + "</tbody>\n</table>\n"
  }

  private static func badge(_ text: String, reduced: Bool) -> String {
    "<span class=\"badge \(reduced ? "reduced" : "full")\">\(escape(text))</span>"
  }

  private static func format(_ value: Double, digits: Int = 3) -> String {
    String(format: "%.\(digits)g", value)
  }

  /// `text` with the characters HTML gives meaning to escaped.
  static func escape(_ text: String) -> String {
    var escaped = ""
    for character in text {
      switch character {
      case "&": escaped += "&amp;"
      case "<": escaped += "&lt;"
      case ">": escaped += "&gt;"
      case "\"": escaped += "&quot;"
      case "'": escaped += "&#39;"
      default: escaped.append(character)
      }
    }
    return escaped
  }
}
