/// How a body spells references to tensors.
///
/// A `GraphDef`'s top-level graph numbers the outputs of a node (`node`, `node:1`); a
/// `FunctionDef` body names an argument by itself and a node's output by output argument and
/// index (`node:output:0`, `bn:batch_mean:0`).
public enum ReferenceSyntax: Sendable, Hashable {
  /// `node` or `node:index`, as in a `GraphDef`.
  case graph
  /// `argument` or `node:output_argument:index`, as in a `FunctionDef`.
  case function
}

/// A tensor reference as written in a node's input list, parsed.
///
/// The one parser of tensor references in tfmp: everything else works on ``Input`` values.
public struct TensorReference: Hashable, Sendable, CustomStringConvertible {
  /// The node (or, in a function body, the argument) the reference names.
  public var name: String
  /// The output argument (function bodies only; `nil` in graphs and for arguments).
  public var outputArgument: String?
  /// The output's index: among all outputs in a graph, within the output argument in a function.
  public var index: Int
  /// Whether it is a control input (`^node`), which carries no data.
  public var isControl: Bool

  /// A reference to output `index` of `name` (or to argument `name`, without `outputArgument`).
  public init(name: String, outputArgument: String? = nil, index: Int = 0, isControl: Bool = false)
  {
    self.name = name
    self.outputArgument = outputArgument
    self.index = index
    self.isControl = isControl
  }

  /// Parses `text` as `syntax` spells references.
  ///
  /// - Throws: ``GraphError`` with code `malformedReference` when the text is empty, an index is
  ///   not a non-negative decimal number, or it has more parts than the syntax allows (a wrong
  ///   index is never read as 0).
  public init(parsing text: String, syntax: ReferenceSyntax) throws(GraphError) {
    let isControl = text.hasPrefix("^")
    let body = isControl ? text.dropFirst() : Substring(text)
    let parts = body.split(separator: ":", omittingEmptySubsequences: false)
    func index(_ part: Substring) throws(GraphError) -> Int {
      guard !part.isEmpty, part.allSatisfy(\.isASCII), part.allSatisfy(\.isNumber),
        let value = Int(part)
      else {
        throw GraphError.malformedReference(text, "'\(part)' is not an output index")
      }
      return value
    }
    guard let first = parts.first, !first.isEmpty else {
      throw GraphError.malformedReference(text, "it names no node")
    }
    self.name = String(first)
    self.isControl = isControl
    if isControl {
      guard parts.count == 1 else {
        throw GraphError.malformedReference(text, "a control input names a node only")
      }
      outputArgument = nil
      self.index = 0
      return
    }
    switch (syntax, parts.count) {
    case (_, 1):
      outputArgument = nil
      self.index = 0
    case (.graph, 2):
      outputArgument = nil
      self.index = try index(parts[1])
    case (.function, 2):
      guard !parts[1].isEmpty else {
        throw GraphError.malformedReference(text, "the output argument is empty")
      }
      outputArgument = String(parts[1])
      self.index = 0
    case (.function, 3):
      guard !parts[1].isEmpty else {
        throw GraphError.malformedReference(text, "the output argument is empty")
      }
      outputArgument = String(parts[1])
      self.index = try index(parts[2])
    default:
      throw GraphError.malformedReference(text, "it has \(parts.count - 1) ':' separators")
    }
  }

  /// The reference as `syntax` writes it (the canonical spelling: `node` for output 0 in a graph,
  /// the index always written in a function body).
  public func text(in syntax: ReferenceSyntax) -> String {
    if isControl { return "^" + name }
    switch syntax {
    case .graph: return index == 0 ? name : "\(name):\(index)"
    case .function:
      guard let outputArgument else { return name }
      return "\(name):\(outputArgument):\(index)"
    }
  }

  /// The reference in function syntax when it has an output argument, else in graph syntax.
  public var description: String { text(in: outputArgument == nil ? .graph : .function) }
}
