internal import GraphIR
internal import TensorCore

/// A loss to fine-tune with, computed in float32 as Keras 3 computes it with its TensorFlow
/// backend, and averaged over every per-sample value of the batch (Keras's
/// `sum_over_batch_size`).
public enum Loss: String, CaseIterable, Sendable, Codable {
  /// Integer class labels against logits or probabilities.
  case sparseCategoricalCrossentropy = "sparse_categorical_crossentropy"
  /// One-hot (or soft) labels against logits or probabilities.
  case categoricalCrossentropy = "categorical_crossentropy"
  /// 0/1 labels against a logit or a probability per output.
  case binaryCrossentropy = "binary_crossentropy"
  /// Mean squared error.
  case meanSquaredError = "mse"
  /// Mean absolute error.
  case meanAbsoluteError = "mae"

  /// The activation whose input the loss takes as logits when the prediction is its output
  /// (Keras's `_get_logits`: a `Softmax` for the categorical cross-entropies, a `Sigmoid` for
  /// the binary one); `nil` for the regression losses.
  public var activation: String? {
    switch self {
    case .sparseCategoricalCrossentropy, .categoricalCrossentropy: "Softmax"
    case .binaryCrossentropy: "Sigmoid"
    case .meanSquaredError, .meanAbsoluteError: nil
    }
  }

  /// Keras's `backend.epsilon()`, to which probabilities are clipped before their logarithm.
  static let epsilon = 1e-7

  /// Appends the loss of `prediction` (float32, read from logits when `fromLogits`) against
  /// `target` (of type `targetType`): a float32 scalar.
  func append(
    to builder: inout GradientBuilder, prediction: Input, fromLogits: Bool, target: Input,
    targetType: DType
  ) -> Input {
    let float = DType.float32
    let last = builder.integers([-1])
    func clipped(_ p: Input) -> Input {
      builder.math(
        "ClipByValue", p, builder.scalar(Self.epsilon, float),
        builder.scalar(1 - Self.epsilon, float),
        type: float)
    }
    func targetLike(_ x: Input) -> Input {
      builder.add(
        "Reshape", [builder.cast(target, from: targetType, to: float), builder.shape(x, float)],
        ["T": .type(float), "Tshape": .type(.int32)])
    }
    func negatedSum(_ x: Input) -> Input {
      builder.math(
        "Neg", builder.sum(x, axes: last, keepDimensions: false, type: float), type: float)
    }
    let perSample: Input
    switch self {
    case .sparseCategoricalCrossentropy:
      let logits = fromLogits ? prediction : builder.math("Log", clipped(prediction), type: float)
      let shape = builder.shape(logits, float)
      let classes = builder.slice(
        shape, begin: [-1], end: [0], strides: [1], endMask: 1, shrinkAxisMask: 1)
      let batch = builder.slice(shape, begin: [0], end: [-1], strides: [1], beginMask: 1)
      let labels = builder.add(
        "Reshape", [builder.cast(target, from: targetType, to: .int32), batch],
        ["T": .type(.int32), "Tshape": .type(.int32)])
      let oneHot = builder.add(
        "OneHot", [labels, classes, builder.scalar(1, float), builder.scalar(0, float)],
        ["T": .type(float), "TI": .type(.int32), "axis": .int(-1)])
      perSample = negatedSum(
        builder.math("Mul", oneHot, builder.math("LogSoftmax", logits, type: float), type: float))
    case .categoricalCrossentropy:
      let labels = targetLike(prediction)
      if fromLogits {
        perSample = negatedSum(
          builder.math(
            "Mul", labels, builder.math("LogSoftmax", prediction, type: float), type: float))
      } else {
        let total = builder.sum(prediction, axes: last, keepDimensions: true, type: float)
        let normalized = builder.math("RealDiv", prediction, total, type: float)
        perSample = negatedSum(
          builder.math(
            "Mul", labels, builder.math("Log", clipped(normalized), type: float), type: float))
      }
    case .binaryCrossentropy:
      let z = targetLike(prediction)
      if fromLogits {
        // TensorFlow's sigmoid_cross_entropy_with_logits: max(x, 0) - x z + log(1 + e^-|x|).
        let x = prediction
        let tail = builder.math(
          "Log1p",
          builder.math(
            "Exp", builder.math("Neg", builder.math("Abs", x, type: float), type: float),
            type: float), type: float)
        perSample = builder.math(
          "AddV2",
          builder.math(
            "Sub", builder.math("Relu", x, type: float), builder.math("Mul", x, z, type: float),
            type: float), tail, type: float)
      } else {
        let p = clipped(prediction)
        let one = builder.scalar(1, float)
        let positive = builder.math("Mul", z, builder.math("Log", p, type: float), type: float)
        let negative = builder.math(
          "Mul", builder.math("Sub", one, z, type: float),
          builder.math("Log", builder.math("Sub", one, p, type: float), type: float), type: float)
        perSample = builder.math(
          "Neg", builder.math("AddV2", positive, negative, type: float), type: float)
      }
    case .meanSquaredError:
      perSample = builder.math(
        "Square", builder.math("Sub", prediction, targetLike(prediction), type: float), type: float)
    case .meanAbsoluteError:
      perSample = builder.math(
        "Abs", builder.math("Sub", prediction, targetLike(prediction), type: float), type: float)
    }
    let flat = builder.add(
      "Reshape", [perSample, last], ["T": .type(float), "Tshape": .type(.int32)])
    return builder.add(
      "Mean", [flat, builder.integers([0])],
      ["T": .type(float), "Tidx": .type(.int32), "keep_dims": .bool(false)])
  }
}
