internal import GraphIR
internal import TensorCore

/// The pass-through ops' gradients: `Identity` and `Snapshot` pass theirs on; `StopGradient`
/// stops it (`PreventGradient` has none: reaching it is an error, as in TensorFlow).
extension ControlFlowKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    registry.differentiate("Identity", "Snapshot") { _, forward throws(GraphError) in
      [try forward.gradient()]
    }
    registry.differentiate("IdentityN") { _, forward throws(GraphError) in forward.gradients }
    registry.differentiate("StopGradient") { _, _ throws(GraphError) in [nil] }
  }
}
