internal import GraphIR
internal import ModelFormats
internal import Foundation

/// One step of the conversion pipeline (see ``Converter``): it rewrites the module and records
/// its decisions in the context for the passes after it and for the report. An analysis pass
/// only reads the module and the options besides the nodes to keep float32, so that its facts
/// hold for every conversion of one model (``PreparedConversion``).
protocol ConversionPass {
  /// Runs the pass over `module`.
  ///
  /// - Throws: ``ModelFormatError`` for a model the pass cannot convert.
  func run(on module: inout Module, _ context: inout ConversionContext) throws
}

/// What the passes of one conversion share: the options, the decisions made so far and the
/// report.
struct ConversionContext {
  let options: ConversionOptions
  /// The op lists, with the user's overrides.
  let lists: OpLists
  /// `--fp32-node`'s patterns, compiled.
  let float32NodePatterns: [NSRegularExpression]
  let checkpoint: CheckpointReader?
  /// The model's folder, for messages.
  let modelPath: String
  /// The values of each body that do not fit the reduced type (``RangePass``).
  var unfit: RangePass.UnfitValues = [:]
  /// The float32 islands of each body, by body name (``NormalizationPass``, ``ChoicePass``).
  var islands: [String: [PaintingPass.Island]] = [:]
  /// The painting of each body, by body name (``PaintingPass``).
  var decisions: [String: [PaintingPass.Decision]] = [:]
  /// The variables' handles linked into groups (``VariableStoragePass/Grouping``).
  var variableGroups = VariableStoragePass.Groups()
  /// The variables stored in the reduced type and the nodes retyped for them (``VariableStoragePass``).
  var storage = VariableStoragePass.Result()
  /// The signature functions whose object-graph TensorSpecs must follow (``SignatureTypesPass``).
  var retypedSignatureFunctions: [SignatureTypesPass.Retyped] = []
  var report: ConversionReport

  init(
    options: ConversionOptions, lists: OpLists, float32NodePatterns: [NSRegularExpression],
    checkpoint: CheckpointReader?, modelPath: String
  ) {
    self.options = options
    self.lists = lists
    self.float32NodePatterns = float32NodePatterns
    self.checkpoint = checkpoint
    self.modelPath = modelPath
    report = ConversionReport(precision: options.precision, weights: options.weights)
  }
}

extension RangePass: ConversionPass {
  func run(on module: inout Module, _ context: inout ConversionContext) throws {
    context.unfit = try unfitValues(in: module, checkpoint: context.checkpoint)
  }
}

extension NormalizationPass: ConversionPass {
  func run(on module: inout Module, _ context: inout ConversionContext) throws {
    for name in module.bodyNames {
      for nodes in normalizations(in: module.body(named: name)) {
        context.islands[name, default: []].append(.init(nodes: nodes, reason: .normalization))
      }
    }
  }
}

extension ChoicePass: ConversionPass {
  func run(on module: inout Module, _ context: inout ConversionContext) throws {
    for name in module.bodyNames {
      for nodes in choices(in: module.body(named: name)) {
        context.islands[name, default: []].append(.init(nodes: nodes, reason: .choice))
      }
    }
  }
}

extension PaintingPass: ConversionPass {
  func run(on module: inout Module, _ context: inout ConversionContext) throws {
    for name in module.bodyNames {
      let body = module.body(named: name)
      let decisions = paint(
        body, sinks: module.sinks(of: name), unfit: context.unfit[name] ?? [:],
        islands: context.islands[name] ?? [])
      context.decisions[name] = decisions
      context.report.record(body, decisions, lists: context.lists)
    }
  }
}

extension VariableStoragePass {
  /// The analysis half of ``VariableStoragePass``: links the variables' handles into groups.
  struct Grouping: ConversionPass {
    func run(on module: inout Module, _ context: inout ConversionContext) throws {
      context.variableGroups = VariableStoragePass.groups(in: module)
    }
  }
}

extension VariableStoragePass: ConversionPass {
  func run(on module: inout Module, _ context: inout ConversionContext) throws {
    context.storage = try apply(
      to: &module, groups: context.variableGroups, readers: .painted(context.decisions),
      checkpoint: context.checkpoint)
  }
}

extension CastInsertionPass: ConversionPass {
  /// Rewrites each body with a converted node or a gather of a variable stored reduced.
  func run(on module: inout Module, _ context: inout ConversionContext) throws {
    for name in module.bodyNames {
      let decisions = context.decisions[name] ?? []
      let retyped = context.storage.retyped[name] ?? []
      let retypedGather = module.body(named: name).nodes.contains {
        retyped.contains($0.name) && ["GatherV2", "Gather", "GatherNd"].contains($0.op)
      }
      guard decisions.contains(where: \.reduced) || retypedGather else { continue }
      var sinks = module.sinks(of: name)
      // Edited in place: a copy of the body would copy all its nodes.
      let statistics = module.modifyBody(named: name) { body in
        apply(to: &body, sinks: &sinks, decisions: decisions, retypedNodes: retyped)
      }
      context.report.add(statistics)
      module.setSinks(sinks, of: name)
    }
  }
}

extension SignatureTypesPass: ConversionPass {
  func run(on module: inout Module, _ context: inout ConversionContext) throws {
    context.retypedSignatureFunctions = try apply(to: &module, modelPath: context.modelPath)
  }
}
