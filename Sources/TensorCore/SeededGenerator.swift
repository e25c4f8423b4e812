internal import Foundation

/// A reproducible random number generator (SplitMix64): the same seed gives the same sequence on
/// every machine. `tfmp validate` draws its random inputs with it, and property tests replay a
/// failure from the seed in its message.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
  private var state: UInt64

  /// Creates a generator whose sequence is fixed by `seed`.
  public init(seed: UInt64) {
    state = seed
  }

  /// The next 64 random bits.
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A sample of the standard normal distribution (Box-Muller).
  public mutating func normal() -> Double {
    let u = Double(next() >> 11) / Double(1 << 53)
    let v = Double(next() >> 11) / Double(1 << 53)
    return (-2 * Foundation.log(max(u, 1e-300))).squareRoot() * Foundation.cos(2 * Double.pi * v)
  }
}
