// Test helper for Tests/Interop: writes a checkpoint from scratch with tfmp's writer, and a JSON
// file of what each tensor must read back as, so that TensorFlow's own reader can be checked
// against it. Usage: tfmp-interop-helper PREFIX EXPECTED.json
// With `schemas`, prints the runtime's op schemas as JSON instead (with whether each op has a
// kernel and a gradient); with `graphdef-roundtrip IN
// OUT`, reads a bare GraphDef into a module and writes it back; with `gradients MODEL SIGNATURE
// INPUTS.npz OUT.npz`, writes the gradient of the weighted sum of the signature's outputs (the
// weights in INPUTS.npz as `<output>_weight`) with respect to each variable, by checkpoint key.
import CPURuntime
import Foundation
import GraphIR
import ModelFormats
import TensorCore
import _TestSupport

let arguments = CommandLine.arguments
if arguments.count == 2, arguments[1] == "schemas" {
  // The registry's op schemas as JSON, for checking against TensorFlow's OpDefs.
  func describe(_ argument: OpSchema.Argument) -> [String: String] {
    var entry = ["name": argument.name]
    switch argument.count {
    case .one: break
    case .number(let attribute): entry["number_attr"] = attribute
    case .typeList(let attribute): entry["type_list_attr"] = attribute
    }
    switch argument.type {
    case .attribute(let name, _)?: entry["type_attr"] = name
    case .fixed(let dtype)?: entry["type"] = dtype.name
    case nil: break
    }
    return entry
  }
  func describe(_ value: AttrValue?) -> Any {
    switch value {
    case .int(let i)?: i
    case .float(let f)?: Double(f)
    case .bool(let b)?: b
    case .bytes?: value?.text ?? ""
    case .type(let dtype)?: dtype.name
    case .list(let list)?: list.ints
    case nil: NSNull()
    default: "unsupported"
    }
  }
  let registry = OpRegistry.standard
  let schemas = registry.ops.compactMap(registry.schema(for:)).map { schema in
    [
      "op": schema.op, "inputs": schema.inputs.map(describe),
      "outputs": schema.outputs.map(describe),
      "attributes": schema.allAttributes.map {
        ["name": $0.name, "kind": $0.kind.rawValue, "default": describe($0.defaultValue)]
      },
      "kernel": registry.hasKernel(for: schema.op),
      "gradient": registry.gradient(for: schema.op) != nil,
    ] as [String: Any]
  }
  FileHandle.standardOutput.write(
    try JSONSerialization.data(withJSONObject: schemas, options: [.sortedKeys]))
  exit(0)
}
if arguments.count == 6, arguments[1] == "gradients" {
  // The gradients tfmp emits, run by its runtime.
  let model = try GraphModel(contentsOf: arguments[2])
  let module = try model.module().addingWeightedSumGradients(
    of: arguments[3], named: "tfmp_gradients", using: OpRegistry.standard)
  var gradients = try Interpreter(module: module, checkpoint: model.checkpoint).run(
    signature: "tfmp_gradients", inputs: try NumPyFile.readArchive(at: arguments[4]))
  // Where each variable enters the signature's call, counted from the last input: TensorFlow's
  // restored function captures its variables in that order (`position/<key>`, -1 if not one).
  let original = try model.module()
  if let output = original.signatures[arguments[3]]?.outputs.first?.source.node {
    let call = original.graph[output].inputs.first?.node.map { original.graph[$0] }
    let inputs =
      (call?.op == "StatefulPartitionedCall" ? call : original.graph[output])?.inputs ?? []
    for variable in original.variables where gradients[variable.checkpointKey] != nil {
      let position = inputs.lastIndex { $0.node == variable.node }.map { inputs.count - $0 } ?? -1
      gradients["position/" + variable.checkpointKey] = Tensor(
        dtype: .int32, shape: Shape([]), storage: .int32([Int32(position)]))
    }
  }
  try NumPyFile.writeArchive(gradients, to: arguments[5])
  exit(0)
}
if arguments.count == 4, arguments[1] == "graphdef-roundtrip" {
  // A bare GraphDef read into a GraphIR module and written back.
  let file = try GraphDefFile(contentsOf: arguments[2])
  try file.replacing(try file.module()).write(to: arguments[3])
  exit(0)
}
guard arguments.count == 3 else {
  FileHandle.standardError.write(
    Data(
      "usage: tfmp-interop-helper PREFIX EXPECTED.json | schemas | graphdef-roundtrip IN OUT\n".utf8
    ))
  exit(64)
}
let prefix = arguments[1]
var random = SeededGenerator(seed: 2026)
var expected: [String: [String: Any]] = [:]
let writer = try CheckpointWriter(prefix: prefix)

func hex(_ bytes: [UInt8]) -> String {
  bytes.map { String(format: "%02x", $0) }.joined()
}

@MainActor func add(_ key: String, _ dtype: DType, _ shape: Shape, _ bytes: [UInt8]) throws {
  try bytes.withUnsafeBytes { try writer.add(key: key, dtype: dtype, shape: shape, bytes: $0) }
  expected[key] = ["dtype": dtype.name, "shape": shape.dimensions, "hex": hex(bytes)]
}

func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
  values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

let floats: [Float] = (0..<12).map { _ in Float.random(in: -100...100, using: &random) }
try add("dense/kernel", .float32, Shape([3, 4]), littleEndianBytes(floats.map(\.bitPattern)))
// Float16 edge values: the largest finite, the smallest subnormal, negative zero, one, -2.5.
let halves: [Float16] = [65504, Float16(bitPattern: 1), -0.0, 1, -2.5]
try add("half/values", .float16, Shape([5]), littleEndianBytes(halves.map(\.bitPattern)))
let brains =
  floats.prefix(6).map { BFloat16($0).bitPattern } + [
    BFloat16(Float.greatestFiniteMagnitude).bitPattern
  ]
try add("brain/values", .bfloat16, Shape([7]), littleEndianBytes(brains))
try add("step", .int64, Shape([]), littleEndianBytes([Int64(123_456_789_012)]))
try add("counts", .int32, Shape([2, 2]), littleEndianBytes([Int32(-1), 2, -3, 4]))
try add(
  "precise", .float64, Shape([2]), littleEndianBytes([Double.pi.bitPattern, (-1e300).bitPattern]))
try add("mask", .bool, Shape([3]), [1, 0, 1])
try add("empty", .float32, Shape([0, 3]), [])
for index in 0..<6000 {
  let value = Float(index) * 0.5
  try add(
    "many/\(index)/.ATTRIBUTES/VARIABLE_VALUE", .float32, Shape([1]),
    littleEndianBytes([value.bitPattern]))
}
let strings = ["vocabulary", "", "ünïcode"].map { Array($0.utf8) }
try writer.add(key: "names", shape: Shape([3]), strings: strings)
expected["names"] = ["dtype": "string", "shape": [3], "strings": strings.map(hex)]
try writer.finish()
let json = try JSONSerialization.data(withJSONObject: expected, options: [.sortedKeys])
try json.write(to: URL(fileURLWithPath: arguments[2]))
