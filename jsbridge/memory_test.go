//go:build js && wasm

package jsbridge

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall/js"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestExportMemoryBound exports a real-size checkpoint (a folder named by
// LORAPTE_MEM_MODEL, e.g. a 2.5 GB Llama-3.2-1B shape) through file-backed
// Node Blobs into a discarding stream, and checks the wasm heap stays far
// from the 4 GiB limit. Skipped unless the variable is set:
//
//	LORAPTE_MEM_MODEL=/path/to/model GOOS=js GOARCH=wasm go test \
//	  -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" -run MemoryBound -v ./jsbridge
func TestExportMemoryBound(t *testing.T) {
	dir := os.Getenv("LORAPTE_MEM_MODEL")
	if dir == "" {
		t.Skip("set LORAPTE_MEM_MODEL to a model folder to measure the wasm heap")
	}
	fsmod := js.Global().Call("require", "fs")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var model []any
	for _, e := range ents {
		blob, err := Await(fsmod.Call("openAsBlob", filepath.Join(dir, e.Name())))
		require.NoError(t, err)
		model = append(model, map[string]any{"file": blob, "path": "big/" + e.Name()})
	}
	var written float64
	write := js.FuncOf(func(_ js.Value, args []js.Value) any {
		written += args[0].Get("byteLength").Float()
		return nil
	})
	defer write.Release()
	sink := js.Global().Get("WritableStream").New(map[string]any{"write": write})

	var peak uint64
	var last int64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.Sys)
	}
	onProgress := js.FuncOf(func(_ js.Value, args []js.Value) any {
		if done := int64(args[0].Get("done").Float()); done-last >= 64<<20 {
			last = done
			sample()
		}
		return nil
	})
	defer onProgress.Release()
	start := time.Now()
	res, err := NewCore().Export(context.Background(), js.ValueOf(map[string]any{
		"model": model, "output": sink, "cache": false, "onProgress": onProgress}))
	require.NoError(t, err)
	sample()
	require.EqualValues(t, res.Size, written)
	t.Logf("exported %.2f GiB in %s; peak wasm heap (MemStats.Sys) %.0f MiB", float64(res.Size)/(1<<30), time.Since(start).Round(time.Second), float64(peak)/(1<<20))
	require.Less(t, peak, uint64(1<<30), "the wasm heap must stay far below 4 GiB")
}
