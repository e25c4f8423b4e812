public import ModelFormats
public import TensorCore

/// How to convert a `.keras` archive.
public struct KerasConversionOptions: Sendable {
  /// The reduced type; the policy is `mixed_float16` or `mixed_bfloat16`.
  public var precision: ReducedPrecision = .float16
  /// Layer names to keep float32.
  public var float32Layers: [String] = []
  /// Layer class names to keep float32 (besides ``KerasConversionOptions/defaultFloat32Classes``).
  public var float32Classes: [String] = []
  /// Whether to wrap the optimizer in a LossScaleOptimizer (for `mixed_float16` only, as Keras
  /// does).
  public var lossScaling = true
  /// The LossScaleOptimizer's initial scale (Keras's default 2^15).
  public var initialScale: Double = 32768
  /// Finite steps before the scale doubles (Keras's default 2000).
  public var growthSteps = 2000

  /// Layer classes kept float32 by default: preprocessing layers that see raw inputs (prices,
  /// counts, pixel sums, lookups), whose values and statistics can exceed float16's range, and
  /// the image augmentation layers, which see raw pixels and draw random factors (Keras's own
  /// RandomGaussianBlur fails under `mixed_float16`: a float16 `Range`).
  public static let defaultFloat32Classes: Set<String> = [
    "Normalization", "Discretization", "CategoryEncoding", "Hashing", "HashedCrossing",
    "IntegerLookup", "StringLookup", "TextVectorization", "RandomFlip", "RandomRotation",
    "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness", "RandomCrop",
    "RandomGrayscale", "RandomHue", "RandomSaturation", "RandomSharpness", "RandomColorJitter",
    "RandomColorDegeneration", "RandomShear", "RandomErasing", "RandomPosterization",
    "Solarization", "RandomInvert", "RandomPerspective", "RandomElasticTransform", "AugMix",
    "RandAugment", "MixUp", "CutMix", "RandomGaussianBlur", "AutoContrast", "Equalization",
  ]

  /// Layer classes kept float32 under `mixed_float16`: TensorFlow has no float16 CPU kernel for
  /// 3-D pooling, so a Keras model with them under the policy does not run on a CPU.
  public static let float16Float32Classes: Set<String> = ["MaxPooling3D", "AveragePooling3D"]

  /// Options with Keras's defaults: `mixed_float16` and dynamic loss scaling.
  public init() {}
}

/// What `tfmp convert` did to a `.keras` archive.
public struct KerasConversionReport: Sendable, Codable {
  /// One layer's policy after conversion.
  public struct Layer: Sendable, Codable, Hashable {
    /// The layer's name.
    public var name: String
    /// Its class, such as `Dense`.
    public var className: String
    /// The dtype policy it has now.
    public var policy: String
    /// Why.
    public var reason: String
  }

  /// The mixed policy applied.
  public var policy: String
  /// Every layer, in the order of the config (model containers excluded: Keras gives them the
  /// global policy at load); a layer whose config has no dtype policy is listed as left alone.
  public var layers: [Layer] = []
  /// What happened to the compiled optimizer.
  public var optimizer: String = ""

  /// The summary `tfmp convert` prints.
  public var summary: String {
    let mixed = layers.filter { $0.policy == policy }.count
    var lines = ["set \(mixed) of \(layers.count) layers to \(policy)"]
    let kept = layers.filter { $0.policy != policy }
    if !kept.isEmpty {
      lines.append(
        "kept: " + kept.map { "\($0.name) \($0.policy) (\($0.reason))" }.joined(separator: ", "))
    }
    lines.append("optimizer: \(optimizer)")
    lines.append(
      "model.weights.h5 unchanged: variables stay float32, as Keras mixed precision keeps them")
    return lines.joined(separator: "\n") + "\n"
  }
}

/// Converts `.keras` archives to mixed precision: does what
/// `keras.mixed_precision.set_global_policy` would have done had the model been built under it,
/// by rewriting the layer configurations (the weights stay float32, as Keras keeps them).
public struct KerasConverter: Sendable {
  /// What to convert and how.
  public var options: KerasConversionOptions

  /// A converter with `options`.
  public init(options: KerasConversionOptions) { self.options = options }

  /// Sets every layer's dtype policy to the mixed policy, except the layers that should stay
  /// float32, and wraps the compiled optimizer in a LossScaleOptimizer for `mixed_float16`.
  ///
  /// Layers stay float32 when named in `float32Layers`, of a class in `float32Classes` or
  /// ``KerasConversionOptions/defaultFloat32Classes``, or when they produce a model output
  /// through a softmax, log-softmax or sigmoid (TensorFlow's mixed precision guide). Nested
  /// models and wrapped layers are followed.
  /// - Returns: The converted archive and what was done to each layer and the optimizer.
  /// - Throws: ``ModelFormatError`` with code `alreadyConverted` when a layer already has a
  ///   float16 or bfloat16 policy.
  public func convert(_ original: KerasArchive) throws -> (KerasArchive, KerasConversionReport) {
    let policy = options.precision == .float16 ? "mixed_float16" : "mixed_bfloat16"
    var report = KerasConversionReport(policy: policy)
    var archive = original
    var walker = PolicyWalker(
      policy: policy, options: options,
      float32Classes: KerasConversionOptions.defaultFloat32Classes
        .union(options.float32Classes))
    walker.walk(&archive.config, atOutput: true, isLayer: false)
    if let layer = walker.alreadyReduced {
      throw ModelFormatError(
        code: .alreadyConverted, path: original.path, location: "layer '\(layer.name)'",
        message: "The layer's dtype policy is already '\(layer.policy)'; the model was converted "
          + "before or built in mixed precision. Convert the float32 model instead.")
    }
    report.layers = walker.layers
    report.optimizer = wrapOptimizer(&archive.config)
    return (archive, report)
  }

  private func wrapOptimizer(_ root: inout JSONValue) -> String {
    guard var compile = root["compile_config"], let optimizer = compile["optimizer"],
      optimizer != .null
    else { return "none (the model was saved without compiling)" }
    let className = optimizer["class_name"]?.stringValue ?? optimizer.stringValue ?? "?"
    guard options.precision == .float16, options.lossScaling else {
      return "\(className), unchanged"
        + (options.precision == .bfloat16 ? " (bfloat16 needs no loss scaling)" : "")
    }
    let scale = JSONValue.number(
      options.initialScale == options.initialScale.rounded() && abs(options.initialScale) < 1e15
        ? "\(Int(options.initialScale)).0" : "\(options.initialScale)")
    let steps = JSONValue.number(String(options.growthSteps))
    let settings =
      "dynamic, initial scale \(scale.serialized()), growth every \(options.growthSteps) steps"
    if className == "LossScaleOptimizer" {
      var updated = optimizer
      var config = optimizer["config"] ?? .object([])
      config.set("initial_scale", scale)
      config.set("dynamic_growth_steps", steps)
      updated.set("config", config)
      compile.set("optimizer", updated)
      root.set("compile_config", compile)
      return "LossScaleOptimizer kept, now \(settings)"
    }
    let wrapper = JSONValue.object([
      ("module", .string("keras.optimizers")), ("class_name", .string("LossScaleOptimizer")),
      (
        "config",
        .object([
          ("name", .string("loss_scale_optimizer")), ("inner_optimizer", optimizer),
          ("initial_scale", scale), ("dynamic_growth_steps", steps),
        ])
      ),
      ("registered_name", .null),
    ])
    compile.set("optimizer", wrapper)
    root.set("compile_config", compile)
    return "\(className) wrapped in LossScaleOptimizer (\(settings)); the saved \(className) "
      + "state does not fit the wrapper, so Keras warns and restarts it"
  }
}

/// Walks a Keras config and sets layer policies, and nothing else: the tensors a functional
/// model's nodes record (`inbound_nodes`, whose KerasTensors carry a `dtype` too), the build and
/// compile configs (losses and metrics have a `dtype`) are not layers and are left as they are.
private struct PolicyWalker {
  let policy: String
  let options: KerasConversionOptions
  let float32Classes: Set<String>
  var layers: [KerasConversionReport.Layer] = []
  var alreadyReduced: KerasConversionReport.Layer?

  private static let reducedPolicies: Set<String> = [
    "mixed_float16", "mixed_bfloat16", "float16", "bfloat16",
  ]
  private static let probabilityActivations: Set<String> = ["softmax", "log_softmax", "sigmoid"]
  /// Members that hold no layer configs.
  private static let notLayers: Set<String> = ["inbound_nodes", "build_config", "compile_config"]

  /// Walks `value`; `isLayer` says that it is a layer's serialization (an element of a model's
  /// `layers`, a wrapper's `layer`), which other objects with a config (initializers,
  /// regularizers, KerasTensors) are not.
  mutating func walk(_ value: inout JSONValue, atOutput: Bool, isLayer: Bool) {
    switch value {
    case .array(var elements):
      for index in elements.indices { walk(&elements[index], atOutput: false, isLayer: isLayer) }
      value = .array(elements)
    case .object:
      guard let className = value["class_name"]?.stringValue, var config = value["config"],
        className != "__keras_tensor__", case .object(let members) = config,
        members.contains(where: { $0.key == "dtype" || $0.key == "layers" })
      else {
        if isLayer, let className = value["class_name"]?.stringValue,
          className != "InputLayer"
        {
          // A custom layer whose `get_config` leaves out the base layer's: Keras builds it with
          // the global policy, and giving it one could break its constructor.
          layers.append(
            KerasConversionReport.Layer(
              name: value["name"]?.stringValue ?? className, className: className,
              policy: "float32",
              reason: "left alone: its config has no dtype policy to set (a custom layer whose "
                + "get_config leaves out the base layer's)"))
        }
        if case .object(var members) = value {
          for index in members.indices where !Self.notLayers.contains(members[index].key) {
            walk(&members[index].value, atOutput: false, isLayer: false)
          }
          value = .object(members)
        }
        return
      }
      if case .array(var children)? = config["layers"] {
        let outputs = outputNames(config, children)
        for index in children.indices {
          let name = children[index]["config"]?["name"]?.stringValue ?? ""
          walk(&children[index], atOutput: atOutput && outputs.contains(name), isLayer: true)
        }
        config.set("layers", .array(children))
      }
      for member in members where member.key != "layers" && member.key != "dtype" {
        if var child = config[member.key] {
          walk(
            &child, atOutput: atOutput && member.key == "layer",
            isLayer: member.key == "layer" || member.key == "backward_layer")
          config.set(member.key, child)
        }
      }
      // Model containers (Sequential, Functional) compute nothing themselves, and Keras gives
      // them the global policy at load whatever their config says; their layers carry policies.
      if config["dtype"] != nil && config["layers"] == nil && className != "InputLayer" {
        setPolicy(&config, className: className, atOutput: atOutput)
      }
      value.set("config", config)
    default:
      break
    }
  }

  /// The names of the layers that produce a model config's outputs.
  private func outputNames(_ config: JSONValue, _ children: [JSONValue]) -> Set<String> {
    guard let outputs = config["output_layers"] else {
      // Sequential: the last layer.
      return Set([children.last?["config"]?["name"]?.stringValue].compactMap { $0 })
    }
    func names(_ value: JSONValue) -> [String] {
      guard case .array(let elements) = value else { return [] }
      if let first = elements.first?.stringValue { return [first] }
      return elements.flatMap(names)
    }
    return Set(names(outputs))
  }

  private mutating func setPolicy(_ config: inout JSONValue, className: String, atOutput: Bool) {
    let name = config["name"]?.stringValue ?? "?"
    let current =
      config["dtype"]?["config"]?["name"]?.stringValue ?? config["dtype"]?.stringValue ?? "?"
    var layer = KerasConversionReport.Layer(
      name: name, className: className, policy: policy, reason: "converted")
    if Self.reducedPolicies.contains(current) {
      layer.policy = current
      layer.reason = "already reduced precision"
      alreadyReduced = alreadyReduced ?? layer
    } else if current != "float32" {
      layer.policy = current
      layer.reason = "policy '\(current)' left as is"
    } else if options.float32Layers.contains(name) {
      layer.policy = "float32"
      layer.reason = "--fp32-layer"
    } else if float32Classes.contains(className) {
      layer.policy = "float32"
      layer.reason =
        options.float32Classes.contains(className)
        ? "--fp32-class" : "preprocessing layer that sees raw inputs"
    } else if policy == "mixed_float16"
      && KerasConversionOptions.float16Float32Classes.contains(className)
    {
      layer.policy = "float32"
      layer.reason = "TensorFlow has no float16 CPU kernel for it"
    } else if atOutput && endsInProbability(className, config) {
      layer.policy = "float32"
      layer.reason = "produces a model output through a softmax or sigmoid"
    }
    layers.append(layer)
    if layer.policy == policy || layer.policy == "float32" {
      config.set(
        "dtype",
        .object([
          ("module", .string("keras")), ("class_name", .string("DTypePolicy")),
          ("config", .object([("name", .string(layer.policy))])), ("registered_name", .null),
        ]))
    }
  }

  private func endsInProbability(_ className: String, _ config: JSONValue) -> Bool {
    if className == "Softmax" { return true }
    let activation = config["activation"]
    let name =
      activation?.stringValue ?? activation?["config"]?.stringValue
      ?? activation?["config"]?["name"]?.stringValue
    return name.map(Self.probabilityActivations.contains) ?? false
  }
}
