internal import TFProtos

extension Tensorflow_NodeDef {
  /// A `Cast` node from `source` to `destination` reading `input`.
  static func cast(
    name: String, input: String, from source: Tensorflow_DataType,
    to destination: Tensorflow_DataType
  ) -> Tensorflow_NodeDef {
    var node = Tensorflow_NodeDef()
    node.name = name
    node.op = "Cast"
    node.input = [input]
    node.setType("SrcT", source)
    node.setType("DstT", destination)
    var truncate = Tensorflow_AttrValue()
    truncate.b = false
    node.attr["Truncate"] = truncate
    return node
  }

  /// Sets the type attribute `attribute`, or element `listIndex` of a type-list attribute (left
  /// alone when the list is shorter).
  mutating func setType(_ attribute: String, _ type: Tensorflow_DataType, listIndex: Int? = nil) {
    guard let listIndex else {
      var value = Tensorflow_AttrValue()
      value.type = type
      attr[attribute] = value
      return
    }
    guard var value = attr[attribute], case .list(var list)? = value.value,
      listIndex < list.type.count
    else { return }
    list.type[listIndex] = type
    value.list = list
    attr[attribute] = value
  }
}
