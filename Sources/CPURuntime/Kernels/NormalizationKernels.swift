internal import GraphIR
internal import TensorCore

/// The normalization family: FusedBatchNormV2 and V3 in inference mode.
enum NormalizationKernels {
  static func register(in registry: inout OpRegistry) {
    // Only `x` and `y` take the reduced type; the statistics stay float32 (type attribute U).
    let statistics = ["scale", "offset", "mean", "variance"].map {
      OpSchema.Argument($0, type: "U")
    }
    let outputs =
      ["y"]
      + ["batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"].map {
        OpSchema.Argument($0, type: "U")
      }
    let attributes: [OpSchema.Attribute] = [
      .float("epsilon", 1e-4), .string("data_format", "NHWC"), .bool("is_training", true),
    ]
    // V2 is V3 without the third reserve space.
    for (op, extra) in [
      ("FusedBatchNormV2", []),
      ("FusedBatchNormV3", [OpSchema.Argument("reserve_space_3", type: "U")]),
    ] {
      registry.add(
        op, inputs: ["x"] + statistics, outputs: outputs + extra, attributes: attributes,
        precision: .infer
      ) { context, inputs in
        Array(try batchNormalization(context, inputs).prefix(outputs.count + extra.count))
      }
    }
  }

  /// FusedBatchNorm in inference: y and the statistics passed through (six outputs).
  static func batchNormalization(_ context: KernelContext, _ inputs: [Tensor]) throws -> [Tensor] {
    guard try !context.bool("is_training") else {
      throw KernelError("FusedBatchNorm in training mode is not supported.")
    }
    try ConvolutionKernels.checkNHWC(context)
    let x = try Kernels.input(inputs, 0)
    let values = try x.requireFloats()
    let (scale, offset, mean, variance) = try (1...4).map {
      try Kernels.input(inputs, $0).requireFloats()
    }
    .withFour()
    let epsilon = try context.float("epsilon")
    let channels = scale.count
    guard channels > 0, values.count % channels == 0,
      [offset, mean, variance].allSatisfy({ $0.count == channels })
    else {
      throw KernelError(
        "The scale, offset, mean and variance do not fit the \(x.shape) input's channels.")
    }
    let multipliers = (0..<channels).map { scale[$0] / (variance[$0] + epsilon).squareRoot() }
    let result = [Float](unsafeUninitializedCapacity: values.count) { output, initialized in
      for row in stride(from: 0, to: values.count, by: channels) {
        for c in 0..<channels {
          output[row + c] = (values[row + c] - mean[c]) * multipliers[c] + offset[c]
        }
      }
      initialized = values.count
    }
    let statistics = Tensor(shape: Shape([channels]), floats: mean)
    return [
      Tensor(shape: x.shape, floats: result), statistics,
      Tensor(shape: Shape([channels]), floats: variance),
      statistics, statistics, statistics,
    ]
  }
}

extension Array {
  /// The first four elements (the caller guarantees four).
  fileprivate func withFour() -> (Element, Element, Element, Element) {
    (self[0], self[1], self[2], self[3])
  }
}
