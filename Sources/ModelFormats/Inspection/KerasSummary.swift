internal import TensorCore

/// What `tfmp inspect` reports about a `.keras` archive: layers with their dtype policies and
/// weights, the optimizer and its state, and the range report of the weights.
public struct KerasSummary: Sendable, Codable {
  /// A weight stored in `model.weights.h5`.
  public struct Weight: Sendable, Codable, Hashable {
    /// Its path in the weights file, such as `layers/dense/vars/0`.
    public var path: String
    /// The dtype name, or the HDF5 type for types tfmp does not map.
    public var dtype: String
    /// The dimensions.
    public var shape: [Int]
  }

  /// A layer of the model.
  public struct Layer: Sendable, Codable, Hashable {
    /// The layer's name.
    public var name: String
    /// Its class, such as `Dense`.
    public var className: String
    /// Its dtype policy (`float32`, `mixed_float16`, ...).
    public var policy: String
    /// Its weights, in Keras's order.
    public var weights: [Weight]
  }

  /// The path of the archive.
  public var path: String
  /// The Keras version that saved it.
  public var kerasVersion: String
  /// The model's class (`Functional`, `Sequential`).
  public var modelClass: String
  /// The layers that compute (model containers and input layers excluded), in config order.
  public var layers: [Layer]
  /// The compiled optimizer (`LossScaleOptimizer(Adam)`), or `none`.
  public var optimizer: String
  /// The optimizer's saved variables.
  public var optimizerVariables: [Weight]
  /// Bytes of layer weights by dtype name.
  public var weightBytesByDType: [String: Int]
  /// How the float weights and optimizer variables fare in float16 and bfloat16.
  public var rangeReport: ModelSummary.RangeReport

  /// The report `tfmp inspect` prints.
  public var text: String {
    var lines = ["Keras archive  \(path)", "  \(modelClass), saved by Keras \(kerasVersion)", ""]
    lines.append("Layers (\(layers.count))")
    for layer in layers {
      lines.append("  \(layer.name)  \(layer.className)  \(layer.policy)")
      for weight in layer.weights {
        lines.append("    \(weight.dtype) \(Shape(weight.shape))  \(weight.path)")
      }
    }
    lines.append(
      "Weights: "
        + (weightBytesByDType.isEmpty
          ? "none"
          : weightBytesByDType.sorted { $0.key < $1.key }.map {
            "\($0.key) \(ModelSummary.bytes($0.value))"
          }
          .joined(separator: ", ")))
    lines.append("")
    lines.append("Optimizer: \(optimizer), \(optimizerVariables.count) saved variables")
    lines.append("")
    lines += rangeReport.lines(of: "weights and optimizer variables")
    return lines.joined(separator: "\n") + "\n"
  }
}

extension KerasArchive {
  /// Describes the archive: layers and policies from `config.json`, weights from
  /// `model.weights.h5` (matched to layers by the `name` attribute Keras writes on each `vars`
  /// group), the optimizer, and the range report.
  /// - Throws: ``ModelFormatError`` when the weights file is missing or not readable.
  public func summary() throws -> KerasSummary {
    let weightsFile = try HDF5File(weightsBytes(), path: "\(path) (model.weights.h5)")
    var layerWeights: [String: [KerasSummary.Weight]] = [:]
    var optimizerVariables: [KerasSummary.Weight] = []
    var rangeEntries: [ModelSummary.RangeEntry] = []
    var bytesByDType: [String: Int] = [:]
    let groupNames = Dictionary(
      weightsFile.groups.compactMap { group in group.attributes["name"].map { (group.path, $0) } },
      uniquingKeysWith: { first, _ in first })
    // Keras names datasets 0, 1, ... in weight order.
    let ordered = weightsFile.datasets.sorted { left, right in
      let (leftFolder, leftIndex) = Self.split(left.path)
      let (rightFolder, rightIndex) = Self.split(right.path)
      return leftFolder != rightFolder ? leftFolder < rightFolder : leftIndex < rightIndex
    }
    for dataset in ordered {
      let folder = Self.split(dataset.path).folder
      let weight = KerasSummary.Weight(
        path: String(dataset.path.dropFirst()),
        dtype: dataset.dtype?.name ?? dataset.typeDescription,
        shape: dataset.shape.dimensions)
      let isOptimizer = dataset.path.hasPrefix("/optimizer/")
      let owner = groupNames[Self.layerGroup(of: folder) + "/vars"] ?? folder
      if isOptimizer {
        optimizerVariables.append(weight)
      } else {
        layerWeights[owner, default: []].append(weight)
        if let dtype = dataset.dtype, let size = dataset.shape.byteCount(of: dtype) {
          // Shapes are as the file declares them: a corrupt file's sum can pass Int.max.
          let (sum, overflow) = bytesByDType[dtype.name, default: 0].addingReportingOverflow(size)
          bytesByDType[dtype.name] = overflow ? .max : sum
        }
      }
      if let dtype = dataset.dtype, dtype.isFloatingPoint, let data = weightsFile.data(of: dataset),
        let values = data.withUnsafeBytes({ FloatValues.decode($0, dtype: dtype) })
      {
        let name = isOptimizer ? weight.path : "\(owner)/\(Self.split(dataset.path).index)"
        rangeEntries.append(
          SavedModel.rangeEntry(
            name, kind: isOptimizer ? "optimizer" : "weight", dtype: dtype, values.rangeCounts()))
      }
    }
    var layers: [KerasSummary.Layer] = []
    Self.collectLayers(config["config"] ?? .null, into: &layers, weights: layerWeights)
    return KerasSummary(
      path: path, kerasVersion: kerasVersion, modelClass: config["class_name"]?.stringValue ?? "?",
      layers: layers, optimizer: Self.describeOptimizer(config["compile_config"]?["optimizer"]),
      optimizerVariables: optimizerVariables, weightBytesByDType: bytesByDType,
      rangeReport: SavedModel.rangeReport(rangeEntries))
  }

  /// The group of the layer owning `folder`: the deepest `layers/<group>` on its path (a layer's
  /// sub-objects, such as an attention layer's projections or an RNN's cell, sit below it).
  private static func layerGroup(of folder: String) -> String {
    let parts = folder.split(separator: "/", omittingEmptySubsequences: false)
    guard let index = parts.lastIndex(of: "layers"), index + 1 < parts.count else { return folder }
    return parts[...(index + 1)].joined(separator: "/")
  }

  /// The folder of a dataset path and its numeric name (`/a/vars/10` -> `/a/vars`, 10).
  private static func split(_ path: String) -> (folder: String, index: Int) {
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    return (parts.dropLast().joined(separator: "/"), Int(parts.last ?? "") ?? -1)
  }

  private static func collectLayers(
    _ value: JSONValue, into layers: inout [KerasSummary.Layer],
    weights: [String: [KerasSummary.Weight]]
  ) {
    switch value {
    case .array(let elements):
      for element in elements { collectLayers(element, into: &layers, weights: weights) }
    case .object(let members):
      // Layers have a name; the tensor specs in `inbound_nodes` (`__keras_tensor__`) do not.
      if let className = value["class_name"]?.stringValue, let config = value["config"],
        let name = config["name"]?.stringValue, config["dtype"] != nil, config["layers"] == nil,
        className != "InputLayer"
      {
        let policy =
          config["dtype"]?["config"]?["name"]?.stringValue ?? config["dtype"]?.stringValue ?? "?"
        layers.append(
          KerasSummary.Layer(
            name: name, className: className, policy: policy, weights: weights[name] ?? []))
      }
      for member in members where member.key != "dtype" {
        collectLayers(member.value, into: &layers, weights: weights)
      }
    default:
      break
    }
  }

  private static func describeOptimizer(_ optimizer: JSONValue?) -> String {
    guard let optimizer, optimizer != .null else { return "none" }
    let name = optimizer["class_name"]?.stringValue ?? optimizer.stringValue ?? "?"
    if let inner = optimizer["config"]?["inner_optimizer"] {
      let scale = optimizer["config"]?["initial_scale"]?.serialized() ?? "?"
      let steps = optimizer["config"]?["dynamic_growth_steps"]?.serialized() ?? "?"
      return
        "\(name)(\(describeOptimizer(inner))), initial scale \(scale), growth every \(steps) steps"
    }
    return name
  }
}
