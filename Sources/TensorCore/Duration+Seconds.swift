extension Duration {
  /// The duration in seconds, for the wall times tfmp reports.
  package var seconds: Double {
    Double(components.seconds) + Double(components.attoseconds) * 1e-18
  }
}
