internal import GraphIR
internal import TensorCore

extension Node {
  /// A `Cast` node from `source` to `destination` reading `input`.
  static func cast(name: String, input: Input, from source: DType, to destination: DType) -> Node {
    Node(
      name: name, op: "Cast", inputs: [input],
      attributes: ["SrcT": .type(source), "DstT": .type(destination), "Truncate": .bool(false)])
  }

  /// Sets the type attribute `attribute`, or element `listIndex` of a type-list attribute (left
  /// alone when the list is shorter).
  mutating func setType(_ attribute: String, _ type: DType, listIndex: Int? = nil) {
    guard let listIndex else {
      attributes[attribute] = .type(type)
      return
    }
    guard case .list(var list)? = attributes[attribute], listIndex < list.types.count else {
      return
    }
    list.types[listIndex] = type
    attributes[attribute] = .list(list)
  }
}

extension Function {
  /// The reference to the single output of a node named `argument` in function bodies (`Cast`'s
  /// `y`, `Const`'s `output`).
  func singleOutput(of node: NodeID, argument: String) -> Input {
    .output(node, OutputSlot(argument: syntax == .function ? argument : nil, index: 0))
  }
}
