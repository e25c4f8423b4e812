internal import Foundation
internal import GraphIR
public import ModelFormats
internal import TensorCore
internal import Synchronization

/// The values that are the same on every run, decoded once: variables from the checkpoint (or
/// as the model last wrote them: a Keras random layer's seed state) and `Const` nodes (rounded
/// to their declared type).
final class VariableStore: @unchecked Sendable {
  // Sendable: the caches are guarded by `lock`; the checkpoint reader is immutable.
  private let checkpoint: CheckpointReader?
  /// Float32 checkpoint tensors a conversion stores reduced but has not written: read rounded.
  private let storedReduced: [String: ReducedPrecision]
  private var variables: [String: Tensor] = [:]
  /// Decoded `Const` values by function and node.
  private var constants: [String: Tensor] = [:]
  private let lock = NSLock()
  /// How large a constant may be.
  private let limits: ResourceLimits
  /// Checkpoint values decoded by other interpreters over the same checkpoint.
  private let shared: SharedVariables?

  init(
    checkpoint: CheckpointReader?, storedReduced: [String: ReducedPrecision] = [:],
    limits: ResourceLimits, sharing shared: SharedVariables? = nil
  ) {
    self.checkpoint = checkpoint
    self.storedReduced = storedReduced
    self.limits = limits
    self.shared = shared.flatMap { $0.checkpoint === checkpoint ? $0 : nil }
  }

  /// Gives variable `key` the value `value`, of the dtype and shape it has.
  func assign(_ key: String, _ value: Tensor) throws {
    let current = try variable(key)
    guard value.dtype == current.dtype, value.shape == current.shape else {
      throw KernelError(
        "The variable '\(key)' is \(current.dtype) \(current.shape), but is assigned a \(value.dtype) \(value.shape) value."
      )
    }
    lock.withLock { variables[key] = value }
  }

  /// A variable's value, read from the checkpoint once.
  func variable(_ key: String) throws -> Tensor {
    if let cached = lock.withLock({ variables[key] }) { return cached }
    let tensor =
      try shared?.value(key, roundedTo: storedReduced[key]) { try read(key) } ?? read(key)
    lock.withLock { variables[key] = tensor }
    return tensor
  }

  /// Variable `key` as the checkpoint stores it, rounded where the conversion stores it reduced.
  private func read(_ key: String) throws -> Tensor {
    guard let checkpoint, let entry = checkpoint.entry(forKey: key) else {
      throw KernelError(code: .missingVariable, "The checkpoint has no entry '\(key)'.")
    }
    var tensor = try checkpoint.withBytes(of: entry) { bytes -> Tensor in
      guard let tensor = TensorDecoding.tensor(bytes, dtype: entry.dtype, shape: entry.shape) else {
        throw KernelError(
          code: .unsupported, "The variable '\(key)' is \(entry.dtype), which tfmp cannot run yet.")
      }
      return tensor
    }
    if let precision = storedReduced[key], case .float(var values) = tensor.storage,
      entry.dtype == .float32
    {
      precision.round(&values)
      tensor = Tensor(dtype: precision.dtype, shape: tensor.shape, storage: .float(values))
    }
    return tensor
  }

  /// The value of `Const` node `node` (at `id` of `function`), decoded once.
  func constant(_ node: Node, id: NodeID, in function: String) throws -> Tensor {
    let key = function + "\u{0}" + String(id.index)
    if let cached = lock.withLock({ constants[key] }) { return cached }
    var tensor = try TensorDecoding.constant(node, limits: limits)
    Rounding.round(&tensor, for: node)
    lock.withLock { constants[key] = tensor }
    return tensor
  }
}

/// Checkpoint values decoded once for every interpreter over one checkpoint that is given them:
/// the conversions an accuracy search tries read the same weights, some of them rounded to the
/// reduced type. A variable written by a run stays that interpreter's own.
public final class SharedVariables: Sendable {
  let checkpoint: CheckpointReader
  private let values = Mutex<[String: Tensor]>([:])

  /// Values shared among interpreters reading `checkpoint`.
  public init(checkpoint: CheckpointReader) { self.checkpoint = checkpoint }

  /// Variable `key` read rounded to `precision` (as stored, when `nil`): decoded by `read` the
  /// first time.
  func value(_ key: String, roundedTo precision: ReducedPrecision?, read: () throws -> Tensor)
    throws -> Tensor
  {
    let slot = key + "\u{0}" + (precision?.rawValue ?? "")
    if let value = values.withLock({ $0[slot] }) { return value }
    let value = try read()
    values.withLock { $0[slot] = value }
    return value
  }
}
