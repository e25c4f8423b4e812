import GraphIR
import Testing

@Suite("Tensor references")
struct TensorReferenceTests {
  @Test(
    "Graph and function spellings parse and print back",
    arguments: [
      ("x", ReferenceSyntax.graph), ("dense/MatMul:2", .graph), ("^init", .graph),
      ("arg", .function),
      ("bn:batch_mean:0", .function), ("split:output:3", .function), ("^keep", .function),
    ])
  func roundTrip(text: String, syntax: ReferenceSyntax) throws {
    let reference = try TensorReference(parsing: text, syntax: syntax)
    #expect(reference.text(in: syntax) == text)
  }

  @Test("The parts of a reference are read as written")
  func parts() throws {
    let function = try TensorReference(parsing: "bn:batch_mean:1", syntax: .function)
    #expect(function == TensorReference(name: "bn", outputArgument: "batch_mean", index: 1))
    let graph = try TensorReference(parsing: "a/b:3", syntax: .graph)
    #expect(graph == TensorReference(name: "a/b", index: 3))
    #expect(try TensorReference(parsing: "^a", syntax: .graph).isControl)
    // Output 0 written out in a graph reads as output 0 and prints in the short spelling.
    #expect(try TensorReference(parsing: "x:0", syntax: .graph).text(in: .graph) == "x")
  }

  @Test(
    "A malformed reference is an error, never output 0",
    arguments: [
      (
        "x:abc", ReferenceSyntax.graph,
        "The input 'x:abc' is not a valid tensor reference: 'abc' is not an output index."
      ),
      (
        "x:-1", .graph,
        "The input 'x:-1' is not a valid tensor reference: '-1' is not an output index."
      ),
      ("", .graph, "The input '' is not a valid tensor reference: it names no node."),
      (
        "a:b:c", .graph,
        "The input 'a:b:c' is not a valid tensor reference: it has 2 ':' separators."
      ),
      (
        "n:out:", .function,
        "The input 'n:out:' is not a valid tensor reference: '' is not an output index."
      ),
      (
        "n::0", .function,
        "The input 'n::0' is not a valid tensor reference: the output argument is empty."
      ),
      (
        "^a:1", .graph,
        "The input '^a:1' is not a valid tensor reference: a control input names a node only."
      ),
    ])
  func malformed(text: String, syntax: ReferenceSyntax, message: String) {
    #expect {
      _ = try TensorReference(parsing: text, syntax: syntax)
    } throws: { error in
      (error as? GraphError)?.code == .malformedReference && "\(error)" == message
    }
  }
}
