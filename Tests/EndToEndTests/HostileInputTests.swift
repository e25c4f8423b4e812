import Foundation
@testable import ModelFormats
import SwiftProtobuf
import TFProtos
import Testing
import _TestSupport

/// Files built to exhaust memory, the stack or time, each given to the `tfmp` binary with its
/// address space capped (`ulimit -v`): each must end in a clear error and a non-zero exit, not a
/// crash (a failed allocation under the cap would be one), a hang or a partial output.
@Suite("Hostile input")
struct HostileInputTests {
  /// The address space each run may use: well above what tfmp needs for these small files,
  /// far below what any of them asks for.
  static let addressSpaceKiB = 3 << 20

  /// Runs `tfmp arguments` with its address space capped.
  func run(_ arguments: [String]) throws -> CommandLineTests.Result {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments =
      ["-c", "ulimit -v \(Self.addressSpaceKiB); exec \"$0\" \"$@\"", CommandLineTests.binary]
      + arguments
    let (output, error) = (Pipe(), Pipe())
    process.standardOutput = output
    process.standardError = error
    try process.run()
    let errorData = error.fileHandleForReading.readDataToEndOfFile()
    _ = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandLineTests.Result(
      status: process.terminationReason == .exit ? process.terminationStatus : -1,
      standardOutput: "", standardError: String(decoding: errorData, as: UTF8.self))
  }

  /// Writes a frozen graph of `nodes` (and `library`) to `folder` and returns its path.
  func graph(
    _ nodes: [Tensorflow_NodeDef], library: [Tensorflow_FunctionDef] = [],
    in folder: TemporaryFolder
  ) throws -> String {
    var graph = Tensorflow_GraphDef()
    graph.node = nodes
    graph.library.function = library
    let path = folder.child("hostile.pb")
    try GraphProtos.write(graph, to: path)
    return path
  }

  /// A `Const` of `type` with `shape` and one stored value, which TensorFlow repeats.
  func splat(_ name: String, shape: [Int]) -> Tensorflow_NodeDef {
    GraphProtos.constant(name, GraphProtos.tensor([1], shape: shape))
  }

  /// An int64 vector constant.
  func integers(_ name: String, _ values: [Int64]) -> Tensorflow_NodeDef {
    var tensor = Tensorflow_TensorProto()
    tensor.dtype = .dtInt64
    tensor.tensorShape = GraphProtos.shape([values.count])
    tensor.int64Val = values
    return GraphProtos.constant(name, tensor)
  }

  /// `Fill(dims, 1.0)`, the dims an int64 constant.
  func fill(_ dimensions: [Int64]) -> [Tensorflow_NodeDef] {
    var fill = GraphProtos.node("out", "Fill", ["dims", "value"])
    fill.attr["index_type"] = GraphProtos.type(.dtInt64)
    return [
      integers("dims", dimensions),
      GraphProtos.constant("value", GraphProtos.tensor([1], shape: [])), fill,
    ]
  }

  /// `tfmp run` of `graph` fails with exit 65 and a message containing `expected`.
  func expectRefusal(
    _ path: String, _ expected: String, extra: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let result = try run(["run", path] + extra)
    #expect(result.status == 65, "\(result.standardError)", sourceLocation: sourceLocation)
    #expect(
      result.standardError.contains(expected), "\(result.standardError)",
      sourceLocation: sourceLocation)
  }

  @Test("A constant claiming petabytes is refused before it is expanded")
  func petabyteConstant() throws {
    let folder = TemporaryFolder()
    let path = try graph(
      [
        splat("huge", shape: [1 << 20, 1 << 20, 1 << 10]), GraphProtos.node("out", "Neg", ["huge"]),
      ],
      in: folder)
    try expectRefusal(
      path,
      "<graph> (node 'huge'): The constant: A float32 tensor of shape [1048576, 1048576, 1024] "
        + "needs 4503599627370496 bytes, more than the limit of 4294967296 (--max-tensor-bytes).")
    // inspect reads it without expanding it; convert writes it still repeated.
    #expect(try run(["inspect", path]).status == 0)
    let converted = try run(["convert", path, folder.child("converted.pb")])
    #expect(converted.status == 0, "\(converted.standardError)")
    #expect(
      FileManager.default.fileExists(atPath: folder.child("converted.pb")),
      "\(converted.standardError)")
  }

  @Test("Shapes whose element counts overflow Int are refused, in constants and from values")
  func overflowingShapes() throws {
    let folder = TemporaryFolder()
    try expectRefusal(
      try graph(
        [splat("huge", shape: [1 << 62, 1 << 62]), GraphProtos.node("out", "Neg", ["huge"])],
        in: folder),
      "The constant: The shape [4611686018427387904, 4611686018427387904] has a negative "
        + "dimension or more elements than Int can count")
    try expectRefusal(
      try graph(fill([1 << 40, 1 << 40]), in: folder),
      "(node 'out'): The Fill output: The shape [1099511627776, 1099511627776] has a negative "
        + "dimension or more elements than Int can count")
    var tile = GraphProtos.node("out", "Tile", ["x", "multiples"])
    tile.attr["Tmultiples"] = GraphProtos.type(.dtInt64)
    try expectRefusal(
      try graph(
        [
          GraphProtos.constant("x", GraphProtos.tensor([1, 2], shape: [2])),
          integers("multiples", [1 << 62]), tile,
        ], in: folder),
      "(node 'out'): 2 × 4611686018427387904 overflows Int.")
  }

  @Test("Tensors that kernels would compute beyond the limit are refused")
  func computedTensors() throws {
    let folder = TemporaryFolder()
    let fillPath = try graph(fill([1 << 20, 1 << 20]), in: folder)
    try expectRefusal(
      fillPath,
      "(node 'out'): The Fill output: A float32 tensor of shape [1048576, 1048576] needs "
        + "4398046511104 bytes, more than the limit of 4294967296 (--max-tensor-bytes).")
    // The ceiling is the user's: a lower one refuses a smaller tensor.
    try expectRefusal(
      fillPath, "more than the limit of 1048576 (--max-tensor-bytes)",
      extra: ["--max-tensor-bytes", "1M"])
    // An outer sum of two vectors of 2^17 elements: 64 GiB from 1 MiB of inputs.
    let sum = try graph(
      [
        splat("column", shape: [1 << 17, 1]), splat("row", shape: [1, 1 << 17]),
        GraphProtos.node("out", "AddV2", ["column", "row"]),
      ], in: folder)
    try expectRefusal(
      sum,
      "(node 'out'): The broadcast result: A float32 tensor of shape [131072, 131072] needs "
        + "68719476736 bytes")
    // The same as a matrix product with an inner dimension of 1.
    try expectRefusal(
      try graph(
        [
          splat("column", shape: [1 << 17, 1]), splat("row", shape: [1, 1 << 17]),
          GraphProtos.node("out", "MatMul", ["column", "row"]),
        ], in: folder),
      "(node 'out'): The MatMul output: A float32 tensor of shape [131072, 131072] needs")
  }

  @Test("A function library that calls itself is stopped at the call-depth limit")
  func selfReferencingLibrary() throws {
    let folder = TemporaryFolder()
    func call(_ name: String, _ callee: String, _ input: String) -> Tensorflow_NodeDef {
      var node = GraphProtos.node(name, "PartitionedCall", [input])
      node.attr.removeValue(forKey: "T")
      node.attr["Tin"] = GraphProtos.types([.dtFloat])
      node.attr["Tout"] = GraphProtos.types([.dtFloat])
      node.attr["f"] = GraphProtos.function(callee)
      return node
    }
    // f calls g, g calls f.
    let library = [("f", "g"), ("g", "f")].map { name, callee in
      GraphProtos.function(
        name, arguments: [("x", .dtFloat)], results: [("y", .dtFloat)],
        nodes: [call("call", callee, "x")], returns: ["y": "call:output:0"])
    }
    try expectRefusal(
      try graph(
        [GraphProtos.constant("x", GraphProtos.tensor([1], shape: [])), call("out", "f", "x")],
        library: library, in: folder),
      "nests calls 65 deep, more than the limit of 64: the function library calls itself")
  }

  @Test("A While loop that never ends is stopped at the iteration limit")
  func endlessLoop() throws {
    let folder = TemporaryFolder()
    var truth = Tensorflow_TensorProto()
    truth.dtype = .dtBool
    truth.boolVal = [true]
    let condition = GraphProtos.function(
      "forever", arguments: [("i", .dtFloat)], results: [("keep_going", .dtBool)],
      nodes: [GraphProtos.constant("yes", truth)], returns: ["keep_going": "yes:output:0"])
    let body = GraphProtos.function(
      "step", arguments: [("i", .dtFloat)], results: [("next", .dtFloat)],
      nodes: [GraphProtos.node("negated", "Neg", ["i"])], returns: ["next": "negated:y:0"])
    var loop = GraphProtos.node("out", "While", ["start"])
    loop.attr.removeValue(forKey: "T")
    loop.attr["T"] = GraphProtos.types([.dtFloat])
    loop.attr["cond"] = GraphProtos.function("forever")
    loop.attr["body"] = GraphProtos.function("step")
    try expectRefusal(
      try graph(
        [GraphProtos.constant("start", GraphProtos.tensor([1], shape: [])), loop],
        library: [condition, body], in: folder),
      "(node 'out'): The loop ran 1000 times without its condition turning false, the limit "
        + "(--max-loop-iterations)",
      extra: ["--max-loop-iterations", "1000"])
  }

  @Test("Protobuf and JSON nested beyond their depth limits are refused")
  func deepNesting() throws {
    let folder = TemporaryFolder()
    // An attribute holding a function whose attribute holds a function, 1,000 deep.
    var attribute = Tensorflow_AttrValue()
    for _ in 0..<1_000 {
      var outer = Tensorflow_AttrValue()
      outer.func.name = "f"
      outer.func.attr["inner"] = attribute
      attribute = outer
    }
    var node = GraphProtos.node("x", "Placeholder")
    node.attr["deep"] = attribute
    let nested = try graph([node], in: folder)
    let protobuf = try run(["inspect", nested])
    #expect(protobuf.status == 65)
    #expect(
      protobuf.standardError.contains(
        "is not a valid binary GraphDef (messages nested too deeply)"),
      "\(protobuf.standardError)")
    // A .keras config of 100,000 nested arrays.
    let config = Data(
      (String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8)
    let archive = folder.child("deep.keras")
    try Data(
      storedZip([
        ("metadata.json", Data(#"{"keras_version": "3.10.0"}"#.utf8)), ("config.json", config),
      ])
    ).write(to: URL(fileURLWithPath: archive))
    let json = try run(["inspect", archive])
    #expect(json.status == 65, "\(json.standardError)")
    #expect(
      json.standardError.contains("values nested more than 512 deep"), "\(json.standardError)")
  }

  @Test("A zip bomb and entries reaching past the archive are refused")
  func zipBomb() throws {
    let folder = TemporaryFolder()
    // A deflated config.json that claims 4 GiB (a few bytes of deflate can): refused unread.
    var bomb = storedZip([
      ("metadata.json", Data(#"{"keras_version": "3.10.0"}"#.utf8)),
      ("config.json", Data([0x03, 0x00])),
    ])
    let central = bomb.count - 22 - (46 + "config.json".utf8.count)
    for record in [central + 10, localHeaderOffset(of: 1, in: bomb) + 8] {
      bomb[record] = 8  // method: deflate
    }
    for size in [central + 24, localHeaderOffset(of: 1, in: bomb) + 22] {
      bomb.replaceSubrange(size..<(size + 4), with: [0xFF, 0xFF, 0xFF, 0xFF])
    }
    let path = folder.child("bomb.keras")
    try Data(bomb).write(to: URL(fileURLWithPath: path))
    let result = try run(["inspect", path])
    #expect(result.status == 65, "\(result.standardError)")
    #expect(
      result.standardError.contains(
        "(entry 'config.json'): The entry is compressed (method 8)"), "\(result.standardError)")
    // A stored entry whose size reaches past the central directory.
    var long = storedZip([("config.json", Data("{}".utf8))])
    let record = long.count - 22 - (46 + "config.json".utf8.count)
    long.replaceSubrange((record + 20)..<(record + 24), with: [0x00, 0x00, 0x00, 0x40])
    try Data(long).write(to: URL(fileURLWithPath: path))
    let truncated = try run(["inspect", path])
    #expect(truncated.status == 65, "\(truncated.standardError)")
    #expect(truncated.standardError.contains("past the central directory"))
  }

  @Test("Stored tensors claiming petabytes are checked against their files")
  func petabyteStoredTensors() throws {
    let folder = TemporaryFolder()
    // A .npy whose header claims 2^50 float32 elements, 8 bytes of data.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1125899906842624,), }"
    var npy: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
    let padded =
      header + String(repeating: " ", count: (64 - (10 + header.count + 1) % 64) % 64) + "\n"
    npy += [UInt8(padded.utf8.count & 0xFF), UInt8(padded.utf8.count >> 8)] + Array(padded.utf8)
    npy += [UInt8](repeating: 0, count: 8)
    let array = folder.child("huge.npy")
    try Data(npy).write(to: URL(fileURLWithPath: array))
    let run = try run(["run", Fixtures.path("mlp"), "--input", "features=\(array)"])
    #expect(run.status == 65, "\(run.standardError)")
    #expect(
      run.standardError.contains("needs 4503599627370496 bytes but the file has 8"),
      "\(run.standardError)")
    // A checkpoint entry claiming 2^50 float32 elements in an empty shard.
    let model = try folder.copyFixture("mlp")
    var bundle = Tensorflow_BundleHeaderProto()
    bundle.numShards = 1
    var entry = Tensorflow_BundleEntryProto()
    entry.dtype = .dtFloat
    entry.shape = GraphProtos.shape([1 << 25, 1 << 25])
    entry.size = 1 << 52
    var table = SortedTable.Builder()
    table.add(key: [], value: try bundle.serializedBytes())
    table.add(key: Array("w".utf8), value: try entry.serializedBytes())
    try Data(table.finish()).write(to: URL(fileURLWithPath: model + "/variables/variables.index"))
    let inspect = try self.run(["inspect", model])
    #expect(inspect.status == 65, "\(inspect.standardError)")
    #expect(
      inspect.standardError.contains(
        "(tensor 'w'): The tensor needs bytes 0..<4503599627370496 but the file has 9010 bytes."),
      "\(inspect.standardError)")
  }

  /// A zip of stored entries (no compression, CRC left 0: tfmp reads stored data as it is).
  func storedZip(_ entries: [(String, Data)]) -> [UInt8] {
    func le(_ value: Int, _ bytes: Int) -> [UInt8] {
      (0..<bytes).map { UInt8(value >> (8 * $0) & 0xFF) }
    }
    var local: [UInt8] = []
    var central: [UInt8] = []
    for (name, data) in entries {
      let offset = local.count
      let fields =
        le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(0, 4) + le(data.count, 4)
        + le(data.count, 4) + le(name.utf8.count, 2) + le(0, 2)
      local += le(0x0403_4B50, 4) + fields + Array(name.utf8) + Array(data)
      central +=
        le(0x0201_4B50, 4) + le(20, 2) + fields + le(0, 2) + le(0, 2) + le(0, 2)
        + le(0, 4) + le(offset, 4) + Array(name.utf8)
    }
    return local + central + le(0x0605_4B50, 4) + le(0, 2) + le(0, 2) + le(entries.count, 2)
      + le(entries.count, 2) + le(central.count, 4) + le(local.count, 4) + le(0, 2)
  }

  /// Where entry `index`'s local header starts in a ``storedZip(_:)`` archive.
  func localHeaderOffset(of index: Int, in zip: [UInt8]) -> Int {
    var position = 0
    for _ in 0..<index {
      let nameLength = Int(zip[position + 26]) | Int(zip[position + 27]) << 8
      let size = (0..<4).reduce(0) { $0 | Int(zip[position + 18 + $1]) << (8 * $1) }
      position += 30 + nameLength + size
    }
    return position
  }
}
