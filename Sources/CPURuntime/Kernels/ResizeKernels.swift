internal import GraphIR
internal import TensorCore

/// Image resizing of NHWC batches, as `tf.image.resize` and Keras's Resizing and UpSampling2D
/// emit it: ResizeNearestNeighbor, ResizeBilinear and ResizeBicubic, with TensorFlow's
/// coordinate conventions (`align_corners`, `half_pixel_centers`).
enum ResizeKernels {
  /// The coordinate convention every resizing op and its gradient takes.
  static let corners: [OpSchema.Attribute] = [
    .bool("align_corners", false), .bool("half_pixel_centers", false),
  ]

  static func register(in registry: inout OpRegistry) {
    registerImageOps(in: &registry)
    registry.add(
      "ResizeNearestNeighbor", inputs: ["images", .fixed("size", .int32)],
      outputs: ["resized_images"], attributes: corners, traits: .movesElements, precision: .clear
    ) { context, inputs in
      let (x, size) = try sizes(context, inputs)
      let (alignCorners, halfPixel) = (
        try context.bool("align_corners"), try context.bool("half_pixel_centers")
      )
      let d = x.shape.dimensions
      let rows = nearest(size.height, d[1], alignCorners: alignCorners, halfPixel: halfPixel)
      let columns = nearest(size.width, d[2], alignCorners: alignCorners, halfPixel: halfPixel)
      var order: [(Int, Int)] = []
      order.reserveCapacity(d[0] * size.height * size.width * d[3])
      for n in 0..<d[0] {
        for row in rows {
          for column in columns {
            let start = ((n * d[1] + row) * d[2] + column) * d[3]
            for c in 0..<d[3] { order.append((0, start + c)) }
          }
        }
      }
      return [
        try ShapeKernels.gather(
          [x], order, dtype: x.dtype, shape: Shape([d[0], size.height, size.width, d[3]]))
      ]
    }
    // Float32 out whatever the input type; in no list, so it stays float32.
    registry.add(
      "ResizeBilinear", inputs: ["images", .fixed("size", .int32)],
      outputs: [.fixed("resized_images", .float32)], attributes: corners
    ) { context, inputs in
      let (x, size) = try sizes(context, inputs)
      let (alignCorners, halfPixel) = (
        try context.bool("align_corners"), try context.bool("half_pixel_centers")
      )
      let d = x.shape.dimensions
      let rows = bilinear(size.height, d[1], alignCorners: alignCorners, halfPixel: halfPixel)
      let columns = bilinear(size.width, d[2], alignCorners: alignCorners, halfPixel: halfPixel)
      let values = try x.floats ?? Kernels.doubles(x).map(Float.init)
      var result: [Float] = []
      result.reserveCapacity(d[0] * size.height * size.width * d[3])
      for n in 0..<d[0] {
        for (top, bottom, y) in rows {
          for (left, right, x) in columns {
            func at(_ row: Int, _ column: Int, _ c: Int) -> Float {
              values[((n * d[1] + row) * d[2] + column) * d[3] + c]
            }
            for c in 0..<d[3] {
              let upper = at(top, left, c) + (at(top, right, c) - at(top, left, c)) * x
              let lower = at(bottom, left, c) + (at(bottom, right, c) - at(bottom, left, c)) * x
              result.append(upper + (lower - upper) * y)
            }
          }
        }
      }
      return [Tensor(shape: Shape([d[0], size.height, size.width, d[3]]), floats: result)]
    }
    registry.add(
      "ResizeBicubic", inputs: ["images", .fixed("size", .int32)],
      outputs: [.fixed("resized_images", .float32)], attributes: corners, bicubic)
    // The mean of the input area each output covers, partly covered pixels weighted by their
    // share (`tf.image.resize(method="area")`).
    registry.add(
      "ResizeArea", inputs: ["images", .fixed("size", .int32)],
      outputs: [.fixed("resized_images", .float32)], attributes: [.bool("align_corners", false)]
    ) { context, inputs in
      let (x, size) = try sizes(context, inputs)
      let alignCorners = try context.bool("align_corners")
      let d = x.shape.dimensions
      let values = try x.floats ?? Kernels.doubles(x).map(Float.init)
      let (rows, columns) = (
        areas(size.height, d[1], alignCorners: alignCorners),
        areas(size.width, d[2], alignCorners: alignCorners)
      )
      let norm =
        1
        / (scale(d[1], size.height, alignCorners: alignCorners)
          * scale(d[2], size.width, alignCorners: alignCorners))
      let result = weightedSums(values, d, rows: rows, columns: columns).map { $0 * norm }
      return [Tensor(shape: Shape([d[0], size.height, size.width, d[3]]), floats: result)]
    }
  }

  /// For each of `output` rows (columns) resized from `input` by area: the source rows it covers
  /// (the last repeated where the area reaches past the edge) and how much of each.
  static func areas(_ output: Int, _ input: Int, alignCorners: Bool) -> [[(Int, Float)]] {
    let scale = self.scale(input, output, alignCorners: alignCorners)
    return (0..<output).map { index in
      let (start, end) = (Float(index) * scale, Float(index + 1) * scale)
      return (Int(start.rounded(.down))..<Int(end.rounded(.up))).map { source in
        let first = Float(source), next = Float(source + 1)
        let weight =
          first < start ? (next > end ? scale : next - start) : (next > end ? end - first : 1)
        return (Swift.min(source, input - 1), weight)
      }
    }
  }

  /// The source row (column) of each of `output` rows (columns) resized from `input`, as
  /// ResizeNearestNeighbor picks it.
  static func nearest(_ output: Int, _ input: Int, alignCorners: Bool, halfPixel: Bool) -> [Int] {
    let scale = self.scale(input, output, alignCorners: alignCorners)
    return (0..<output).map { index in
      let position = halfPixel ? (Float(index) + 0.5) * scale : Float(index) * scale
      let nearest = Int(
        alignCorners ? position.rounded(.toNearestOrAwayFromZero) : position.rounded(.down))
      return Swift.max(0, Swift.min(nearest, input - 1))
    }
  }

  /// For each of `output` rows (columns) resized from `input`: the two source rows ResizeBilinear
  /// interpolates between and the weight of the second.
  static func bilinear(_ output: Int, _ input: Int, alignCorners: Bool, halfPixel: Bool)
    -> [(Int, Int, Float)]
  {
    let scale = self.scale(input, output, alignCorners: alignCorners)
    return (0..<output).map { index in
      let position = halfPixel ? (Float(index) + 0.5) * scale - 0.5 : Float(index) * scale
      let below = position.rounded(.down)
      let lower = Swift.max(Int(below), 0)
      let upper = Swift.min(Int(position.rounded(.up)), input - 1)
      return (lower, upper, position - below)
    }
  }

  /// ResizeBicubic: each output is a 4x4 weighted sum of the inputs around its position, with
  /// TensorFlow's cubic convolution weights read from its table of 1024 steps: Keys's kernel
  /// (a = -0.5) with half-pixel centers, where weights of taps outside the image are zeroed and
  /// the rest renormalized; the legacy kernel (a = -0.75) with edge taps repeated otherwise.
  static func bicubic(_ context: KernelContext, _ inputs: [Tensor]) throws -> [Tensor] {
    let (x, size) = try sizes(context, inputs)
    let (alignCorners, halfPixel) = (
      try context.bool("align_corners"), try context.bool("half_pixel_centers")
    )
    let a: Float = halfPixel ? -0.5 : -0.75
    let steps = 1024
    // For each output row (column): four source rows and their weights.
    func taps(_ output: Int, _ input: Int) -> [(indices: [Int], weights: [Float])] {
      let scale = self.scale(input, output, alignCorners: alignCorners)
      return (0..<output).map { index in
        let position = halfPixel ? (Float(index) + 0.5) * scale - 0.5 : Float(index) * scale
        let floor = position.rounded(.down)
        let base = Int(floor)
        let step = Int((Float(steps) * (position - floor)).rounded(.toNearestOrEven))
        func near(_ step: Int) -> Float {  // distance step / steps, at most 1
          let t = Float(step) / Float(steps)
          return ((a + 2) * t - (a + 3)) * t * t + 1
        }
        func far(_ step: Int) -> Float {  // distance 1 + step / steps
          let t = Float(step) / Float(steps) + 1
          return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        }
        let raw = [far(step), near(step), near(steps - step), far(steps - step)]
        let wanted = (-1...2).map { base + $0 }
        let indices = wanted.map { Swift.min(Swift.max($0, 0), input - 1) }
        guard halfPixel else { return (indices, raw) }
        var weights = zip(raw, zip(wanted, indices)).map { $1.0 == $1.1 ? $0 : 0 }
        let total = weights.reduce(0, +)
        if abs(total) >= 1000 * Float.leastNormalMagnitude {
          weights = weights.map { $0 / total }
        }
        return (indices, weights)
      }
    }
    let d = x.shape.dimensions
    let (rows, columns) = (taps(size.height, d[1]), taps(size.width, d[2]))
    let values = try x.floats ?? Kernels.doubles(x).map(Float.init)
    let result = weightedSums(
      values, d, rows: rows.map { Array(zip($0.indices, $0.weights)) },
      columns: columns.map { Array(zip($0.indices, $0.weights)) })
    return [Tensor(shape: Shape([d[0], size.height, size.width, d[3]]), floats: result)]
  }

  /// Each output of an NHWC batch of `dimensions` resized separably: for output row r and
  /// column c, the sum over `rows[r]`'s (source row, weight) of the weight times the sum over
  /// `columns[c]`'s (source column, weight) of the weight times the input there.
  static func weightedSums(
    _ values: [Float], _ dimensions: [Int], rows: [[(Int, Float)]], columns: [[(Int, Float)]]
  ) -> [Float] {
    let d = dimensions
    var result: [Float] = []
    result.reserveCapacity(d[0] * rows.count * columns.count * d[3])
    for n in 0..<d[0] {
      for row in rows {
        for column in columns {
          for c in 0..<d[3] {
            var sum: Float = 0
            for (source, rowWeight) in row {
              var line: Float = 0
              for (sourceColumn, weight) in column {
                line += weight * values[((n * d[1] + source) * d[2] + sourceColumn) * d[3] + c]
              }
              sum += rowWeight * line
            }
            result.append(sum)
          }
        }
      }
    }
    return result
  }

  /// The images (NHWC) and the output height and width, for an output the context's limits
  /// allow.
  static func sizes(_ context: KernelContext, _ inputs: [Tensor]) throws
    -> (Tensor, (height: Int, width: Int))
  {
    let x = try Kernels.input(inputs, 0)
    let size = try Kernels.input(inputs, 1).requireIntegers()
    guard x.shape.rank == 4, size.count == 2, size.allSatisfy({ $0 > 0 }),
      x.shape.dimensions[1] > 0, x.shape.dimensions[2] > 0
    else {
      throw KernelError(
        "Resizing needs NHWC images with rows and columns and a positive size [height, width], "
          + "got \(x.shape) and \(size).")
    }
    let d = x.shape.dimensions
    _ = try context.allocating([d[0], size[0], size[1], d[3]], x.dtype)
    return (x, (size[0], size[1]))
  }

  /// Input positions per output position, as TensorFlow's `CalculateResizeScale`.
  static func scale(_ input: Int, _ output: Int, alignCorners: Bool) -> Float {
    alignCorners && output > 1
      ? Float(input - 1) / Float(output - 1) : Float(input) / Float(output)
  }
}
