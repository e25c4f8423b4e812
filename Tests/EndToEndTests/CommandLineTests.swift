import Foundation
import ModelFormats
import TFProtos
import TensorCore
import Testing
import _TestSupport

/// Runs the built `tfmp` binary and checks its output and exit status.
@Suite("The tfmp command line")
struct CommandLineTests {
  struct Result {
    var status: Int32
    var standardOutput: String
    var standardError: String
  }

  /// The `tfmp` built beside this test bundle (`swift build` builds it; Scripts/test does).
  static var binary: String {
    if let path = ProcessInfo.processInfo.environment["TFMP_BINARY"] { return path }
    let productsFolder = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
    return productsFolder.appendingPathComponent("tfmp").path
  }

  func run(_ arguments: [String]) throws -> Result {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Self.binary)
    process.arguments = arguments
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Result(
      status: process.terminationStatus,
      standardOutput: String(decoding: outputData, as: UTF8.self),
      standardError: String(decoding: errorData, as: UTF8.self))
  }

  @Test("inspect prints the summary, or JSON with --json")
  func inspect() throws {
    let text = try run(["inspect", Fixtures.path("two_io")])
    #expect(text.status == 0)
    #expect(text.standardOutput.contains("in  category_ids: int32 [?, 4]"))
    let json = try run(["inspect", "--json", Fixtures.path("two_io")])
    #expect(json.status == 0)
    let object =
      try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any]
    #expect(object?["format"] as? String == "SavedModel")
    #expect((object?["signatures"] as? [Any])?.count == 3)
  }

  @Test("A missing model exits 66 with one error line")
  func missingModel() throws {
    let result = try run(["inspect", "/nonexistent/model"])
    #expect(result.status == 66)
    #expect(result.standardOutput.isEmpty)
    #expect(
      result.standardError
        == "Error: /nonexistent/model: Nothing exists at this path. Check the spelling, or export "
        + "the model with tf.saved_model.save first.\n")
  }

  @Test("A corrupt model exits 65; resave refuses an existing output with 73")
  func corruptModelAndExistingOutput() throws {
    let folder = TemporaryFolder()
    let model = try folder.copyFixture("custom_math")
    let resaved = try run(["resave", model, folder.child("copy")])
    #expect(resaved.status == 0, "\(resaved.standardError)")
    let again = try run(["resave", model, folder.child("copy")])
    #expect(again.status == 73)
    #expect(
      again.standardError.hasPrefix("Error: \(folder.child("copy")): The output already exists."))
    let forced = try run(["resave", "--force", model, folder.child("copy")])
    #expect(forced.status == 0)
    try Data(repeating: 0xFF, count: 8).write(to: URL(fileURLWithPath: model + "/saved_model.pb"))
    let corrupt = try run(["inspect", model])
    #expect(corrupt.status == 65)
    #expect(corrupt.standardError.split(separator: "\n").count == 1)
  }

  @Test("convert writes the model and a JSON report and prints the summary")
  func convert() throws {
    let folder = TemporaryFolder()
    let example = Fixtures.repositoryRoot.appendingPathComponent("Examples/digits").path
    let result = try run([
      "convert", example, folder.child("digits"), "--report", folder.child("report.json"),
    ])
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.hasPrefix("converted "))
    #expect(result.standardOutput.contains("variables stored in float16"))
    #expect(FileManager.default.fileExists(atPath: folder.child("digits/saved_model.pb")))
    let report =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: folder.child("report.json")))) as? [String: Any]
    #expect((report?["nodes"] as? [Any])?.isEmpty == false)
    let again = try run(["convert", folder.child("digits"), folder.child("twice")])
    #expect(again.status == 65)
    #expect(!FileManager.default.fileExists(atPath: folder.child("twice")))
  }

  @Test("convert takes .keras files and refuses options of the other format")
  func convertKeras() throws {
    let folder = TemporaryFolder()
    let archive = Fixtures.path("keras_nested.keras")
    let result = try run(["convert", archive, folder.child("mixed.keras"), "--growth-steps", "100"])
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.hasPrefix("set 3 of 4 layers to mixed_float16"))
    let wrong = try run(["convert", archive, folder.child("x.keras"), "--weights", "float32"])
    #expect(wrong.status == 64)
    #expect(wrong.standardError.contains("--weights applies to SavedModels"))
    let other = try run(["convert", Fixtures.path("mlp"), folder.child("x"), "--fp32-layer", "a"])
    #expect(other.status == 64)
    #expect(other.standardError.contains("--fp32-layer applies to .keras files"))
    #expect(!FileManager.default.fileExists(atPath: folder.child("x")))
  }

  @Test("run prints outputs, and names the node of an op without a kernel")
  func runModel() throws {
    let example = Fixtures.repositoryRoot.appendingPathComponent("Examples").path
    let result = try run([
      "run", example + "/digits", "--input", "image=\(example)/digits-sample.npy",
    ])
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.hasPrefix("output_0: float32 [8, 10]"))
    let profiled = try run([
      "run", example + "/digits", "--input", "image=\(example)/digits-sample.npy", "--repeat", "3",
      "--profile",
    ])
    let lines = profiled.standardOutput.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("median of 3 runs: ") == true, "\(profiled.standardOutput)")
    #expect(lines.dropFirst().first == "kernel time per run by op type (3 runs):")
    // The digits CNN has two convolutions per run, whatever fused into them.
    #expect(
      lines.contains { $0.hasPrefix("  Conv2D ") && $0.hasSuffix(" 2 calls") },
      "\(profiled.standardOutput)")
    // The MLP with its Relu replaced by an op tfmp has no kernel for.
    let folder = TemporaryFolder()
    var model = try SavedModel(contentsOf: Fixtures.path("mlp"))
    for function in model.proto.metaGraphs[0].graphDef.library.function.indices {
      for node in model.proto.metaGraphs[0].graphDef.library.function[function].nodeDef.indices
      where model.proto.metaGraphs[0].graphDef.library.function[function].nodeDef[node].op == "Relu"
      {
        model.proto.metaGraphs[0].graphDef.library.function[function].nodeDef[node].op = "Erfinv"
      }
    }
    try model.write(to: folder.child("model"))
    let features = Tensor(shape: Shape([1, 20]), floats: Array(repeating: 0.5, count: 20))
    try NumPyFile.writeArray(features, to: folder.child("x.npy"))
    let missing = try run([
      "run", folder.child("model"), "--input", "features=\(folder.child("x.npy"))",
    ])
    #expect(missing.status == 65)
    #expect(
      missing.standardError
        == "Error: __inference___call___937 (node 'mlp_1/hidden_1/Relu'): Op 'Erfinv' has no CPU kernel "
        + "in tfmp yet.\n")
  }

  @Test("run without a signature input names the flag that gives it")
  func runWithoutInput() throws {
    let example = Fixtures.repositoryRoot.appendingPathComponent("Examples").path
    let result = try run(["run", example + "/digits"])
    #expect(result.status == 65)
    #expect(
      result.standardError
        == "Error: <graph> (node 'image'): The signature needs input 'image' but none was given. "
        + "Pass it with --input image=FILE.npy.\n")
  }

  @Test("validate exits 0 within tolerance and 2 outside it")
  func validate() throws {
    let folder = TemporaryFolder()
    let example = Fixtures.repositoryRoot.appendingPathComponent("Examples/digits").path
    #expect(try run(["convert", example, folder.child("digits")]).status == 0)
    let pass = try run(["validate", example, folder.child("digits")])
    #expect(pass.status == 0, "\(pass.standardOutput)")
    #expect(pass.standardOutput.hasSuffix("PASS\n"))
    let fail = try run(["validate", example, folder.child("digits"), "--rtol", "0", "--atol", "0"])
    #expect(fail.status == 2)
    #expect(fail.standardOutput.hasSuffix("FAIL: outputs differ beyond the tolerance\n"))
  }

  @Test("The README's example model inspects cleanly")
  func exampleModel() throws {
    let example = Fixtures.repositoryRoot.appendingPathComponent("Examples/digits").path
    let result = try run(["inspect", example])
    #expect(result.status == 0)
    #expect(result.standardOutput.contains("in  image: float32 [?, 8, 8, 1]"))
  }

  @Test("finetune trains, logs a line per step and epoch, and refuses what it cannot train")
  func finetune() throws {
    let folder = TemporaryFolder()
    let example = Fixtures.repositoryRoot.appendingPathComponent("Examples").path
    let images = try NumPyFile.readArray(at: example + "/digits-sample.npy")
    let labels = try NumPyFile.readArray(at: example + "/digits-sample-labels.npy")
    let data = folder.child("data.npz")
    try NumPyFile.writeArchive(["image": images, "y": labels], to: data)
    let common = [
      "--data", data, "--loss", "sparse_categorical_crossentropy", "--batch-size", "4",
    ]
    let trained = try run(
      ["finetune", example + "/digits", folder.child("trained"), "--log", folder.child("log")]
        + common)
    #expect(trained.status == 0, "\(trained.standardError)")
    #expect(trained.standardOutput.hasPrefix("training 8 variables (0 frozen)"))
    #expect(trained.standardOutput.contains("2 steps in"))
    #expect(trained.standardError.isEmpty)  // no progress bar in a pipe
    let lines = try String(contentsOfFile: folder.child("log"), encoding: .utf8)
      .split(separator: "\n")
    #expect(lines.count == 3)  // two steps, one epoch
    #expect(FileManager.default.fileExists(atPath: folder.child("trained/saved_model.pb")))

    let badScale = try run(
      ["finetune", example + "/digits", folder.child("other"), "--loss-scale", "big"] + common)
    #expect(badScale.status == 64)
    #expect(badScale.standardError.contains("--loss-scale must be dynamic, none or a positive"))
    let noTargets = try run(
      ["finetune", example + "/digits", folder.child("other"), "--target-key", "labels"] + common)
    #expect(noTargets.status == 65)
    #expect(
      noTargets.standardError
        == "Error: \(data) has no array 'labels' of targets; it has image, y. Name it with "
        + "--target-key.\n")
    let float32 = try run(
      ["finetune", example + "/digits", folder.child("auto"), "--weights", "auto"] + common)
    #expect(float32.status == 0, "\(float32.standardError)")
    #expect(
      float32.standardOutput.contains(
        "--weights auto: the model computes in float32, so its weights stay float32\n"))
    let exported = try run(
      [
        "finetune", example + "/digits", folder.child("other"), "--weights", "auto",
        "--export-train-step",
      ] + common)
    #expect(exported.status == 64)
    #expect(exported.standardError.contains("--export-train-step trains float32 master weights"))
    try GraphProtos.write(GraphProtos.frozenGraph(), to: folder.child("frozen.pb"))
    let frozen = try run(["finetune", folder.child("frozen.pb"), folder.child("other")] + common)
    #expect(frozen.status == 65)
    #expect(frozen.standardError.contains("is a frozen graph, whose weights are constants"))
    #expect(!FileManager.default.fileExists(atPath: folder.child("other")))
  }
}
