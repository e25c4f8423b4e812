internal import TFProtos
internal import TensorCore
internal import Foundation

/// Rewrites a painted graph body: sets the type attribute of every converted node, and puts a
/// `Cast` wherever a tensor crosses between float32 and the reduced type.
///
/// One cast per source tensor and target type, shared by all its readers. A float32 constant
/// read in reduced precision is converted itself (a copy is made only when float32 readers
/// remain). Existing casts absorb a boundary instead of gaining a neighbour: a `Cast` reading a
/// converted tensor has its `SrcT` changed, and a `Cast` to float32 whose readers are all
/// converted casts straight to the reduced type.
struct CastInsertionPass {
  let precision: ReducedPrecision
  /// The body's argument names, which new nodes must not take.
  let argumentNames: Set<String>
  /// Nodes the variable pass retyped to the reduced type (reads and gathers of variables stored
  /// in it, and the saver's plumbing): their inputs take the reduced type, and so do their
  /// outputs, except RestoreV2's, which are typed one by one.
  let retypedNodes: Set<String>

  struct Statistics {
    var castsInserted = 0
    var constantsConverted = 0
  }

  func apply(to body: inout GraphBody, decisions: [PaintingPass.Decision]) -> Statistics {
    var statistics = Statistics()
    let target: Tensorflow_DataType = precision == .float16 ? .dtHalf : .dtBfloat16
    let rules = body.nodes.map { OpTypeRule.rule(for: $0.op) }
    let reduced = decisions.map(\.reduced)
    let sinkNodes = Set(
      body.sinks.values.compactMap { reference -> Int? in
        if case .output(let node, _, _)? = body.source(of: reference) { return node }
        return nil
      })

    func wantsReduced(_ node: Int, _ position: Int) -> Bool {
      guard reduced[node], let rule = rules[node] else { return false }
      return rule.governsInput(position, of: body.inputs[node].count)
    }
    // Casts to float32 whose readers all compute in reduced precision cast to it directly.
    var castsToTarget = Set<Int>()
    for (index, node) in body.nodes.enumerated()
    where node.op == "Cast" && node.attr["DstT"]?.type == .dtFloat && !sinkNodes.contains(index)
      && !body.consumers[index].isEmpty
      && body.consumers[index].allSatisfy({ wantsReduced($0.node, $0.position) })
    {
      castsToTarget.insert(index)
    }
    func producesReduced(_ source: GraphBody.Source) -> Bool {
      guard case .output(let node, let argument, let index) = source else { return false }
      if castsToTarget.contains(node) { return true }
      if retypedNodes.contains(body.nodes[node].name) { return body.nodes[node].op != "RestoreV2" }
      guard reduced[node], let rule = rules[node] else { return false }
      return rule.governsOutput(argument: argument, index: index)
    }

    var castNames: [String: String] = [:]
    func castReference(_ source: GraphBody.Source, to dtype: Tensorflow_DataType) -> String {
      let reference = body.reference(source)
      let key = "\(reference)|\(dtype.rawValue)"
      if let name = castNames[key] {
        return body.singleOutputReference(nodeName: name, argument: "y")
      }
      let suffix = dtype == .dtFloat ? "float32" : precision.rawValue
      let base = reference.replacingOccurrences(of: ":", with: "_")
      let name = body.uniqueName("\(base)/tfmp_cast_to_\(suffix)", avoiding: argumentNames)
      body.append(
        .cast(name: name, input: reference, from: dtype == .dtFloat ? target : .dtFloat, to: dtype))
      castNames[key] = name
      statistics.castsInserted += 1
      return body.singleOutputReference(nodeName: name, argument: "y")
    }

    var castsReadingTarget = Set<Int>()
    var constantReaders: [Int: [(node: Int, slot: Int)]] = [:]
    let originalCount = body.nodes.count
    for node in 0..<originalCount where !retypedNodes.contains(body.nodes[node].name) {
      for input in body.inputs[node] {
        let producerReduced = producesReduced(input.source)
        let consumerReduced = wantsReduced(node, input.position)
        guard producerReduced != consumerReduced else { continue }
        if producerReduced && body.nodes[node].op == "Cast" && input.position == 0
          && body.nodes[node].attr["SrcT"]?.type == .dtFloat
        {
          castsReadingTarget.insert(node)
          continue
        }
        if consumerReduced, case .output(let producer, _, _) = input.source,
          ConstantValues(body.nodes[producer]) != nil
        {
          constantReaders[producer, default: []].append((node, input.slot))
          continue
        }
        body.nodes[node].input[input.slot] = castReference(
          input.source, to: consumerReduced ? target : .dtFloat)
      }
    }
    for key in body.sinks.keys.sorted() {
      guard let reference = body.sinks[key], let source = body.source(of: reference),
        producesReduced(source)
      else { continue }
      body.sinks[key] = castReference(source, to: .dtFloat)
    }
    for (constant, readers) in constantReaders.sorted(by: { $0.key < $1.key }) {
      guard let values = ConstantValues(body.nodes[constant]) else { continue }
      let converted = attribute(tensor: values.tensor(in: precision))
      statistics.constantsConverted += 1
      if readers.count == body.consumers[constant].count && !sinkNodes.contains(constant) {
        body.nodes[constant].setType("dtype", target)
        body.nodes[constant].attr["value"] = converted
        continue
      }
      var copy = body.nodes[constant]
      copy.name = body.uniqueName(
        "\(copy.name)/tfmp_\(precision.rawValue)", avoiding: argumentNames)
      copy.input = copy.input.filter { $0.hasPrefix("^") }
      copy.setType("dtype", target)
      copy.attr["value"] = converted
      body.append(copy)
      let reference = body.singleOutputReference(nodeName: copy.name, argument: "output")
      for reader in readers { body.nodes[reader.node].input[reader.slot] = reference }
    }
    for node in 0..<originalCount {
      if reduced[node], let rule = rules[node] { body.nodes[node].setType(rule.attribute, target) }
      if castsToTarget.contains(node) { body.nodes[node].setType("DstT", target) }
      if castsReadingTarget.contains(node) { body.nodes[node].setType("SrcT", target) }
    }
    body.reindex()
    return statistics
  }

  private func attribute(tensor: Tensorflow_TensorProto) -> Tensorflow_AttrValue {
    var value = Tensorflow_AttrValue()
    value.tensor = tensor
    return value
  }
}
