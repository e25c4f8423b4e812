internal import GraphIR
internal import TensorCore

/// NDHWC convolution and pooling (video and volumetric models, Keras's Conv3D, Conv3DTranspose,
/// MaxPooling3D and AveragePooling3D): Conv3D, Conv3DBackpropInputV2, MaxPool3D, AvgPool3D; and
/// for their gradients Conv3DBackpropFilterV2, MaxPool3DGrad, AvgPool3DGrad.
enum VolumeKernels {
  static func register(in registry: inout OpRegistry) {
    let strided: [OpSchema.Attribute] = [
      .ints("strides"), .string("padding"), .string("data_format", "NDHWC"),
    ]
    let convolving = strided + [.ints("dilations", [1, 1, 1, 1, 1])]
    registry.add(
      "Conv3D", inputs: ["input", "filter"], outputs: ["output"], attributes: convolving,
      precision: .allow
    ) { context, inputs in
      let (x, filter) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
      let geometry = try Geometry(context, input: x.shape, filter: filter.shape)
      let patches = try geometry.patches(of: x.requireFloats())
      let outputs = filter.shape.dimensions[4]
      let result = Gemm.multiply(
        patches, try filter.requireFloats(), m: geometry.positions, k: geometry.patchWidth,
        n: outputs, precision: Gemm.sharedPrecision(x, filter), packs: context.weightPacks)
      return [Tensor(shape: Shape(geometry.outputDimensions(outputs)), floats: result)]
    }
    registry.add(
      "Conv3DBackpropInputV2",
      inputs: [.init("input_sizes", type: .index("Tshape")), "filter", "out_backprop"],
      outputs: ["output"], attributes: convolving, precision: .allow
    ) { context, inputs in
      let sizes = try Kernels.input(inputs, 0).requireIntegers()
      let (filter, gradient) = (try Kernels.input(inputs, 1), try Kernels.input(inputs, 2))
      _ = try context.allocating(sizes, gradient.dtype)
      let geometry = try Geometry(context, input: Shape(sizes), filter: filter.shape)
      let outputs = filter.shape.dimensions[4]
      guard gradient.shape.dimensions == geometry.outputDimensions(outputs) else {
        throw KernelError(
          "The gradient \(gradient.shape) is not the shape a convolution of \(sizes) gives, "
            + "\(geometry.outputDimensions(outputs)).")
      }
      let patches = Gemm.multiply(
        try gradient.requireFloats(), try filter.requireFloats(), m: geometry.positions,
        k: outputs, n: geometry.patchWidth, transposeB: true,
        precision: Gemm.sharedPrecision(gradient, filter))
      return [Tensor(shape: Shape(sizes), floats: geometry.scatter(patches))]
    }
    registry.add(
      "Conv3DBackpropFilterV2",
      inputs: ["input", .fixed("filter_sizes", .int32), "out_backprop"], outputs: ["output"],
      attributes: convolving, precision: .allow
    ) { context, inputs in
      // The input's patch matrix transposed times the output gradient: [patch, outputs], the
      // DHWIO filter's layout.
      let x = try Kernels.input(inputs, 0)
      let sizes = try Kernels.input(inputs, 1).requireIntegers()
      let gradient = try Kernels.input(inputs, 2)
      let shape = try context.allocating(sizes, gradient.dtype)
      let geometry = try Geometry(context, input: x.shape, filter: shape)
      guard gradient.shape.dimensions == geometry.outputDimensions(sizes[4]) else {
        throw KernelError(
          "The gradient \(gradient.shape) is not the shape a convolution of \(x.shape) by a "
            + "\(shape) filter gives, \(geometry.outputDimensions(sizes[4])).")
      }
      let product = Gemm.multiply(
        try geometry.patches(of: x.requireFloats()), try gradient.requireFloats(),
        m: geometry.patchWidth, k: geometry.positions, n: sizes[4], transposeA: true,
        precision: Gemm.sharedPrecision(x, gradient))
      return [Tensor(shape: shape, floats: product)]
    }
    // TensorFlow's lists have 3-D pooling clear and infer, but TensorFlow has no float16 CPU
    // kernel for either: they are converted to bfloat16 only.
    let pooling = [OpSchema.Attribute.ints("ksize")] + strided
    registry.add(
      "MaxPool3D", inputs: ["input"], outputs: ["output"], attributes: pooling,
      traits: .movesElements, precision: .bfloat16Only(.clear)
    ) { context, inputs in [try pool(context, try Kernels.input(inputs, 0), average: false)] }
    registry.add(
      "AvgPool3D", inputs: ["input"], outputs: ["output"], attributes: pooling,
      precision: .bfloat16Only(.infer)
    ) { context, inputs in [try pool(context, try Kernels.input(inputs, 0), average: true)] }
    registry.add(
      "MaxPool3DGrad",
      inputs: [
        .init("orig_input", type: .attribute("TInput", defaultType: .float32)),
        .init("orig_output", type: .attribute("TInput", defaultType: .float32)),
        .init("grad", type: .attribute("T", defaultType: .float32)),
      ],
      outputs: [.init("output", type: .attribute("T", defaultType: .float32))],
      attributes: pooling
    ) { context, inputs in
      let (x, y) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
      let gradient = try Kernels.input(inputs, 2)
      let (values, maxima) = (try x.requireFloats(), try y.requireFloats())
      return [
        try poolGradient(context, input: x.shape, gradient) { position, c, taps, share in
          // As TensorFlow's: the first tap equal to the window's maximum gets it all.
          if case let tap?? = taps.first(where: {
            $0.map { values[$0 + c] == maxima[position] } ?? false
          }) {
            share(tap, 1)
          }
        }
      ]
    }
    registry.add(
      "AvgPool3DGrad",
      inputs: [.fixed("orig_input_shape", .int32), "grad"], outputs: ["output"],
      attributes: pooling
    ) { context, inputs in
      let sizes = try Kernels.input(inputs, 0).requireIntegers()
      let gradient = try Kernels.input(inputs, 1)
      return [
        try poolGradient(
          context, input: try context.allocating(sizes, gradient.dtype), gradient
        ) { _, _, taps, share in
          // The mean's gradient, shared by the taps inside the input.
          let inside = taps.compactMap { $0 }
          for tap in inside { share(tap, 1 / Float(inside.count)) }
        }
      ]
    }
  }

  /// A 3-D pooling's gradient for an input of shape `input`: for each output position and
  /// channel, `route` calls its `share` with each input tap that gets a part of the gradient
  /// and the part (a weight of the position's gradient).
  static func poolGradient(
    _ context: KernelContext, input: Shape, _ gradient: Tensor,
    route: (_ element: Int, _ channel: Int, _ taps: [Int?], _ share: (Int, Float) -> Void) -> Void
  ) throws -> Tensor {
    let size = try context.ints("ksize")
    guard size.count == 5, input.rank == 5 else {
      throw KernelError("3-D pooling needs an NDHWC input and 5 ksize values, got \(input).")
    }
    let channels = input.dimensions[4]
    let window = Shape([size[1], size[2], size[3], channels, 1])
    let geometry = try Geometry(context, input: input, filter: window, dilated: false)
    let values = try gradient.requireFloats()
    guard gradient.shape.dimensions == geometry.outputDimensions(channels) else {
      throw KernelError(
        "The gradient \(gradient.shape) is not the pooling's output shape "
          + "\(geometry.outputDimensions(channels)).")
    }
    var result = [Float](repeating: 0, count: input.elementCount ?? 0)
    geometry.forEachPosition { position, taps in
      for c in 0..<channels {
        let element = position * channels + c
        route(element, c, taps) { tap, weight in result[tap + c] += weight * values[element] }
      }
    }
    return Tensor(dtype: gradient.dtype, shape: input, storage: .float(result))
  }

  /// MaxPool3D, or AvgPool3D (the mean of the taps inside the input, padding left out).
  static func pool(_ context: KernelContext, _ x: Tensor, average: Bool) throws -> Tensor {
    let size = try context.ints("ksize")
    guard size.count == 5, x.shape.rank == 5 else {
      throw KernelError("3-D pooling needs an NDHWC input and 5 ksize values, got \(x.shape).")
    }
    let channels = x.shape.dimensions[4]
    let window = Shape([size[1], size[2], size[3], channels, 1])
    let geometry = try Geometry(context, input: x.shape, filter: window, dilated: false)
    let values = try x.requireFloats()
    var result: [Float] = []
    result.reserveCapacity(geometry.positions * channels)
    geometry.forEachPosition { _, taps in
      for c in 0..<channels {
        var (total, count) = (average ? Float(0) : -.infinity, 0)
        for case let tap? in taps {
          let value = values[tap + c]
          total = average ? total + value : Swift.max(total, value)
          count += 1
        }
        result.append(average ? total / Float(Swift.max(count, 1)) : total)
      }
    }
    return Tensor(shape: Shape(geometry.outputDimensions(channels)), floats: result)
  }

  /// The geometry of a 3-D window over an NDHWC input: output sizes, strides, dilations and
  /// leading padding per spatial dimension.
  struct Geometry {
    var batch: Int
    var spatial: [Int]
    var channels: Int
    var kernel: [Int]
    var strides: [Int]
    var dilations: [Int]
    var windows: [(output: Int, before: Int)]

    init(_ context: KernelContext, input: Shape, filter: Shape, dilated: Bool = true) throws {
      let format = try context.string("data_format")
      guard format == "NDHWC" else {
        throw KernelError("Data format \(format) is not supported yet (NDHWC is).")
      }
      let (d, f) = (input.dimensions, filter.dimensions)
      guard d.count == 5, f.count == 5, d[4] == f[3] else {
        throw KernelError(
          "The 3-D window needs an NDHWC input and a DHWIO filter with its channels, got "
            + "\(input) and \(filter).")
      }
      let strideList = try context.ints("strides")
      let dilationList = dilated ? try context.ints("dilations") : [1, 1, 1, 1, 1]
      guard strideList.count == 5, dilationList.count == 5,
        (strideList + dilationList).allSatisfy({ $0 > 0 })
      else { throw KernelError("3-D windows need 5 positive strides and dilations.") }
      (batch, spatial, channels, kernel) = (d[0], Array(d[1...3]), d[4], Array(f[0...2]))
      (strides, dilations) = (Array(strideList[1...3]), Array(dilationList[1...3]))
      let padding = try context.string("padding")
      windows = try (0..<3).map { axis in
        try ConvolutionKernels.window(
          size: d[axis + 1], kernel: f[axis], stride: strideList[axis + 1],
          dilation: dilationList[axis + 1], padding: padding)
      }
    }

    var positions: Int { batch * windows.map(\.output).reduce(1, *) }
    var patchWidth: Int { kernel.reduce(1, *) * channels }

    func outputDimensions(_ outputs: Int) -> [Int] { [batch] + windows.map(\.output) + [outputs] }

    /// Calls `body` for each output position (in order) with the input offset of each kernel
    /// tap's first channel, `nil` for a tap in the padding.
    func forEachPosition(_ body: (Int, [Int?]) -> Void) {
      var taps = [Int?](repeating: nil, count: kernel.reduce(1, *))
      var position = 0
      for n in 0..<batch {
        for z in 0..<windows[0].output {
          for y in 0..<windows[1].output {
            for x in 0..<windows[2].output {
              var tap = 0
              for kz in 0..<kernel[0] {
                for ky in 0..<kernel[1] {
                  for kx in 0..<kernel[2] {
                    let iz = z * strides[0] + kz * dilations[0] - windows[0].before
                    let iy = y * strides[1] + ky * dilations[1] - windows[1].before
                    let ix = x * strides[2] + kx * dilations[2] - windows[2].before
                    let inside =
                      (0..<spatial[0]).contains(iz) && (0..<spatial[1]).contains(iy)
                      && (0..<spatial[2]).contains(ix)
                    taps[tap] =
                      inside
                      ? (((n * spatial[0] + iz) * spatial[1] + iy) * spatial[2] + ix) * channels
                      : nil
                    tap += 1
                  }
                }
              }
              body(position, taps)
              position += 1
            }
          }
        }
      }
    }

    /// Each output position's receptive field as a row of [positions, patchWidth] (zeros over
    /// the padding), the filter's DHWIO order.
    func patches(of values: [Float]) -> [Float] {
      var patches = [Float](repeating: 0, count: positions * patchWidth)
      forEachPosition { position, taps in
        for (index, tap) in taps.enumerated() {
          guard let tap else { continue }
          let start = position * patchWidth + index * channels
          for c in 0..<channels { patches[start + c] = values[tap + c] }
        }
      }
      return patches
    }

    /// The reverse of ``patches(of:)``: each patch row added back into the input positions it
    /// came from.
    func scatter(_ patches: [Float]) -> [Float] {
      var result = [Float](repeating: 0, count: batch * spatial.reduce(1, *) * channels)
      forEachPosition { position, taps in
        for (index, tap) in taps.enumerated() {
          guard let tap else { continue }
          let start = position * patchWidth + index * channels
          for c in 0..<channels { result[tap + c] += patches[start + c] }
        }
      }
      return result
    }
  }
}
