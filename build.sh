#!/usr/bin/env bash
# lorapte build entry point.
#   ./build.sh serve   build the site (wasm) and serve it on http://localhost:8080
#   ./build.sh test    vet, wasm build check, all tests
#   ./build.sh wasm    build site/ (lorapte.wasm + wasm_exec.js)
#   ./build.sh demo    export the bundled tiny model with the CLI into out/
#   ./build.sh bench   benchmarks (see README)
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$(go env GOROOT)/bin:$PATH"

demo() {
  mkdir -p out
  go run ./cmd/lorapte export --model testdata/tiny-llama/model \
    --adapter attn=testdata/tiny-llama/adapters/attn --adapter mlpq=testdata/tiny-llama/adapters/mlpq \
    --multifunction --input-len 4 --max-context-len 12 --output out/demo.pte
  go run ./cmd/lorapte inspect --verify out/demo.pte
}

wasm() {
  mkdir -p site
  GOOS=js GOARCH=wasm go build -trimpath -o site/lorapte.wasm ./wasm
  cp "$(go env GOROOT)/lib/wasm/wasm_exec.js" site/wasm_exec.js
}

case "${1:-}" in
  test)
    echo "== go vet"; go vet ./...
    echo "== wasm build of core"; GOOS=js GOARCH=wasm go build ./core/...
    echo "== go test"; go test -count=1 ./...
    ;;
  wasm) wasm ;;
  demo) demo ;;
  serve)
    if [ -d wasm ]; then
      wasm
      go run ./cmd/lorapte serve --dir site --addr "${ADDR:-localhost:8080}"
    else
      demo
    fi
    ;;
  bench)
    go test -run '^$' -bench . -benchmem ./core/... 
    ;;
  *) sed -n '2,8p' "$0"; exit 2 ;;
esac
