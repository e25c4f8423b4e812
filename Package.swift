// swift-tools-version: 6.1
import PackageDescription

/// Settings for every hand-written target: `public import` marks the real API surface.
let strictSettings: [SwiftSetting] = [
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
  .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
  name: "tfmp",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "tfmp", targets: ["tfmp"]),
    .library(
      name: "TFMP",
      targets: [
        "TensorCore", "GraphIR", "ModelFormats", "MixedPrecision", "CPURuntime", "Validation",
        "AccuracySearch", "Reports", "Training",
      ]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
    // The elementary functions generic over Float and Double (float32 and float64 kernels).
    .package(url: "https://github.com/apple/swift-numerics", exact: "1.1.1"),
  ],
  targets: [
    .target(
      name: "TFProtos",
      dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
    .target(name: "CTFMPKernels"),
    .target(name: "TensorCore", dependencies: ["CTFMPKernels"], swiftSettings: strictSettings),
    .target(name: "GraphIR", dependencies: ["TensorCore"], swiftSettings: strictSettings),
    .target(
      name: "ModelFormats",
      dependencies: [
        "TensorCore", "GraphIR", "TFProtos", "CTFMPKernels",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: strictSettings),
    .target(
      name: "MixedPrecision",
      dependencies: ["CPURuntime", "GraphIR", "ModelFormats", "TensorCore"],
      swiftSettings: strictSettings),
    .target(
      name: "CPURuntime",
      dependencies: [
        "GraphIR", "ModelFormats", "TensorCore",
        .product(name: "RealModule", package: "swift-numerics"),
      ],
      swiftSettings: strictSettings),
    .target(
      name: "Validation",
      dependencies: ["CPURuntime", "GraphIR", "ModelFormats", "TensorCore"],
      swiftSettings: strictSettings),
    .target(
      name: "AccuracySearch",
      dependencies: [
        "CPURuntime", "GraphIR", "MixedPrecision", "ModelFormats", "TensorCore", "Validation",
      ],
      swiftSettings: strictSettings),
    .target(
      name: "Reports",
      dependencies: [
        "AccuracySearch", "MixedPrecision", "ModelFormats", "TensorCore", "Validation",
      ],
      swiftSettings: strictSettings),
    .target(
      name: "Training",
      dependencies: ["CPURuntime", "GraphIR", "ModelFormats", "TensorCore"],
      swiftSettings: strictSettings),
    .executableTarget(
      name: "tfmp",
      dependencies: [
        "AccuracySearch", "CPURuntime", "GraphIR", "Reports", "ModelFormats", "MixedPrecision",
        "TensorCore", "Training", "Validation",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: strictSettings),
    .executableTarget(
      name: "tfmp-interop-helper",
      dependencies: ["CPURuntime", "GraphIR", "ModelFormats", "TensorCore", "_TestSupport"],
      path: "Tests/InteropHelper",
      swiftSettings: strictSettings),
    .executableTarget(
      name: "tfmp-fuzz",
      dependencies: ["CPURuntime", "GraphIR", "MixedPrecision", "ModelFormats", "TensorCore"],
      path: "Tests/Fuzz", exclude: ["Corpus", "Dictionaries", "Regressions"],
      swiftSettings: strictSettings),
    .target(
      name: "_TestSupport",
      dependencies: [
        "TensorCore", "TFProtos", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      path: "Tests/_TestSupport",
      resources: [.copy("Fixtures")],
      swiftSettings: strictSettings),
    .testTarget(
      name: "TensorCoreTests",
      dependencies: ["TensorCore", "_TestSupport"],
      swiftSettings: strictSettings),
    .testTarget(
      name: "GraphIRTests",
      dependencies: ["GraphIR", "TensorCore", "_TestSupport"],
      swiftSettings: strictSettings),
    .testTarget(
      name: "ModelFormatsTests",
      dependencies: ["GraphIR", "ModelFormats", "TensorCore", "TFProtos", "_TestSupport"],
      exclude: ["Snapshots"],
      swiftSettings: strictSettings),
    .testTarget(
      name: "MixedPrecisionTests",
      dependencies: [
        "GraphIR", "MixedPrecision", "ModelFormats", "TensorCore", "TFProtos", "_TestSupport",
      ],
      exclude: ["Snapshots"],
      swiftSettings: strictSettings),
    .testTarget(
      name: "CPURuntimeTests",
      dependencies: [
        "CPURuntime", "GraphIR", "ModelFormats", "TensorCore", "TFProtos", "_TestSupport",
      ],
      swiftSettings: strictSettings),
    .testTarget(
      name: "ValidationTests",
      dependencies: [
        "Validation", "GraphIR", "MixedPrecision", "ModelFormats", "TensorCore", "_TestSupport",
      ],
      swiftSettings: strictSettings),
    .testTarget(
      name: "AccuracySearchTests",
      dependencies: [
        "AccuracySearch", "CPURuntime", "MixedPrecision", "ModelFormats", "TensorCore",
        "Validation", "_TestSupport",
      ],
      swiftSettings: strictSettings),
    .testTarget(
      name: "ReportsTests",
      dependencies: [
        "AccuracySearch", "MixedPrecision", "ModelFormats", "Reports", "TensorCore", "Validation",
        "_TestSupport",
      ],
      swiftSettings: strictSettings),
    .testTarget(
      name: "TrainingTests",
      dependencies: [
        "CPURuntime", "GraphIR", "MixedPrecision", "ModelFormats", "TensorCore", "Training",
        "_TestSupport",
      ],
      swiftSettings: strictSettings),
    .testTarget(
      name: "EndToEndTests",
      dependencies: [
        "_TestSupport", "ModelFormats", "TensorCore", "TFProtos",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ],
      swiftSettings: strictSettings),
  ],
  swiftLanguageModes: [.v6]
)
