//go:build js && wasm

package jsbridge

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall/js"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"lorapte/core/export"
)

// These tests run under Node (go_js_wasm_exec): real JS Blobs, Promises,
// WritableStreams and AbortControllers; no IndexedDB (the browser e2e
// tests cover the cache).

func jsBlob(b []byte) js.Value {
	return js.Global().Get("Blob").New([]any{bytesToJS(b)})
}

// fakeFile is a Blob with the name/webkitRelativePath a dropped File has.
func fakeFile(t *testing.T, b []byte, name, rel string) js.Value {
	t.Helper()
	f := jsBlob(b)
	f.Set("name", name)
	f.Set("webkitRelativePath", rel)
	return f
}

func blobBytes(t *testing.T, blob js.Value) []byte {
	t.Helper()
	ab, err := Await(blob.Call("arrayBuffer"))
	require.NoError(t, err)
	u8 := js.Global().Get("Uint8Array").New(ab)
	out := make([]byte, u8.Length())
	js.CopyBytesToGo(out, u8)
	return out
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestAwait(t *testing.T) {
	v, err := Await(js.Global().Get("Promise").Call("resolve", 42))
	require.NoError(t, err)
	require.Equal(t, 42, v.Int())
	e := js.Global().Get("Error").New("boom")
	e.Set("name", "QuotaExceededError")
	_, err = Await(js.Global().Get("Promise").Call("reject", e))
	require.EqualError(t, err, "boom")
	var je *JSError
	require.ErrorAs(t, err, &je)
	require.Equal(t, "QuotaExceededError", je.Name)
	_, err = Await(js.Global().Get("Promise").Call("reject", "plain"))
	require.EqualError(t, err, "plain")
}

func TestPromiseRejectsWithErrorMessage(t *testing.T) {
	p := Promise(func() (any, error) { return nil, io.ErrUnexpectedEOF })
	_, err := Await(p)
	require.EqualError(t, err, io.ErrUnexpectedEOF.Error())
	p = Promise(func() (any, error) { panic("bad") })
	_, err = Await(p)
	require.EqualError(t, err, "internal error: bad")
	p = Promise(func() (any, error) { return nil, ErrCancelled })
	_, err = Await(p)
	var je *JSError
	require.ErrorAs(t, err, &je)
	require.Equal(t, "AbortError", je.Name)
	v, err := Await(Promise(func() (any, error) { return "ok", nil }))
	require.NoError(t, err)
	require.Equal(t, "ok", v.String())
}

func TestBlobReaderMatchesBytes(t *testing.T) {
	data := randomBytes(300_000, 7)
	r := NewBlobReader(jsBlob(data), 64<<10)
	require.EqualValues(t, len(data), r.Size())
	ref := bytes.NewReader(data)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 300; i++ {
		off := rng.Int64N(int64(len(data)) + 10)
		n := rng.IntN(150_000)
		got, want := make([]byte, n), make([]byte, n)
		gn, gerr := r.ReadAt(got, off)
		wn, werr := ref.ReadAt(want, off)
		require.Equal(t, wn, gn, "ReadAt(%d, %d)", n, off)
		require.Equal(t, werr, gerr, "ReadAt(%d, %d)", n, off)
		require.Equal(t, want[:wn], got[:gn])
	}
	_, err := r.ReadAt(make([]byte, 1), -1)
	require.Error(t, err)
}

func TestBlobReaderReadAhead(t *testing.T) {
	data := randomBytes(1<<20, 9)
	r := NewBlobReader(jsBlob(data), 256<<10)
	// Sequential 4 KiB reads: one JS call per 256 KiB window.
	buf := make([]byte, 4<<10)
	for off := int64(0); off < int64(len(data)); off += int64(len(buf)) {
		_, err := r.ReadAt(buf, off)
		require.NoError(t, err)
		require.Equal(t, data[off:off+int64(len(buf))], buf)
	}
	require.Equal(t, 4, r.Calls())
	// Scattered samples fetch little, not a window each.
	r = NewBlobReader(jsBlob(data), 256<<10)
	for off := int64(0); off < int64(len(data)); off += 128 << 10 {
		_, err := r.ReadAt(buf, off)
		require.NoError(t, err)
	}
	// The first read (offset 0) fills a window holding the second sample
	// too; the other six fetch only minRead bytes each.
	require.Equal(t, 7, r.Calls())
	// Reads at least a window long go straight to JS.
	r = NewBlobReader(jsBlob(data), 256<<10)
	big := make([]byte, 512<<10)
	_, err := r.ReadAt(big, 100)
	require.NoError(t, err)
	require.Equal(t, data[100:100+len(big)], big)
	require.Equal(t, 1, r.Calls())
}

// TestBlobReaderAnnouncedReads announces the pieces of two ranges (as the
// converter reads two tensors in plan order, not file order) and reads
// them: the pieces are requested ahead, in order, across the ranges, each
// once, and every read returns the right bytes, also when the pieces of a
// batch are read out of order (parallel conversions); a read that was not
// announced is read in line.
func TestBlobReaderAnnouncedReads(t *testing.T) {
	data := randomBytes(1<<20, 11)
	r := NewBlobReader(jsBlob(data), 64<<10)
	var pieces [][2]int64
	for _, g := range [][3]int64{{600 << 10, 300 << 10, 100 << 10}, {100 << 10, 250 << 10, 100 << 10}} {
		for o := g[0]; o < g[0]+g[1]; o += g[2] {
			pieces = append(pieces, [2]int64{o, min(g[2], g[0]+g[1]-o)})
		}
	}
	require.Len(t, pieces, 6)
	r.ReadAhead(pieces)
	order := []int{0, 2, 1, 3, 5, 4} // batches of two read in either order
	for i, k := range order {
		p := pieces[k]
		buf := make([]byte, p[1])
		_, err := r.ReadAt(buf, p[0])
		require.NoError(t, err)
		require.Equal(t, data[p[0]:p[0]+p[1]], buf, "piece %d", k)
		if i == 0 {
			require.Equal(t, len(pieces), r.Calls(), "the first read requests the next pieces too (all within aheadBytes)")
		}
	}
	require.Equal(t, len(pieces), r.Calls(), "every piece requested once, none past the announced ones")

	buf := make([]byte, 100<<10)
	_, err := r.ReadAt(buf, 123)
	require.NoError(t, err)
	require.Equal(t, data[123:123+len(buf)], buf)
	require.Equal(t, len(pieces)+1, r.Calls())
}

func FuzzBlobReaderReadAt(f *testing.F) {
	f.Add(uint64(1), uint16(100), int64(0), uint32(10))
	f.Add(uint64(2), uint16(5000), int64(4090), uint32(4096))
	f.Add(uint64(3), uint16(0), int64(0), uint32(1))
	f.Add(uint64(4), uint16(9000), int64(8999), uint32(70000))
	f.Fuzz(func(t *testing.T, seed uint64, size uint16, off int64, n uint32) {
		data := randomBytes(int(size), seed)
		r := NewBlobReader(jsBlob(data), 4096)
		n %= 1 << 20
		got, want := make([]byte, n), make([]byte, n)
		gn, gerr := r.ReadAt(got, off)
		wn, werr := bytes.NewReader(data).ReadAt(want, off)
		require.Equal(t, wn, gn)
		require.Equal(t, werr == nil, gerr == nil)
		require.Equal(t, want[:wn], got[:gn])
	})
}

func TestFS(t *testing.T) {
	files := map[string][]byte{
		"m/config.json":                  []byte(`{"a":1}`),
		"m/model.safetensors":            randomBytes(5000, 1),
		"m/sub/x.txt":                    []byte("x"),
		"adapters/a/adapter_config.json": []byte("{}"),
	}
	var entries []FileEntry
	for p, b := range files {
		entries = append(entries, FileEntry{Path: "/" + p, Blob: jsBlob(b)})
	}
	fsys, err := NewFS(entries, 1024)
	require.NoError(t, err)
	require.NoError(t, fstest.TestFS(fsys, "m/config.json", "m/model.safetensors", "m/sub/x.txt", "adapters/a/adapter_config.json"))
	got, err := fs.ReadFile(fsys, "m/model.safetensors")
	require.NoError(t, err)
	require.Equal(t, files["m/model.safetensors"], got)
	f, err := fsys.Open("m/model.safetensors")
	require.NoError(t, err)
	_, ok := f.(io.ReaderAt)
	require.True(t, ok, "files must be io.ReaderAt for the exporter")
	_, err = fsys.Open("m/missing")
	require.ErrorIs(t, err, fs.ErrNotExist)

	_, err = NewFS([]FileEntry{{Path: "a", Blob: jsBlob(nil)}, {Path: "a", Blob: jsBlob(nil)}}, 0)
	require.ErrorContains(t, err, "given twice")
	_, err = NewFS([]FileEntry{{Path: "a", Blob: jsBlob(nil)}, {Path: "a/b", Blob: jsBlob(nil)}}, 0)
	require.ErrorContains(t, err, "both a file and a folder")
	_, err = NewFS([]FileEntry{{Path: "a/../../b", Blob: jsBlob(nil)}}, 0)
	require.ErrorContains(t, err, "not a valid relative path")
}

// TestFSPrefetch: Prefetch reads the small files at once and Open hands
// each read to its file, which then makes no read of its own; a second
// Open, and files too large to read whole, read as usual.
func TestFSPrefetch(t *testing.T) {
	small, large := randomBytes(3000, 2), randomBytes(5000, 3)
	defer func(w int64) { wholeFile = w }(wholeFile)
	wholeFile = 4000
	fsys, err := NewFS([]FileEntry{{Path: "a/small", Blob: jsBlob(small)}, {Path: "a/large", Blob: jsBlob(large)}}, 1024)
	require.NoError(t, err)
	fsys.Prefetch()
	require.Len(t, fsys.pre, 1, "only the small file is read ahead")
	for i, want := range []int{0, 1} {
		f, err := fsys.Open("a/small")
		require.NoError(t, err)
		got, err := io.ReadAll(f)
		require.NoError(t, err)
		require.Equal(t, small, got)
		require.Equal(t, want, f.(*file).r.Calls(), "open %d", i+1)
	}
	got, err := fs.ReadFile(fsys, "a/large")
	require.NoError(t, err)
	require.Equal(t, large, got)
}

// FuzzNewFS: any list of paths either is rejected with an error or gives
// an FS whose files all open and read back.
func FuzzNewFS(f *testing.F) {
	f.Add("a/b.json", "a/c.safetensors", "d")
	f.Add("/x", "x", "y/../x")
	f.Add("a", "a/b", "")
	f.Add("./a", "a//b", "\x00")
	f.Fuzz(func(t *testing.T, p1, p2, p3 string) {
		var entries []FileEntry
		for i, p := range []string{p1, p2, p3} {
			entries = append(entries, FileEntry{Path: p, Blob: jsBlob([]byte{byte(i)})})
		}
		fsys, err := NewFS(entries, 0)
		if err != nil {
			return
		}
		for i, p := range []string{p1, p2, p3} {
			b, err := fs.ReadFile(fsys, strings.TrimPrefix(p, "/"))
			require.NoError(t, err)
			require.Equal(t, []byte{byte(i)}, b)
		}
		require.NoError(t, fs.WalkDir(fsys, ".", func(string, fs.DirEntry, error) error { return nil }))
	})
}

func TestBlobWriter(t *testing.T) {
	data := randomBytes(10_000, 5)
	w := NewBlobWriter(1000)
	for rest := data; len(rest) > 0; {
		k := min(len(rest), 337)
		n, err := w.Write(rest[:k])
		require.NoError(t, err)
		require.Equal(t, k, n)
		rest = rest[k:]
	}
	require.Equal(t, 10, w.Parts())
	blob := w.Blob("application/octet-stream")
	require.Equal(t, "application/octet-stream", blob.Get("type").String())
	require.Equal(t, data, blobBytes(t, blob))
	_, err := w.Write([]byte{1})
	require.Error(t, err)
}

// collectingStream is a JS WritableStream whose sink stores chunks and
// resolves each write only after a macrotask (so writes really wait).
func collectingStream() (stream, chunks js.Value) {
	chunks = js.Global().Get("Array").New()
	write := js.FuncOf(func(_ js.Value, args []js.Value) any {
		chunk := args[0]
		return js.Global().Get("Promise").New(js.FuncOf(func(_ js.Value, a []js.Value) any {
			resolve := a[0]
			js.Global().Call("setTimeout", js.FuncOf(func(js.Value, []js.Value) any {
				chunks.Call("push", chunk)
				resolve.Invoke()
				return nil
			}), 1)
			return nil
		}))
	})
	sink := map[string]any{"write": write}
	return js.Global().Get("WritableStream").New(sink, map[string]any{"highWaterMark": 1}), chunks
}

func TestStreamWriter(t *testing.T) {
	stream, chunks := collectingStream()
	sw, err := NewStreamWriter(stream, 1000)
	require.NoError(t, err)
	data := randomBytes(6500, 6)
	// streamInFlight buffers are handed on without waiting (the sink takes
	// 1 ms per write); the next one waits for the first.
	_, err = sw.Write(data[:streamInFlight*1000])
	require.NoError(t, err)
	require.Equal(t, 0, chunks.Length(), "writes are handed on without waiting for the sink")
	_, err = sw.Write(data[streamInFlight*1000 : (streamInFlight+1)*1000+500])
	require.NoError(t, err)
	require.GreaterOrEqual(t, chunks.Length(), 1, "at most streamInFlight writes in flight: the first has finished before the next starts")
	_, err = sw.Write(data[(streamInFlight+1)*1000+500:])
	require.NoError(t, err)
	require.NoError(t, sw.Close())
	var got []byte
	for i := 0; i < chunks.Length(); i++ {
		c := chunks.Index(i)
		b := make([]byte, c.Length())
		js.CopyBytesToGo(b, c)
		got = append(got, b...)
	}
	require.Equal(t, data, got)

	_, err = NewStreamWriter(js.ValueOf(map[string]any{}), 0)
	require.ErrorContains(t, err, "WritableStream")
}

func TestSignalContext(t *testing.T) {
	ac := js.Global().Get("AbortController").New()
	ctx, stop := SignalContext(context.Background(), ac.Get("signal"))
	defer stop()
	require.NoError(t, ctx.Err())
	ac.Call("abort")
	<-ctx.Done()
	require.ErrorIs(t, context.Cause(ctx), ErrCancelled)

	ac = js.Global().Get("AbortController").New()
	ac.Call("abort")
	ctx, stop = SignalContext(context.Background(), ac.Get("signal"))
	defer stop()
	require.Error(t, ctx.Err(), "an already aborted signal cancels at once")
}

// --- export through the JS request shape -------------------------------

const tiny = "../testdata/tiny-llama"

// dirFiles returns the files below dir as fake dropped Files whose
// relative paths start with prefix.
func dirFiles(t *testing.T, dir, prefix string) []any {
	t.Helper()
	var out []any
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out = append(out, fakeFile(t, b, e.Name(), path.Join(prefix, e.Name())))
	}
	return out
}

func nativeExport(t *testing.T, o export.Options, adapters ...string) []byte {
	t.Helper()
	req := export.Request{FS: os.DirFS(tiny), ModelDir: "model", Options: o}
	for _, a := range adapters {
		req.Adapters = append(req.Adapters, export.Adapter{Name: a, FS: os.DirFS(tiny), Path: "adapters/" + a})
	}
	var buf bytes.Buffer
	require.NoError(t, export.Export(context.Background(), req, &buf, nil))
	return buf.Bytes()
}

func adaptersJS(t *testing.T, names ...string) []any {
	var out []any
	for _, n := range names {
		out = append(out, map[string]any{"name": n, "files": dirFiles(t, tiny+"/adapters/"+n, "tiny/adapters/"+n)})
	}
	return out
}

func TestExportMatchesNative(t *testing.T) {
	o := export.DefaultOptions()
	o.Multifunction, o.InputLen, o.MaxContextLen = true, 4, 12
	want := nativeExport(t, o, "attn", "mlpq")

	var stages []string
	var notices []string
	onProgress := js.FuncOf(func(_ js.Value, args []js.Value) any {
		s := args[0].Get("stage").String()
		if len(stages) == 0 || stages[len(stages)-1] != s {
			stages = append(stages, s)
		}
		return nil
	})
	defer onProgress.Release()
	onNotice := js.FuncOf(func(_ js.Value, args []js.Value) any {
		notices = append(notices, args[0].String())
		return nil
	})
	defer onNotice.Release()
	req := js.ValueOf(map[string]any{
		"model":      dirFiles(t, tiny+"/model", "tiny/model"),
		"adapters":   adaptersJS(t, "attn", "mlpq"),
		"options":    map[string]any{"multifunction": true, "inputLen": 4, "maxContextLen": "12"},
		"onProgress": onProgress,
		"onNotice":   onNotice,
	})
	c := &Core{Window: 64 << 10, PartSize: 50_000, Now: time.Now}
	res, err := c.Export(context.Background(), req)
	require.NoError(t, err)
	got := blobBytes(t, res.Blob)
	require.True(t, bytes.Equal(want, got), "browser export differs from the native export (%d vs %d bytes)", len(got), len(want))
	require.EqualValues(t, len(want), res.Size)
	require.Contains(t, res.Methods, "attn_prefill")
	require.Contains(t, res.Methods, "forward")
	require.Equal(t, []string{"read", "write", "done"}, stages)
	require.Len(t, notices, 1, "no IndexedDB under Node: one notice, export still works")
	require.Contains(t, notices[0], "not cached")
	require.Empty(t, res.BaseID)

	// The same through a WritableStream.
	stream, chunks := collectingStream()
	req.Set("output", stream)
	req.Set("cache", false)
	res, err = c.Export(context.Background(), req)
	require.NoError(t, err)
	require.True(t, res.Blob.IsUndefined())
	var streamed []byte
	for i := 0; i < chunks.Length(); i++ {
		ch := chunks.Index(i)
		b := make([]byte, ch.Length())
		js.CopyBytesToGo(b, ch)
		streamed = append(streamed, b...)
	}
	require.True(t, bytes.Equal(want, streamed), "streamed export differs")

	// And inspect reads it back like `lorapte inspect --json`.
	rep, err := c.Inspect(jsBlob(got), true)
	require.NoError(t, err)
	require.True(t, rep.Get("verified").Bool())
	require.EqualValues(t, len(want), rep.Get("size").Int())
	f := rep.Get("findings")
	require.True(t, f.IsUndefined() || f.Length() == 0, "verification findings: %s", js.Global().Get("JSON").Call("stringify", f).String())
}

// Files picked one by one have no folder; they still form a model.
func TestExportLooseFiles(t *testing.T) {
	o := export.DefaultOptions()
	want := nativeExport(t, o, "attn")
	var model []any
	for _, f := range dirFiles(t, tiny+"/model", "") {
		f.(js.Value).Set("webkitRelativePath", "")
		model = append(model, f)
	}
	var ad []any
	for _, f := range dirFiles(t, tiny+"/adapters/attn", "x") {
		ad = append(ad, map[string]any{"file": f, "path": f.(js.Value).Get("name").String()})
	}
	req := js.ValueOf(map[string]any{"model": model, "cache": false,
		"adapters": []any{map[string]any{"name": "attn", "files": ad}}})
	res, err := NewCore().Export(context.Background(), req)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, blobBytes(t, res.Blob)))
}

func TestExportErrors(t *testing.T) {
	c := NewCore()
	model := func() []any { return dirFiles(t, tiny+"/model", "tiny/model") }
	cases := []struct {
		req  map[string]any
		want string
	}{
		{map[string]any{}, "no base model"},
		{map[string]any{"model": model(), "base": "abc"}, "not both"},
		{map[string]any{"model": model(), "options": map[string]any{"maxContextLen": "abc"}}, `options.maxContextLen: want a whole number, got "abc"`},
		{map[string]any{"model": model(), "options": map[string]any{"maxContextLen": 1.5}}, "options.maxContextLen: want a whole number"},
		{map[string]any{"model": model(), "options": map[string]any{"multifunction": "yes"}}, "options.multifunction: want true or false"},
		{map[string]any{"model": model(), "options": map[string]any{"dtpye": "fp16"}}, "options.dtpye: unknown option"},
		{map[string]any{"model": model(), "options": map[string]any{"dtype": "fp8"}}, `--dtype "fp8": want fp16 or fp32`},
		{map[string]any{"model": model(), "extra": 1}, `unknown field "extra"`},
		{map[string]any{"model": []any{1}}, "model[0]: not a File"},
		{map[string]any{"model": model(), "adapters": []any{map[string]any{"name": "1x", "files": dirFiles(t, tiny+"/adapters/attn", "a")}}}, `adapter name "1x"`},
		{map[string]any{"model": model(), "adapters": []any{map[string]any{"name": "a", "files": []any{}}}}, `adapter "a": no files`},
		{map[string]any{"model": dirFiles(t, tiny+"/adapters/attn", "only/adapter")}, "only/adapter/config.json: not found"},
	}
	for _, tc := range cases {
		tc.req["cache"] = false
		_, err := c.Export(context.Background(), js.ValueOf(tc.req))
		require.ErrorContains(t, err, tc.want)
	}
}

// A truncated checkpoint names the file; the same Core exports fine after.
func TestExportBrokenFileThenGood(t *testing.T) {
	c := NewCore()
	files := dirFiles(t, tiny+"/model", "broken/model")
	for i, f := range files {
		if fv := f.(js.Value); fv.Get("name").String() == "model.safetensors" {
			b := blobBytes(t, fv)
			files[i] = fakeFile(t, b[:len(b)/2], "model.safetensors", "broken/model/model.safetensors")
		}
	}
	_, err := c.Export(context.Background(), js.ValueOf(map[string]any{"model": files, "cache": false}))
	require.Error(t, err)
	require.Contains(t, err.Error(), "broken/model/model.safetensors")
	res, err := c.Export(context.Background(), js.ValueOf(map[string]any{"model": dirFiles(t, tiny+"/model", "m"), "cache": false}))
	require.NoError(t, err)
	require.True(t, bytes.Equal(nativeExport(t, export.DefaultOptions()), blobBytes(t, res.Blob)))
}

func TestExportCancel(t *testing.T) {
	ac := js.Global().Get("AbortController").New()
	var onProgress js.Func
	onProgress = js.FuncOf(func(_ js.Value, args []js.Value) any {
		if args[0].Get("stage").String() == "read" {
			ac.Call("abort")
		}
		return nil
	})
	defer onProgress.Release()
	req := js.ValueOf(map[string]any{"model": dirFiles(t, tiny+"/model", "m"), "cache": false,
		"signal": ac.Get("signal"), "onProgress": onProgress})
	c := &Core{PartSize: 1 << 10, Now: time.Now}
	_, err := c.Export(context.Background(), req)
	require.ErrorIs(t, err, ErrCancelled)
}

// The registered object is what lorapte.js calls.
func TestRegister(t *testing.T) {
	obj := js.Global().Get("Object").New()
	NewCore().Register(obj, "core")
	core := obj.Get("core")
	require.True(t, core.Get("validateAdapterName").Invoke("chat", true, []any{}).IsNull())
	msg := core.Get("validateAdapterName").Invoke("forward", false, []any{}).String()
	require.Contains(t, msg, `adapter name "forward"`)
	msg = core.Get("validateAdapterName").Invoke("a", true, []any{"a"}).String()
	require.Contains(t, msg, "given twice")
	d := core.Get("defaults").Invoke()
	require.Equal(t, 1024, d.Get("maxContextLen").Int())
	require.Equal(t, "c4w", d.Get("linearQuantize").String())

	res, err := Await(core.Call("export", map[string]any{"model": dirFiles(t, tiny+"/model", "m"), "cache": false}))
	require.NoError(t, err)
	got := blobBytes(t, res.Get("blob"))
	require.True(t, bytes.Equal(nativeExport(t, export.DefaultOptions()), got))
	rep, err := Await(core.Call("inspect", jsBlob(got)))
	require.NoError(t, err)
	require.False(t, rep.Get("verified").Bool())
	require.Greater(t, rep.Get("sizes").Get("base").Int(), 0)

	_, err = Await(core.Call("export", map[string]any{}))
	require.ErrorContains(t, err, "no base model")
	_, err = Await(core.Call("inspect", jsBlob([]byte("not a pte"))))
	require.Error(t, err)
	_, err = Await(core.Call("cachedBases"))
	require.ErrorContains(t, err, "IndexedDB")
}
