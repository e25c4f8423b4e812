import ArgumentParser
import Foundation
import CPURuntime
import ModelFormats
import Training

/// Prints a model error on one line (and its causes with --verbose) and exits with the code
/// `tfmp --help` documents.
struct ErrorReporting: ParsableArguments {
  @Flag(help: "On error, also print the underlying errors.")
  var verbose = false

  func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch let error as RuntimeError {
      FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
      throw ExitCode(65)
    } catch let error as TrainingError {
      FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
      throw ExitCode(65)
    } catch let error as Convert.VerificationFailure {
      FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
      throw ExitCode(2)
    } catch let error as Convert.SearchFailure {
      FileHandle.standardError.write(Data("Error: \(error)".utf8))
      throw ExitCode(2)
    } catch let error as ModelFormatError {
      var message = "Error: \(error)\n"
      if verbose, let underlying = error.underlyingError {
        message += "  caused by: \(underlying)\n"
      }
      FileHandle.standardError.write(Data(message.utf8))
      throw ExitCode(Self.exitCode(for: error.code))
    }
  }

  static func exitCode(for code: ModelFormatError.Code) -> Int32 {
    switch code {
    case .missingInput: 66
    case .outputExists, .fileSystem: 73
    default: 65
    }
  }
}
