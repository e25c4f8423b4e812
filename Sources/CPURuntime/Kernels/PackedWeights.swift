internal import CTFMPKernels
internal import Foundation

/// Weights packed for AMX matrix products, kept for the life of an interpreter so that each
/// weight is packed once, not on every run.
///
/// A packing is found by the address of the weight's element buffer and its layout. The cache
/// holds the weight's array too: its buffer then stays allocated (no other array can take its
/// address) and, being shared, can never change in place (a write copies it first), so the
/// address keeps naming the same elements.
final class PackedWeights: @unchecked Sendable {
  // Sendable: `entries` is guarded by `lock`.

  /// Where B starts in its array and how it is laid out (see ``Gemm``), and how it is packed.
  struct Layout: Hashable {
    var offset: Int
    var k: Int
    var n: Int
    var rsb: Int
    var csb: Int
    /// Float16 values split into bfloat16 halves (else rounded to bfloat16).
    var split: Bool
  }

  private struct Key: Hashable {
    var address: UInt
    var count: Int
    var layout: Layout
  }

  private var entries: [Key: (weight: [Float], packing: [UInt16]?)] = [:]
  private let lock = NSLock()

  /// The number of packings kept.
  var count: Int { lock.withLock { entries.count } }

  /// The packing of the B of `layout` in `weight`, made on first use (`nil`: see ``pack(_:_:)``).
  func packing(of weight: [Float], _ layout: Layout) -> [UInt16]? {
    let address = weight.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
    let key = Key(address: address, count: weight.count, layout: layout)
    if let entry = lock.withLock({ entries[key] }) { return entry.packing }
    let packing = Self.pack(weight, layout)
    lock.withLock { entries[key] = (weight, packing) }
    return packing
  }

  /// B of `layout` in `b`, packed by `tfmp_amx_pack_b`; `nil` when split and B holds a value
  /// that is not finite (its products need the float32 kernels).
  static func pack(_ b: [Float], _ layout: Layout) -> [UInt16]? {
    let split: Int32 = layout.split ? 1 : 0
    let count = tfmp_amx_packed_b_count(layout.k, layout.n, split)
    var usable = false
    let packing = [UInt16](unsafeUninitializedCapacity: count) { packed, initialized in
      b.withUnsafeBufferPointer {
        usable =
          tfmp_amx_pack_b(
            layout.k, layout.n, $0.start + layout.offset, layout.rsb, layout.csb, split,
            packed.start) == 0
      }
      initialized = count
    }
    return usable ? packing : nil
  }
}
