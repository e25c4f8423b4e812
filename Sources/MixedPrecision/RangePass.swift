internal import GraphIR
internal import ModelFormats
internal import TensorCore

/// Finds the values that would overflow or lose their values to zero in the reduced type, before
/// anything is painted (``RangeCounts/survive``): float32 constants, and every read of a float32
/// variable whose checkpoint values do not survive, wherever in the module the read is (handles
/// are followed through `Identity` nodes, calls, loops and conditionals), and the `Identity`
/// nodes that pass any of these values on. It also finds
/// positions: values computed from a `Range` with shapes and constants only, such as the angles
/// of rotary and sinusoidal embeddings, which lose whole radians in float16 at long sequence
/// lengths (keras-hub computes them in float32). The painter keeps every op reading one of them
/// float32, allow ops included, so no op computes in reduced precision on a value kept float32
/// for range.
struct RangePass {
  let precision: ReducedPrecision

  /// The nodes of each body whose output does not fit, with why, by body name.
  typealias UnfitValues = [String: [NodeID: PrecisionReason]]

  /// Ops whose output is the value of the variable whose handle is their input 0.
  private static let reads: Set<String> = ["ReadVariableOp", "ResourceGather", "ResourceGatherNd"]

  func unfitValues(in module: Module, checkpoint: CheckpointReader?) throws -> UnfitValues {
    var variableReads: UnfitValues = [:]
    if let checkpoint {
      var readers: [String: Readers] = [:]
      for variable in module.variables {
        guard let entry = checkpoint.entry(forKey: variable.checkpointKey),
          entry.dtype == .float32, try !checkpoint.rangeCounts(of: entry, in: precision).survive
        else { continue }
        for read in reads(of: variable, in: module, &readers) {
          variableReads[read.body, default: [:]][read.node] = .variableRange
        }
      }
    }
    var unfit: UnfitValues = [:]
    for name in module.bodyNames {
      unfit[name] = unfitValues(
        in: module.body(named: name), variableReads: variableReads[name] ?? [:])
    }
    return unfit
  }

  /// The values of `body` that do not fit: constants, positions, the `variableReads` given, and
  /// the `Identity` nodes that pass any of them on.
  func unfitValues(in body: Function, variableReads: [NodeID: PrecisionReason] = [:])
    -> [NodeID: PrecisionReason]
  {
    let values = unfitConstants(in: body).merging(positions(in: body)) { first, _ in first }
      .merging(variableReads) { first, _ in first }
    return values.isEmpty ? values : Self.throughIdentities(values, in: body)
  }

  /// `values` and the `Identity` nodes that pass them on unchanged (a TF1 variable's `read`, a
  /// frozen graph's reads of its constants), with the same reason.
  private static func throughIdentities(_ values: [NodeID: PrecisionReason], in body: Function)
    -> [NodeID: PrecisionReason]
  {
    var values = values
    let consumers = body.consumers()
    var pending = Array(values.keys)
    while let node = pending.popLast() {
      for consumer in consumers[node.index]
      where body[consumer.node].op == "Identity" && values[consumer.node] == nil {
        values[consumer.node] = values[node]
        pending.append(consumer.node)
      }
    }
    return values
  }

  /// The float32 constants of `body` that do not fit (see ``ConstantValues/fits(_:)``).
  private func unfitConstants(in body: Function) -> [NodeID: PrecisionReason] {
    var unfit: [NodeID: PrecisionReason] = [:]
    for id in body.nodeIDs {
      if let values = ConstantValues(body[id]), !values.fits(precision) {
        unfit[id] = .constantRange
      }
    }
    return unfit
  }

  /// The nodes of `body` whose value is computed from a `Range`, shapes and constants only, up
  /// to the sines, cosines and comparisons of it.
  private func positions(in body: Function) -> [NodeID: PrecisionReason] {
    enum Origin { case constant, position, data }
    var origin = [Origin](repeating: .data, count: body.nodes.count)
    var found: [NodeID: PrecisionReason] = [:]
    for id in body.topologicalOrder() {
      let node = body[id]
      let inputs = node.inputs.map { input in input.node.map { origin[$0.index] } ?? .data }
      switch node.op {
      case "Const": origin[id.index] = .constant
      case "Shape", "ShapeN", "Size", "Rank": origin[id.index] = .constant
      case _ where inputs.contains(.data) || inputs.isEmpty: origin[id.index] = .data
      case "Range": origin[id.index] = .position
      // Bounded functions and comparisons of positions fit the reduced type.
      case "Sin", "Cos", "Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual":
        origin[id.index] = .constant
      default: origin[id.index] = inputs.contains(.position) ? .position : .constant
      }
      if origin[id.index] == .position { found[id] = .positions }
    }
    return found
  }

  /// The nodes, anywhere in `module`, whose output is `variable`'s value: a TF1 reference
  /// variable itself, or the reads of the handles it flows into. `readers` caches, per body,
  /// who reads each node's outputs and each argument.
  private func reads(
    of variable: Variable, in module: Module, _ readers: inout [String: Readers]
  ) -> [(body: String, node: NodeID)] {
    let graph = module.graph
    guard variable.node.index < graph.nodes.count else { return [] }
    if graph[variable.node].op != "VarHandleOp" { return [(Function.graphName, variable.node)] }
    var found: [(body: String, node: NodeID)] = []
    var visited = Set<String>()
    // A handle: a node's output (handles have one) or an argument, in a body.
    var pending: [(body: String, node: NodeID?, argument: Int)] = [
      (Function.graphName, variable.node, 0)
    ]
    while let (name, node, argument) = pending.popLast() {
      guard visited.insert("\(name)|\(node.map(\.description) ?? "")|\(argument)").inserted else {
        continue
      }
      let body = module.body(named: name)
      if readers[name] == nil { readers[name] = Readers(body) }
      let consumers =
        node.map { readers[name]?.ofNodes[$0.index] ?? [] }
        ?? readers[name]?.ofArguments[argument] ?? []
      for (id, position) in consumers {
        let reader = body[id]
        if Self.reads.contains(reader.op) && position == 0 {
          found.append((name, id))
        } else if reader.op == "Identity" {
          pending.append((name, id, 0))
        } else if let callees = VariableStoragePass.callees(of: reader, position: position) {
          for (callee, argument) in callees where module.function(named: callee) != nil {
            pending.append((callee, nil, argument))
          }
        }
      }
    }
    return found
  }

  /// Who reads each node's outputs and each argument of one body.
  struct Readers {
    var ofNodes: [[(node: NodeID, position: Int)]]
    var ofArguments: [Int: [(node: NodeID, position: Int)]] = [:]

    init(_ body: Function) {
      ofNodes = body.consumers()
      for id in body.nodeIDs {
        for (position, input) in body[id].inputs.enumerated() {
          if case .argument(let argument) = input {
            ofArguments[argument, default: []].append((id, position))
          }
        }
      }
    }
  }
}

extension CheckpointReader {
  /// Why the float32 tensor `entry` does not fit `precision`, or `nil` when it does.
  ///
  /// Overflow is fatal. A value flushed to zero or rounded in the subnormal range changes by at
  /// most half the smallest subnormal (2^-25 in float16), which is below the rounding error of
  /// the tensor's largest value as long as that value is normal; only a tensor living wholly
  /// below the smallest normal loses its relative precision, so only then does it not fit.
  ///
  /// - Precondition: `entry` is float32.
  /// - Throws: ``ModelFormatError`` when its bytes cannot be read.
  func rangeProblem(of entry: CheckpointEntry, in precision: ReducedPrecision) throws -> String? {
    try rangeCounts(of: entry, in: precision).problem(in: precision)
  }
}

extension RangeCounts {
  /// Why values with these counts do not fit `precision`, or `nil` when they do (see
  /// ``CheckpointReader/rangeProblem(of:in:)``).
  func problem(in precision: ReducedPrecision) -> String? {
    if overflow > 0 {
      return "\(overflow) of \(total) values overflow \(precision.rawValue)"
    }
    let smallestNormal: Float = precision == .float16 ? 0x1p-14 : Float.leastNormalMagnitude
    let lost = flushToZero + subnormal
    if lost > 0 && largestMagnitude < smallestNormal {
      return "all \(total) values are below \(precision.rawValue)'s smallest normal "
        + "(\(lost) flush to zero or turn subnormal)"
    }
    return nil
  }
}
