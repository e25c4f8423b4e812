internal import GraphIR
internal import TensorCore

/// An optimizer whose state is float32, updating float32 master weights with Keras 3's
/// arithmetic (`keras.optimizers.SGD`, `Adam`, `AdamW`, in the same order of operations).
public struct Optimizer: Sendable, Codable, Equatable {
  /// The update rule.
  public enum Kind: String, CaseIterable, Sendable, Codable {
    /// Stochastic gradient descent, with optional (Nesterov) momentum.
    case sgd
    /// Adam.
    case adam
    /// Adam with decoupled weight decay.
    case adamw
  }

  /// The update rule.
  public var kind: Kind
  /// The step size.
  public var learningRate: Double
  /// SGD's momentum (0: none).
  public var momentum: Double = 0
  /// Whether SGD's momentum is Nesterov's.
  public var nesterov = false
  /// Adam's decay rate of the first moment.
  public var beta1 = 0.9
  /// Adam's decay rate of the second moment.
  public var beta2 = 0.999
  /// Adam's epsilon, added to the square root of the second moment.
  public var epsilon = 1e-7
  /// AdamW's weight decay (multiplied by the learning rate).
  public var weightDecay = 0.004

  /// An optimizer of `kind` with Keras's defaults: learning rate 0.01 for SGD, 0.001 for Adam
  /// and AdamW.
  public init(_ kind: Kind, learningRate: Double? = nil) {
    self.kind = kind
    self.learningRate = learningRate ?? (kind == .sgd ? 0.01 : 0.001)
  }

  /// The state kept per trained variable, by name, each of the variable's shape.
  public var slots: [String] {
    switch kind {
    case .sgd: momentum != 0 ? ["momentum"] : []
    case .adam, .adamw: ["m", "v"]
    }
  }

  /// Appends one update of `variable` by `gradient` (both float32): the new variable and the
  /// new value of each of ``slots`` (given as `slots`). `step` is the float32 count of updates
  /// including this one (Keras's `iterations + 1`).
  func update(
    _ builder: inout GradientBuilder, variable: Input, gradient g: Input, slots: [Input],
    step: Input
  ) -> (variable: Input, slots: [Input]) {
    let float = DType.float32
    func math(_ op: String, _ x: Input, _ y: Input) -> Input { builder.math(op, x, y, type: float) }
    func constant(_ value: Double) -> Input { builder.scalar(value, float) }
    let rate = constant(learningRate)
    switch kind {
    case .sgd:
      guard momentum != 0 else { return (math("Sub", variable, math("Mul", g, rate)), []) }
      let velocity = math(
        "Sub", math("Mul", slots[0], constant(momentum)), math("Mul", g, rate))
      let change =
        nesterov
        ? math("Sub", math("Mul", velocity, constant(momentum)), math("Mul", g, rate)) : velocity
      return (math("AddV2", variable, change), [velocity])
    case .adam, .adamw:
      var x = variable
      if kind == .adamw {
        x = math("Sub", x, math("Mul", math("Mul", x, constant(weightDecay)), rate))
      }
      let one = constant(1)
      let beta1Power = math("Pow", constant(beta1), step)
      let beta2Power = math("Pow", constant(beta2), step)
      let alpha = math(
        "RealDiv",
        math("Mul", rate, builder.math("Sqrt", math("Sub", one, beta2Power), type: float)),
        math("Sub", one, beta1Power))
      let (m, v) = (slots[0], slots[1])
      let newM = math("AddV2", m, math("Mul", math("Sub", g, m), constant(1 - beta1)))
      let newV = math(
        "AddV2", v,
        math("Mul", math("Sub", builder.math("Square", g, type: float), v), constant(1 - beta2)))
      let denominator = math("AddV2", builder.math("Sqrt", newV, type: float), constant(epsilon))
      let newX = math("Sub", x, math("RealDiv", math("Mul", newM, alpha), denominator))
      return (newX, [newM, newV])
    }
  }
}
