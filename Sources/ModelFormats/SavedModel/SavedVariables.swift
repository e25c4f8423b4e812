package import TFProtos

/// What a SavedModel's save function writes: which variable each checkpoint key holds.
///
/// TensorFlow's save function reads every variable (`ReadVariableOp` on a handle passed in as an
/// argument, sometimes through `Identity` nodes) and hands the values to `SaveV2`, whose second
/// input is a constant with the checkpoint keys, one per value from its fourth input on.
package enum SavedVariables {
  /// One value `SaveV2` writes, traced back to the variable read.
  package struct Slot: Equatable {
    /// The checkpoint key.
    package var key: String
    /// The `SaveV2` node, and the value's place among its values (input 3 + slot).
    package var save: Int
    package var slot: Int
    /// The `ReadVariableOp` that reads the variable, and the `Identity` nodes between it and `SaveV2`.
    package var read: Int
    package var identities: [Int]
  }

  /// Every value the `SaveV2` nodes among `nodes` save that is a variable read, in node order.
  package static func slots(in nodes: [Tensorflow_NodeDef]) -> [Slot] {
    let index = Dictionary(
      nodes.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    func producer(_ reference: String) -> Int? { index[nodeName(reference)] }
    var slots: [Slot] = []
    for (save, node) in nodes.enumerated() where node.op == "SaveV2" {
      let keys = tensorNames(node, nodes: nodes, producer: producer)
      for (slot, input) in dataInputs(node).dropFirst(3).enumerated() where slot < keys.count {
        var identities: [Int] = []
        var current = producer(input)
        while let node = current, nodes[node].op == "Identity" {
          identities.append(node)
          current = dataInputs(nodes[node]).first.flatMap(producer)
        }
        guard let read = current, nodes[read].op == "ReadVariableOp" else { continue }
        slots.append(
          Slot(key: keys[slot], save: save, slot: slot, read: read, identities: identities))
      }
    }
    return slots
  }

  /// The checkpoint keys of a `SaveV2` or `RestoreV2` node: the strings of the constant that is
  /// its second input (empty when it is not a constant).
  package static func tensorNames(
    _ node: Tensorflow_NodeDef, nodes: [Tensorflow_NodeDef], producer: (String) -> Int?
  ) -> [String] {
    let inputs = dataInputs(node)
    guard inputs.count > 1, let constant = producer(inputs[1]),
      case .tensor(let tensor)? = nodes[constant].attr["value"]?.value
    else { return [] }
    return tensor.stringVal.map { String(decoding: $0, as: UTF8.self) }
  }

  /// The node name in a tensor reference (`node`, `node:index` or `node:output:index`).
  package static func nodeName(_ reference: String) -> String {
    String(reference.split(separator: ":", omittingEmptySubsequences: false).first ?? "")
  }

  private static func dataInputs(_ node: Tensorflow_NodeDef) -> [String] {
    node.input.filter { !$0.hasPrefix("^") }
  }
}
