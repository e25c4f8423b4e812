public import TensorCore

/// A node's place in its function: an index into ``Function/nodes``.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
  /// The index in the function's node array.
  public var index: Int

  /// The node at `index` of its function.
  public init(_ index: Int) { self.index = index }

  /// Orders nodes by their place in the function.
  public static func < (left: NodeID, right: NodeID) -> Bool { left.index < right.index }

  /// `#` and the index.
  public var description: String { "#\(index)" }
}

/// Which output of a node an input reads: output `index` of output argument `argument` in a
/// function body, output `index` among all outputs in a graph (`argument` is `nil`).
///
/// An op schema turns it into a position among the node's outputs (``OpSchema/outputPosition(of:attributes:)``).
public struct OutputSlot: Hashable, Sendable {
  /// The output argument's name, as function bodies write it; `nil` in a graph.
  public var argument: String?
  /// The index within the argument (function bodies) or among all outputs (graphs).
  public var index: Int

  /// The slot `index` of `argument`.
  public init(argument: String? = nil, index: Int = 0) {
    self.argument = argument
    self.index = index
  }
}

/// Where a data input comes from.
public enum Input: Hashable, Sendable {
  /// The function's argument at this position.
  case argument(Int)
  /// An output of a node of the same function.
  case output(NodeID, OutputSlot)
  /// A reference that names no node or argument of the function; kept as written so that the
  /// model writes back unchanged, and reported by ``GraphVerifier`` and by whatever reads it.
  case unresolved(TensorReference)

  /// The node read, for ``output(_:_:)``.
  public var node: NodeID? {
    if case .output(let node, _) = self { return node }
    return nil
  }
}

/// A node of a function body or graph.
///
/// `original` carries the node as the file stored it (opaque here): when a model is written
/// back, every field tfmp does not model comes from it, and an unchanged node is written as read.
///
/// A value type kept in one copy-on-write box: passes look at nodes far more often than they
/// change them, and copying a node is then one reference, not one per field.
public struct Node: Sendable {
  /// The fields, shared between copies until one of them changes.
  private final class Fields: @unchecked Sendable {
    // Sendable: a box is only written while uniquely referenced (`fields` below).
    var name: String
    var op: String
    var inputs: [Input]
    var controlInputs: [Input]
    var attributes: [String: AttrValue]
    var device: String
    var original: Preserved?

    init(
      name: String, op: String, inputs: [Input], controlInputs: [Input],
      attributes: [String: AttrValue], device: String, original: Preserved?
    ) {
      self.name = name
      self.op = op
      self.inputs = inputs
      self.controlInputs = controlInputs
      self.attributes = attributes
      self.device = device
      self.original = original
    }

    func copy() -> Fields {
      Fields(
        name: name, op: op, inputs: inputs, controlInputs: controlInputs,
        attributes: attributes, device: device, original: original)
    }
  }

  private var box: Fields

  /// The box, copied first when another node shares it.
  private var fields: Fields {
    mutating get {
      if !isKnownUniquelyReferenced(&box) { box = box.copy() }
      return box
    }
  }

  /// The node's name, unique in its function.
  public var name: String {
    get { box.name }
    set { fields.name = newValue }
  }
  /// The op type, verbatim (`MatMul`).
  public var op: String {
    get { box.op }
    set { fields.op = newValue }
  }
  /// The data inputs, in order.
  public var inputs: [Input] {
    get { box.inputs }
    _modify { yield &fields.inputs }
  }
  /// The nodes that must run first (`^node`); they carry no data.
  public var controlInputs: [Input] {
    get { box.controlInputs }
    _modify { yield &fields.controlInputs }
  }
  /// The attributes by name, decoded.
  public var attributes: [String: AttrValue] {
    get { box.attributes }
    _modify { yield &fields.attributes }
  }
  /// The requested device, often empty.
  public var device: String {
    get { box.device }
    set { fields.device = newValue }
  }
  /// The file's own record of the node; `nil` for a node tfmp created.
  public var original: Preserved? {
    get { box.original }
    set { fields.original = newValue }
  }

  /// A node created by tfmp (no file record).
  public init(
    name: String, op: String, inputs: [Input] = [], controlInputs: [Input] = [],
    attributes: [String: AttrValue] = [:], device: String = "", original: Preserved? = nil
  ) {
    box = Fields(
      name: name, op: op, inputs: inputs, controlInputs: controlInputs, attributes: attributes,
      device: device, original: original)
  }

  /// The dtype of attribute `name`, if it holds one.
  public func type(_ name: String) -> DType? {
    guard case .type(let type)? = attributes[name] else { return nil }
    return type
  }
}

/// Something a file format keeps for itself: the original record of a node, a function or a
/// module, with which it writes the model back losslessly. GraphIR neither reads nor changes it.
public struct Preserved: Sendable {
  /// The format's own value.
  public let value: any Sendable

  /// Wraps a format's record.
  public init(_ value: any Sendable) { self.value = value }
}
