/// The dimensions of a tensor, outermost first.
///
/// A dimension of `-1` is unknown (as in a signature's `[None, 784]`); ``elementCount`` is then `nil`.
public struct Shape: Sendable, Hashable, Codable {
  /// The sizes of the dimensions, outermost first; `-1` marks an unknown size.
  public var dimensions: [Int]

  /// Creates a shape from its dimensions, outermost first.
  public init(_ dimensions: [Int]) {
    self.dimensions = dimensions
  }

  /// The number of dimensions.
  public var rank: Int { dimensions.count }

  /// The number of elements, or `nil` when a dimension is unknown or negative or the product
  /// overflows `Int`.
  ///
  /// Shapes come from files, so the product is checked: a crafted shape can never trap.
  public var elementCount: Int? {
    var count = 1
    for dimension in dimensions {
      guard dimension >= 0 else { return nil }
      let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
      if overflow { return nil }
      count = product
    }
    return count
  }

  /// The number of bytes of `dtype` elements in this shape, or `nil` when unknown, variable-size
  /// or overflowing.
  public func byteCount(of dtype: DType) -> Int? {
    guard let count = elementCount, let size = dtype.byteSize else { return nil }
    let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
    return overflow ? nil : bytes
  }
}

extension Shape: CustomStringConvertible {
  /// The NumPy-style spelling, unknown dimensions as `?`: `[?, 28, 28, 1]`, `[]` for a scalar.
  public var description: String {
    "[" + dimensions.map { $0 < 0 ? "?" : String($0) }.joined(separator: ", ") + "]"
  }
}
