extension UnsafeBufferPointer {
  /// The address of the first element, for kernels that hand buffers to pointer loops.
  ///
  /// - Precondition: The buffer has an address (Swift arrays give one even when empty).
  var start: UnsafePointer<Element> {
    guard let baseAddress else { preconditionFailure("a kernel's buffer has no address") }
    return baseAddress
  }
}

extension UnsafeMutableBufferPointer {
  /// The address of the first element, for kernels that hand buffers to pointer loops.
  ///
  /// - Precondition: The buffer has an address (Swift arrays give one even when empty).
  var start: UnsafeMutablePointer<Element> {
    guard let baseAddress else { preconditionFailure("a kernel's buffer has no address") }
    return baseAddress
  }
}
