public import AccuracySearch
public import MixedPrecision
public import Validation
public import Foundation

/// Everything `tfmp convert` learned about one SavedModel or frozen-graph conversion: its
/// decisions, the accuracy search if one ran, the verification, and the instrumented profile.
/// `--report FILE.json` writes it (the conversion report's fields at the top level, as before
/// the other parts existed, with `input`, `output`, `search`, `verification` and `profile`
/// beside them); `--report FILE.html` renders it as ``HTMLReport``.
public struct ConversionRecord: Sendable, Codable {
  /// The model converted.
  public var input: String
  /// Where the conversion was written.
  public var output: String
  /// Every node's precision and why, casts, weights.
  public var conversion: ConversionReport
  /// The accuracy search, when `--tolerance` was given.
  public var search: PrecisionSearch.Outcome?
  /// The verification, unless `--no-verify`.
  public var verification: ConversionCheck.Outcome?
  /// The instrumented pass over the conversion as written.
  public var profile: ConversionProfile?

  /// The record of converting `input` into `output`.
  public init(
    input: String, output: String, conversion: ConversionReport,
    search: PrecisionSearch.Outcome? = nil, verification: ConversionCheck.Outcome? = nil,
    profile: ConversionProfile? = nil
  ) {
    self.input = input
    self.output = output
    self.conversion = conversion
    self.search = search
    self.verification = verification
    self.profile = profile
  }

  /// The JSON encoder of reports: sorted keys, indented; an infinite or NaN number (a node whose
  /// reduced-precision output overflows errs infinitely) as the string `inf`, `-inf` or `nan`,
  /// which Python's `float()` reads.
  public static func encoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return encoder
  }

  /// The JSON decoder reading what ``encoder()`` writes.
  public static func decoder() -> JSONDecoder {
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return decoder
  }

  private enum CodingKeys: String, CodingKey {
    case input, output, search, verification, profile
  }

  /// Reads a record: the conversion report's fields from the top level, the rest by key.
  public init(from decoder: any Decoder) throws {
    conversion = try ConversionReport(from: decoder)
    let container = try decoder.container(keyedBy: CodingKeys.self)
    input = try container.decode(String.self, forKey: .input)
    output = try container.decode(String.self, forKey: .output)
    search = try container.decodeIfPresent(PrecisionSearch.Outcome.self, forKey: .search)
    verification = try container.decodeIfPresent(
      ConversionCheck.Outcome.self, forKey: .verification)
    profile = try container.decodeIfPresent(ConversionProfile.self, forKey: .profile)
  }

  /// Writes the conversion report's fields at the top level and the rest beside them.
  public func encode(to encoder: any Encoder) throws {
    try conversion.encode(to: encoder)
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(input, forKey: .input)
    try container.encode(output, forKey: .output)
    try container.encodeIfPresent(search, forKey: .search)
    try container.encodeIfPresent(verification, forKey: .verification)
    try container.encodeIfPresent(profile, forKey: .profile)
  }
}
