// The fuzz targets: each feeds one input to a reader of untrusted bytes (or, for `graph`, to a
// model built from them) and must return or throw, never trap, hang or exhaust memory.
//
// Built by Scripts/fuzz with `-sanitize=fuzzer,address -DTFMP_FUZZING`, the binary is a libFuzzer
// fuzzer (its driver started from this main) of the target named by TFMP_FUZZ_TARGET. Built as usual, it replays files through a
// target (`tfmp-fuzz TARGET FILE...`), which is how the regression tests run what the fuzzers
// found.
import CPURuntime
import Foundation
import GraphIR
import MixedPrecision
import ModelFormats
import TensorCore

enum FuzzTargets {
  /// The targets by name.
  static let all: [String: @Sendable ([UInt8]) -> Void] = [
    "checkpoint-index": checkpointIndex, "checkpoint-tensor": checkpointTensor,
    "saved-model": savedModel, "graphdef": graphDef, "keras": keras, "json": json,
    "hdf5": hdf5, "npy": npy, "npz": npz, "graph": graph,
  ]

  // Every reader is given its bytes in memory (the path-based readers' package initializers),
  // as if read from these paths: the same parsing, without the file system's cost.

  /// A checkpoint index: every entry listed, and each tensor read from an empty data file.
  static func checkpointIndex(_ bytes: [UInt8]) {
    readAll(["v.index": bytes, "v.data-00000-of-00001": []])
  }

  /// The mlp fixture's index with fuzzed data: each tensor read and its checksum checked.
  static func checkpointTensor(_ bytes: [UInt8]) {
    readAll(["v.index": Seeds.mlpIndex, "v.data-00000-of-00001": bytes])
  }

  /// Opens the checkpoint `v` of `files` and reads every tensor.
  static func readAll(_ files: [String: [UInt8]]) {
    guard let reader = try? CheckpointReader(prefix: "v", files: files) else { return }
    for entry in reader.entries {
      if entry.dtype == .string {
        _ = try? reader.strings(of: entry)
      } else {
        _ = try? reader.withBytes(of: entry) { $0.count }
      }
    }
  }

  /// `saved_model.pb`: read, as a GraphIR module, verified, summarized.
  static func savedModel(_ bytes: [UInt8]) {
    guard let model = try? SavedModel(graph: bytes, directory: "saved", checkpoint: nil) else {
      return
    }
    _ = try? model.summary()
    if let module = try? model.module() {
      _ = try? GraphVerifier(schemas: OpRegistry.standard).verify(module)
    }
  }

  /// A frozen GraphDef: read, as a module, verified, summarized.
  static func graphDef(_ bytes: [UInt8]) {
    guard let file = try? GraphDefFile(bytes: bytes, path: "frozen.pb") else { return }
    _ = try? file.summary()
    if let module = try? file.module() {
      _ = try? GraphVerifier(schemas: OpRegistry.standard).verify(module)
    }
  }

  /// A `.keras` zip: read, summarized (its config JSON and HDF5 weights decoded).
  static func keras(_ bytes: [UInt8]) {
    guard let archive = try? KerasArchive(bytes: bytes, path: "model.keras") else { return }
    _ = try? archive.summary()
  }

  /// The order-preserving JSON parser.
  static func json(_ bytes: [UInt8]) {
    var parser = JSONParser(bytes)
    _ = try? parser.parse()
  }

  /// The HDF5 subset of Keras weight files.
  static func hdf5(_ bytes: [UInt8]) {
    _ = try? HDF5File(bytes, path: "fuzz.h5")
  }

  /// A NumPy `.npy`.
  static func npy(_ bytes: [UInt8]) {
    _ = try? NumPyFile.readArray(bytes: bytes, path: "array.npy")
  }

  /// A NumPy `.npz`.
  static func npz(_ bytes: [UInt8]) {
    _ = try? NumPyFile.readArchive(bytes: bytes, path: "arrays.npz")
  }

  /// A valid small model with its attributes, shapes, dtypes and input edges changed as the
  /// input says, run, converted and run again: the converter and the runtime must throw, not
  /// trap. The first byte picks the model: mostly the 14-node frozen TF1 graph of the graphdef
  /// seeds, one input in 32 the mlp fixture (a SavedModel with variables, calls and saver
  /// functions, some 30 times the work).
  static func graph(_ bytes: [UInt8]) {
    guard bytes.count >= 5 else { return }
    let frozen = bytes[0] % 32 != 0
    guard var module = frozen ? Seeds.frozenModule : Seeds.mlpModule else { return }
    var reader = bytes.dropFirst().makeIterator()
    func next() -> Int { Int(reader.next() ?? 0) }
    let ids = module.graph.nodeIDs
    // Up to 8 edits of 4 bytes: which node, what to change, and to what.
    for _ in 0..<min(8, (bytes.count - 1) / 4) {
      let id = ids[next() % ids.count]
      var node = module.graph[id]
      let (what, value) = (next(), next() * 256 + next())
      switch what % 5 {
      case 0:  // an input edge to another node's output
        if !node.inputs.isEmpty {
          node.inputs[value % node.inputs.count] = .output(
            ids[value % ids.count], OutputSlot(index: what / 5 % 3))
        }
      case 1:  // a type attribute to another dtype
        if let key = node.attributes.keys.sorted().first(where: { node.type($0) != nil }) {
          node.attributes[key] = .type(DType.allCases[value % DType.allCases.count])
        }
      case 2:  // an integer attribute to another value, negative ones too
        if let key = node.attributes.keys.sorted().first(where: {
          if case .int = node.attributes[$0] { true } else { false }
        }) {
          node.attributes[key] = .int(Int64(value) - 32768)
        }
      case 3:  // a shape attribute to other dimensions
        if let key = node.attributes.keys.sorted().first(where: {
          if case .shape = node.attributes[$0] { true } else { false }
        }) {
          node.attributes[key] = .shape(
            ShapeValue(dimensions: [Int64(value % 7) - 1, Int64(what % 9)]))
        }
      default:  // an op to another the registry knows
        node.op = Seeds.ops[value % Seeds.ops.count]
      }
      module.graph[id] = node
    }
    // Limits well inside the fuzzer's memory ceiling (the seeds' tensors take a few KiB): an
    // edit asking for more must be refused.
    let limits = ResourceLimits(maxTensorBytes: 1 << 20, maxLoopIterations: 1_000)
    let (model, inputs): (GraphModel?, [String: Tensor]) =
      frozen
      ? (
        Seeds.frozen.map { .frozenGraph($0.replacing(module)) },
        ["x": Tensor(shape: Shape([2, 6]), floats: (0..<12).map { Float($0) / 12 })]
      )
      : (
        Seeds.mlp.map { .savedModel($0.replacing(module)) },
        ["features": Tensor(shape: Shape([2, 20]), floats: (0..<40).map { Float($0) / 40 })]
      )
    guard let model else { return }
    _ = try? Interpreter(module: module, checkpoint: model.checkpoint, limits: limits).run(
      signature: "serving_default", inputs: inputs)
    guard let (converted, _) = try? Converter(options: ConversionOptions()).convert(model),
      let convertedModule = try? converted.module()
    else { return }
    _ = try? Interpreter(module: convertedModule, checkpoint: model.checkpoint, limits: limits)
      .run(signature: "serving_default", inputs: inputs)
  }
}

/// What the targets start from: the mlp fixture and the graphdef seeds' frozen graph, read once.
enum Seeds {
  static let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  static let root = fuzz.deletingLastPathComponent()
    .appendingPathComponent("_TestSupport/Fixtures/mlp").path
  static let mlp = try? SavedModel(contentsOf: root)
  static let mlpModule = try? mlp?.module()
  static let mlpIndex = [UInt8](
    FileManager.default.contents(atPath: root + "/variables/variables.index") ?? Data())
  static let frozen = try? GraphDefFile(
    bytes: [UInt8](
      FileManager.default.contents(
        atPath: fuzz.appendingPathComponent("Corpus/graphdef/tf1.pb").path)
        ?? Data()),
    path: "tf1.pb")
  static let frozenModule = try? frozen?.module()
  /// The ops the registry knows (sorted each time they are asked for).
  static let ops = OpRegistry.standard.ops
}

/// The target chosen for this run.
nonisolated(unsafe) var chosen: ([UInt8]) -> Void = { _ in }

#if TFMP_FUZZING
  /// libFuzzer's entry point for a program with its own `main`.
  @_silgen_name("LLVMFuzzerRunDriver")
  func runDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
  ) -> Int32

  /// The callback libFuzzer's runtime requires by name: one input through the chosen target.
  @_cdecl("LLVMFuzzerTestOneInput")
  func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    chosen(data.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? [])
    return 0
  }
#endif

@main
struct FuzzMain {
  static func main() {
    #if TFMP_FUZZING
      let name = ProcessInfo.processInfo.environment["TFMP_FUZZ_TARGET"] ?? ""
      guard let target = FuzzTargets.all[name] else { usage() }
      chosen = target
      var argc = CommandLine.argc
      var argv = CommandLine.unsafeArgv
      exit(runDriver(&argc, &argv, testOneInput))
    #else
      let arguments = CommandLine.arguments
      guard arguments.count >= 2, let target = FuzzTargets.all[arguments[1]] else { usage() }
      for path in arguments.dropFirst(2) {
        target([UInt8](FileManager.default.contents(atPath: path) ?? Data()))
      }
      print("replayed \(arguments.count - 2) inputs through \(arguments[1])")
    #endif
  }

  static func usage() -> Never {
    FileHandle.standardError.write(
      Data(
        ("usage: tfmp-fuzz TARGET FILE... (built by Scripts/fuzz: TFMP_FUZZ_TARGET=TARGET "
          + "tfmp-fuzz LIBFUZZER_ARGUMENTS); targets: "
          + "\(FuzzTargets.all.keys.sorted().joined(separator: ", "))\n").utf8))
    exit(64)
  }
}
