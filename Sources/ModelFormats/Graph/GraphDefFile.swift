public import GraphIR
internal import Foundation
internal import TFProtos
internal import Synchronization

/// A bare binary `GraphDef` (a frozen graph's `.pb`): a top-level graph and its function library,
/// without signatures or a checkpoint.
///
/// What a frozen graph is fed and fetches is named by its nodes, so tfmp gives it one signature,
/// ``signatureKey``: every `Placeholder` something reads is an input (freezing leaves unread
/// ones behind) and every node whose outputs nothing reads is an output (its first output), each
/// named after its node, as a `Session` would feed and fetch them. Writing a converted graph
/// back keeps those names (``replacing(_:)``).
public struct GraphDefFile: Sendable {
  /// The file it was read from.
  public let path: String
  var proto: Tensorflow_GraphDef {
    didSet { decodedModule = DecodedModule() }
  }
  /// ``module()`` once decoded from ``proto``; a change to the proto starts a new, empty one.
  private var decodedModule = DecodedModule()

  /// The key of the signature tfmp gives a frozen graph.
  public static let signatureKey = "serving_default"

  /// Ops that are never fetched for their value, even when nothing reads them.
  private static let notFetched: Set<String> = [
    "NoOp", "Const", "Placeholder", "Assert", "Print", "PrintV2", "SaveV2", "RestoreV2",
  ]

  /// Reads the binary `GraphDef` at `path`.
  ///
  /// - Throws: ``ModelFormatError``: `missingInput`; `malformed` when the bytes are not a
  ///   `GraphDef` (protobuf nested deeper than 200 levels included).
  public init(contentsOf path: String) throws {
    try self.init(try MappedFile(path: path).withBytes { Data($0) }, path: path)
  }

  /// The `GraphDef` in `bytes`, as if read from `path`.
  package init(bytes: [UInt8], path: String) throws {
    try self.init(Data(bytes), path: path)
  }

  private init(_ bytes: Data, path: String) throws {
    self.path = path
    proto = try ProtobufDecoding.decode(
      bytes, as: Tensorflow_GraphDef.self, path: path, what: "binary GraphDef",
      remedy: "Pass a .pb written by tf.io.write_graph(..., as_text=False), or a SavedModel folder."
    )
  }

  /// The graph as a GraphIR module with its one signature (``signatureKey``) and no variables.
  ///
  /// - Throws: ``ModelFormatError`` (code `malformed`) for a tensor reference that cannot be parsed.
  public func module() throws -> Module {
    if let module = decodedModule.value.withLock({ $0 }) { return module }
    var module = try GraphCoding.module(of: proto, path: path)
    module.signatures = [Self.signatureKey: Self.signature(of: module.graph)]
    decodedModule.value.withLock { $0 = module }
    return module
  }

  /// The placeholders of `graph` that something reads as inputs, the nodes nothing reads (data or
  /// control) as outputs.
  static func signature(of graph: Function) -> Signature {
    var read = [Bool](repeating: false, count: graph.nodes.count)
    for node in graph.nodes {
      for input in node.inputs { if let producer = input.node { read[producer.index] = true } }
      for input in node.controlInputs {
        if let producer = input.node { read[producer.index] = true }
      }
    }
    var inputs: [Signature.Endpoint] = []
    var outputs: [Signature.Endpoint] = []
    for (index, node) in graph.nodes.enumerated() {
      let source = Input.output(NodeID(index), OutputSlot())
      if node.op == "Placeholder" && read[index] {
        let shape: ShapeValue =
          if case .shape(let shape)? = node.attributes["shape"] { shape } else {
            ShapeValue(dimensions: [], unknownRank: true)
          }
        inputs.append(
          Signature.Endpoint(
            name: node.name, source: source, dtype: node.type("dtype"), shape: shape))
      } else if !read[index] && !notFetched.contains(node.op) {
        outputs.append(
          Signature.Endpoint(
            name: node.name, source: source, dtype: nil,
            shape: ShapeValue(dimensions: [], unknownRank: true)))
      }
    }
    return Signature(key: signatureKey, inputs: inputs, outputs: outputs)
  }

  /// This file with its graph and library taken from `module` (versions and other fields kept).
  ///
  /// The fetched names stay: where an output of the signature now reads another node (a cast
  /// that a conversion put after the node it named), that node takes the output's name, and the
  /// node that had it is renamed `<name>/tfmp_compute`. Its ``module()`` is that module, not
  /// decoded again (as for ``SavedModel/replacing(_:)``).
  public func replacing(_ module: Module) -> GraphDefFile {
    var module = module
    for output in module.signatures[Self.signatureKey]?.outputs ?? [] {
      guard case .output(let source, let slot) = output.source, slot.index == 0,
        module.graph[source].name != output.name
      else { continue }
      if let named = module.graph.id(of: output.name) {
        module.graph[named].name = module.graph.uniqueName("\(output.name)/tfmp_compute")
      }
      module.graph[source].name = output.name
    }
    var file = self
    GraphCoding.encode(module, into: &file.proto)
    module.signatures = [Self.signatureKey: Self.signature(of: module.graph)]
    file.decodedModule.value.withLock { $0 = module }
    return file
  }

  /// Writes the graph to `path` (through a temporary file renamed into place).
  ///
  /// - Parameters:
  ///   - path: The file to create.
  ///   - overwrite: Whether to replace an existing file at `path`.
  ///   - check: Runs on the complete temporary file before it is renamed into place; when it
  ///     throws, nothing is left behind.
  /// - Throws: ``ModelFormatError``: `outputExists` without `overwrite`; `fileSystem` when the
  ///   file cannot be written; whatever `check` throws.
  public func write(
    to path: String, overwrite: Bool = false, check: (String) throws -> Void = { _ in }
  ) throws {
    let bytes = try SavedModelEncoding.encode(proto)
    try OutputFolder.write(to: path, kind: .file, overwrite: overwrite, protecting: self.path) {
      temporary in
      try OutputFolder.writeFile(bytes, to: temporary)
      try check(temporary)
    }
  }
}
