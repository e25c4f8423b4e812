internal import GraphIR
internal import TensorCore
internal import Foundation

/// NHWC convolution and pooling: Conv2D, DepthwiseConv2dNative, Conv2DBackpropInput, MaxPool,
/// MaxPoolV2, AvgPool.
enum ConvolutionKernels {
  static func register(in registry: inout OpRegistry) {
    let strided: [OpSchema.Attribute] = [.ints("strides"), .string("padding")]
    let convolving =
      strided + [
        .ints("explicit_paddings", []), .string("data_format", "NHWC"),
        .ints("dilations", [1, 1, 1, 1]),
      ]
    registry.add(
      "Conv2D", inputs: ["input", "filter"], outputs: ["output"], attributes: convolving,
      precision: .allow
    ) { context, inputs in [try groupedConvolution(context, inputs)] }
    registry.add(
      "DepthwiseConv2dNative", inputs: ["input", "filter"], outputs: ["output"],
      attributes: convolving, precision: .allow
    ) { context, inputs in [try convolution(context, inputs, depthwise: true)] }
    let pooling = [.ints("ksize")] + strided + [.string("data_format", "NHWC")]
    // MaxPool's T is float32 when a node leaves it out.
    let maxPooled = OpSchema.Argument("input", type: .attribute("T", defaultType: .float32))
    let maxPool = OpSchema.Argument("output", type: .attribute("T", defaultType: .float32))
    registry.add(
      "MaxPool", inputs: [maxPooled], outputs: [maxPool], attributes: pooling,
      traits: .movesElements, precision: .clear
    ) { context, inputs in [try pool(context, inputs, average: false)] }
    registry.add(
      "AvgPool", inputs: ["value"], outputs: ["output"], attributes: pooling, precision: .infer
    ) { context, inputs in [try pool(context, inputs, average: true)] }
    registry.add(
      "MaxPoolV2", inputs: [maxPooled, .fixed("ksize", .int32), .fixed("strides", .int32)],
      outputs: [maxPool], attributes: [.string("padding"), .string("data_format", "NHWC")],
      traits: .movesElements, precision: .clear
    ) { context, inputs in [try pool(context, inputs, average: false)] }
    // The transposed convolution (Keras's Conv2DTranspose): the gradient of a Conv2D with
    // respect to its input, for an input of `input_sizes`.
    registry.add(
      "Conv2DBackpropInput", inputs: [.fixed("input_sizes", .int32), "filter", "out_backprop"],
      outputs: ["output"], attributes: convolving + [.bool("use_cudnn_on_gpu", true)],
      precision: OpSchema.Precision(.allow)
    ) { context, inputs in [try transposedConvolution(context, inputs)] }

  }

  /// Output size and leading padding of one spatial dimension.
  static func window(
    size: Int, kernel: Int, stride: Int, dilation: Int, padding: String,
    explicit: (Int, Int) = (0, 0)
  ) throws -> (output: Int, before: Int) {
    let extent = (kernel - 1) * dilation + 1
    switch padding {
    case "EXPLICIT":
      let padded = size + explicit.0 + explicit.1
      return (padded >= extent ? (padded - extent) / stride + 1 : 0, explicit.0)
    case "VALID":
      return (size >= extent ? (size - extent) / stride + 1 : 0, 0)
    case "SAME":
      let output = (size + stride - 1) / stride
      let total = Swift.max((output - 1) * stride + extent - size, 0)
      return (output, total / 2)
    default:
      throw KernelError("Padding '\(padding)' is not supported yet (SAME and VALID are).")
    }
  }

  /// Conv2D, whose filter may cover a group of the input channels (`tf.nn.convolution` with
  /// groups, as Keras's grouped and depthwise layers emit it): one channel per group, each group
  /// giving O / C outputs, is a depthwise convolution with the filter seen as [KH, KW, C, O / C]
  /// (the same elements in the same order).
  static func groupedConvolution(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let (x, filter) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
    guard x.shape.rank == 4, filter.shape.rank == 4 else {
      return try convolutionByMatrixProduct(context, inputs)
    }
    let (channels, f) = (x.shape.dimensions[3], filter.shape.dimensions)
    guard f[2] != channels else { return try convolutionByMatrixProduct(context, inputs) }
    guard f[2] == 1, channels > 0, f[3] % channels == 0 else {
      throw KernelError(
        "Grouped convolution with \(f[2]) input channels per group is not supported yet "
          + "(one per group is), got \(x.shape) and \(filter.shape).")
    }
    var depthwise = filter
    depthwise.shape = Shape([f[0], f[1], channels, f[3] / channels])
    return try convolution(context, [x, depthwise], depthwise: true)
  }

  /// For a Conv2D filter [KH, KW, 1, O] over `channels` > 1 inputs (a grouped convolution with
  /// one channel per group, as Keras's `Conv2D(groups=C)` emits), the same elements seen as a
  /// depthwise filter [KH, KW, C, O / C]; `nil` for any other filter.
  static func groupedAsDepthwise(_ filter: Shape, channels: Int) -> Shape? {
    let f = filter.dimensions
    guard f.count == 4, f[2] == 1, channels > 1, f[3] % channels == 0 else { return nil }
    return Shape([f[0], f[1], channels, f[3] / channels])
  }

  static func checkNHWC(_ context: KernelContext) throws {
    let format = try context.string("data_format")
    if format != "NHWC" {
      throw KernelError("Data format \(format) is not supported yet (NHWC is).")
    }
  }

  /// Conv2D as one matrix product: every output position's receptive field becomes a row of a
  /// [positions, KH*KW*C] patch matrix (zeros where it hangs over the padding), and the HWIO filter
  /// already is the [KH*KW*C, O] matrix. ``convolution(_:_:depthwise:)`` is its reference.
  static func convolutionByMatrixProduct(_ context: KernelContext, _ inputs: [Tensor]) throws
    -> Tensor
  {
    try checkNHWC(context)
    let (x, filter) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
    guard x.shape.rank == 4, filter.shape.rank == 4,
      x.shape.dimensions[3] == filter.shape.dimensions[2]
    else {
      throw KernelError(
        "The convolution needs NHWC input and a filter with matching channels, got \(x.shape) and \(filter.shape)."
      )
    }
    let geometry = try Geometry(context, input: x.shape, filter: filter.shape)
    let values = try x.requireFloats()
    let (channels, kh, kw) = (
      x.shape.dimensions[3], filter.shape.dimensions[0], filter.shape.dimensions[1]
    )
    let patchWidth = kh * kw * channels
    let positions = geometry.batch * geometry.rows.output * geometry.columns.output
    let patches = patchMatrix(values, geometry, channels: channels, kh: kh, kw: kw)
    let outputs = filter.shape.dimensions[3]
    let result = Gemm.multiply(
      patches, try filter.requireFloats(), m: positions, k: patchWidth, n: outputs,
      halfB: filter.float16Bits,
      precision: Gemm.sharedPrecision(x, filter), packs: context.weightPacks)
    return Tensor(
      shape: Shape([geometry.batch, geometry.rows.output, geometry.columns.output, outputs]),
      floats: result)
  }

  /// The [positions, KH*KW*C] matrix whose rows are the receptive fields of a convolution's
  /// output positions over NHWC `values` (zeros where a field hangs over the padding); the input
  /// itself for a 1x1 convolution over every position.
  static func patchMatrix(
    _ values: [Float], _ geometry: Geometry, channels: Int, kh: Int, kw: Int
  ) -> [Float] {
    let patchWidth = kh * kw * channels
    let positions = geometry.batch * geometry.rows.output * geometry.columns.output
    let (rows, columns) = (geometry.rows, geometry.columns)
    let pointwise =
      kh == 1 && kw == 1 && geometry.strides == (1, 1) && rows.before == 0 && columns.before == 0
      && rows.output == geometry.height && columns.output == geometry.width
    // A 1x1 convolution over every position multiplies the input itself.
    return pointwise
      ? values
      : [Float](unsafeUninitializedCapacity: positions * patchWidth) { patches, initialized in
        values.withUnsafeBufferPointer { values in
          guard let source = values.baseAddress, let target = patches.baseAddress else { return }
          // Rows of output positions (one image row each) are spread over the cores.
          nonisolated(unsafe) let (input, output) = (source, target)
          let imageRows = geometry.batch * rows.output
          let parts =
            positions * patchWidth >= 1 << 20 ? ProcessInfo.processInfo.activeProcessorCount : 1
          DispatchQueue.concurrentPerform(iterations: parts) { part in
            for imageRow in stride(from: part, to: imageRows, by: parts) {
              let (n, oy) = imageRow.quotientAndRemainder(dividingBy: rows.output)
              for ox in 0..<columns.output {
                let row = output + ((n * rows.output + oy) * columns.output + ox) * patchWidth
                for ky in 0..<kh {
                  let iy = oy * geometry.strides.0 + ky * geometry.dilations.0 - rows.before
                  for kx in 0..<kw {
                    let ix = ox * geometry.strides.1 + kx * geometry.dilations.1 - columns.before
                    let tap = row + (ky * kw + kx) * channels
                    if (0..<geometry.height).contains(iy), (0..<geometry.width).contains(ix) {
                      tap.initialize(
                        from: input + ((n * geometry.height + iy) * geometry.width + ix) * channels,
                        count: channels)
                    } else {
                      tap.initialize(repeating: 0, count: channels)
                    }
                  }
                }
              }
            }
          }
        }
        initialized = positions * patchWidth
      }
  }

  /// The spatial geometry of a convolution: sizes, strides, dilations and padding.
  struct Geometry {
    var batch: Int
    var height: Int
    var width: Int
    var strides: (Int, Int)
    var dilations: (Int, Int)
    var rows: (output: Int, before: Int)
    var columns: (output: Int, before: Int)

    init(_ context: KernelContext, input: Shape, filter: Shape) throws {
      let d = input.dimensions
      (batch, height, width) = (d[0], d[1], d[2])
      let strideList = try context.ints("strides")
      let dilationList = try context.ints("dilations")
      strides = (
        strideList.count == 4 ? strideList[1] : 1, strideList.count == 4 ? strideList[2] : 1
      )
      dilations = (
        dilationList.count == 4 ? dilationList[1] : 1, dilationList.count == 4 ? dilationList[2] : 1
      )
      guard strides.0 > 0, strides.1 > 0, dilations.0 > 0, dilations.1 > 0 else {
        throw KernelError("Strides and dilations must be positive.")
      }
      let padding = try context.string("padding")
      let explicit = try context.ints("explicit_paddings")
      guard padding != "EXPLICIT" || explicit.count == 8 else {
        throw KernelError("EXPLICIT padding needs 8 explicit_paddings.")
      }
      rows = try ConvolutionKernels.window(
        size: height, kernel: filter.dimensions[0], stride: strides.0, dilation: dilations.0,
        padding: padding,
        explicit: padding == "EXPLICIT" ? (explicit[2], explicit[3]) : (0, 0))
      columns = try ConvolutionKernels.window(
        size: width, kernel: filter.dimensions[1], stride: strides.1, dilation: dilations.1,
        padding: padding,
        explicit: padding == "EXPLICIT" ? (explicit[4], explicit[5]) : (0, 0))
    }
  }

  /// Conv2DBackpropInput: every output-gradient position spreads its values back over the input
  /// positions its receptive field covers, weighted by the filter. As one matrix product
  /// ([positions, O] times the filter's transpose, [O, KH*KW*C]) and a scatter of the resulting
  /// patch rows into the input (the reverse of ``convolutionByMatrixProduct(_:_:)``).
  static func transposedConvolution(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    try checkNHWC(context)
    let sizes = try Kernels.input(inputs, 0).requireIntegers()
    let (filter, gradient) = (try Kernels.input(inputs, 1), try Kernels.input(inputs, 2))
    _ = try context.allocating(sizes, gradient.dtype)
    if let depthwise = groupedAsDepthwise(filter.shape, channels: sizes.count == 4 ? sizes[3] : 0) {
      // A grouped convolution's (one channel per group): a depthwise one's.
      var seen = filter
      seen.shape = depthwise
      return try depthwiseGradient(context, [inputs[0], seen, gradient], filter: false)
    }
    guard sizes.count == 4, sizes.allSatisfy({ $0 >= 0 }), filter.shape.rank == 4,
      gradient.shape.rank == 4, sizes[3] == filter.shape.dimensions[2],
      gradient.shape.dimensions[3] == filter.shape.dimensions[3],
      gradient.shape.dimensions[0] == sizes[0]
    else {
      throw KernelError(
        "Conv2DBackpropInput needs input_sizes [N, H, W, C], an HWIO filter with C inputs and "
          + "an NHWC gradient with its outputs, got \(sizes), \(filter.shape), \(gradient.shape).")
    }
    let geometry = try Geometry(context, input: Shape(sizes), filter: filter.shape)
    let (rows, columns) = (geometry.rows, geometry.columns)
    guard gradient.shape.dimensions[1] == rows.output,
      gradient.shape.dimensions[2] == columns.output
    else {
      throw KernelError(
        "The gradient \(gradient.shape) is not the shape a convolution of \(sizes) gives "
          + "([\(sizes[0]), \(rows.output), \(columns.output), \(filter.shape.dimensions[3])]).")
    }
    let f = filter.shape.dimensions
    let (kh, kw, channels, outputs) = (f[0], f[1], f[2], f[3])
    let patchWidth = kh * kw * channels
    let positions = geometry.batch * rows.output * columns.output
    let patches = Gemm.multiply(
      try gradient.requireFloats(), try filter.requireFloats(), m: positions, k: outputs,
      n: patchWidth, transposeB: true, precision: Gemm.sharedPrecision(gradient, filter))
    var result = [Float](repeating: 0, count: sizes.reduce(1, *))
    for n in 0..<geometry.batch {
      for oy in 0..<rows.output {
        for ox in 0..<columns.output {
          let row = ((n * rows.output + oy) * columns.output + ox) * patchWidth
          for ky in 0..<kh {
            let iy = oy * geometry.strides.0 + ky * geometry.dilations.0 - rows.before
            guard (0..<geometry.height).contains(iy) else { continue }
            for kx in 0..<kw {
              let ix = ox * geometry.strides.1 + kx * geometry.dilations.1 - columns.before
              guard (0..<geometry.width).contains(ix) else { continue }
              let (source, target) = (
                row + (ky * kw + kx) * channels,
                ((n * geometry.height + iy) * geometry.width + ix) * channels
              )
              for c in 0..<channels { result[target + c] += patches[source + c] }
            }
          }
        }
      }
    }
    return Tensor(shape: Shape(sizes), floats: result)
  }

  /// Conv2D (filter HWIO) or, with `depthwise`, DepthwiseConv2dNative (filter HWCM: each input
  /// channel c makes M outputs c*M+m from its own slice).
  static func convolution(_ context: KernelContext, _ inputs: [Tensor], depthwise: Bool) throws
    -> Tensor
  {
    try checkNHWC(context)
    let (x, filter) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
    guard x.shape.rank == 4, filter.shape.rank == 4,
      x.shape.dimensions[3] == filter.shape.dimensions[2]
    else {
      throw KernelError(
        "The convolution needs NHWC input and a filter with matching channels, got \(x.shape) and \(filter.shape)."
      )
    }
    let (values, weights) = (try x.requireFloats(), try filter.requireFloats())
    let geometry = try Geometry(context, input: x.shape, filter: filter.shape)
    let (batch, height, width, channels) = (
      geometry.batch, geometry.height, geometry.width, x.shape.dimensions[3]
    )
    let f = filter.shape.dimensions
    let (kh, kw, multiplier) = (f[0], f[1], f[3])
    let outputs = depthwise ? channels * multiplier : multiplier
    let (sh, sw) = geometry.strides
    let (dh, dw) = geometry.dilations
    let (rows, columns) = (geometry.rows, geometry.columns)
    var result = [Float](repeating: 0, count: batch * rows.output * columns.output * outputs)
    for n in 0..<batch {
      for oy in 0..<rows.output {
        for ox in 0..<columns.output {
          let base = ((n * rows.output + oy) * columns.output + ox) * outputs
          for ky in 0..<kh {
            let iy = oy * sh + ky * dh - rows.before
            guard (0..<height).contains(iy) else { continue }
            for kx in 0..<kw {
              let ix = ox * sw + kx * dw - columns.before
              guard (0..<width).contains(ix) else { continue }
              let input = ((n * height + iy) * width + ix) * channels
              // Both filter layouts store, per tap and input channel, a row of `multiplier`
              // weights; Conv2D adds the row to every output, depthwise to its own slice.
              let weight = (ky * kw + kx) * channels * multiplier
              for c in 0..<channels {
                let value = values[input + c]
                let row = weight + c * multiplier
                let first = depthwise ? c * multiplier : 0
                for m in 0..<multiplier { result[base + first + m] += value * weights[row + m] }
              }
            }
          }
        }
      }
    }
    return Tensor(shape: Shape([batch, rows.output, columns.output, outputs]), floats: result)
  }

  static func pool(_ context: KernelContext, _ inputs: [Tensor], average: Bool) throws -> Tensor {
    try checkNHWC(context)
    let x = try Kernels.input(inputs, 0)
    guard x.shape.rank == 4 else {
      throw KernelError("Pooling needs an NHWC input, got \(x.shape).")
    }
    let values = try x.requireFloats()
    let d = x.shape.dimensions
    let (batch, height, width, channels) = (d[0], d[1], d[2], d[3])
    // MaxPoolV2 takes the window and strides as inputs.
    let size = inputs.count == 3 ? try inputs[1].requireIntegers() : try context.ints("ksize")
    let strides = inputs.count == 3 ? try inputs[2].requireIntegers() : try context.ints("strides")
    guard size.count == 4, strides.count == 4 else {
      throw KernelError("Pooling needs 4 ksize and strides values.")
    }
    let padding = try context.string("padding")
    let rows = try window(
      size: height, kernel: size[1], stride: strides[1], dilation: 1, padding: padding)
    let columns = try window(
      size: width, kernel: size[2], stride: strides[2], dilation: 1, padding: padding)
    // Per output position, the taps inside the input are combined channel by channel (the
    // contiguous, vectorizable dimension); AvgPool divides by the number of such taps.
    let count = batch * rows.output * columns.output * channels
    let result = [Float](unsafeUninitializedCapacity: count) { result, initialized in
      values.withUnsafeBufferPointer { values in
        guard let source = values.baseAddress, let target = result.baseAddress else { return }
        for n in 0..<batch {
          for oy in 0..<rows.output {
            for ox in 0..<columns.output {
              let output = target + ((n * rows.output + oy) * columns.output + ox) * channels
              output.initialize(repeating: average ? 0 : -.infinity, count: channels)
              var taps = 0
              forEachTap(
                oy, ox, size: size, strides: strides, rows: rows, columns: columns,
                height: height, width: width
              ) { iy, ix in
                let input = source + ((n * height + iy) * width + ix) * channels
                taps += 1
                if average {
                  for c in 0..<channels { output[c] += input[c] }
                } else {
                  for c in 0..<channels { output[c] = Swift.max(output[c], input[c]) }
                }
              }
              if average {
                let divisor = Float(Swift.max(taps, 1))
                for c in 0..<channels { output[c] /= divisor }
              }
            }
          }
        }
      }
      initialized = count
    }
    return Tensor(shape: Shape([batch, rows.output, columns.output, channels]), floats: result)
  }

  /// Calls `body` with the input row and column of each tap of output position (`oy`, `ox`)'s
  /// pooling window (`size` and `strides` in NHWC order) that lies inside the input, row by row.
  @inline(__always)
  static func forEachTap(
    _ oy: Int, _ ox: Int, size: [Int], strides: [Int], rows: (output: Int, before: Int),
    columns: (output: Int, before: Int), height: Int, width: Int, _ body: (Int, Int) -> Void
  ) {
    for ky in 0..<size[1] {
      let iy = oy * strides[1] + ky - rows.before
      guard (0..<height).contains(iy) else { continue }
      for kx in 0..<size[2] {
        let ix = ox * strides[2] + kx - columns.before
        guard (0..<width).contains(ix) else { continue }
        body(iy, ix)
      }
    }
  }
}
