//go:build js && wasm

package jsbridge

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"syscall/js"

	"lorapte/core/export"
)

// The conversion runs on every core through a pool of Web Workers
// (site/lorapte-worker.js): converters, each with its own instance of the
// same wasm module (a wasm instance has one thread), and a reader. The
// page's instance plans and writes the output; the pieces of the tensors
// it will convert are announced ahead (export's ReadAhead), and the reader
// fetches each from the File and hands it to a converter (Pool.fetch)
// while others are converted. When the page's instance reaches a piece it
// asks that converter to convert it (Pool.convert); the converter runs
// export.Converter, the code that would run in the page, and transfers the
// result back. So the bytes are the same whichever instance converts a
// piece, and the page's thread neither reads nor converts tensor data.

// InWorker reports whether this instance runs in a Web Worker.
func InWorker() bool {
	wgs := js.Global().Get("WorkerGlobalScope")
	return wgs.Type() == js.TypeFunction && js.Global().InstanceOf(wgs)
}

// RegisterWorker installs global[name] = {convert(bytes, piece, spare)}
// for site/lorapte-worker.js: bytes is a Uint8Array of the piece's source
// bytes (fetched by the worker), piece its export.Piece as JSON; it
// returns {out, scales} (Uint8Arrays, to be transferred; simd: true when
// the SIMD kernels made them), or {error, slow} when it cannot. out is a
// view at the start of spare, an ArrayBuffer a converted piece had before
// (the writer sends them back), when it is large enough: a new one costs
// more to allocate than to fill. Quantized bfloat16 pieces run the SIMD
// kernels (simd.go) where the engine has them.
func RegisterWorker(global js.Value, name string) {
	var (
		c                export.Converter
		src, out, scales []byte
	)
	simd := newSIMDKernel()
	u8 := js.Global().Get("Uint8Array")
	arrayBuffer := js.Global().Get("ArrayBuffer")
	convert := func(bytes, pieceJSON, spare js.Value) (map[string]any, error) {
		var p export.Piece
		if pieceJSON.Type() != js.TypeString || json.Unmarshal([]byte(pieceJSON.String()), &p) != nil {
			return nil, errors.New("convert: want a piece as JSON")
		}
		if bytes.Type() != js.TypeObject || !bytes.InstanceOf(u8) {
			return nil, errors.New("convert: want the source bytes as a Uint8Array")
		}
		if err := p.Valid(); err != nil {
			return nil, err
		}
		if n := p.SourceBytes(); bytes.Length() != n {
			return nil, fmt.Errorf("convert: got %d source bytes, want %d (did the file change on disk?)", bytes.Length(), n)
		}
		scales = grow(scales, p.ScaleBytes())
		n := p.OutBytes()
		var jo js.Value
		if spare.InstanceOf(arrayBuffer) && spare.Get("byteLength").Int() >= n {
			jo = u8.New(spare, 0, n)
		} else {
			jo = u8.New(n)
		}
		if simd != nil {
			ok, err := simd.quantize(p, bytes, scales, jo)
			if err != nil {
				return nil, err
			}
			if ok {
				js_ := u8.New(len(scales))
				js.CopyBytesToJS(js_, scales)
				return map[string]any{"out": jo, "scales": js_, "simd": true}, nil
			}
		}
		src, out = grow(src, p.SourceBytes()), grow(out, n)
		js.CopyBytesToGo(src, bytes)
		if err := c.Convert(p, src, out, scales); err != nil {
			return nil, err
		}
		js.CopyBytesToJS(jo, out)
		js_ := u8.New(len(scales))
		js.CopyBytesToJS(js_, scales)
		return map[string]any{"out": jo, "scales": js_}, nil
	}
	global.Set(name, js.ValueOf(map[string]any{
		"convert": js.FuncOf(func(_ js.Value, args []js.Value) any {
			res, err := convert(arg(args, 0), arg(args, 1), arg(args, 2))
			if err != nil {
				return map[string]any{"error": err.Error(), "slow": errors.Is(err, export.ErrSlowPath)}
			}
			return res
		}),
	}))
}

// Pool is the page's worker pool (site/lorapte.js):
//
//	size                          number of workers
//	fetch(file, offset, n, tag)   the reader starts reading for a converter; returns a handle (synchronously)
//	fetchSpan(file, offset, sizes, tag)
//	                              (optional) the reader reads pieces that follow each other from offset
//	                              (sizes: an Array of byte counts) by one read; returns their handles
//	convert(handle, piece)        Promise<{out, scales}>: that converter converts the bytes;
//	                              rejects with an Error named "SlowPath" when the fast path declined
//	clear(tag)                    workers drop what the export tagged tag fetched and did not convert
//
// Each export uses its own tag (ForExport), so exports running at the same
// time do not clear each other's pieces.
//
// A pool that also has a writer (site/lorapte-worker.js) writes output
// files in the origin private file system (hasOutput, see filesink.go):
//
//	hold(handle, piece, twins)    Promise<{scales, twins}>: like convert, the converter keeps the output;
//	                              twins (JSON [{piece, skip, bytes}]) are converted from the same bytes and
//	                              kept too: twins[i] is {handle, scales}, or {error} when it failed
//	emit(handle, at, n)           that converter sends the held piece to the output file at offset at
//	openOutput(tag, name)         Promise: the writer opens the (emptied) file name
//	writeOutput(tag, at, bytes)   the writer writes a Uint8Array (transferred) at offset at
//	outputBelow(tag, limit)       Promise: resolves once at most limit bytes wait to be written
//	outputError(tag)              the first write error, or null
//	closeOutput(tag, bytes)       Promise: resolves once bytes bytes are written and the file closed
//	abortOutput(tag)              Promise: the file is closed and removed
type Pool struct {
	v         js.Value
	size      int
	tag       string
	hasOutput bool
	holding   bool // this export's pieces stay in the workers (the output is a file they write)
	spans     bool // the pool has fetchSpan
}

// NewPool wraps the page's pool object; nil when there is none.
func NewPool(v js.Value) (*Pool, error) {
	if v.IsUndefined() || v.IsNull() {
		return nil, nil
	}
	if v.Type() != js.TypeObject || v.Get("size").Type() != js.TypeNumber {
		return nil, errors.New("pool: want {size, fetch, convert, clear}")
	}
	for _, m := range []string{"fetch", "convert", "clear"} {
		if v.Get(m).Type() != js.TypeFunction {
			return nil, fmt.Errorf("pool: no %s function", m)
		}
	}
	size := v.Get("size").Int()
	if size < 1 || size > 64 {
		return nil, fmt.Errorf("pool: size %d", size)
	}
	out := true
	for _, m := range []string{"hold", "emit", "openOutput", "writeOutput", "outputBelow", "outputError", "closeOutput", "abortOutput"} {
		out = out && v.Get(m).Type() == js.TypeFunction
	}
	spans := v.Get("fetchSpan").Type() == js.TypeFunction
	return &Pool{v: v, size: size, hasOutput: out, spans: spans}, nil
}

// ForExport is the pool as one export uses it.
func (p *Pool) ForExport() *Pool {
	var b [8]byte
	rand.Read(b[:])
	return &Pool{v: p.v, size: p.size, tag: hex.EncodeToString(b[:]), hasOutput: p.hasOutput, spans: p.spans}
}

// Size is the number of workers.
func (p *Pool) Size() int { return p.size }

// fetch has a worker start reading n bytes at off of blob.
func (p *Pool) fetch(blob js.Value, off int64, n int) (js.Value, error) {
	return call(p.v, "fetch", blob, float64(off), n, p.tag)
}

// fetchSpan has the worker read pieces of the given sizes that follow each
// other from off of blob by one read; it returns their handles.
func (p *Pool) fetchSpan(blob js.Value, off int64, sizes []int) ([]js.Value, error) {
	arr := make([]any, len(sizes))
	for i, n := range sizes {
		arr[i] = n
	}
	hs, err := call(p.v, "fetchSpan", blob, float64(off), arr, p.tag)
	if err != nil {
		return nil, err
	}
	if hs.Type() != js.TypeObject || hs.Length() != len(sizes) {
		return nil, fmt.Errorf("pool: fetchSpan returned %s handles for %d pieces", describe(hs.Get("length")), len(sizes))
	}
	out := make([]js.Value, len(sizes))
	for i := range out {
		out[i] = hs.Index(i)
	}
	return out, nil
}

// clear drops what the workers fetched and nobody converted.
func (p *Pool) clear() { call(p.v, "clear", p.tag) } //nolint:errcheck // best effort

// convert has the worker that fetched a piece (handle) convert it.
func (p *Pool) convert(handle js.Value, piece export.Piece, out, scales []byte) error {
	res, err := p.request("convert", handle, piece)
	if err != nil {
		return err
	}
	o, s := res.Get("out"), res.Get("scales")
	if o.Type() != js.TypeObject || s.Type() != js.TypeObject || o.Length() != len(out) || s.Length() != len(scales) {
		return fmt.Errorf("pool: a worker returned %s output bytes for %d", describe(o.Get("length")), len(out))
	}
	js.CopyBytesToGo(out, o)
	js.CopyBytesToGo(scales, s)
	return nil
}

// heldPiece is a converted piece a converter keeps until the output file
// sink says where it goes (export.PieceHolder).
type heldPiece struct {
	handle js.Value
	n      int64
}

// hold has the worker that fetched a piece convert it (and its twins) and
// keep the outputs.
func (p *Pool) hold(handle js.Value, piece export.Piece, scales []byte, twins []export.Twin) (*heldPiece, error) {
	type twinSpec struct {
		Piece export.Piece `json:"piece"`
		Skip  int          `json:"skip"`  // source bytes before the twin's
		Bytes int          `json:"bytes"` // the twin's source bytes
	}
	specs := make([]twinSpec, len(twins))
	for i, t := range twins {
		specs[i] = twinSpec{t.Piece, t.Skip, t.Piece.SourceBytes()}
	}
	tj, err := json.Marshal(specs)
	if err != nil {
		return nil, err
	}
	res, err := p.request("hold", handle, piece, string(tj))
	if err != nil {
		return nil, err
	}
	if err := scalesTo(scales, res); err != nil {
		return nil, err
	}
	rt := res.Get("twins")
	if len(twins) > 0 && (rt.Type() != js.TypeObject || rt.Length() != len(twins)) {
		return nil, fmt.Errorf("pool: a worker returned %s twins for %d", describe(rt.Get("length")), len(twins))
	}
	for i := range twins {
		r := rt.Index(i)
		if r.Get("error").Type() == js.TypeString {
			continue // that twin's job converts as usual
		}
		if err := scalesTo(twins[i].Scales, r); err != nil {
			return nil, err
		}
		twins[i].Ref = &heldPiece{handle: r.Get("handle"), n: int64(twins[i].Piece.OutBytes())}
	}
	return &heldPiece{handle: handle, n: int64(piece.OutBytes())}, nil
}

// scalesTo copies res.scales (a Uint8Array of len(dst) bytes) into dst.
func scalesTo(dst []byte, res js.Value) error {
	s := res.Get("scales")
	if s.Type() != js.TypeObject || s.Length() != len(dst) {
		return fmt.Errorf("pool: a worker returned %s scale bytes for %d", describe(s.Get("length")), len(dst))
	}
	js.CopyBytesToGo(dst, s)
	return nil
}

// request calls pool.convert or pool.hold and awaits the result.
func (p *Pool) request(method string, handle js.Value, piece export.Piece, extra ...any) (js.Value, error) {
	pj, err := json.Marshal(piece)
	if err != nil {
		return js.Value{}, err
	}
	pr, err := call(p.v, method, append([]any{handle, string(pj)}, extra...)...)
	if err != nil {
		return js.Value{}, err
	}
	res, err := Await(pr)
	if err != nil {
		var je *JSError
		if errors.As(err, &je) && je.Name == "SlowPath" {
			return js.Value{}, export.ErrSlowPath
		}
		return js.Value{}, err
	}
	return res, nil
}
