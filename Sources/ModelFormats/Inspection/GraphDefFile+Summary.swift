internal import GraphIR
internal import TensorCore

extension GraphDefFile {
  /// Describes the frozen graph: its signature (as ``module()`` derives it), functions and op
  /// counts, and the range report of its float constants (its weights).
  ///
  /// - Throws: ``ModelFormatError`` (code `malformed`) for a tensor reference that cannot be parsed.
  public func summary() throws -> ModelSummary {
    let contents = SavedModel.contents(of: proto)
    let signature =
      try module().signatures[GraphDefFile.signatureKey]
      ?? Signature(key: GraphDefFile.signatureKey, inputs: [], outputs: [])
    func specs(_ endpoints: [Signature.Endpoint]) -> [ModelSummary.TensorSpec] {
      endpoints.map { endpoint in
        ModelSummary.TensorSpec(
          name: endpoint.name, tensor: "\(endpoint.name):0", dtype: endpoint.dtype?.name ?? "?",
          shape: endpoint.shape.unknownRank ? nil : endpoint.shape.dimensions.map { Int($0) })
      }
    }
    return ModelSummary(
      format: "GraphDef", path: path, tags: [], metaGraphCount: 0, tensorflowVersion: "",
      signatures: [
        ModelSummary.Signature(
          key: signature.key, methodName: "fed and fetched by node name",
          inputs: specs(signature.inputs), outputs: specs(signature.outputs))
      ],
      functions: contents.functions, opCounts: contents.opCounts,
      variables: ModelSummary.Variables(
        count: 0, checkpointEntryCount: 0, bytesByDType: [:], checkpointBytes: 0, largest: []),
      rangeReport: SavedModel.rangeReport(contents.constants))
  }
}
