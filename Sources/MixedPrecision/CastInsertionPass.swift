internal import GraphIR
internal import TensorCore
internal import Foundation

/// Rewrites a painted body: sets the type attribute of every converted node, and puts a `Cast`
/// wherever a tensor crosses between float32 and the reduced type.
///
/// One cast per source tensor and target type, shared by all its readers. A float32 constant
/// read in reduced precision is converted itself (a copy is made only when float32 readers
/// remain). Existing casts absorb a boundary instead of gaining a neighbour: a `Cast` reading a
/// converted tensor has its `SrcT` changed, and a `Cast` to float32 whose readers are all
/// converted casts straight to the reduced type.
struct CastInsertionPass {
  let precision: ReducedPrecision

  struct Statistics {
    var castsInserted = 0
    var constantsConverted = 0
  }

  /// Rewrites `body` as `decisions` (one per node) say; `sinks` are the values leaving it,
  /// rewritten too. `retypedNodes` are the nodes the variable pass retyped to the reduced type
  /// (reads and gathers of variables stored in it, and the saver's plumbing): their inputs take
  /// the reduced type, and so do their outputs, except RestoreV2's, which are typed one by one.
  func apply(
    to body: inout Function, sinks: inout [String: Input], decisions: [PaintingPass.Decision],
    retypedNodes: Set<String> = []
  ) -> Statistics {
    var statistics = Statistics()
    let target = precision.dtype
    let schemas = body.nodes.map { OpLists.convertible($0.op) }
    let reduced = decisions.map(\.reduced)
    let consumers = body.consumers()
    let sinkNodes = Set(sinks.values.compactMap { $0.node?.index })

    func wantsReduced(_ node: Int, _ position: Int) -> Bool {
      guard reduced[node], let schema = schemas[node] else { return false }
      return schema.convertsInput(position, attributes: body.nodes[node].attributes)
    }
    // Casts to float32 whose readers all compute in reduced precision cast to it directly.
    var castsToTarget = Set<Int>()
    for (index, node) in body.nodes.enumerated()
    where node.op == "Cast" && node.type("DstT") == .float32 && !sinkNodes.contains(index)
      && !consumers[index].isEmpty
      && consumers[index].allSatisfy({ wantsReduced($0.node.index, $0.position) })
    {
      castsToTarget.insert(index)
    }
    func producesReduced(_ source: Input) -> Bool {
      guard case .output(let id, let slot) = source else { return false }
      let node = id.index
      if castsToTarget.contains(node) { return true }
      if retypedNodes.contains(body.nodes[node].name) {
        // RestoreV2's outputs are typed one by one; a handle is not a value.
        if body.nodes[node].op == "RestoreV2",
          case .list(let list)? = body.nodes[node].attributes["dtypes"]
        {
          return list.types.indices.contains(slot.index) && list.types[slot.index] == target
        }
        return body.nodes[node].op != "VarHandleOp"
      }
      guard reduced[node], let schema = schemas[node] else { return false }
      return schema.convertsOutput(slot, attributes: body.nodes[node].attributes)
    }

    var casts: [String: Input] = [:]
    func cast(_ source: Input, to dtype: DType) -> Input {
      let reference = body.reference(to: source).text(in: body.syntax)
      let key = "\(reference)|\(dtype.rawValue)"
      if let cast = casts[key] { return cast }
      let suffix = dtype == .float32 ? "float32" : precision.rawValue
      let base = reference.replacingOccurrences(of: ":", with: "_")
      let name = body.uniqueName("\(base)/tfmp_cast_to_\(suffix)")
      let id = body.append(
        .cast(name: name, input: source, from: dtype == .float32 ? target : .float32, to: dtype))
      let output = body.singleOutput(of: id, argument: "y")
      casts[key] = output
      statistics.castsInserted += 1
      return output
    }

    var castsReadingTarget = Set<Int>()
    var constantReaders: [Int: [(node: Int, position: Int)]] = [:]
    let originalCount = body.nodes.count
    for node in 0..<originalCount where !retypedNodes.contains(body.nodes[node].name) {
      for (position, input) in body.nodes[node].inputs.enumerated() {
        let producerReduced = producesReduced(input)
        let consumerReduced = wantsReduced(node, position)
        guard producerReduced != consumerReduced else { continue }
        if producerReduced && body.nodes[node].op == "Cast" && position == 0
          && body.nodes[node].type("SrcT") == .float32
        {
          castsReadingTarget.insert(node)
          continue
        }
        if consumerReduced, let producer = input.node, ConstantValues(body[producer]) != nil {
          constantReaders[producer.index, default: []].append((node, position))
          continue
        }
        let replacement = cast(input, to: consumerReduced ? target : .float32)
        body[NodeID(node)].inputs[position] = replacement
      }
    }
    // A write into a variable stored in the reduced type takes a value of that type: a TF1
    // initializer computes the initial value in float32.
    for node in 0..<originalCount
    where retypedNodes.contains(body.nodes[node].name)
      && VariableStoragePass.assignOps.contains(body.nodes[node].op)
      && body.nodes[node].inputs.count == 2 && !producesReduced(body.nodes[node].inputs[1])
    {
      body[NodeID(node)].inputs[1] = cast(body.nodes[node].inputs[1], to: target)
    }
    for key in sinks.keys.sorted() {
      guard let source = sinks[key], producesReduced(source) else { continue }
      sinks[key] = cast(source, to: .float32)
    }
    for (constant, readers) in constantReaders.sorted(by: { $0.key < $1.key }) {
      guard let values = ConstantValues(body.nodes[constant]) else { continue }
      let converted = AttrValue.tensor(values.tensor(in: precision))
      statistics.constantsConverted += 1
      if readers.count == consumers[constant].count && !sinkNodes.contains(constant) {
        body[NodeID(constant)].setType("dtype", target)
        body[NodeID(constant)].attributes["value"] = converted
        continue
      }
      var copy = body.nodes[constant]
      copy.name = body.uniqueName("\(copy.name)/tfmp_\(precision.rawValue)")
      copy.inputs = []
      copy.setType("dtype", target)
      copy.attributes["value"] = converted
      let output = body.singleOutput(of: body.append(copy), argument: "output")
      for reader in readers { body[NodeID(reader.node)].inputs[reader.position] = output }
    }
    for node in 0..<originalCount {
      let id = NodeID(node)
      if reduced[node], let precision = schemas[node]?.precision {
        body[id].setType(precision.attribute, target)
      }
      if castsToTarget.contains(node) { body[id].setType("DstT", target) }
      if castsReadingTarget.contains(node) { body[id].setType("SrcT", target) }
    }
    return statistics
  }
}
