//go:build js && wasm

package jsbridge

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall/js"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/export"
	"lorapte/core/safetensors"
)

// fakePool is a pool object as site/lorapte.js gives it, with the workers
// played by goroutines of this instance: convert reads the fetched range
// of the File and runs export.Converter on it.
type fakePool struct {
	v               js.Value
	fetches, pieces atomic.Int64
	clears          atomic.Int64
	// spans and spanPieces count fetchSpan calls and the pieces they
	// asked for (newFakePool with spans).
	spans, spanPieces atomic.Int64
	funcs             []js.Func
}

func newFakePool(size int, spans ...bool) *fakePool {
	fp := &fakePool{}
	fetch := js.FuncOf(func(_ js.Value, a []js.Value) any {
		fp.fetches.Add(1)
		return js.ValueOf(map[string]any{"file": a[0], "offset": a[1], "n": a[2], "tag": a[3]})
	})
	fetchSpan := js.FuncOf(func(_ js.Value, a []js.Value) any {
		fp.spans.Add(1)
		off := a[1].Float()
		var hs []any
		for i := range a[2].Length() {
			n := a[2].Index(i).Float()
			fp.spanPieces.Add(1)
			hs = append(hs, map[string]any{"file": a[0], "offset": off, "n": n, "tag": a[3]})
			off += n
		}
		return js.ValueOf(hs)
	})
	convert := js.FuncOf(func(_ js.Value, a []js.Value) any {
		handle, pieceJSON := a[0], a[1].String()
		var run js.Func
		run = js.FuncOf(func(_ js.Value, pa []js.Value) any {
			resolve, reject := pa[0], pa[1]
			go func() {
				defer run.Release()
				off, n := handle.Get("offset").Float(), handle.Get("n").Float()
				ab, err := Await(handle.Get("file").Call("slice", off, off+n).Call("arrayBuffer"))
				var p export.Piece
				if err == nil {
					err = json.Unmarshal([]byte(pieceJSON), &p)
				}
				if err != nil {
					reject.Invoke(js.Global().Get("Error").New(err.Error()))
					return
				}
				src := make([]byte, int(n))
				js.CopyBytesToGo(src, js.Global().Get("Uint8Array").New(ab))
				out, scales := make([]byte, p.OutBytes()), make([]byte, p.ScaleBytes())
				var c export.Converter
				if err := c.Convert(p, src, out, scales); err != nil {
					e := js.Global().Get("Error").New(err.Error())
					if err == export.ErrSlowPath {
						e.Set("name", "SlowPath")
					}
					reject.Invoke(e)
					return
				}
				fp.pieces.Add(1)
				resolve.Invoke(map[string]any{"out": bytesToJS(out), "scales": bytesToJS(scales)})
			}()
			return nil
		})
		return js.Global().Get("Promise").New(run)
	})
	clear := js.FuncOf(func(_ js.Value, a []js.Value) any {
		fp.clears.Add(1)
		return nil
	})
	fp.funcs = []js.Func{fetch, fetchSpan, convert, clear}
	v := map[string]any{"size": size, "fetch": fetch, "convert": convert, "clear": clear}
	if len(spans) > 0 && spans[0] {
		v["fetchSpan"] = fetchSpan
	}
	fp.v = js.ValueOf(v)
	return fp
}

func (fp *fakePool) release() {
	for _, f := range fp.funcs {
		f.Release()
	}
}

// TestExportThroughPool: with every file sent to a pool (as files above
// 64 MB are in the browser), the export's pieces are fetched and converted
// by the pool, the bytes equal the native export's, and the export clears
// the pool when it ends; a non-finite weight fails with the native error.
func TestExportThroughPool(t *testing.T) {
	defer func(w int64) { wholeFile = w }(wholeFile)
	wholeFile = 0

	o := export.DefaultOptions()
	o.Multifunction, o.InputLen, o.MaxContextLen = true, 4, 12
	want := nativeExport(t, o, "attn", "mlpq")
	fp := newFakePool(2)
	defer fp.release()
	pool, err := NewPool(fp.v)
	require.NoError(t, err)
	c := &Core{Window: 64 << 10, PartSize: 50_000, pool: pool}
	req := js.ValueOf(map[string]any{
		"model":    dirFiles(t, tiny+"/model", "tiny/model"),
		"adapters": adaptersJS(t, "attn", "mlpq"),
		"options":  map[string]any{"multifunction": true, "inputLen": 4, "maxContextLen": 12},
		"cache":    false,
	})
	res, err := c.Export(context.Background(), req)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, blobBytes(t, res.Blob)), "pool export differs from the native export")
	require.Positive(t, fp.pieces.Load(), "pieces converted by the pool")
	require.Equal(t, fp.pieces.Load(), fp.fetches.Load(), "every fetched piece converted")
	require.EqualValues(t, 1, fp.clears.Load())

	// A pool that reads pieces that follow each other in the file by one
	// read (fetchSpan): the same bytes, fewer reads.
	sp := newFakePool(2, true)
	defer sp.release()
	spool, err := NewPool(sp.v)
	require.NoError(t, err)
	res, err = (&Core{Window: 64 << 10, PartSize: 50_000, pool: spool}).Export(context.Background(), req)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, blobBytes(t, res.Blob)), "pool export with spans differs from the native export")
	require.Equal(t, sp.pieces.Load(), sp.fetches.Load()+sp.spanPieces.Load(), "every fetched piece converted")
	require.Positive(t, sp.spans.Load())
	require.Less(t, sp.spans.Load()+sp.fetches.Load(), sp.pieces.Load(), "pieces read together")

	// A NaN in the embedding: the pool declines the piece (SlowPath) and
	// the error is the native one.
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(tiny, "model", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	file := filepath.Join(dir, "model.safetensors")
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	st, err := safetensors.Open(file, bytes.NewReader(raw), int64(len(raw)))
	require.NoError(t, err)
	info, ok := st.Info("model.embed_tokens.weight")
	require.True(t, ok)
	nan := map[safetensors.DType][]byte{safetensors.BF16: {0xc0, 0x7f}, safetensors.F16: {0x00, 0x7e},
		safetensors.F32: binary.LittleEndian.AppendUint32(nil, 0x7fc00000)}[info.DType]
	require.NotNil(t, nan, "dtype %s", info.DType)
	copy(raw[info.Offset+int64(len(nan))*3:], nan)
	require.NoError(t, os.WriteFile(file, raw, 0o644))
	nativeErr := export.Export(context.Background(), export.Request{FS: os.DirFS(dir), ModelDir: ".", Options: o}, &bytes.Buffer{}, nil)
	require.Error(t, nativeErr)
	_, err = c.Export(context.Background(), js.ValueOf(map[string]any{
		"model": dirFiles(t, dir, "tiny/model"), "options": map[string]any{"multifunction": true, "inputLen": 4, "maxContextLen": 12}, "cache": false,
	}))
	require.Error(t, err)
	require.Contains(t, nativeErr.Error(), "model.embed_tokens.weight")
	require.Equal(t, nativeErr.Error(), strings.Replace(err.Error(), "tiny/model/", "", 1))
	require.EqualValues(t, 2, fp.clears.Load())
}

// TestExportThroughPoolCancel: cancelling while pieces are in the pool
// ends the export with ErrCancelled once they are back, and clears the
// pool.
func TestExportThroughPoolCancel(t *testing.T) {
	defer func(w int64) { wholeFile = w }(wholeFile)
	wholeFile = 0
	fp := newFakePool(2)
	defer fp.release()
	pool, err := NewPool(fp.v)
	require.NoError(t, err)
	ac := js.Global().Get("AbortController").New()
	onProgress := js.FuncOf(func(_ js.Value, args []js.Value) any {
		if args[0].Get("stage").String() == "write" && fp.pieces.Load() > 0 {
			ac.Call("abort")
		}
		return nil
	})
	defer onProgress.Release()
	c := &Core{PartSize: 1 << 10, pool: pool}
	_, err = c.Export(context.Background(), js.ValueOf(map[string]any{
		"model": dirFiles(t, tiny+"/model", "m"), "cache": false, "signal": ac.Get("signal"), "onProgress": onProgress,
		"options": map[string]any{"inputLen": 4, "maxContextLen": 12},
	}))
	require.ErrorIs(t, err, ErrCancelled)
	require.Positive(t, fp.pieces.Load(), "cancelled while converting")
	require.EqualValues(t, 1, fp.clears.Load())
}
