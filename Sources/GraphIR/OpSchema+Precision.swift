public import TensorCore

/// How an op type takes part in mixed precision. The corresponding TensorFlow concept is the
/// allow / infer / clear / deny lists of grappler's `auto_mixed_precision_lists.h`.
public enum OpClass: String, Sendable, Hashable, Codable {
  /// Fast and safe in reduced precision (Tensor Core math): always converted.
  case allow
  /// Safe in reduced precision, but follows its inputs: converted after allow ops, unless a
  /// deny op lies upstream.
  case infer
  /// Numerically neutral: takes the precision of its neighbours.
  case clear
  /// Numerically dangerous in reduced precision (exponentials, large sums); its danger
  /// propagates downstream through infer and clear ops.
  case deny
}

extension OpSchema {
  /// How an op takes part in mixed precision: its class in the op lists, and the type attribute
  /// that converting it changes. The inputs and outputs whose dtype that attribute holds then
  /// take the reduced type; the others (indices, axes, `FusedBatchNormV3`'s float32 statistics)
  /// keep theirs.
  public struct Precision: Hashable, Sendable {
    /// The class for float16 (TensorFlow's CUDA lists); `nil`: not converted to float16.
    public var float16Class: OpClass?
    /// The class for bfloat16 (TensorFlow's oneDNN lists).
    public var bfloat16Class: OpClass
    /// The type attribute conversion changes, usually `T`.
    public var attribute: String

    /// A class for both types unless `bfloat16` differs, converting `attribute`.
    public init(_ opClass: OpClass, bfloat16: OpClass? = nil, attribute: String = "T") {
      float16Class = opClass
      bfloat16Class = bfloat16 ?? opClass
      self.attribute = attribute
    }

    /// Converted to bfloat16 only, in class `opClass`: TensorFlow has no float16 CPU kernel for
    /// the op, so a float16 conversion would not run where it is checked.
    public static func bfloat16Only(_ opClass: OpClass) -> Precision {
      var precision = Precision(opClass)
      precision.float16Class = nil
      return precision
    }

    /// The class for `precision`; `nil` when the op is not converted to it.
    public func opClass(for precision: ReducedPrecision) -> OpClass? {
      precision == .float16 ? float16Class : bfloat16Class
    }

    /// Tensor Core math: converted whenever the op computes in float32.
    public static let allow = Precision(.allow)
    /// Follows its inputs into reduced precision.
    public static let infer = Precision(.infer)
    /// Takes its neighbours' precision.
    public static let clear = Precision(.clear)
    /// Kept float32, and its danger propagates downstream.
    public static let deny = Precision(.deny)
  }

  /// Whether converting the op gives data input `position` of a node with these attributes the
  /// reduced type.
  public func convertsInput(_ position: Int, attributes: [String: AttrValue]) -> Bool {
    guard let precision else { return false }
    return inputArgument(at: position, attributes: attributes)?.type?.attributeName
      == precision.attribute
  }

  /// Whether converting the op gives output `slot` of a node with these attributes the reduced
  /// type.
  public func convertsOutput(_ slot: OutputSlot, attributes: [String: AttrValue]) -> Bool {
    guard let precision else { return false }
    return outputArgument(of: slot, attributes: attributes)?.type?.attributeName
      == precision.attribute
  }
}

extension OpSchema.ElementType {
  /// The type attribute's name, for ``attribute(_:defaultType:)``.
  var attributeName: String? {
    if case .attribute(let name, _) = self { return name }
    return nil
  }
}
