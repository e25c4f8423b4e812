internal import GraphIR
internal import TensorCore

/// The ops TensorFlow's gradients are written with (the activations' `*Grad` ops, `BiasAddGrad`,
/// `BroadcastGradientArgs`), which differentiation emits and the runtime runs.
enum GradientKernels {
  static func register(in registry: inout OpRegistry) {
    // ReluGrad(gradients, features): the gradient where the features are positive.
    registry.add(
      "ReluGrad", inputs: ["gradients", "features"], outputs: ["backprops"], traits: .elementwise
    ) { _, inputs in
      try [elementwise(inputs) { gradient, feature in feature > 0 ? gradient : 0 }]
    }
    registry.add(
      "Relu6Grad", inputs: ["gradients", "features"], outputs: ["backprops"], traits: .elementwise
    ) { _, inputs in
      try [elementwise(inputs) { gradient, feature in feature > 0 && feature < 6 ? gradient : 0 }]
    }
    // LeakyReluGrad(gradients, features): the gradient, times alpha where the features are not
    // positive.
    registry.add(
      "LeakyReluGrad",
      inputs: ["gradients", "features"].map {
        .init($0, type: .attribute("T", defaultType: .float32))
      },
      outputs: [.init("backprops", type: .attribute("T", defaultType: .float32))],
      attributes: [.float("alpha", 0.2)], traits: .elementwise
    ) { context, inputs in
      let alpha = try context.float("alpha")
      return try [
        elementwise(inputs) { gradient, feature in feature > 0 ? gradient : alpha * gradient }
      ]
    }
    // TanhGrad(y, dy) and SigmoidGrad(y, dy) take the forward op's output first.
    registry.add("TanhGrad", inputs: ["y", "dy"], outputs: ["z"], traits: .elementwise) {
      _, inputs in try [elementwise(inputs) { y, gradient in gradient * (1 - y * y) }]
    }
    registry.add("SigmoidGrad", inputs: ["y", "dy"], outputs: ["z"], traits: .elementwise) {
      _, inputs in try [elementwise(inputs) { y, gradient in gradient * y * (1 - y) }]
    }
    registry.add(
      "BiasAddGrad", inputs: ["out_backprop"], outputs: ["output"],
      attributes: [.string("data_format", "NHWC")]
    ) { context, inputs in [try biasGradient(context, inputs)] }
    registry.add(
      "InvertPermutation", inputs: [.init("x", type: .index("T"))],
      outputs: [.init("y", type: .index("T"))]
    ) { _, inputs in
      let x = try Kernels.input(inputs, 0)
      let permutation = try x.requireIntegers()
      var inverse = [Int](repeating: -1, count: permutation.count)
      for (position, axis) in permutation.enumerated() {
        guard (0..<permutation.count).contains(axis), inverse[axis] < 0 else {
          throw KernelError("\(permutation) is not a permutation.")
        }
        inverse[axis] = position
      }
      return [try Kernels.tensor(inverse.map(Double.init), like: x, shape: x.shape)]
    }
    let shape = OpSchema.Argument("s0", type: .index("T"))
    registry.add(
      "BroadcastGradientArgs", inputs: [shape, .init("s1", type: .index("T"))],
      outputs: [.init("r0", type: .index("T")), .init("r1", type: .index("T"))]
    ) { _, inputs in try broadcastGradientArguments(inputs) }
  }

  /// `combine` of two tensors of the same shape, elementwise.
  private static func elementwise(_ inputs: [Tensor], _ combine: (Float, Float) -> Float) throws
    -> Tensor
  {
    let (a, b) = (try Kernels.input(inputs, 0), try Kernels.input(inputs, 1))
    guard a.shape == b.shape else {
      throw KernelError("The two inputs have different shapes, \(a.shape) and \(b.shape).")
    }
    let (x, y) = (try a.requireFloats(), try b.requireFloats())
    return Tensor(
      dtype: a.dtype, shape: a.shape,
      storage: .float((0..<x.count).map { combine(x[$0], y[$0]) }))
  }

  /// The sum of the gradient over every dimension but the channels (the last in NHWC, the
  /// second in NCHW).
  private static func biasGradient(_ context: KernelContext, _ inputs: [Tensor]) throws -> Tensor {
    let gradient = try Kernels.input(inputs, 0)
    let dimensions = gradient.shape.dimensions
    guard dimensions.count >= 2 else {
      throw KernelError("BiasAddGrad needs a gradient of rank 2 or more, got \(gradient.shape).")
    }
    let channelsFirst = (try? context.string("data_format")) == "NCHW"
    let axis = channelsFirst ? 1 : dimensions.count - 1
    let (channels, inner) = (dimensions[axis], dimensions[(axis + 1)...].reduce(1, *))
    let values = try gradient.requireFloats()
    var sums = [Double](repeating: 0, count: channels)
    for (index, value) in values.enumerated() { sums[(index / inner) % channels] += Double(value) }
    return Tensor(
      dtype: gradient.dtype, shape: Shape([channels]), storage: .float(sums.map { Float($0) }))
  }

  /// For two shapes broadcast together, the dimensions along which each was broadcast (the
  /// dimensions its gradient is summed over), as TensorFlow's `BroadcastGradientArgs` gives them.
  private static func broadcastGradientArguments(_ inputs: [Tensor]) throws -> [Tensor] {
    let (s0, s1) = (
      try Kernels.input(inputs, 0).requireIntegers(), try Kernels.input(inputs, 1).requireIntegers()
    )
    let rank = max(s0.count, s1.count)
    let (a, b) = (
      [Int](repeating: 1, count: rank - s0.count) + s0,
      [Int](repeating: 1, count: rank - s1.count) + s1
    )
    var (r0, r1): ([Int], [Int]) = ([], [])
    for axis in 0..<rank {
      guard a[axis] == b[axis] || a[axis] == 1 || b[axis] == 1 else {
        throw KernelError("The shapes \(s0) and \(s1) do not broadcast together.")
      }
      // A dimension of 1 on both sides is reduced for both, as TensorFlow does.
      if a[axis] == 1 { r0.append(axis) }
      if b[axis] == 1 { r1.append(axis) }
    }
    let type = inputs[0].dtype
    func vector(_ values: [Int]) -> Tensor {
      type == .int64
        ? Tensor(
          dtype: .int64, shape: Shape([values.count]), storage: .int64(values.map(Int64.init)))
        : Tensor(
          dtype: .int32, shape: Shape([values.count]), storage: .int32(values.map(Int32.init)))
    }
    return [vector(r0), vector(r1)]
  }
}
