import ArgumentParser

@main
struct TFMP: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tfmp",
    abstract: "Converts trained TensorFlow models to mixed precision, offline, in the same format.",
    discussion: """
      Exit codes: 0 success; 1 unexpected failure; 2 validate: outputs outside tolerance; 64 bad command line; 65 malformed or \
      unsupported model (or an op without a kernel); 66 missing input; 73 output cannot be created (it exists, or would \
      touch the input).
      """,
    version: "0.1.0",
    subcommands: [
      Convert.self, Finetune.self, Inspect.self, Run.self, Validate.self, Resave.self,
    ])
}
