public import GraphIR
public import TensorCore
internal import Foundation
internal import SwiftProtobuf
internal import TFProtos

/// A signature to add to a SavedModel: a function of its inputs that reads and assigns variables
/// (the model's own, and new ones that it brings with their initial values), as TensorFlow's
/// TF2 loader restores signatures: `tf.saved_model.load(path).signatures[key]`.
public struct AddedSignature: Sendable {
  /// A variable the function's resource arguments capture.
  public enum Capture: Sendable {
    /// A variable of the model, by a checkpoint key that holds it.
    case variable(checkpointKey: String)
    /// A new variable, stored with `value` (float32 or int64), named `name` under the
    /// object that holds the signature's new variables.
    case newVariable(name: String, value: Tensor)
  }

  /// A named tensor of the signature.
  public struct Endpoint: Sendable {
    /// The name, as callers pass it and results are keyed.
    public var name: String
    /// The type.
    public var dtype: DType
    /// The shape (unknown rank allowed).
    public var shape: ShapeValue

    /// An endpoint; see the properties.
    public init(name: String, dtype: DType, shape: ShapeValue) {
      self.name = name
      self.dtype = dtype
      self.shape = shape
    }
  }

  /// The signature key.
  public var key: String
  /// The function, in function syntax: its arguments are `inputs` in order, then one resource
  /// per capture; its results are `outputs` in order.
  public var function: Function
  /// The inputs, sorted by name (TensorFlow passes keyword arguments in that order).
  public var inputs: [Endpoint]
  /// The outputs, sorted by name.
  public var outputs: [Endpoint]
  /// The variables captured, in argument order.
  public var captures: [Capture]
  /// The name of the root's child object holding the new variables.
  public var holder: String

  /// A signature; see the properties.
  public init(
    key: String, function: Function, inputs: [Endpoint], outputs: [Endpoint],
    captures: [Capture], holder: String
  ) {
    self.key = key
    self.function = function
    self.inputs = inputs
    self.outputs = outputs
    self.captures = captures
    self.holder = holder
  }
}

extension SavedModel {
  /// This model with `signature` added: its function in the library, its new variables in the
  /// object graph (under a child `signature.holder` of the root) and in the checkpoint (values and
  /// object graph, with the same node ids), and a concrete function the root's signature map
  /// names `signature.key`, capturing the variables.
  ///
  /// The TF2 loader restores it; the TF1 loader and TF Serving see the model's other signatures as
  /// before (the new one has no `SignatureDef`, as its variables have no restore op there).
  ///
  /// - Throws: ``ModelFormatError`` (`unsupported`) for a model without an object graph (TF1) or
  ///   a checkpoint, a key already used, a captured checkpoint key no object holds, or a new
  ///   variable that is not float32 or int64.
  public func addingSignature(_ signature: AddedSignature) throws -> SavedModel {
    var model = self
    var metaGraph = model.proto.metaGraphs[0]
    var objects = metaGraph.objectGraphDef
    func refuse(_ message: String) -> ModelFormatError {
      ModelFormatError(code: .unsupported, path: directory, message: message)
    }
    guard let checkpoint, !objects.nodes.isEmpty,
      let graphEntry = checkpoint.entry(forKey: CheckpointReader.objectGraphKey),
      let serialized = try checkpoint.strings(of: graphEntry).first
    else {
      throw refuse(
        "The model has no object graph or no checkpoint (a TF1 model): tfmp adds signatures to "
          + "TF2 SavedModels only.")
    }
    var trackables = try Tensorflow_TrackableObjectGraph(serializedBytes: serialized)
    guard trackables.nodes.count == objects.nodes.count else {
      throw refuse(
        "The checkpoint's object graph has \(trackables.nodes.count) objects and the "
          + "SavedModel's \(objects.nodes.count); tfmp adds signatures only where they agree.")
    }
    guard
      let mapIndex = objects.nodes[0].children.first(where: { $0.localName == "signatures" })
        .map({ Int($0.nodeID) }), mapIndex < objects.nodes.count
    else { throw refuse("The model's root has no signature map.") }
    guard !objects.nodes[mapIndex].children.contains(where: { $0.localName == signature.key }),
      !objects.nodes[0].children.contains(where: { $0.localName == signature.holder })
    else { throw refuse("The model already has a signature '\(signature.key)'.") }

    // Each existing capture's object, by its checkpoint key.
    let keysByNode = try checkpointKeysByNode(checkpoint)
    let nodeByKey = Dictionary(
      keysByNode.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first })
    func reference(_ id: Int, _ name: String)
      -> Tensorflow_TrackableObjectGraph.TrackableObject
      .ObjectReference
    {
      var reference = Tensorflow_TrackableObjectGraph.TrackableObject.ObjectReference()
      reference.nodeID = Int32(id)
      reference.localName = name
      return reference
    }
    func append(
      _ object: Tensorflow_SavedObject, _ trackable: Tensorflow_TrackableObjectGraph.TrackableObject
    ) -> Int {
      objects.nodes.append(object)
      trackables.nodes.append(trackable)
      return objects.nodes.count - 1
    }
    var holderObject = Tensorflow_SavedObject()
    holderObject.userObject = Self.userObject("_generic_user_object")
    let holder = append(holderObject, .init())
    objects.nodes[0].children.append(reference(holder, signature.holder))
    trackables.nodes[0].children.append(reference(holder, signature.holder))
    var bound: [Int32] = []
    var added: [(key: String, value: Tensor)] = []
    for capture in signature.captures {
      switch capture {
      case .variable(let key):
        guard let id = nodeByKey[key] else {
          throw refuse("No object of the model holds checkpoint entry '\(key)'.")
        }
        bound.append(Int32(id))
      case .newVariable(let name, let value):
        guard value.dtype == .float32 || value.dtype == .int64 else {
          throw refuse("New variable '\(name)' is \(value.dtype.name), not float32 or int64.")
        }
        var variable = Tensorflow_SavedVariable()
        variable.dtype = AttrValueCoding.encode(value.dtype)
        variable.shape = AttrValueCoding.encode(
          ShapeValue(dimensions: value.shape.dimensions.map(Int64.init)))
        variable.name = "\(signature.holder)/\(name)"
        var object = Tensorflow_SavedObject()
        object.variable = variable
        let key = "\(signature.holder)/\(name)/.ATTRIBUTES/VARIABLE_VALUE"
        var trackable = Tensorflow_TrackableObjectGraph.TrackableObject()
        var attribute = Tensorflow_TrackableObjectGraph.TrackableObject.SerializedTensor()
        attribute.name = "VARIABLE_VALUE"
        attribute.fullName = variable.name
        attribute.checkpointKey = key
        trackable.attributes = [attribute]
        let id = append(object, trackable)
        objects.nodes[holder].children.append(reference(id, name))
        trackables.nodes[holder].children.append(reference(id, name))
        bound.append(Int32(id))
        added.append((key, value))
      }
    }

    // The function, its concrete-function record, and its place in the signature map.
    var function = GraphCoding.encode(signature.function)
    function.signature.isStateful = true
    metaGraph.graphDef.library.function.append(function)
    var concrete = Tensorflow_SavedConcreteFunction()
    concrete.boundInputs = bound
    concrete.canonicalizedInputSignature = Self.structure(
      tuple: [Self.structure(tuple: []), Self.structure(specs: signature.inputs)])
    concrete.outputSignature = Self.structure(specs: signature.outputs)
    objects.concreteFunctions[signature.function.name] = concrete
    var bare = Tensorflow_SavedBareConcreteFunction()
    bare.concreteFunctionName = signature.function.name
    bare.argumentKeywords = signature.inputs.map(\.name)
    var entry = Tensorflow_SavedObject()
    entry.bareConcreteFunction = bare
    let entryID = append(entry, .init())
    objects.nodes[mapIndex].children.append(reference(entryID, signature.key))
    trackables.nodes[mapIndex].children.append(reference(entryID, signature.key))

    metaGraph.objectGraphDef = objects
    model.proto.metaGraphs[0] = metaGraph
    model.checkpointObjectGraph = try trackables.serializedBytes()
    model.checkpointAdditions += added
    model.fingerprint = nil
    return model
  }

  private static func userObject(_ identifier: String) -> Tensorflow_SavedUserObject {
    var object = Tensorflow_SavedUserObject()
    object.identifier = identifier
    object.version.producer = 1
    object.version.minConsumer = 1
    return object
  }

  private static func structure(tuple values: [Tensorflow_StructuredValue])
    -> Tensorflow_StructuredValue
  {
    var value = Tensorflow_StructuredValue()
    var tuple = Tensorflow_TupleValue()
    tuple.values = values
    value.tupleValue = tuple
    return value
  }

  /// A dict of tensor specs, as signatures' inputs and outputs are recorded.
  private static func structure(specs endpoints: [AddedSignature.Endpoint])
    -> Tensorflow_StructuredValue
  {
    var dictionary = Tensorflow_DictValue()
    for endpoint in endpoints {
      var spec = Tensorflow_TensorSpecProto()
      spec.name = endpoint.name
      spec.shape = AttrValueCoding.encode(endpoint.shape)
      spec.dtype = AttrValueCoding.encode(endpoint.dtype)
      var field = Tensorflow_StructuredValue()
      field.tensorSpecValue = spec
      dictionary.fields[endpoint.name] = field
    }
    var value = Tensorflow_StructuredValue()
    value.dictValue = dictionary
    return value
  }
}
