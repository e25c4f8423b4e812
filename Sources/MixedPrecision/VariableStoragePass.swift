internal import GraphIR
internal import ModelFormats
internal import TensorCore

/// Decides which variables to store in the reduced type (`--weights auto`) and changes every
/// place that records their dtype, so both TensorFlow loaders accept the model
/// (reference/tf-formats.md §6.3).
///
/// A variable is followed through its resource handles: top-level `VarHandleOp`s (or TF1
/// reference variables, `VariableV2`), function arguments reached through calls and `While`/`If`
/// bodies, and the save, restore and Keras or TF1 initializer plumbing that ties several handles (and checkpoint keys) to one weight. All
/// handles linked this way form one group and change together. A group is stored in the reduced
/// type when it is a float32 checkpoint tensor, every read feeds only reduced-precision compute
/// (or the saver), nothing else uses it, and its values fit (see `rangeProblem`).
///
/// It also stores a converted model's float32 master weights reduced (``Readers/casts``): there a
/// read's reduced-precision readers are the `Cast`s to the reduced type that the conversion put
/// after it.
struct VariableStoragePass {
  let precision: ReducedPrecision

  /// How a read's consumer is known to compute in the reduced type.
  enum Readers {
    /// A conversion's painting of each body, by body name: a consumer painted reduced whose op
    /// converts that input.
    case painted([String: [PaintingPass.Decision]])
    /// A converted model's casts: a `Cast` from float32 to the reduced type, which then casts
    /// from the stored type to itself (an identity to TensorFlow, which Grappler removes).
    case casts
  }

  /// A body (by name) and a node or argument name within it.
  struct Place: Hashable {
    var body: String
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
    /// saver's Identity chains, SaveV2 and RestoreV2), by body name.
    var retyped: [String: Set<String>] = [:]
    /// Checkpoint keys whose tensors are stored in the reduced type.
    var convertedKeys: Set<String> = []
  }

  private static let readOps: Set<String> = [
    "ReadVariableOp", "ResourceGather", "ResourceGatherNd",
  ]
  static let gatherOps: Set<String> = ["GatherV2", "Gather", "GatherNd"]
  static let assignOps: Set<String> = [
    "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp", "Assign", "AssignAdd",
    "AssignSub",
  ]
  /// TF1's writes into a reference variable, which type their value with `T`.
  private static let referenceAssignOps: Set<String> = ["Assign", "AssignAdd", "AssignSub"]
  /// TF1 reference variables: the node is the handle, and its output also reads as the value.
  private static let referenceOps: Set<String> = ["VariableV2", "Variable"]
  /// Ops that use a handle without reading or writing a value (Identity passes the handle on,
  /// as loop bodies do when they return their resource arguments).
  /// A reference variable's `Identity` is its read; whoever reads that is checked like any
  /// other reader.
  private static let neutralOps: Set<String> = [
    "VarIsInitializedOp", "DisableCopyOnRead", "VariableShape", "DestroyResourceOp", "Identity",
    "IsVariableInitialized",
  ]

  /// A saver node's dtype attribute that names a variable's stored type.
  struct SaverEdit {
    var body: String
    var node: NodeID
    var attribute: String
    var listIndex: Int?
  }

  /// A module's variable handles linked into groups, and what deciding the groups reads: found
  /// once per model (the accuracy search decides them again for every painting it tries).
  struct Groups {
    /// Each group's handle places, the groups in a fixed order.
    var members: [[Place]] = []
    /// Places used in a way that keeps their group float32, with the use.
    var blocked: [Place: String] = [:]
    /// The checkpoint keys saved or restored through each handle place.
    var keys: [Place: [String]] = [:]
    /// The saver's dtype attributes for each handle place.
    var saverEdits: [Place: [SaverEdit]] = [:]
    /// Each body's consumers, by body name.
    var consumers: [String: [[(node: NodeID, position: Int)]]] = [:]
    /// Each body's sinks, by body name.
    var sinks: [String: [String: Input]] = [:]
  }

  /// Links the handles of `module`'s variables into groups.
  static func groups(in module: Module) -> Groups {
    var found = Groups()
    let names = module.bodyNames
    let bodies = Dictionary(uniqueKeysWithValues: names.map { ($0, module.body(named: $0)) })
    found.consumers = bodies.mapValues { $0.consumers() }
    found.sinks = Dictionary(uniqueKeysWithValues: names.map { ($0, module.sinks(of: $0)) })
    var groups = UnionFind<Place>()

    func argumentPlace(_ function: String, _ position: Int) -> Place? {
      guard function != Function.graphName, let callee = bodies[function],
        position < callee.arguments.count
      else { return nil }
      return Place(body: function, name: callee.arguments[position].name)
    }

    // 1. Link handles through calls and control flow; collect uses; note unknown uses.
    for body in names {
      guard let function = bodies[body] else { continue }
      for node in function.nodes {
        for (position, input) in node.inputs.enumerated() {
          guard let place = handle(body, function, input) else { continue }
          groups.add(place)
          let callees = Self.callees(of: node, position: position)
          if let callees {
            for (function, position) in callees {
              if let argument = argumentPlace(function, position) {
                groups.union(place, argument)
              } else {
                found.blocked[place] = "passed to '\(function)', which is not in the library"
              }
            }
          } else if Self.readOps.contains(node.op)
            || (Self.assignOps.contains(node.op) && position == 0)
          {
            groups.union(place, Place(body: body, name: node.name))
          } else if !Self.neutralOps.contains(node.op) && !(node.op == "SaveV2" && position >= 3) {
            found.blocked[place] = "used by \(node.op) '\(node.name)'"
          }
        }
      }
    }

    // 2. Saver plumbing: checkpoint keys, and writes that copy one variable into another.
    for body in names {
      guard let function = bodies[body] else { continue }
      for saved in SavedVariables.slots(in: function) {
        let source =
          Self.referenceOps.contains(function[saved.read].op)
          ? .output(saved.read, OutputSlot()) : function[saved.read].inputs.first
        guard let source, let place = handle(body, function, source) else { continue }
        found.keys[place, default: []].append(saved.key)
        found.saverEdits[place, default: []] +=
          [SaverEdit(body: body, node: saved.save, attribute: "dtypes", listIndex: saved.slot)]
          + saved.identities.map { SaverEdit(body: body, node: $0, attribute: "T") }
      }
      for restore in function.nodeIDs where function[restore].op == "RestoreV2" {
        let names = SavedVariables.tensorNames(function[restore], in: function)
        for assign in function.nodeIDs
        where ["AssignVariableOp", "Assign"].contains(function[assign].op) {
          let inputs = function[assign].inputs
          guard inputs.count == 2, let place = handle(body, function, inputs[0]),
            let (traced, chain) = traceBack(function, inputs[1], to: "RestoreV2"),
            traced == restore, case .output(_, let slot)? = chainEnd(function, inputs[1]),
            slot.index < names.count
          else { continue }
          found.keys[place, default: []].append(names[slot.index])
          found.saverEdits[place, default: []] +=
            [SaverEdit(body: body, node: restore, attribute: "dtypes", listIndex: slot.index)]
            + chain.map { SaverEdit(body: body, node: $0, attribute: "T") }
        }
      }
      // Keras exports initialize one variable from another: Assign(B, Read(A)) joins A and B.
      for node in function.nodes where Self.assignOps.contains(node.op) {
        let inputs = node.inputs
        guard inputs.count == 2, let target = handle(body, function, inputs[0]),
          let (read, _) = traceBack(function, inputs[1], to: "ReadVariableOp"),
          let source = function[read].inputs.first, let from = handle(body, function, source)
        else { continue }
        groups.union(target, from)
      }
    }
    var members: [Place: [Place]] = [:]
    for place in groups.elements { members[groups.find(place), default: []].append(place) }
    found.members = members.sorted(by: { $0.key.name < $1.key.name }).map(\.value)
    return found
  }

  /// The handle a data input of `function`, body `body`, carries, following Identity nodes
  /// (at most one step per node: a malformed graph may chain Identities in a cycle).
  private static func handle(_ body: String, _ function: Function, _ source: Input) -> Place? {
    var current = source
    for _ in 0...function.nodes.count {
      switch current {
      case .argument(let position):
        guard function.arguments[position].dtype == .resource else { return nil }
        return Place(body: body, name: function.arguments[position].name)
      case .output(let node, _):
        let definition = function[node]
        if definition.op == "VarHandleOp" || Self.referenceOps.contains(definition.op) {
          return Place(body: body, name: definition.name)
        }
        // The Identity of a reference variable reads its value; of a handle, passes it on.
        guard definition.op == "Identity", let input = definition.inputs.first,
          let producer = input.node, !Self.referenceOps.contains(function[producer].op)
        else { return nil }
        current = input
      case .unresolved:
        return nil
      }
    }
    return nil
  }

  /// Decides every group of handles and retypes the converted ones in `module`.
  ///
  /// - Parameters:
  ///   - module: The module; converted groups' handles, reads, gathers, saver plumbing and
  ///     resource arguments are retyped in place.
  ///   - groups: `module`'s groups (``groups(in:)``).
  ///   - readers: How reads feeding reduced-precision compute are told.
  ///   - checkpoint: The model's checkpoint; without one nothing is converted.
  ///   - values: Values replacing the checkpoint's (trained weights), by key, for the range
  ///     check.
  /// - Returns: What happened to each group, the retyped nodes and the converted keys.
  /// - Throws: ``ModelFormatError`` for a checkpoint tensor that cannot be read.
  func apply(
    to module: inout Module, groups: Groups, readers: Readers, checkpoint: CheckpointReader?,
    values: [String: [Float]] = [:]
  ) throws -> Result {
    var result = Result()
    guard let checkpoint else { return result }
    let names = module.bodyNames
    var bodies = Dictionary(uniqueKeysWithValues: names.map { ($0, module.body(named: $0)) })

    let target = precision.dtype
    for group in groups.members {
      var gathers: [(body: String, node: NodeID)] = []
      var casts: [(body: String, node: NodeID)] = []
      let groupKeys = Array(Set(group.flatMap { groups.keys[$0] ?? [] })).sorted()
      guard !groupKeys.isEmpty else { continue }
      let entries = groupKeys.compactMap { checkpoint.entry(forKey: $0) }
      var outcome = Outcome(
        keys: groupKeys, converted: false, dtype: entries.first?.dtype ?? .float32, reason: "")
      if let reason = group.compactMap({ groups.blocked[$0] }).first {
        outcome.reason = "kept float32: \(reason)"
      } else if entries.count != groupKeys.count
        || entries.contains(where: { $0.dtype != .float32 })
      {
        outcome.reason = "not a float32 variable"
      } else if let problem = try values[groupKeys[0]].map({
        $0.withUnsafeBufferPointer { RangeCounts($0, roundedTo: precision).problem(in: precision) }
      }) ?? checkpoint.rangeProblem(of: entries[0], in: precision) {
        // Before the readers: those of a variable whose values do not survive stay float32
        // (``RangePass``), and the range is the reason.
        outcome.reason = "kept float32 (range): \(problem)"
      } else if let reader = floatReader(
        group, bodies: bodies, consumers: groups.consumers, sinks: groups.sinks, readers: readers,
        gathers: &gathers, casts: &casts)
      {
        outcome.reason = "kept float32: read in float32 by \(reader)"
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
      for (edit, attribute) in gathers.map({ ($0, "Tparams") }) + casts.map({ ($0, "SrcT") }) {
        bodies[edit.body]?[edit.node].setType(attribute, target)
        if let name = bodies[edit.body]?[edit.node].name {
          result.retyped[edit.body, default: []].insert(name)
        }
      }
      for place in group {
        for edit in groups.saverEdits[place] ?? [] {
          bodies[edit.body]?[edit.node].setType(edit.attribute, target, listIndex: edit.listIndex)
          if let name = bodies[edit.body]?[edit.node].name {
            result.retyped[edit.body, default: []].insert(name)
          }
        }
        // Edited in place: each body is copied once, at its first edit, not at every edit.
        if let node = bodies[place.body]?.id(of: place.name), let op = bodies[place.body]?[node].op
        {
          if op == "VarHandleOp" || Self.referenceOps.contains(op) || Self.readOps.contains(op)
            || Self.assignOps.contains(op)
          {
            let attribute = Self.referenceAssignOps.contains(op) ? "T" : "dtype"
            bodies[place.body]?[node].setType(attribute, target)
            result.retyped[place.body, default: []].insert(place.name)
          }
        } else if let argument = bodies[place.body]?.argumentPosition(of: place.name) {
          bodies[place.body]?.updateArgument(at: argument) { argument in
            argument.handleDTypes = argument.handleDTypes.map { _ in target }
          }
        }
      }
    }
    for name in names { if let body = bodies[name] { module.replaceBody(body) } }
    return result
  }

  /// The functions a call or control-flow node passes input `position` to, with the argument
  /// position there; `nil` when the node is not a call.
  static func callees(of node: Node, position: Int) -> [(String, Int)]? {
    func function(_ attribute: String) -> String? {
      if case .function(let value)? = node.attributes[attribute] { return value.name }
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
  /// Identity nodes passed (`nil` for a cycle of Identities, which a malformed graph may hold).
  private static func traceBack(_ body: Function, _ source: Input, to op: String) -> (
    NodeID, [NodeID]
  )? {
    var chain: [NodeID] = []
    var current = source
    while case .output(let node, _) = current, chain.count <= body.nodes.count {
      if body[node].op == op { return (node, chain) }
      guard body[node].op == "Identity", let input = body[node].inputs.first else { return nil }
      chain.append(node)
      current = input
    }
    return nil
  }

  /// The first non-Identity source behind `source` (`nil` for a cycle of Identities).
  private static func chainEnd(_ body: Function, _ source: Input) -> Input? {
    var current = source
    for _ in 0...body.nodes.count {
      guard case .output(let node, _) = current, body[node].op == "Identity" else {
        return current
      }
      guard let input = body[node].inputs.first else { return nil }
      current = input
    }
    return nil
  }

  /// A description of the first read in `group` whose value reaches float32 compute, if any.
  /// Reads may feed reduced-precision compute (painted, or casts to the reduced type, which are
  /// collected in `casts`), the saver (through Identity nodes), writes into the same group, and
  /// gathers (an embedding lookup, when painted), which are collected in `gathers`.
  private func floatReader(
    _ group: [Place], bodies: [String: Function],
    consumers: [String: [[(node: NodeID, position: Int)]]],
    sinks: [String: [String: Input]], readers: Readers,
    gathers: inout [(body: String, node: NodeID)], casts: inout [(body: String, node: NodeID)]
  ) -> String? {
    let members = Set(group)
    for place in group {
      let painted: [PaintingPass.Decision]?
      switch readers {
      case .painted(let decisions):
        guard let decisions = decisions[place.body] else { continue }
        painted = decisions
      case .casts:
        painted = nil
      }
      guard let body = bodies[place.body], let uses = consumers[place.body],
        let read = body.id(of: place.name),
        Self.readOps.contains(body[read].op) || Self.referenceOps.contains(body[read].op)
      else { continue }
      var pending = [read]
      while let node = pending.popLast() {
        for consumer in uses[node.index] {
          let definition = body[consumer.node]
          let decision = painted?[consumer.node.index]
          if let decision, decision.reduced, let schema = OpLists.convertible(definition.op),
            schema.convertsInput(consumer.position, attributes: definition.attributes)
          {
            continue
          }
          if painted == nil && definition.op == "Cast" && definition.type("SrcT") == .float32
            && definition.type("DstT") == precision.dtype
          {
            casts.append((place.body, consumer.node))
            continue
          }
          if definition.op == "SaveV2" && consumer.position >= 3 { continue }
          // An embedding lookup, unless it is kept float32 (by --fp32-node or the search):
          // then its table stays float32 too.
          if let decision,
            Self.gatherOps.contains(definition.op) && consumer.position == 0
              && definition.type("Tparams") == .float32 && decision.reason != .searched
              && decision.reason != .userFloat32Node
          {
            gathers.append((place.body, consumer.node))
            continue
          }
          // A write into the group: a reference variable's own Assign (position 0), or a
          // Keras copy from another member (position 1).
          if Self.assignOps.contains(definition.op)
            && members.contains(Place(body: place.body, name: definition.name))
          {
            continue
          }
          if definition.op == "Identity" && decision?.reduced != true {
            pending.append(consumer.node)
            continue
          }
          return "\(definition.op) '\(definition.name)' in \(body.name)"
        }
        if (sinks[place.body] ?? [:]).values.contains(where: { $0.node == node }) {
          return "the output of \(body.name)"
        }
      }
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
