#!/usr/bin/env bash
# Regenerates Sources/TFProtos from Protos/ (never part of a normal build or CI run).
#
# Needs `protoc` (Debian's protobuf-compiler, 3.21) and a protoc-gen-swift built from the same
# swift-protobuf version Package.swift uses:
#   git clone https://github.com/apple/swift-protobuf && cd swift-protobuf && git checkout 1.39.0
#   swift build -c release --product protoc-gen-swift      # about 2 minutes on 2 cores
# then pass its path: PROTOC_GEN_SWIFT=/path/.build/release/protoc-gen-swift Scripts/regenerate-protos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
plugin="${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}"
if [ -z "$plugin" ] || [ ! -x "$plugin" ]; then
  echo "error: set PROTOC_GEN_SWIFT to a protoc-gen-swift built from swift-protobuf 1.39.0" >&2
  exit 1
fi
rm -f Sources/TFProtos/*.pb.swift
protoc --plugin=protoc-gen-swift="$plugin" \
  --proto_path=Protos \
  --swift_opt=Visibility=Package \
  --swift_opt=FileNaming=PathToUnderscores \
  --swift_out=Sources/TFProtos \
  Protos/tensorflow/*.proto
echo "regenerated $(ls Sources/TFProtos/*.pb.swift | wc -l) files in Sources/TFProtos"
