import GraphIR

@testable import CPURuntime

extension KernelContext {
  /// The context a kernel of `node` gets once its function is planned: the attributes completed
  /// with the defaults of the op's schema.
  init(planned node: Node) throws {
    var planned = node
    if let schema = OpRegistry.standard.schema(for: node.op) {
      planned.attributes = try schema.completing(node.attributes)
    }
    self.init(node: planned)
  }
}
