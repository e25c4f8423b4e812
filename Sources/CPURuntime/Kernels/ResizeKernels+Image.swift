internal import GraphIR
internal import TensorCore

/// The image ops of Keras's augmentation layers: `ImageProjectiveTransformV3` (RandomRotation,
/// RandomZoom, RandomTranslation, RandomShear), each output pixel read from the input at the
/// point a projective transform maps it to, with TensorFlow's fill modes and nearest or
/// bilinear interpolation; and the RGB-HSV conversions (RandomHue, RandomSaturation).
extension ResizeKernels {
  static func registerImageOps(in registry: inout OpRegistry) {
    for (op, convert) in [("RGBToHSV", hsv(_:)), ("HSVToRGB", rgb(_:))] {
      let type = OpSchema.ElementType.attribute("T", defaultType: .float32)
      registry.add(
        op, inputs: [.init("images", type: type)], outputs: [.init("output", type: type)]
      ) { _, inputs in
        let images = try Kernels.input(inputs, 0)
        guard images.shape.dimensions.last == 3 else {
          throw KernelError("\(op) needs three channels last, not shape \(images.shape).")
        }
        let values = try images.requireFloats()
        var result = [Float](repeating: 0, count: values.count)
        for start in stride(from: 0, to: values.count, by: 3) {
          let converted = convert((values[start], values[start + 1], values[start + 2]))
          (result[start], result[start + 1], result[start + 2]) = converted
        }
        return [Tensor(dtype: images.dtype, shape: images.shape, storage: .float(result))]
      }
    }
    registry.add(
      "ImageProjectiveTransformV3",
      inputs: [
        .init("images", type: "dtype"), .fixed("transforms", .float32),
        .fixed("output_shape", .int32), .fixed("fill_value", .float32),
      ],
      outputs: [.init("transformed_images", type: "dtype")],
      attributes: [.string("interpolation"), .string("fill_mode", "CONSTANT")],
      traits: .movesElements
    ) { context, inputs in
      let images = try Kernels.input(inputs, 0)
      let transforms = try Kernels.input(inputs, 1).requireFloats()
      let size = try Kernels.input(inputs, 2).requireIntegers()
      let fill = try Kernels.input(inputs, 3).requireFloats()
      let d = images.shape.dimensions
      guard d.count == 4, size.count == 2, fill.count == 1 else {
        throw KernelError(
          "Expected NHWC images, an output size [height, width] and one fill value.")
      }
      let (batch, height, width, channels) = (d[0], d[1], d[2], d[3])
      guard transforms.count == 8 || transforms.count == 8 * batch else {
        throw KernelError(
          "Expected one transform of 8 numbers, or one per image, not \(transforms.count) numbers.")
      }
      let mode = try context.string("fill_mode")
      guard let map = coordinateMap(mode) else {
        throw KernelError(
          "The fill mode must be CONSTANT, REFLECT, WRAP or NEAREST, not '\(mode)'.")
      }
      let interpolation = try context.string("interpolation")
      guard ["NEAREST", "BILINEAR"].contains(interpolation) else {
        throw KernelError("The interpolation must be NEAREST or BILINEAR, not '\(interpolation)'.")
      }
      let shape = try context.allocating([batch, size[0], size[1], channels], images.dtype)
      let values = try images.floats ?? Kernels.doubles(images).map(Float.init)
      var result: [Float] = []
      result.reserveCapacity(shape.elementCount ?? 0)
      for n in 0..<batch {
        let t = Array(transforms[(transforms.count == 8 ? 0 : 8 * n)...].prefix(8))
        func read(_ y: Float, _ x: Float, _ c: Int) -> Float {
          // Out of the image (CONSTANT's points, or a corner of one by the edge): the fill value.
          guard y >= 0, y < Float(height), x >= 0, x < Float(width) else { return fill[0] }
          return values[((n * height + Int(y)) * width + Int(x)) * channels + c]
        }
        for row in 0..<size[0] {
          for column in 0..<size[1] {
            let (outX, outY) = (Float(column), Float(row))
            let projection = t[6] * outX + t[7] * outY + 1
            guard projection != 0 else {
              result += [Float](repeating: fill[0], count: channels)
              continue
            }
            let x = map((t[0] * outX + t[1] * outY + t[2]) / projection, width)
            let y = map((t[3] * outX + t[4] * outY + t[5]) / projection, height)
            for c in 0..<channels {
              if interpolation == "NEAREST" {
                result.append(read(y.rounded(), x.rounded(), c))
                continue
              }
              let (top, left) = (y.rounded(.down), x.rounded(.down))
              let (bottom, right) = (top + 1, left + 1)
              let upper = (right - x) * read(top, left, c) + (x - left) * read(top, right, c)
              let lower = (right - x) * read(bottom, left, c) + (x - left) * read(bottom, right, c)
              result.append((bottom - y) * upper + (y - top) * lower)
            }
          }
        }
      }
      return [try Kernels.tensor(result.map(Double.init), like: images, shape: shape)]
    }
  }

  /// Hue (in [0, 1)), saturation and value of an RGB pixel, as TensorFlow computes them.
  private static func hsv(_ pixel: (Float, Float, Float)) -> (Float, Float, Float) {
    let (r, g, b) = pixel
    let value = max(r, g, b)
    let range = value - min(r, g, b)
    let saturation = value > 0 ? range / value : 0
    let norm = (1 / range) * (Float(1) / 6)
    var hue =
      r == value
      ? norm * (g - b) : g == value ? norm * (b - r) + Float(2) / 6 : norm * (r - g) + Float(4) / 6
    if !(range > 0) { hue = 0 }
    if hue < 0 { hue += 1 }
    return (hue, saturation, value)
  }

  /// The RGB pixel of a hue, saturation and value, as TensorFlow computes it.
  private static func rgb(_ pixel: (Float, Float, Float)) -> (Float, Float, Float) {
    let (hue, saturation, value) = pixel
    let h = hue * 6
    func clamped(_ x: Float) -> Float { min(max(x, 0), 1) }
    let weights = (clamped(abs(h - 3) - 1), clamped(-abs(h - 2) + 2), clamped(-abs(h - 4) + 2))
    let gray = -saturation + 1
    return (
      (gray + saturation * weights.0) * value, (gray + saturation * weights.1) * value,
      (gray + saturation * weights.2) * value
    )
  }

  /// Where a fill mode takes a coordinate outside [0, length - 1] (CONSTANT leaves it, for the
  /// fill value); `nil` for a mode TensorFlow does not have.
  private static func coordinateMap(_ mode: String) -> ((Float, Int) -> Float)? {
    switch mode {
    case "CONSTANT": return { coordinate, _ in coordinate }
    case "NEAREST": return { coordinate, length in min(max(coordinate, 0), Float(length - 1)) }
    case "REFLECT":
      return { coordinate, length in
        var c = coordinate
        let size = Float(length)
        if length <= 1 { return 0 }
        let twice = 2 * size
        if c < 0 {
          if c < -twice { c += twice * Float(Int(-c / twice)) }
          c = c < -size ? c + twice : -c - 1
        } else if c > size - 1 {
          c -= twice * Float(Int(c / twice))
          if c >= size { c = twice - c - 1 }
        }
        return min(max(c, 0), size - 1)
      }
    case "WRAP":
      return { coordinate, length in
        var c = coordinate
        let size = Float(length)
        if length <= 1 { return 0 }
        if c < 0 {
          c += size * Float(Int(-c / (size - 1)) + 1)
        } else if c > size - 1 {
          c -= size * Float(Int(c / (size - 1)))
        }
        return min(max(c, 0), size - 1)
      }
    default: return nil
    }
  }
}
