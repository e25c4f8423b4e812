public import TensorCore

/// Sees the outputs of every node while a model runs: the instrumented pass of an accuracy
/// search, or a debugging dump.
///
/// With an observer the interpreter plans without fusion, so that every node's result exists as
/// a tensor of its own. Fused and unfused evaluation perform the same operations with the same
/// roundings, so the signature's outputs are the same with an observer as without (tested);
/// only the time differs, which is why ``OpProfile`` measures fused runs and is not an observer.
public protocol RunObserver: AnyObject, Sendable {
  /// Called once `node` (of op `op`, in `function`, `<graph>` for the top-level graph) has
  /// computed `outputs` from `inputs` (its data inputs; none for a fed node), in evaluation
  /// order; a variable handle or TensorList value is `nil`.
  func observe(function: String, node: String, op: String, inputs: [Tensor?], outputs: [Tensor?])

  /// What the nodes reading `node`'s outputs read instead, if anything: called after
  /// ``observe(function:node:op:inputs:outputs:)``; a `nil` element keeps that output. The accuracy
  /// search feeds every node of a converted model the original's values this way, so that each
  /// node's own error shows apart from what flows into it.
  func replacement(function: String, node: String, outputs: [Tensor?]) -> [Tensor?]?
}

extension RunObserver {
  /// Keeps every output.
  public func replacement(function: String, node: String, outputs: [Tensor?]) -> [Tensor?]? {
    nil
  }
}
