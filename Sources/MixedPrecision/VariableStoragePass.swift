internal import ModelFormats
internal import TFProtos
internal import TensorCore

/// Decides which variables to store in the reduced type (`--weights auto`) and changes every
/// place that records their dtype, so both TensorFlow loaders accept the model
/// (reference/tf-formats.md §6.3).
///
/// A variable is followed through its resource handles: top-level `VarHandleOp`s, function
/// arguments reached through calls and `While`/`If` bodies, and the save, restore and Keras
/// initializer plumbing that ties several handles (and checkpoint keys) to one weight. All
/// handles linked this way form one group and change together. A group is stored in the reduced
/// type when it is a float32 checkpoint tensor, every read feeds only reduced-precision compute
/// (or the saver), nothing else uses it, and its values fit (see `rangeProblem`).
struct VariableStoragePass {
  let precision: ReducedPrecision

  /// A body and a node or argument name within it.
  struct Place: Hashable {
    var body: Int
    var name: String
  }

  /// What happened to one group of handles, for the report.
  struct Outcome {
    var keys: [String]
    var converted: Bool
    /// The dtype stored after conversion.
    var dtype: DType
    var reason: String
  }

  /// The changes for the converted groups.
  struct Result {
    var outcomes: [Outcome] = []
    /// Nodes whose dtype attributes now name the reduced type (reads, writes, handles, the
    /// saver's Identity chains, SaveV2 and RestoreV2), by body.
    var retyped: [Int: Set<String>] = [:]
    /// Checkpoint keys whose tensors are stored in the reduced type.
    var convertedKeys: Set<String> = []
  }

  private static let readOps: Set<String> = [
    "ReadVariableOp", "ResourceGather", "ResourceGatherNd",
  ]
  private static let gatherOps: Set<String> = ["GatherV2", "Gather", "GatherNd"]
  private static let assignOps: Set<String> = [
    "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
  ]
  /// Ops that use a handle without reading or writing a value (Identity passes the handle on,
  /// as loop bodies do when they return their resource arguments).
  private static let neutralOps: Set<String> = [
    "VarIsInitializedOp", "DisableCopyOnRead", "VariableShape", "DestroyResourceOp", "Identity",
  ]

  /// Decides every group of handles and retypes the converted ones in place.
  ///
  /// - Parameters:
  ///   - bodies: The library functions, then the top-level graph (last).
  ///   - functions: The FunctionDefs in the same order (for argument types; updated in place).
  ///   - decisions: The painting of each body.
  ///   - checkpoint: The model's checkpoint; without one nothing is converted.
  /// - Returns: What happened to each group, the retyped nodes and the converted keys.
  /// - Throws: ``ModelFormatError`` for a checkpoint tensor that cannot be read.
  func apply(
    bodies: inout [GraphBody], functions: inout [Tensorflow_FunctionDef],
    decisions: [[PaintingPass.Decision]], checkpoint: CheckpointReader?
  ) throws -> Result {
    var result = Result()
    guard let checkpoint else { return result }
    let bodyIndex = Dictionary(
      functions.enumerated().map { ($1.signature.name, $0) }, uniquingKeysWith: { a, _ in a })
    var groups = UnionFind<Place>()
    var blocked: [Place: String] = [:]
    var keys: [Place: [String]] = [:]  // handle place -> checkpoint keys

    /// The handle a data input carries, following Identity nodes.
    func handle(_ body: Int, _ source: GraphBody.Source) -> Place? {
      switch source {
      case .argument(let name):
        guard body < functions.count,
          functions[body].signature.inputArg.contains(where: {
            $0.name == name && $0.type == .dtResource
          })
        else { return nil }
        return Place(body: body, name: name)
      case .output(let node, _, _):
        let definition = bodies[body].nodes[node]
        if definition.op == "VarHandleOp" { return Place(body: body, name: definition.name) }
        if definition.op == "Identity", let input = bodies[body].inputs[node].first {
          return handle(body, input.source)
        }
        return nil
      }
    }
    func argumentPlace(_ function: String, _ position: Int) -> Place? {
      guard let callee = bodyIndex[function],
        position < functions[callee].signature.inputArg.count
      else { return nil }
      return Place(body: callee, name: functions[callee].signature.inputArg[position].name)
    }

    // 1. Link handles through calls and control flow; collect uses; note unknown uses.
    for body in bodies.indices {
      for (index, node) in bodies[body].nodes.enumerated() {
        for input in bodies[body].inputs[index] {
          guard let place = handle(body, input.source) else { continue }
          groups.add(place)
          let callees = Self.callees(of: node, position: input.position)
          if let callees {
            for (function, position) in callees {
              if let argument = argumentPlace(function, position) {
                groups.union(place, argument)
              } else {
                blocked[place] = "passed to '\(function)', which is not in the library"
              }
            }
          } else if Self.readOps.contains(node.op)
            || (Self.assignOps.contains(node.op) && input.position == 0)
          {
            groups.union(place, Place(body: body, name: node.name))
          } else if !Self.neutralOps.contains(node.op) {
            blocked[place] = "used by \(node.op) '\(node.name)'"
          }
        }
      }
    }

    // 2. Saver plumbing: checkpoint keys, and writes that copy one variable into another.
    var saverEdits: [Place: [(body: Int, node: Int, attribute: String, listIndex: Int?)]] = [:]
    for body in bodies.indices {
      for saved in SavedVariables.slots(in: bodies[body].nodes) {
        guard let source = bodies[body].inputs[saved.read].first?.source,
          let place = handle(body, source)
        else { continue }
        keys[place, default: []].append(saved.key)
        saverEdits[place, default: []] +=
          [(body, saved.save, "dtypes", saved.slot)]
          + saved.identities.map { (body, $0, "T", nil) }
      }
      for (index, node) in bodies[body].nodes.enumerated() where node.op == "RestoreV2" {
        let names = SavedVariables.tensorNames(node, nodes: bodies[body].nodes) {
          bodies[body].index(of: SavedVariables.nodeName($0))
        }
        for (assign, definition) in bodies[body].nodes.enumerated()
        where definition.op == "AssignVariableOp" {
          let inputs = bodies[body].inputs[assign]
          guard inputs.count == 2, let place = handle(body, inputs[0].source),
            let (restore, chain) = traceBack(bodies[body], inputs[1].source, to: "RestoreV2"),
            restore == index,
            case .output(_, _, let slot)? = chainEnd(bodies[body], inputs[1].source),
            slot < names.count
          else { continue }
          keys[place, default: []].append(names[slot])
          saverEdits[place, default: []] +=
            [(body, index, "dtypes", slot)]
            + chain.map { (body, $0, "T", nil) }
        }
      }
      // Keras exports initialize one variable from another: Assign(B, Read(A)) joins A and B.
      for (index, node) in bodies[body].nodes.enumerated() where Self.assignOps.contains(node.op) {
        let inputs = bodies[body].inputs[index]
        guard inputs.count == 2, let target = handle(body, inputs[0].source),
          let (read, _) = traceBack(bodies[body], inputs[1].source, to: "ReadVariableOp"),
          let source = bodies[body].inputs[read].first?.source, let from = handle(body, source)
        else { continue }
        groups.union(target, from)
      }
    }

    // 3. Decide each group.
    var members: [Place: [Place]] = [:]
    for place in groups.elements { members[groups.find(place), default: []].append(place) }
    let target: Tensorflow_DataType = precision == .float16 ? .dtHalf : .dtBfloat16
    for (_, group) in members.sorted(by: { $0.key.name < $1.key.name }) {
      var gathers: [(body: Int, node: Int)] = []
      let groupKeys = Array(Set(group.flatMap { keys[$0] ?? [] })).sorted()
      guard !groupKeys.isEmpty else { continue }
      let entries = groupKeys.compactMap { checkpoint.entry(forKey: $0) }
      var outcome = Outcome(
        keys: groupKeys, converted: false, dtype: entries.first?.dtype ?? .float32, reason: "")
      if let reason = group.compactMap({ blocked[$0] }).first {
        outcome.reason = "kept float32: \(reason)"
      } else if entries.count != groupKeys.count
        || entries.contains(where: { $0.dtype != .float32 })
      {
        outcome.reason = "not a float32 variable"
      } else if let reader = floatReader(
        group, bodies: bodies, decisions: decisions, gathers: &gathers)
      {
        outcome.reason = "kept float32: read in float32 by \(reader)"
      } else if let problem = try rangeProblem(entries[0], checkpoint) {
        outcome.reason = "kept float32 (range): \(problem)"
      } else {
        outcome.converted = true
        outcome.dtype = precision.dtype
        outcome.reason = "stored in \(precision.rawValue)"
      }
      result.outcomes.append(outcome)
      guard outcome.converted else { continue }
      result.convertedKeys.formUnion(groupKeys)
      // Gathers from the table gather in the reduced type; the cast follows them, on the
      // gathered rows only.
      for gather in gathers {
        bodies[gather.body].nodes[gather.node].setType("Tparams", target)
        result.retyped[gather.body, default: []].insert(bodies[gather.body].nodes[gather.node].name)
      }
      for place in group {
        for edit in saverEdits[place] ?? [] {
          bodies[edit.body].nodes[edit.node].setType(
            edit.attribute, target, listIndex: edit.listIndex)
          result.retyped[edit.body, default: []].insert(bodies[edit.body].nodes[edit.node].name)
        }
        if let node = bodies[place.body].index(of: place.name) {
          let op = bodies[place.body].nodes[node].op
          if op == "VarHandleOp" || Self.readOps.contains(op) || Self.assignOps.contains(op) {
            bodies[place.body].nodes[node].setType("dtype", target)
            result.retyped[place.body, default: []].insert(place.name)
          }
        } else if place.body < functions.count,
          let argument = functions[place.body].signature.inputArg.firstIndex(where: {
            $0.name == place.name
          })
        {
          for data in functions[place.body].signature.inputArg[argument].handleData.indices {
            functions[place.body].signature.inputArg[argument].handleData[data].dtype = target
          }
        }
      }
    }
    return result
  }

  /// The functions a call or control-flow node passes input `position` to, with the argument
  /// position there; `nil` when the node is not a call.
  static func callees(of node: Tensorflow_NodeDef, position: Int) -> [(String, Int)]? {
    func function(_ attribute: String) -> String? {
      if case .func(let value)? = node.attr[attribute]?.value { return value.name }
      return nil
    }
    switch node.op {
    case "StatefulPartitionedCall", "PartitionedCall":
      return function("f").map { [($0, position)] } ?? []
    case "While", "StatelessWhile":
      return [function("cond"), function("body")].compactMap { $0 }.map { ($0, position) }
    case "If", "StatelessIf":
      guard position > 0 else { return [] }
      return [function("then_branch"), function("else_branch")].compactMap { $0 }
        .map { ($0, position - 1) }
    default:
      return nil
    }
  }

  /// Follows `source` back through Identity nodes to a node of op `op`; returns it and the
  /// Identity nodes passed.
  private func traceBack(_ body: GraphBody, _ source: GraphBody.Source, to op: String) -> (
    Int, [Int]
  )? {
    var chain: [Int] = []
    var current = source
    while case .output(let node, _, _) = current {
      if body.nodes[node].op == op { return (node, chain) }
      guard body.nodes[node].op == "Identity", let input = body.inputs[node].first else {
        return nil
      }
      chain.append(node)
      current = input.source
    }
    return nil
  }

  /// The first non-Identity source behind `source`.
  private func chainEnd(_ body: GraphBody, _ source: GraphBody.Source) -> GraphBody.Source? {
    var current = source
    while case .output(let node, _, _) = current, body.nodes[node].op == "Identity" {
      guard let input = body.inputs[node].first else { return nil }
      current = input.source
    }
    return current
  }

  /// A description of the first read in `group` whose value reaches float32 compute, if any.
  /// Reads may feed reduced-precision compute, the saver (through Identity nodes), writes into
  /// the same group, and gathers (an embedding lookup), which are collected in `gathers`.
  private func floatReader(
    _ group: [Place], bodies: [GraphBody], decisions: [[PaintingPass.Decision]],
    gathers: inout [(body: Int, node: Int)]
  ) -> String? {
    let members = Set(group)
    for place in group {
      let body = bodies[place.body]
      guard let read = body.index(of: place.name), Self.readOps.contains(body.nodes[read].op) else {
        continue
      }
      var pending = [read]
      while let node = pending.popLast() {
        for consumer in body.consumers[node] {
          let definition = body.nodes[consumer.node]
          let decision = decisions[place.body][consumer.node]
          if decision.reduced, let rule = OpTypeRule.rule(for: definition.op),
            rule.governsInput(consumer.position, of: body.inputs[consumer.node].count)
          {
            continue
          }
          if definition.op == "SaveV2" && consumer.position >= 3 { continue }
          if Self.gatherOps.contains(definition.op) && consumer.position == 0
            && definition.attr["Tparams"]?.type == .dtFloat
          {
            gathers.append((place.body, consumer.node))
            continue
          }
          if Self.assignOps.contains(definition.op) && consumer.position == 1
            && members.contains(Place(body: place.body, name: definition.name))
          {
            continue
          }
          if definition.op == "Identity" && !decision.reduced {
            pending.append(consumer.node)
            continue
          }
          return "\(definition.op) '\(definition.name)' in \(body.name)"
        }
        if body.sinks.values.contains(where: {
          body.source(of: $0).map { source in
            if case .output(let producer, _, _) = source { return producer == node }
            return false
          } ?? false
        }) {
          return "the output of \(body.name)"
        }
      }
    }
    return nil
  }

  /// Why the tensor's values do not fit the reduced type, or `nil` when they do.
  ///
  /// Overflow is fatal. A value flushed to zero or rounded in the subnormal range changes by at
  /// most half the smallest subnormal (2^-25 in float16), which is below the rounding error of
  /// the tensor's largest value as long as that value is normal; only a tensor living wholly
  /// below the smallest normal loses its relative precision, so only then is it kept float32.
  private func rangeProblem(_ entry: CheckpointEntry, _ checkpoint: CheckpointReader) throws
    -> String?
  {
    precondition(entry.dtype == .float32, "only float32 variables are range-checked")
    let counts = try checkpoint.withBytes(of: entry) { bytes in
      RangeCounts(float32LittleEndian: bytes, roundedTo: precision)
    }
    if counts.overflow > 0 {
      return "\(counts.overflow) of \(counts.total) values overflow \(precision.rawValue)"
    }
    let smallestNormal: Float = precision == .float16 ? 0x1p-14 : Float.leastNormalMagnitude
    let lost = counts.flushToZero + counts.subnormal
    if lost > 0 && counts.largestMagnitude < smallestNormal {
      return "all \(counts.total) values are below \(precision.rawValue)'s smallest normal "
        + "(\(lost) flush to zero or turn subnormal)"
    }
    return nil
  }
}

/// Disjoint sets with path compression.
struct UnionFind<Element: Hashable> {
  private var parent: [Element: Element] = [:]

  var elements: Dictionary<Element, Element>.Keys { parent.keys }

  mutating func add(_ element: Element) {
    if parent[element] == nil { parent[element] = element }
  }

  mutating func find(_ element: Element) -> Element {
    add(element)
    var root = element
    while let next = parent[root], next != root { root = next }
    var current = element
    while let next = parent[current], next != root {
      parent[current] = root
      current = next
    }
    return root
  }

  mutating func union(_ first: Element, _ second: Element) {
    let (a, b) = (find(first), find(second))
    if a != b { parent[a] = b }
  }
}
