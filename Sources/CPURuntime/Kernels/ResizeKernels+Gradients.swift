internal import GraphIR
internal import TensorCore

/// The resizing family's gradients, as TensorFlow's `image_grad.py` writes them, and their
/// kernels: each output's gradient goes back to the source pixels it was read from, with the
/// weights it was read with.
extension ResizeKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    registry.add(
      "ResizeBilinearGrad", inputs: [.fixed("grads", .float32), "original_image"],
      outputs: ["output"], attributes: corners
    ) { context, inputs in
      let (grads, original) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
      let (alignCorners, halfPixel) = (
        try context.bool("align_corners"), try context.bool("half_pixel_centers")
      )
      let (g, d) = (grads.shape.dimensions, original.shape.dimensions)
      guard g.count == 4, d.count == 4, g[0] == d[0], g[3] == d[3], let values = grads.floats
      else {
        throw KernelError(
          "ResizeBilinearGrad needs NHWC gradients and image of one batch and depth, got "
            + "\(grads.shape) and \(original.shape).")
      }
      let rows = bilinear(g[1], d[1], alignCorners: alignCorners, halfPixel: halfPixel)
      let columns = bilinear(g[2], d[2], alignCorners: alignCorners, halfPixel: halfPixel)
      var result = [Float](repeating: 0, count: d[0] * d[1] * d[2] * d[3])
      var index = 0
      for n in 0..<d[0] {
        for (top, bottom, y) in rows {
          for (left, right, x) in columns {
            func add(_ row: Int, _ column: Int, _ c: Int, _ value: Float) {
              result[((n * d[1] + row) * d[2] + column) * d[3] + c] += value
            }
            for c in 0..<d[3] {
              let value = values[index]
              index += 1
              add(top, left, c, value * (1 - y) * (1 - x))
              add(top, right, c, value * (1 - y) * x)
              add(bottom, left, c, value * y * (1 - x))
              add(bottom, right, c, value * y * x)
            }
          }
        }
      }
      return [Tensor(dtype: original.dtype, shape: original.shape, storage: .float(result))]
    }
    registry.add(
      "ResizeNearestNeighborGrad", inputs: ["grads", .fixed("size", .int32)],
      outputs: ["output"], attributes: corners
    ) { context, inputs in
      let (grads, size) = try sizes(context, inputs)
      let (alignCorners, halfPixel) = (
        try context.bool("align_corners"), try context.bool("half_pixel_centers")
      )
      let g = grads.shape.dimensions
      guard let values = grads.floats else {
        throw KernelError("ResizeNearestNeighborGrad takes float gradients, got \(grads.dtype).")
      }
      // The forward pass read output (i, j) from source (rows[i], columns[j]) of this size.
      let rows = nearest(g[1], size.height, alignCorners: alignCorners, halfPixel: halfPixel)
      let columns = nearest(g[2], size.width, alignCorners: alignCorners, halfPixel: halfPixel)
      var result = [Float](repeating: 0, count: g[0] * size.height * size.width * g[3])
      var index = 0
      for n in 0..<g[0] {
        for row in rows {
          for column in columns {
            let start = ((n * size.height + row) * size.width + column) * g[3]
            for c in 0..<g[3] {
              result[start + c] += values[index]
              index += 1
            }
          }
        }
      }
      return [
        Tensor(
          dtype: grads.dtype, shape: Shape([g[0], size.height, size.width, g[3]]),
          storage: .float(result))
      ]
    }
    let names = ["align_corners", "half_pixel_centers"]
    registry.differentiate("ResizeBilinear") { builder, forward throws(GraphError) in
      // The gradient reaching the float32 output, back to the image's type.
      let attributes = GradientBuilder.attributes(names, of: forward)
      return [
        builder.add(
          "ResizeBilinearGrad", [try forward.gradient(), forward.inputs[0]], attributes), nil,
      ]
    }
    registry.differentiate("ResizeNearestNeighbor") { builder, forward throws(GraphError) in
      let attributes = GradientBuilder.attributes(names, of: forward)
      let shape = builder.shape(forward.inputs[0], forward.type)
      let size = builder.slice(shape, begin: [1], end: [3], strides: [1])
      return [
        builder.add("ResizeNearestNeighborGrad", [try forward.gradient(), size], attributes), nil,
      ]
    }
  }
}
