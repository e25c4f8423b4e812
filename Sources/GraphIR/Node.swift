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
public struct Node: Sendable {
  /// The node's name, unique in its function.
  public var name: String
  /// The op type, verbatim (`MatMul`).
  public var op: String
  /// The data inputs, in order.
  public var inputs: [Input]
  /// The nodes that must run first (`^node`); they carry no data.
  public var controlInputs: [Input]
  /// The attributes by name, decoded.
  public var attributes: [String: AttrValue]
  /// The requested device, often empty.
  public var device: String
  /// The file's own record of the node; `nil` for a node tfmp created.
  public var original: Preserved?

  /// A node created by tfmp (no file record).
  public init(
    name: String, op: String, inputs: [Input] = [], controlInputs: [Input] = [],
    attributes: [String: AttrValue] = [:], device: String = "", original: Preserved? = nil
  ) {
    self.name = name
    self.op = op
    self.inputs = inputs
    self.controlInputs = controlInputs
    self.attributes = attributes
    self.device = device
    self.original = original
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
