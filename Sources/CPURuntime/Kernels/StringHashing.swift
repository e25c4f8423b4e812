/// The string hashes TensorFlow buckets strings with: FarmHash's 64-bit fingerprint
/// (`StringToHashBucketFast`, `Fingerprint64` in TensorFlow) and SipHash-2-4 with a 128-bit key
/// (`StringToHashBucketStrong`). Both are fixed functions of the bytes: a model's buckets depend
/// on them bit for bit.
enum StringHashing {
  private static let k0: UInt64 = 0xc3a5_c85c_97cb_3127
  private static let k1: UInt64 = 0xb492_b66f_be98_f273
  private static let k2: UInt64 = 0x9ae1_6a3b_2f90_404f

  /// FarmHash's `Fingerprint64` (its `farmhashna` 64-bit hash) of `bytes`.
  static func fingerprint64(_ bytes: [UInt8]) -> UInt64 {
    bytes.withUnsafeBytes { raw in
      let reader = Reader(raw)
      let length = raw.count
      if length <= 16 { return upTo16(reader, length) }
      if length <= 32 { return upTo32(reader, length) }
      if length <= 64 { return upTo64(reader, length) }
      return longer(reader, length)
    }
  }

  /// Little-endian loads from the bytes being hashed.
  private struct Reader {
    let raw: UnsafeRawBufferPointer
    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }
    func u64(_ offset: Int) -> UInt64 {
      UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
    func u32(_ offset: Int) -> UInt64 {
      UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    }
    subscript(offset: Int) -> UInt64 { UInt64(raw[offset]) }
  }

  private static func rotate(_ value: UInt64, _ shift: UInt64) -> UInt64 {
    shift == 0 ? value : (value >> shift) | (value << (64 - shift))
  }

  private static func shiftMix(_ value: UInt64) -> UInt64 { value ^ (value >> 47) }

  private static func mix(_ u: UInt64, _ v: UInt64, _ mul: UInt64) -> UInt64 {
    var a = (u ^ v) &* mul
    a ^= a >> 47
    var b = (v ^ a) &* mul
    b ^= b >> 47
    return b &* mul
  }

  private static func upTo16(_ s: Reader, _ length: Int) -> UInt64 {
    let n = UInt64(length)
    if length >= 8 {
      let mul = k2 &+ n &* 2
      let a = s.u64(0) &+ k2
      let b = s.u64(length - 8)
      let c = rotate(b, 37) &* mul &+ a
      let d = (rotate(a, 25) &+ b) &* mul
      return mix(c, d, mul)
    }
    if length >= 4 {
      let mul = k2 &+ n &* 2
      return mix(n &+ (s.u32(0) << 3), s.u32(length - 4), mul)
    }
    if length > 0 {
      let y = UInt32(truncatingIfNeeded: s[0] &+ (s[length >> 1] << 8))
      let z = UInt32(truncatingIfNeeded: n &+ (s[length - 1] << 2))
      return shiftMix(UInt64(y) &* k2 ^ UInt64(z) &* k0) &* k2
    }
    return k2
  }

  private static func upTo32(_ s: Reader, _ length: Int) -> UInt64 {
    let mul = k2 &+ UInt64(length) &* 2
    let a = s.u64(0) &* k1
    let b = s.u64(8)
    let c = s.u64(length - 8) &* mul
    let d = s.u64(length - 16) &* k2
    return mix(rotate(a &+ b, 43) &+ rotate(c, 30) &+ d, a &+ rotate(b &+ k2, 18) &+ c, mul)
  }

  private static func upTo64(_ s: Reader, _ length: Int) -> UInt64 {
    let mul = k2 &+ UInt64(length) &* 2
    let a = s.u64(0) &* k2
    let b = s.u64(8)
    let c = s.u64(length - 8) &* mul
    let d = s.u64(length - 16) &* k2
    let y = rotate(a &+ b, 43) &+ rotate(c, 30) &+ d
    let z = mix(y, a &+ rotate(b &+ k2, 18) &+ c, mul)
    let e = s.u64(16) &* mul
    let f = s.u64(24)
    let g = (y &+ s.u64(length - 32)) &* mul
    let h = (z &+ s.u64(length - 24)) &* mul
    return mix(rotate(e &+ f, 43) &+ rotate(g, 30) &+ h, e &+ rotate(f &+ a, 18) &+ g, mul)
  }

  /// A 16-byte state from 32 bytes at `offset` and two seeds.
  private static func weak32(_ s: Reader, _ offset: Int, _ a: UInt64, _ b: UInt64)
    -> (UInt64, UInt64)
  {
    let (w, x, y, z) = (s.u64(offset), s.u64(offset + 8), s.u64(offset + 16), s.u64(offset + 24))
    var a = a &+ w
    var b = rotate(b &+ a &+ z, 21)
    let c = a
    a = a &+ x &+ y
    b = b &+ rotate(a, 44)
    return (a &+ z, b &+ c)
  }

  /// More than 64 bytes: 64-byte blocks into a 56-byte state, then the last 64 bytes.
  private static func longer(_ s: Reader, _ length: Int) -> UInt64 {
    let seed: UInt64 = 81
    var x = seed
    var y = seed &* k1 &+ 113
    var z = shiftMix(y &* k2 &+ 113) &* k2
    var v: (UInt64, UInt64) = (0, 0)
    var w: (UInt64, UInt64) = (0, 0)
    x = x &* k2 &+ s.u64(0)
    let end = ((length - 1) / 64) * 64
    var offset = 0
    repeat {
      x = rotate(x &+ y &+ v.0 &+ s.u64(offset + 8), 37) &* k1
      y = rotate(y &+ v.1 &+ s.u64(offset + 48), 42) &* k1
      x ^= w.1
      y = y &+ v.0 &+ s.u64(offset + 40)
      z = rotate(z &+ w.0, 33) &* k1
      v = weak32(s, offset, v.1 &* k1, x &+ w.0)
      w = weak32(s, offset + 32, z &+ w.1, y &+ s.u64(offset + 16))
      swap(&z, &x)
      offset += 64
    } while offset != end
    let mul = k1 &+ ((z & 0xff) << 1)
    offset = length - 64
    w.0 = w.0 &+ UInt64((length - 1) & 63)
    v.0 = v.0 &+ w.0
    w.0 = w.0 &+ v.0
    x = rotate(x &+ y &+ v.0 &+ s.u64(offset + 8), 37) &* mul
    y = rotate(y &+ v.1 &+ s.u64(offset + 48), 42) &* mul
    x ^= w.1 &* 9
    y = y &+ v.0 &* 9 &+ s.u64(offset + 40)
    z = rotate(z &+ w.0, 33) &* mul
    v = weak32(s, offset, v.1 &* mul, x &+ w.0)
    w = weak32(s, offset + 32, z &+ w.1, y &+ s.u64(offset + 16))
    swap(&z, &x)
    return mix(
      mix(v.0, w.0, mul) &+ shiftMix(y) &* k0 &+ z, mix(v.1, w.1, mul) &+ x, mul)
  }

  /// SipHash-2-4 of `bytes` under the key (`key0`, `key1`).
  static func sipHash24(_ bytes: [UInt8], _ key0: UInt64, _ key1: UInt64) -> UInt64 {
    var v0 = key0 ^ 0x736f_6d65_7073_6575
    var v1 = key1 ^ 0x646f_7261_6e64_6f6d
    var v2 = key0 ^ 0x6c79_6765_6e65_7261
    var v3 = key1 ^ 0x7465_6462_7974_6573
    func round() {
      v0 = v0 &+ v1
      v1 = (v1 << 13 | v1 >> 51) ^ v0
      v0 = v0 << 32 | v0 >> 32
      v2 = v2 &+ v3
      v3 = (v3 << 16 | v3 >> 48) ^ v2
      v0 = v0 &+ v3
      v3 = (v3 << 21 | v3 >> 43) ^ v0
      v2 = v2 &+ v1
      v1 = (v1 << 17 | v1 >> 47) ^ v2
      v2 = v2 << 32 | v2 >> 32
    }
    func absorb(_ word: UInt64) {
      v3 ^= word
      round()
      round()
      v0 ^= word
    }
    let whole = bytes.count / 8 * 8
    for start in stride(from: 0, to: whole, by: 8) {
      var word: UInt64 = 0
      for index in 0..<8 { word |= UInt64(bytes[start + index]) << (8 * UInt64(index)) }
      absorb(word)
    }
    // The last word: the remaining bytes, and the length's low byte at the top.
    var last = UInt64(truncatingIfNeeded: bytes.count) << 56
    for index in whole..<bytes.count {
      last |= UInt64(bytes[index]) << (8 * UInt64(index - whole))
    }
    absorb(last)
    v2 ^= 0xff
    for _ in 0..<4 { round() }
    return v0 ^ v1 ^ v2 ^ v3
  }
}
