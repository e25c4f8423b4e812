package import GraphIR

/// What a SavedModel's saver writes: which variable each checkpoint key holds.
///
/// TensorFlow's save function (TF2) reads every variable (`ReadVariableOp` on a handle passed in
/// as an argument, sometimes through `Identity` nodes) and hands the values to `SaveV2`, whose
/// second input is a constant with the checkpoint keys, one per value from its fourth input on.
/// A TF1 `Saver` puts its `SaveV2` in the top-level graph, reading resource variables the same
/// way and reference variables (`VariableV2`) directly.
package enum SavedVariables {
  /// One value `SaveV2` writes, traced back to the variable read.
  package struct Slot: Equatable {
    /// The checkpoint key.
    package var key: String
    /// The `SaveV2` node, and the value's place among its values (input 3 + slot).
    package var save: NodeID
    package var slot: Int
    /// The `ReadVariableOp` that reads the variable (or the TF1 reference variable itself), and
    /// the `Identity` nodes between it and `SaveV2`.
    package var read: NodeID
    package var identities: [NodeID]
  }

  /// The ops whose value `SaveV2` saves as a variable's: a read of a resource variable, or a
  /// TF1 reference variable.
  package static let reads: Set<String> = ["ReadVariableOp", "VariableV2", "Variable"]

  /// Every value the `SaveV2` nodes of `function` save that is a variable read, in node order.
  package static func slots(in function: Function) -> [Slot] {
    var slots: [Slot] = []
    for save in function.nodeIDs where function[save].op == "SaveV2" {
      let keys = tensorNames(function[save], in: function)
      for (slot, input) in function[save].inputs.dropFirst(3).enumerated() where slot < keys.count {
        var identities: [NodeID] = []
        var current = input.node
        // A corrupt graph may chain Identity nodes in a cycle: each is visited once.
        while let node = current, function[node].op == "Identity", !identities.contains(node) {
          identities.append(node)
          current = function[node].inputs.first?.node
        }
        guard let read = current, Self.reads.contains(function[read].op) else { continue }
        slots.append(
          Slot(key: keys[slot], save: save, slot: slot, read: read, identities: identities))
      }
    }
    return slots
  }

  /// The checkpoint keys of a `SaveV2` or `RestoreV2` node: the strings of the constant that is
  /// its second input (empty when it is not a constant).
  package static func tensorNames(_ node: Node, in function: Function) -> [String] {
    guard node.inputs.count > 1, let constant = node.inputs[1].node,
      case .tensor(let tensor)? = function[constant].attributes["value"]
    else { return [] }
    return tensor.stringValues.map { String(decoding: $0, as: UTF8.self) }
  }
}
