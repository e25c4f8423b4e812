internal import CPURuntime
internal import GraphIR
internal import MixedPrecision
internal import ModelFormats
internal import TensorCore

/// First-order attribution of a conversion's output error to its nodes: one backward pass of
/// the original model gives, for every node value v, the gradient g = ∂L/∂v of
/// L = mean over outputs o of ⟨y_o, d_o⟩ / ‖d_o‖², d_o being the conversion's error on output
/// o. A node whose own error is e then moves the outputs along their errors by about ⟨g, e⟩:
/// the share of the error it explains (1 for all of it), whatever the magnitudes, which rank
/// float16 ops far better than their own relative errors do (about 2^-11 for nearly all).
struct ErrorAttribution {
  /// The gradients by node, then by evaluation (the order the inlined graph holds a function's
  /// copies), then by output position.
  var gradients: [QualifiedNodeName: [[Int: Tensor]]] = [:]

  /// Why there is no attribution for a model (the search then ranks by own error).
  struct Unavailable: Error {
    var reason: String
  }

  /// The name of the signature the backward pass adds.
  private static let signatureName = "tfmp_error_attribution"

  /// The gradients of signature `key` of `module` for the nodes' float outputs that `recorded`
  /// (the original's values, by node and evaluation) holds, for the output errors
  /// `actual - expected`.
  ///
  /// - Throws: ``Unavailable`` when the model cannot be differentiated (an op without a
  ///   gradient, a loop) or the backward pass cannot run, or the conversion makes no float output
  ///   error.
  static func measure(
    module: Module, checkpoint: CheckpointReader?, signature key: String,
    inputs: [String: Tensor], expected: [String: Tensor], actual: [String: Tensor],
    recorded: [QualifiedNodeName: [[Tensor?]]], limits: ResourceLimits
  ) throws(Unavailable) -> ErrorAttribution {
    let weights = try outputWeights(expected: expected, actual: actual)
    let inlined: Module
    let origins: [Module.NodeOrigin]
    do {
      (inlined, origins) = try module.inliningCallsTracingOrigins(schemas: OpRegistry.standard)
    } catch {
      throw Unavailable(reason: error.message)
    }
    var targets: [Module.GradientTarget] = []
    var places: [String: (node: QualifiedNodeName, copy: Int, position: Int)] = [:]
    var copies: [QualifiedNodeName: Int] = [:]
    for id in inlined.graph.nodeIDs {
      let origin = origins[id.index]
      let name = QualifiedNodeName(function: origin.function, node: origin.node)
      guard let values = recorded[name]?.first else { continue }
      let copy = copies[name, default: 0]
      copies[name] = copy + 1
      for (position, value) in values.enumerated() {
        guard let value, value.dtype.isFloatingPoint else { continue }
        let target = "t\(targets.count)"
        places[target] = (name, copy, position)
        targets.append(
          Module.GradientTarget(
            name: target, source: .output(id, OutputSlot(index: position)), dtype: value.dtype))
      }
    }
    let outputs: [String: Tensor]
    do {
      let backward = try inlined.addingWeightedSumGradients(
        of: key, named: signatureName, withRespectTo: targets, using: OpRegistry.standard)
      outputs = try Interpreter(module: backward, checkpoint: checkpoint, limits: limits).run(
        signature: signatureName, inputs: inputs.merging(weights) { first, _ in first })
    } catch let error as GraphError {
      throw Unavailable(reason: error.message)
    } catch {
      throw Unavailable(reason: "the backward pass failed: \(error)")
    }
    // A function's copies are numbered in graph order; those off this signature's path have no
    // gradient, so each node's evaluations are its copies that have one, in that order.
    var attribution = ErrorAttribution()
    var evaluations: [QualifiedNodeName: [Int: [Int: Tensor]]] = [:]
    for (target, gradient) in outputs {
      guard let place = places[target] else { continue }
      evaluations[place.node, default: [:]][place.copy, default: [:]][place.position] = gradient
    }
    for (node, byCopy) in evaluations {
      attribution.gradients[node] = byCopy.keys.sorted().compactMap { byCopy[$0] }
    }
    return attribution
  }

  /// The weight input of each float output o: d_o / (‖d_o‖² · the number of outputs that err),
  /// zero for an output without error.
  private static func outputWeights(expected: [String: Tensor], actual: [String: Tensor])
    throws(Unavailable) -> [String: Tensor]
  {
    var differences: [String: (shape: Shape, values: [Float], norm: Double)] = [:]
    for (name, reference) in expected where reference.dtype.isFloatingPoint {
      guard let original = reference.floats, let converted = actual[name]?.floats,
        converted.count == original.count
      else { continue }
      let difference = zip(converted, original).map { $0 - $1 }
      let norm = difference.reduce(0.0) { $0 + Double($1) * Double($1) }
      differences[name] = (reference.shape, difference, norm)
    }
    let erring = differences.values.filter { $0.norm > 0 && $0.norm.isFinite }.count
    guard erring > 0 else {
      throw Unavailable(reason: "the conversion's outputs have no finite error to attribute")
    }
    return differences.reduce(into: [:]) { weights, entry in
      let (shape, values, norm) = entry.value
      let scale = norm > 0 && norm.isFinite ? Float(1 / (norm * Double(erring))) : 0
      weights["\(entry.key)_weight"] = Tensor(
        shape: shape, floats: values.map { $0.isFinite ? $0 * scale : 0 })
    }
  }

  /// ⟨g, computed - original⟩ for evaluation `evaluation` of `node`'s output `position`; `nil`
  /// when there is no gradient there.
  func share(
    of node: QualifiedNodeName, evaluation: Int, position: Int, computed: [Float],
    original: [Float]
  ) -> Double? {
    guard let byEvaluation = gradients[node], evaluation < byEvaluation.count,
      let gradient = byEvaluation[evaluation][position]?.floats, gradient.count == computed.count
    else { return nil }
    var total = 0.0
    for index in gradient.indices {
      let error = Double(computed[index]) - Double(original[index])
      if error.isFinite { total += Double(gradient[index]) * error }
    }
    return total
  }
}

extension Module {
  /// The nodes of the top-level graph and every library function for which `include` holds, by
  /// function and name.
  func nodeNames(where include: (Node) -> Bool) -> Set<QualifiedNodeName> {
    Set(
      ([graph] + functions).flatMap { body in
        body.nodes.filter(include).map { QualifiedNodeName(function: body.name, node: $0.name) }
      })
  }
}
