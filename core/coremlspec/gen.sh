#!/bin/sh
# Regenerates the committed Go code from lorapte's own .proto subset.
# Needs protoc (Debian protobuf-compiler) and protoc-gen-go:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
set -e
cd "$(dirname "$0")"
M="--go_opt=MMIL.proto=lorapte/core/coremlspec/milpb --go_opt=MFeatureTypes.proto=lorapte/core/coremlspec/coremlpb --go_opt=MModel.proto=lorapte/core/coremlspec/coremlpb"
mkdir -p milpb coremlpb
protoc -Iproto --go_out=milpb --go_opt=paths=source_relative $M proto/MIL.proto
protoc -Iproto --go_out=coremlpb --go_opt=paths=source_relative $M proto/FeatureTypes.proto proto/Model.proto
