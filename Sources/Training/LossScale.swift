public import GraphIR
internal import TensorCore

/// How the loss is scaled so that small gradients survive float16.
public enum LossScale: Sendable, Codable, Equatable {
  /// No scaling; a step with a gradient that is not finite is applied as it is (as Keras
  /// applies it without a `LossScaleOptimizer`).
  case none
  /// A fixed scale: the loss is multiplied by it and the gradients divided by it; a step with a
  /// gradient that is not finite is skipped.
  case fixed(Double)
  /// Keras 3's `LossScaleOptimizer`: the loss is multiplied by the current scale, and the
  /// gradients divided by it; a step whose gradients are all finite is applied, and after
  /// `growthSteps` of them in a row the scale doubles; a step with a gradient that is not
  /// finite is skipped, halves the scale (no floor) and restarts the count.
  case dynamic(initial: Double, growthSteps: Int)

  /// Keras's defaults: start at 2^15, double after 2000 finite steps.
  public static let keras = LossScale.dynamic(initial: 32768, growthSteps: 2000)

  /// The scaling to use when none is asked for: Keras's dynamic scaling (from `initial`,
  /// doubling after `growthSteps`) when `module` computes in float16, whose range small
  /// gradients fall out of; none otherwise (float32, or bfloat16 with float32's range).
  public static func standard(for module: Module, initial: Double, growthSteps: Int) -> LossScale {
    module.reducedCompute == .float16 ? .dynamic(initial: initial, growthSteps: growthSteps) : .none
  }

  /// The scale before the first step (1 without scaling).
  public var initialScale: Double {
    switch self {
    case .none: 1
    case .fixed(let scale): scale
    case .dynamic(let initial, _): initial
    }
  }

  /// Whether a step with a gradient that is not finite is skipped.
  var skipsNonFinite: Bool { self != .none }

  /// Appends the next scale and count of finite steps in a row (int64) after a step at `scale`
  /// and `count` whose gradients were all finite or not (`finite`, a bool scalar).
  func next(
    _ builder: inout GradientBuilder, scale: Input, count: Input, finite: Input
  ) -> (scale: Input, count: Input) {
    guard case .dynamic(_, let growthSteps) = self else { return (scale, count) }
    func select(_ condition: Input, _ x: Input, _ y: Input, _ type: DType) -> Input {
      builder.add("SelectV2", [condition, x, y], ["T": .type(type)])
    }
    let grow = builder.math(
      "Equal", count, Constants.int64(&builder, Int64(growthSteps) - 1), type: .int64)
    let zero = Constants.int64(&builder, 0)
    let finiteScale = select(
      grow, builder.math("Mul", scale, builder.scalar(2, .float32), type: .float32), scale,
      .float32)
    let finiteCount = select(
      grow, zero, builder.math("AddV2", count, Constants.int64(&builder, 1), type: .int64), .int64)
    let halved = builder.math("Mul", scale, builder.scalar(0.5, .float32), type: .float32)
    return (
      select(finite, finiteScale, halved, .float32), select(finite, finiteCount, zero, .int64)
    )
  }
}

/// Constants of the types `GradientBuilder` has no helper for.
enum Constants {
  /// An int64 scalar.
  static func int64(_ builder: inout GradientBuilder, _ value: Int64) -> Input {
    var literal = TensorLiteral(dtype: .int64, shape: ShapeValue(dimensions: []))
    literal.int64Values = [value]
    return builder.add(
      "Const", [], ["dtype": .type(.int64), "value": .tensor(literal)], name: "Const")
  }

  /// A bool scalar.
  static func bool(_ builder: inout GradientBuilder, _ value: Bool) -> Input {
    var literal = TensorLiteral(dtype: .bool, shape: ShapeValue(dimensions: []))
    literal.boolValues = [value]
    return builder.add(
      "Const", [], ["dtype": .type(.bool), "value": .tensor(literal)], name: "Const")
  }
}
