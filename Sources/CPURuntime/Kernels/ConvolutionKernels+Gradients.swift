internal import GraphIR
internal import TensorCore

/// The convolution family's gradients (TensorFlow's `nn_grad.py`) and the kernels they need:
/// `Conv2DBackpropFilter` and `MaxPoolGrad` (`Conv2DBackpropInput` is a layer of its own).
extension ConvolutionKernels {
  static func registerGradients(in registry: inout OpRegistry) {
    let convolving: [OpSchema.Attribute] = [
      .ints("strides"), .string("padding"), .ints("explicit_paddings", []),
      .string("data_format", "NHWC"), .ints("dilations", [1, 1, 1, 1]),
      .bool("use_cudnn_on_gpu", true),
    ]
    registry.add(
      "Conv2DBackpropFilter", inputs: ["input", .fixed("filter_sizes", .int32), "out_backprop"],
      outputs: ["output"], attributes: convolving
    ) { context, inputs in [try filterGradient(context, inputs)] }
    // MaxPoolGrad's T is float32 when a node leaves it out.
    let pooled = { (name: String) in
      OpSchema.Argument(name, type: .attribute("T", defaultType: .float32))
    }
    registry.add(
      "MaxPoolGrad", inputs: [pooled("orig_input"), pooled("orig_output"), pooled("grad")],
      outputs: [pooled("output")],
      attributes: [
        .ints("ksize"), .ints("strides"), .string("padding"), .ints("explicit_paddings", []),
        .string("data_format", "NHWC"),
      ]
    ) { context, inputs in [try maxPoolGradient(context, inputs)] }

    let depthwise: [OpSchema.Attribute] = [
      .ints("strides"), .string("padding"), .ints("explicit_paddings", []),
      .string("data_format", "NHWC"), .ints("dilations", [1, 1, 1, 1]),
    ]
    registry.add(
      "DepthwiseConv2dNativeBackpropInput",
      inputs: [.fixed("input_sizes", .int32), "filter", "out_backprop"], outputs: ["output"],
      attributes: depthwise
    ) { context, inputs in [try depthwiseGradient(context, inputs, filter: false)] }
    registry.add(
      "DepthwiseConv2dNativeBackpropFilter",
      inputs: ["input", .fixed("filter_sizes", .int32), "out_backprop"], outputs: ["output"],
      attributes: depthwise
    ) { context, inputs in [try depthwiseGradient(context, inputs, filter: true)] }
    registry.differentiate("DepthwiseConv2dNative") { builder, forward throws(GraphError) in
      let (x, filter, gradient) = (forward.inputs[0], forward.inputs[1], try forward.gradient())
      let attributes = GradientBuilder.attributes(
        ["strides", "padding", "explicit_paddings", "data_format", "dilations"], of: forward)
      return [
        builder.add(
          "DepthwiseConv2dNativeBackpropInput", [builder.shape(x, forward.type), filter, gradient],
          attributes),
        builder.add(
          "DepthwiseConv2dNativeBackpropFilter",
          [x, builder.shape(filter, forward.type), gradient],
          attributes),
      ]
    }
    registry.differentiate("Conv2D") { builder, forward throws(GraphError) in
      let (x, filter, gradient) = (forward.inputs[0], forward.inputs[1], try forward.gradient())
      var attributes = forward.node.attributes.filter {
        ["T", "strides", "padding", "explicit_paddings", "data_format", "dilations"].contains(
          $0.key)
      }
      attributes["T"] = .type(forward.type)
      return [
        builder.add(
          "Conv2DBackpropInput", [builder.shape(x, forward.type), filter, gradient], attributes),
        builder.add(
          "Conv2DBackpropFilter", [x, builder.shape(filter, forward.type), gradient], attributes),
      ]
    }
    registry.differentiate("Conv2DBackpropInput") { builder, forward throws(GraphError) in
      // A transposed convolution (Keras's Conv2DTranspose): its filter's gradient is the
      // filter gradient of the convolution it transposes, read the other way round, and its
      // input's is that convolution (TensorFlow's `_Conv2DBackpropInputGrad`).
      let (filter, input, gradient) = (
        forward.inputs[1], forward.inputs[2], try forward.gradient()
      )
      let attributes = GradientBuilder.attributes(
        ["strides", "padding", "explicit_paddings", "data_format", "dilations"], of: forward)
      return [
        nil,
        builder.add(
          "Conv2DBackpropFilter", [gradient, builder.shape(filter, forward.type), input],
          attributes),
        builder.add("Conv2D", [gradient, filter], attributes),
      ]
    }
    registry.add(
      "AvgPoolGrad", inputs: [.fixed("orig_input_shape", .int32), "grad"], outputs: ["output"],
      attributes: [
        .ints("ksize"), .ints("strides"), .string("padding"), .string("data_format", "NHWC"),
      ]
    ) { context, inputs in [try averagePoolGradient(context, inputs)] }
    registry.differentiate("AvgPool") { builder, forward throws(GraphError) in
      let attributes = GradientBuilder.attributes(
        ["ksize", "strides", "padding", "data_format"], of: forward)
      return [
        builder.add(
          "AvgPoolGrad", [builder.shape(forward.inputs[0], forward.type), try forward.gradient()],
          attributes)
      ]
    }
    registry.differentiate("MaxPool") { builder, forward throws(GraphError) in
      let attributes = GradientBuilder.attributes(
        ["ksize", "strides", "padding", "data_format"], of: forward)
      return [
        builder.add(
          "MaxPoolGrad", [forward.inputs[0], forward.outputs[0], try forward.gradient()],
          attributes)
      ]
    }
  }

  /// Conv2DBackpropFilter: the filter's gradient, the input's patch matrix transposed times the
  /// output gradient ([KH*KW*C, positions] times [positions, O], the HWIO filter's layout).
  static func filterGradient(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    try checkNHWC(context)
    let x = try Kernels.input(inputs, 0)
    let sizes = try Kernels.input(inputs, 1).requireIntegers()
    let gradient = try Kernels.input(inputs, 2)
    _ = try context.allocating(sizes, gradient.dtype)
    if x.shape.rank == 4, sizes.count == 4,
      let depthwise = groupedAsDepthwise(Shape(sizes), channels: x.shape.dimensions[3])
    {
      // A grouped convolution's (one channel per group): a depthwise one's, the same elements.
      let sizes = Tensor(
        dtype: .int32, shape: Shape([4]), storage: .int32(depthwise.dimensions.map(Int32.init)))
      var result = try depthwiseGradient(context, [x, sizes, gradient], filter: true)
      result.shape = Shape(try Kernels.input(inputs, 1).requireIntegers())
      return result
    }
    guard x.shape.rank == 4, sizes.count == 4, sizes.allSatisfy({ $0 > 0 }),
      sizes[2] == x.shape.dimensions[3], gradient.shape.rank == 4,
      gradient.shape.dimensions[3] == sizes[3]
    else {
      throw KernelError(
        "Conv2DBackpropFilter needs an NHWC input, filter_sizes [KH, KW, C, O] with its C, and "
          + "an NHWC gradient with O channels, got \(x.shape), \(sizes), \(gradient.shape).")
    }
    let geometry = try Geometry(context, input: x.shape, filter: Shape(sizes))
    let positions = geometry.batch * geometry.rows.output * geometry.columns.output
    guard gradient.shape.elementCount == positions * sizes[3] else {
      throw KernelError(
        "The gradient \(gradient.shape) is not the shape the convolution of \(x.shape) gives.")
    }
    let patches = patchMatrix(
      try x.requireFloats(), geometry, channels: sizes[2], kh: sizes[0], kw: sizes[1])
    let result = Gemm.multiply(
      patches, try gradient.requireFloats(), m: sizes[0] * sizes[1] * sizes[2], k: positions,
      n: sizes[3], transposeA: true)
    return Tensor(dtype: x.dtype, shape: Shape(sizes), storage: .float(result))
  }

  /// The gradients of a depthwise convolution (filter [KH, KW, C, M]: output channel c*M+m reads
  /// input channel c) with respect to its input (of `input_sizes`) or, with `filter`, its filter
  /// (of `filter_sizes`): each tap's product spread back.
  static func depthwiseGradient(_ context: KernelContext, _ inputs: [Tensor], filter: Bool) throws
    -> Tensor
  {
    try checkNHWC(context)
    let sizes = try Kernels.input(inputs, filter ? 1 : 0).requireIntegers()
    let other = try Kernels.input(inputs, filter ? 0 : 1)
    let gradient = try Kernels.input(inputs, 2)
    let (inputShape, filterShape) =
      filter ? (other.shape, Shape(sizes)) : (Shape(sizes), other.shape)
    guard inputShape.rank == 4, filterShape.rank == 4, gradient.shape.rank == 4,
      inputShape.dimensions[3] == filterShape.dimensions[2],
      gradient.shape.dimensions[3] == filterShape.dimensions[2] * filterShape.dimensions[3]
    else {
      throw KernelError(
        "A depthwise gradient needs an NHWC input, a [KH, KW, C, M] filter and an NHWC gradient "
          + "with C*M channels, got \(inputShape), \(filterShape), \(gradient.shape).")
    }
    let geometry = try Geometry(context, input: inputShape, filter: filterShape)
    let (rows, columns) = (geometry.rows, geometry.columns)
    guard gradient.shape.dimensions[1] == rows.output,
      gradient.shape.dimensions[2] == columns.output
    else {
      throw KernelError("The gradient \(gradient.shape) is not the shape the convolution gives.")
    }
    let f = filterShape.dimensions
    let (kh, kw, channels, multiplier) = (f[0], f[1], f[2], f[3])
    let (values, incoming) = (try other.requireFloats(), try gradient.requireFloats())
    var result = [Float](repeating: 0, count: (filter ? filterShape : inputShape).elementCount ?? 0)
    let (height, width) = (geometry.height, geometry.width)
    for n in 0..<geometry.batch {
      for oy in 0..<rows.output {
        for ox in 0..<columns.output {
          let base = ((n * rows.output + oy) * columns.output + ox) * channels * multiplier
          for ky in 0..<kh {
            let iy = oy * geometry.strides.0 + ky * geometry.dilations.0 - rows.before
            guard (0..<height).contains(iy) else { continue }
            for kx in 0..<kw {
              let ix = ox * geometry.strides.1 + kx * geometry.dilations.1 - columns.before
              guard (0..<width).contains(ix) else { continue }
              let input = ((n * height + iy) * width + ix) * channels
              let tap = (ky * kw + kx) * channels * multiplier
              for c in 0..<channels {
                for m in 0..<multiplier {
                  let g = incoming[base + c * multiplier + m]
                  if filter {
                    result[tap + c * multiplier + m] += values[input + c] * g
                  } else {
                    result[input + c] += values[tap + c * multiplier + m] * g
                  }
                }
              }
            }
          }
        }
      }
    }
    return Tensor(
      dtype: gradient.dtype, shape: filter ? filterShape : inputShape, storage: .float(result))
  }

  /// The windows of a 2-D pooling of an NHWC input of `input` sizes, whose gradient has `output`
  /// shape (checked against the windows).
  struct PoolingWindows {
    let size: [Int]
    let strides: [Int]
    let (batch, height, width, channels): (Int, Int, Int, Int)
    let rows: (output: Int, before: Int)
    let columns: (output: Int, before: Int)

    init(_ context: KernelContext, input: [Int], output: Shape) throws {
      try checkNHWC(context)
      (size, strides) = (try context.ints("ksize"), try context.ints("strides"))
      guard input.count == 4, input.allSatisfy({ $0 >= 0 }), size.count == 4, strides.count == 4
      else {
        throw KernelError("Pooling needs an NHWC input and 4 ksize and strides values.")
      }
      (batch, height, width, channels) = (input[0], input[1], input[2], input[3])
      let padding = try context.string("padding")
      rows = try window(
        size: height, kernel: size[1], stride: strides[1], dilation: 1, padding: padding)
      columns = try window(
        size: width, kernel: size[2], stride: strides[2], dilation: 1, padding: padding)
      guard output.dimensions == [batch, rows.output, columns.output, channels] else {
        throw KernelError("The gradient \(output) is not the shape pooling \(input) gives.")
      }
    }

    /// Calls `body` with each output position (its index among the outputs' positions) and the
    /// input positions its window covers inside the input.
    func forEachWindow(_ body: (_ output: Int, _ taps: [Int]) -> Void) {
      for n in 0..<batch {
        for oy in 0..<rows.output {
          for ox in 0..<columns.output {
            var taps: [Int] = []
            forEachTap(
              oy, ox, size: size, strides: strides, rows: rows, columns: columns, height: height,
              width: width
            ) { iy, ix in taps.append((n * height + iy) * width + ix) }
            body((n * rows.output + oy) * columns.output + ox, taps)
          }
        }
      }
    }
  }

  /// AvgPoolGrad: each output position's gradient shared equally by the taps its window averaged
  /// (those inside the input).
  static func averagePoolGradient(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let sizes = try Kernels.input(inputs, 0).requireIntegers()
    let gradient = try Kernels.input(inputs, 1)
    let windows = try PoolingWindows(context, input: sizes, output: gradient.shape)
    let (incoming, channels) = (try gradient.requireFloats(), windows.channels)
    var result = [Float](repeating: 0, count: sizes.reduce(1, *))
    windows.forEachWindow { output, taps in
      let share = 1 / Float(max(taps.count, 1))
      for tap in taps {
        for c in 0..<channels {
          result[tap * channels + c] += incoming[output * channels + c] * share
        }
      }
    }
    return Tensor(dtype: gradient.dtype, shape: Shape(sizes), storage: .float(result))
  }

  /// MaxPoolGrad: each output position's gradient goes to the input element its window's
  /// maximum came from (the first such element in the window, row by row), per channel.
  static func maxPoolGradient(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let x = try Kernels.input(inputs, 0)
    let gradient = try Kernels.input(inputs, 2)
    let windows = try PoolingWindows(context, input: x.shape.dimensions, output: gradient.shape)
    let (values, incoming) = (try x.requireFloats(), try gradient.requireFloats())
    let channels = windows.channels
    var result = [Float](repeating: 0, count: values.count)
    windows.forEachWindow { output, taps in
      for c in 0..<channels {
        var (best, largest) = (-1, -Float.infinity)
        for tap in taps where best < 0 || values[tap * channels + c] > largest {
          (best, largest) = (tap * channels + c, values[tap * channels + c])
        }
        if best >= 0 { result[best] += incoming[output * channels + c] }
      }
    }
    return Tensor(dtype: x.dtype, shape: x.shape, storage: .float(result))
  }
}
