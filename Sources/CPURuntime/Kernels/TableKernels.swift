internal import Foundation
internal import GraphIR
internal import TensorCore

/// The lookup-table and string family, as Keras's `StringLookup`, `IntegerLookup` and `Hashing`
/// layers and `tf.lookup`'s static tables emit it: hash tables made by `HashTableV2`, filled by
/// the model's init op (``Interpreter`` runs it once, before the first run), read by
/// `LookupTableFindV2`; strings hashed into buckets, and numbers formatted as strings. (Mutable
/// tables, whose contents change as the model runs, are not run yet.)
enum TableKernels {
  static func register(in registry: inout OpRegistry) {
    let handle = OpSchema.Argument.fixed("table_handle", .resource)
    registry.add(
      "HashTableV2", inputs: [], outputs: [handle],
      attributes: [
        .string("container", ""), .string("shared_name", ""),
        .bool("use_node_name_sharing", false), .type("key_dtype"), .type("value_dtype"),
      ], traits: .stateful,
      .values { context, _ in
        let shared = try context.string("shared_name")
        // A table is one per shared name in TensorFlow's resource manager; without one, one
        // per node.
        let name = shared.isEmpty ? context.function + "/" + context.node.name : shared
        return [
          .table(
            try context.requireHost().table(
              name, keyType: try context.type("key_dtype"),
              valueType: try context.type("value_dtype")))
        ]
      })
    // A table's initializer: its keys and values (a `KeyValueTensorInitializer`'s).
    for (op, keys, values) in [
      ("LookupTableImportV2", "Tin", "Tout"), ("InitializeTableV2", "Tkey", "Tval"),
    ] {
      registry.add(
        op,
        inputs: [
          handle, .init("keys", type: .attribute(keys)), .init("values", type: .attribute(values)),
        ],
        outputs: [], traits: .stateful,
        .values { _, inputs in
          let table = try table(inputs)
          let (keys, values) = (try tensor(inputs, 1), try tensor(inputs, 2))
          try table.fill(keys: keys, values: values)
          return []
        })
    }
    registry.add(
      "LookupTableFindV2",
      inputs: [handle, .init("keys", type: "Tin"), .init("default_value", type: "Tout")],
      outputs: [.init("values", type: "Tout")], traits: .stateful,
      .values { _, inputs in
        [.tensor(try table(inputs).find(try tensor(inputs, 1), default: try tensor(inputs, 2)))]
      })
    registry.add(
      "LookupTableSizeV2", inputs: [handle], outputs: [.fixed("size", .int64)], traits: .stateful,
      .values { _, inputs in
        [
          .tensor(
            Tensor(
              dtype: .int64, shape: Shape([]), storage: .int64([Int64(try table(inputs).count)])))
        ]
      })
    let text = OpSchema.Argument.fixed("input", .string)
    let buckets = OpSchema.Argument.fixed("output", .int64)
    registry.add(
      "StringToHashBucketFast", inputs: [text], outputs: [buckets],
      attributes: [.int("num_buckets")]
    ) { context, inputs in
      [try hashed(try Kernels.input(inputs, 0), context) { StringHashing.fingerprint64($0) }]
    }
    registry.add(
      "StringToHashBucketStrong", inputs: [text], outputs: [buckets],
      attributes: [.int("num_buckets"), .ints("key")]
    ) { context, inputs in
      let key = try context.ints("key")
      guard key.count == 2 else {
        throw KernelError("The key must be two integers, but it has \(key.count).")
      }
      let (k0, k1) = (UInt64(bitPattern: Int64(key[0])), UInt64(bitPattern: Int64(key[1])))
      return [
        try hashed(try Kernels.input(inputs, 0), context) { StringHashing.sipHash24($0, k0, k1) }
      ]
    }
    registry.add(
      "AsString", inputs: ["input"], outputs: [.fixed("output", .string)],
      attributes: [
        .int("precision", -1), .bool("scientific", false), .bool("shortest", false),
        .int("width", -1), .string("fill", ""),
      ], .tensors(formatted))
  }

  private static func table(_ inputs: [Value]) throws -> LookupTable {
    guard case .table(let table)? = inputs.first else {
      throw KernelError("Expected a lookup table handle (from HashTableV2).")
    }
    return table
  }

  private static func tensor(_ inputs: [Value], _ index: Int) throws -> Tensor {
    guard index < inputs.count, case .tensor(let tensor) = inputs[index] else {
      throw KernelError("Expected a tensor as input \(index).")
    }
    return tensor
  }

  /// Each string of `input` hashed by `hash`, modulo the `num_buckets` attribute.
  private static func hashed(
    _ input: Tensor, _ context: KernelContext, by hash: ([UInt8]) -> UInt64
  ) throws -> Tensor {
    let count = try context.int("num_buckets")
    guard count >= 1 else {
      throw KernelError("num_buckets must be at least 1, but it is \(count).")
    }
    guard case .string(let strings) = input.storage else {
      throw KernelError("Expected a string tensor, got \(input.dtype).")
    }
    return Tensor(
      dtype: .int64, shape: input.shape,
      storage: .int64(strings.map { Int64(hash($0) % UInt64(count)) }))
  }

  /// `AsString`: each element printed as TensorFlow prints it, with a C format made of the fill
  /// flag, the width, the precision and the conversion for the type.
  private static func formatted(_ context: KernelContext, _ inputs: [Tensor]) throws -> [Tensor] {
    let input = try Kernels.input(inputs, 0)
    let (precision, width) = (try context.int("precision"), try context.int("width"))
    let (scientific, shortest) = (try context.bool("scientific"), try context.bool("shortest"))
    let fill = try context.string("fill")
    guard fill.count <= 1, fill.isEmpty || " +-0#".contains(fill) else {
      throw KernelError("The fill must be one of ' ', '+', '-', '0' or '#', but it is '\(fill)'.")
    }
    guard !(scientific && shortest) else {
      throw KernelError("AsString cannot be both scientific and shortest.")
    }
    var format = "%" + fill + (width > -1 ? String(width) : "")
    func strings<T>(_ values: [T], _ print: (T) -> String) -> Tensor {
      Tensor(
        dtype: .string, shape: input.shape, storage: .string(values.map { Array(print($0).utf8) }))
    }
    switch input.storage {
    case .float(let values):
      format +=
        (precision > -1 ? "." + String(precision) : "") + (shortest ? "g" : scientific ? "e" : "f")
      return [strings(values) { String(format: format, Double($0)) }]
    case .double(let values):
      format +=
        (precision > -1 ? "." + String(precision) : "") + (shortest ? "g" : scientific ? "e" : "f")
      return [strings(values) { String(format: format, $0) }]
    case .int32, .int64:
      guard precision == -1 else {
        throw KernelError("AsString takes a precision for floats only.")
      }
      format += "lld"
      return [strings(try input.requireIntegers()) { String(format: format, Int64($0)) }]
    case .bool(let values):
      return [strings(values) { $0 ? "true" : "false" }]
    case .string:
      return [input]
    }
  }
}

/// A hash table's contents: keys to values, both scalars of the types the table was made with.
final class LookupTable: @unchecked Sendable {
  // Sendable: `entries` and `initialized` are guarded by `lock`.

  /// One element of a tensor, as a key or a value.
  enum Element: Hashable {
    case float(Float)
    case double(Double)
    case int32(Int32)
    case int64(Int64)
    case bool(Bool)
    case bytes([UInt8])
  }

  let name: String
  let keyType: DType
  let valueType: DType
  private var entries: [Element: Element] = [:]
  /// Whether an initializer filled it (it cannot be read before).
  private var initialized = false
  private let lock = NSLock()

  init(name: String, keyType: DType, valueType: DType) {
    self.name = name
    self.keyType = keyType
    self.valueType = valueType
  }

  var count: Int { lock.withLock { entries.count } }

  /// The keys that are strings.
  var stringKeys: [[UInt8]] {
    lock.withLock { entries.keys.compactMap { if case .bytes(let key) = $0 { key } else { nil } } }
  }

  /// Makes the contents `values` under `keys` (element by element, of the table's types; one
  /// value per key).
  func fill(keys: Tensor, values: Tensor) throws {
    try check(keys, is: keyType, "keys")
    try check(values, is: valueType, "values")
    guard keys.shape == values.shape else {
      throw KernelError(
        "The table '\(name)' is given keys of shape \(keys.shape) but values of shape \(values.shape)."
      )
    }
    let pairs = zip(Self.elements(keys.storage), Self.elements(values.storage))
    var filled: [Element: Element] = [:]
    for (key, value) in pairs {
      if let earlier = filled[key], earlier != value {
        throw KernelError("The table '\(name)' is given two values for one key.")
      }
      filled[key] = value
    }
    lock.withLock {
      entries = filled
      initialized = true
    }
  }

  /// The value of each of `keys`, `defaultValue` (a scalar, or one per key) for those missing.
  func find(_ keys: Tensor, default defaultValue: Tensor) throws -> Tensor {
    try check(keys, is: keyType, "keys")
    try check(defaultValue, is: valueType, "default value")
    let defaults = Self.elements(defaultValue.storage)
    let keyElements = Self.elements(keys.storage)
    guard defaults.count == 1 || defaults.count == keyElements.count else {
      throw KernelError(
        "The default value must be a scalar or one per key; it has \(defaults.count) elements for \(keyElements.count) keys."
      )
    }
    let found = try lock.withLock {
      guard initialized else {
        throw KernelError(
          code: .unsupported,
          "The table '\(name)' is read before it is initialized: the model's init op "
            + "(__saved_model_init_op) fills it, and tfmp found none that does.")
      }
      return keyElements.enumerated().map { index, key in
        entries[key] ?? defaults[defaults.count == 1 ? 0 : index]
      }
    }
    return Tensor(
      dtype: valueType, shape: keys.shape, storage: Self.storage(found, like: defaultValue.storage))
  }

  private func check(_ tensor: Tensor, is type: DType, _ what: String) throws {
    guard tensor.dtype == type else {
      throw KernelError("The table '\(name)' holds \(type) \(what), but is given \(tensor.dtype).")
    }
  }

  private static func elements(_ storage: Tensor.Storage) -> [Element] {
    switch storage {
    case .float(let values): values.map(Element.float)
    case .double(let values): values.map(Element.double)
    case .int32(let values): values.map(Element.int32)
    case .int64(let values): values.map(Element.int64)
    case .bool(let values): values.map(Element.bool)
    case .string(let values): values.map(Element.bytes)
    }
  }

  /// `elements` (each of the kind of `prototype`, as a table's values all are) as a storage.
  private static func storage(_ elements: [Element], like prototype: Tensor.Storage)
    -> Tensor.Storage
  {
    func all<T>(_ value: (Element) -> T?) -> [T] { elements.compactMap(value) }
    switch prototype {
    case .float: return .float(all { if case .float(let v) = $0 { v } else { nil } })
    case .double: return .double(all { if case .double(let v) = $0 { v } else { nil } })
    case .int32: return .int32(all { if case .int32(let v) = $0 { v } else { nil } })
    case .int64: return .int64(all { if case .int64(let v) = $0 { v } else { nil } })
    case .bool: return .bool(all { if case .bool(let v) = $0 { v } else { nil } })
    case .string: return .string(all { if case .bytes(let v) = $0 { v } else { nil } })
    }
  }
}
