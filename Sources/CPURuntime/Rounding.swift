internal import GraphIR
internal import TensorCore

/// How results take the precision their node declares: kernels compute in float32, and an op
/// typed float16 or bfloat16 rounds its results to that type (to nearest, ties to even), as a
/// GPU's Tensor Cores do with float32 accumulation.
enum Rounding {
  /// Puts a kernel's float result in the type `node` declares for it. With `alreadyExact`, the
  /// values are known to be in the declared type and are only labelled.
  static func round(_ tensor: inout Tensor, for node: Node, alreadyExact: Bool = false) {
    guard case .float(var values) = tensor.storage else { return }
    guard let declared = declaredType(of: node), let precision = ReducedPrecision(declared) else {
      tensor.dtype = .float32
      return
    }
    if alreadyExact {
      tensor.dtype = declared
      return
    }
    tensor.storage = .float([])  // so that `values` is the only reference and rounds in place
    precision.round(&values)
    tensor = Tensor(dtype: declared, shape: tensor.shape, storage: .float(values))
  }

  /// The float type a node declares for its result (attribute DstT, T, Tparams or dtype).
  static func declaredType(of node: Node) -> DType? {
    ["DstT", "T", "Tparams", "dtype"].lazy.compactMap { node.type($0) }.first
  }
}
