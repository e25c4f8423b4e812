/// The kind of an error: a set of named codes that grows, so a struct with static members rather
/// than an enum (swift-nio's style). `Domain` is the error type the codes belong to
/// (`ModelFormatError`, `GraphError`, `RuntimeError`), which declares them in an extension
/// constrained to itself, so the codes of one error type never mix with another's.
public struct ErrorCode<Domain>: Hashable, Sendable, CustomStringConvertible {
  /// A short stable name, such as `checksumMismatch`.
  public let name: String

  /// A code named `name`.
  public init(name: String) { self.name = name }

  /// The same as ``name``.
  public var description: String { name }
}
