#!/usr/bin/env bash
# lorapte build entry point.
#   ./build.sh serve   build the site (wasm) and serve it on http://localhost:8080
#   ./build.sh test    vet, wasm build check, all tests
#   ./build.sh wasm    build site/ (lorapte.wasm + wasm_exec.js + the demo model in site/demo/)
#   ./build.sh demo    export the bundled tiny model with the CLI into out/
#   ./build.sh bench   export benchmark -> docs/bench.md, docs/bench.svg (args: --sizes 135m,360m,1b --keep --out DIR)
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
  GOOS=js GOARCH=wasm go build -trimpath -ldflags="-s -w" -o site/lorapte.wasm ./wasm
  cp "$(go env GOROOT)/lib/wasm/wasm_exec.js" site/wasm_exec.js
  # The demo model ("Try the demo model"): copied, not committed twice.
  rm -rf site/demo
  mkdir -p site/demo/tiny-llama/adapters
  cp -r testdata/tiny-llama/model site/demo/tiny-llama/model
  cp -r testdata/tiny-llama/adapters/attn testdata/tiny-llama/adapters/mlpq site/demo/tiny-llama/adapters/
  (cd site/demo && printf '[%s]\n' "$(find tiny-llama -type f | LC_ALL=C sort | sed 's/.*/"&"/' | paste -sd, -)" > files.json)
}

case "${1:-}" in
  test)
    echo "== go vet"; go vet ./...
    echo "== wasm build of core"; GOOS=js GOARCH=wasm go build ./core/...
    echo "== wasm vet of the browser bridge"; GOOS=js GOARCH=wasm go vet ./jsbridge/... ./wasm/...
    echo "== jsbridge tests under Node"
    GOOS=js GOARCH=wasm go test -count=1 -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" ./jsbridge/...
    echo "== go test"; go test -count=1 ./...
    ;;
  wasm) wasm ;;
  demo) demo ;;
  serve)
    wasm
    go run ./cmd/lorapte serve --dir site --addr "${ADDR:-localhost:8080}"
    ;;
  bench)
    # Export benchmark: generates random 135M/360M/1B-shaped models outside
    # the repo, exports them natively and in headless Chromium, writes
    # docs/bench.md and docs/bench.svg. Extra arguments go to "lorapte bench"
    # (e.g. --sizes 135m, --keep, --out DIR, --browser off).
    shift
    mkdir -p out
    wasm # the browser runs load site/ (skipped without Chromium)
    go build -o out/lorapte ./cmd/lorapte
    out/lorapte bench "$@"
    ;;
  *) sed -n '2,8p' "$0"; exit 2 ;;
esac
