//go:build js && wasm

package jsbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"syscall/js"
	"time"

	"lorapte/core/export"
	"lorapte/core/inspect"
)

// Core serves the calls of the page. It opens the cache on first use.
type Core struct {
	// Window and PartSize size the read-ahead and output buffers (0 = default).
	Window, PartSize int
	// Now is the clock for cache timestamps (tests set it).
	Now func() time.Time

	mu    sync.Mutex
	cache *Cache
	pool  *Pool // the page's conversion workers (setPool); nil: convert here
}

// NewCore returns a Core with default buffer sizes.
func NewCore() *Core { return &Core{Now: time.Now} }

func (c *Core) openCache(ctx context.Context) (*Cache, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache != nil {
		return c.cache, nil
	}
	cache, err := OpenCache(ctx)
	if err != nil {
		return nil, err
	}
	c.cache = cache
	return cache, nil
}

// ExportResult is what export() resolves with.
type ExportResult struct {
	Blob    js.Value // the .pte, or undefined when written to a stream
	Size    int64
	Methods []string
	BaseID  string   // cache entry the base is (now) stored under; "" when not cached
	Notices []string // non-fatal problems, e.g. the base could not be cached
}

func (r *ExportResult) toJS() map[string]any {
	methods := make([]any, len(r.Methods))
	for i, m := range r.Methods {
		methods[i] = m
	}
	notices := make([]any, len(r.Notices))
	for i, n := range r.Notices {
		notices[i] = n
	}
	var baseID any
	if r.BaseID != "" {
		baseID = r.BaseID
	}
	blob := any(nil)
	if !r.Blob.IsUndefined() {
		blob = r.Blob
	}
	return map[string]any{"blob": blob, "size": float64(r.Size), "methods": methods, "baseId": baseID, "notices": notices}
}

// progress wraps the JS onProgress callback. A throwing callback must not
// stop the export, so exceptions are swallowed.
func progressFunc(cb js.Value) func(stage string, done, total int64) {
	if cb.Type() != js.TypeFunction {
		return func(string, int64, int64) {}
	}
	return func(stage string, done, total int64) {
		defer func() { recover() }() //nolint:errcheck // see above
		cb.Invoke(map[string]any{"stage": stage, "done": float64(done), "total": float64(total)})
	}
}

// Export runs one export() call.
func (c *Core) Export(parent context.Context, v js.Value) (*ExportResult, error) {
	req, err := parseExportRequest(v, c.Window)
	if err != nil {
		return nil, err
	}
	ctx, stop := SignalContext(parent, req.signal)
	defer stop()
	progress := progressFunc(req.onProgress)
	res := &ExportResult{Blob: js.Undefined()}
	notice := func(msg string) {
		res.Notices = append(res.Notices, msg)
		if req.onNotice.Type() == js.TypeFunction {
			func() {
				defer func() { recover() }() //nolint:errcheck // a throwing callback must not stop the export
				req.onNotice.Invoke(msg)
			}()
		}
	}
	var sw *StreamWriter
	if !req.output.IsUndefined() && !req.output.IsNull() {
		if sw, err = NewStreamWriter(req.output, c.PartSize); err != nil {
			return nil, err
		}
	}
	progress("read", 0, 0)
	err = c.run(ctx, req, res, sw, true, progress, notice)
	var fe *fileOutputError
	if errors.As(err, &fe) && ctx.Err() == nil {
		// The output file that was to be the cache failed (the storage is
		// full, say): export again, writing as usual, without caching.
		notice(fmt.Sprintf("The converted base is not cached: %v. The export itself is not affected.", storageError(fe.err)))
		req.cache = false
		progress("read", 0, 0)
		err = c.run(ctx, req, res, sw, false, progress, notice)
	}
	if err == nil && sw != nil {
		err = sw.Close()
	}
	if err != nil {
		err = cancelled(ctx, err)
		if sw != nil {
			sw.Abort(err)
		}
		return nil, err
	}
	progress("done", res.Size, res.Size)
	return res, nil
}

// fileOutputError is a failure of the output file that was to be the
// cache: the export can still be written another way.
type fileOutputError struct{ err error }

func (e *fileOutputError) Error() string { return e.err.Error() }
func (e *fileOutputError) Unwrap() error { return e.err }

// run plans and writes the export into sw, else into a Blob (res.Blob);
// with fileOK the output may be a file that is also the base's cache.
func (c *Core) run(ctx context.Context, req *exportRequest, res *ExportResult, sw *StreamWriter, fileOK bool,
	progress func(stage string, done, total int64), notice func(string)) error {
	xr := export.Request{Adapters: req.adapters, Options: req.options}
	var pool *Pool
	if c.pool != nil {
		pool = c.pool.ForExport()
		for _, f := range req.files {
			f.SetPool(pool)
		}
		xr.Workers = pool.Size()
		defer pool.clear()
	}
	var cache *Cache
	var err error
	if req.base != "" {
		if cache, err = c.openCache(ctx); err != nil {
			return fmt.Errorf("cached base %s: %w", req.base, err)
		}
		if xr.Base, xr.BaseBlobs, err = cache.Load(ctx, req.base); err != nil {
			return err
		}
	} else {
		xr.FS, xr.ModelDir = req.model.fs, req.model.dir
	}
	var cw *CacheWriter
	if req.base == "" && req.cache {
		if cache, err = c.openCache(ctx); err != nil {
			notice(fmt.Sprintf("The converted base is not cached (%v); the export itself is not affected.", err))
		} else {
			cw = cache.NewWriter(ctx)
			cw.now = c.Now
			xr.SaveBase = cw
		}
	}
	plan, err := export.NewPlan(xr)
	if err != nil {
		return err
	}
	defer plan.Close()
	var man *export.BaseManifest // the cache entry this export would store
	if cw != nil {
		man = plan.BaseManifest()
		man.Name = displayName(req.model.dir)
		if has, _ := cache.Has(ctx, man.Key); has {
			cw.Disable()
			res.BaseID = man.Key
		} else if free, ok := storageFree(); ok && free < man.Bytes+(64<<20) {
			cw.Disable()
			notice(fmt.Sprintf("The converted base is not cached: browser storage has %s free, it needs %s. The export itself is not affected.",
				export.HumanBytes(free), export.HumanBytes(man.Bytes)))
		}
	}

	// The base is to be cached and the workers can write files: the output
	// goes into a file of the origin private file system that is also the
	// cache entry, written once, by the workers (FileSink).
	var fw *FileWriter
	var fsink *FileSink
	if fileOK && cw != nil && !cw.off && pool != nil && pool.hasOutput && hasOPFS() {
		if fw, fsink, err = c.openFileOutput(ctx, cache, pool); err == nil {
			cw.Disable()
			cw = nil
			plan.SaveBaseTo(nil)
			pool.holding = true
		}
	}

	var w io.Writer
	var bw *BlobWriter
	switch {
	case fsink != nil:
		w = fsink
	case sw != nil:
		w = sw
	default:
		bw = NewBlobWriter(c.PartSize)
		w = bw
	}
	err = plan.Write(ctx, w, func(stage string, done, total int64) {
		if stage != "done" { // "done" comes last, after the cache commit
			progress(stage, done, total)
		}
	})
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx) // aborted after the last write: still a cancel
	}
	var file js.Value
	if fsink != nil {
		if err == nil {
			err = fsink.Close()
		}
		if err == nil {
			file, err = opfsFile(fsink.name)
		}
		if err != nil && fsink.err != nil {
			err = &fileOutputError{fsink.err}
		}
		// The file is complete: it is the result, or is copied into the stream.
		if err == nil && sw != nil {
			err = sw.WriteRef(file, plan.Size())
		}
	}
	if err != nil {
		if cw != nil {
			cw.Abort()
		}
		if fsink != nil {
			fsink.Abort()
			fw.Abort()
		}
		return err
	}
	switch {
	case sw != nil:
	case fsink != nil:
		res.Blob = file
	default:
		res.Blob = bw.Blob("application/octet-stream")
	}
	res.Size, res.Methods = plan.Size(), plan.Methods()

	switch {
	case fw != nil:
		if err := fw.Commit(man); err != nil {
			notice(fmt.Sprintf("The converted base is not cached: %v. The export itself is not affected.", err))
		} else {
			res.BaseID = man.Key
		}
	case req.base != "":
		res.BaseID = req.base
		cache.Touch(ctx, req.base, c.Now()) //nolint:errcheck // only the list order depends on it
	case cw != nil && res.BaseID != "":
		cache.Touch(ctx, res.BaseID, c.Now()) //nolint:errcheck // as above
	case cw != nil && cw.Err() == nil:
		progress("cache", 0, man.Bytes)
		if err := cw.Commit(man); err == nil {
			res.BaseID = man.Key
		}
	}
	if cw != nil && cw.Err() != nil {
		notice(fmt.Sprintf("The converted base is not cached: %v. The export itself is not affected.", cw.Err()))
	}
	return nil
}

// openFileOutput starts a cache session whose file is the output; an
// error leaves nothing behind (the export then writes as usual).
func (c *Core) openFileOutput(ctx context.Context, cache *Cache, pool *Pool) (*FileWriter, *FileSink, error) {
	now := c.Now
	if now == nil {
		now = time.Now
	}
	fw, err := cache.NewFileWriter(ctx, now)
	if err != nil {
		return nil, nil, err
	}
	fs, err := NewFileSink(pool, sessionFile(fw.Session), c.PartSize)
	if err != nil {
		fw.Abort()
		return nil, nil, err
	}
	fs.beat = func() { fw.Beat() } //nolint:errcheck // a missed beat only risks a very slow export's cache entry
	return fw, fs, nil
}

// cancelled replaces the error of a cancelled export with ErrCancelled.
func cancelled(ctx context.Context, err error) error {
	if ctx.Err() != nil && context.Cause(ctx) == ErrCancelled {
		return ErrCancelled
	}
	return err
}

// displayName names a cache entry after the dropped folder's path (the
// model's name in a Hugging Face layout).
func displayName(dir string) string {
	if dir == "." || dir == "" || dir == "/" {
		return "model"
	}
	return dir
}

// storageFree asks navigator.storage.estimate() how much the origin may
// still store; ok is false when the browser cannot tell.
func storageFree() (int64, bool) {
	nav := js.Global().Get("navigator")
	if !nav.Truthy() || !nav.Get("storage").Truthy() || nav.Get("storage").Get("estimate").Type() != js.TypeFunction {
		return 0, false
	}
	p, err := call(nav.Get("storage"), "estimate")
	if err != nil {
		return 0, false
	}
	est, err := Await(p)
	if err != nil || est.Get("quota").Type() != js.TypeNumber || est.Get("usage").Type() != js.TypeNumber {
		return 0, false
	}
	return int64(est.Get("quota").Float() - est.Get("usage").Float()), true
}

// Inspect decodes a .pte Blob into the JSON object of `lorapte inspect --json`.
func (c *Core) Inspect(blob js.Value, verify bool) (js.Value, error) {
	if blob.Type() != js.TypeObject || !blob.InstanceOf(js.Global().Get("Blob")) {
		return js.Undefined(), errors.New("inspect: want a Blob or File")
	}
	r := NewBlobReader(blob, c.Window)
	rep, err := inspect.Inspect(r, r.Size(), verify)
	if err != nil {
		if n := blob.Get("name"); n.Type() == js.TypeString && n.String() != "" {
			return js.Undefined(), fmt.Errorf("%s: %w", n.String(), err)
		}
		return js.Undefined(), err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return js.Undefined(), err
	}
	return js.Global().Get("JSON").Call("parse", buf.String()), nil
}

// CachedBases lists the cache as [{id, name, bytes, lastUsed}] (lastUsed
// in milliseconds since the epoch, like Date.now()).
func (c *Core) CachedBases(ctx context.Context) (js.Value, error) {
	cache, err := c.openCache(ctx)
	if err != nil {
		return js.Undefined(), err
	}
	list, err := cache.List(ctx)
	if err != nil {
		return js.Undefined(), err
	}
	out := make([]any, len(list))
	for i, e := range list {
		out[i] = map[string]any{"id": e.ID, "name": e.Name, "bytes": float64(e.Bytes), "lastUsed": float64(e.LastUsed.UnixMilli())}
	}
	return js.ValueOf(out), nil
}

// DeleteCachedBase removes one entry.
func (c *Core) DeleteCachedBase(ctx context.Context, id string) error {
	cache, err := c.openCache(ctx)
	if err != nil {
		return err
	}
	return cache.Delete(ctx, id)
}

// Register installs the API object as global[name]:
//
//	export(request) → Promise<{blob, size, methods, baseId, notices}>
//	inspect(blob, {verify}) → Promise<object>
//	cachedBases() → Promise<[{id, name, bytes, lastUsed}]>
//	deleteCachedBase(id) → Promise<void>
//	validateAdapterName(name, multifunction, others) → null | message (synchronous)
//	defaults() → the CLI's export options
//	memStats() → {sys, heapSys, heapInuse} of the Go runtime (synchronous; benchmarks)
//	setPool(pool | null) → null | message: the workers that convert pieces (worker.go)
func (c *Core) Register(global js.Value, name string) {
	ctx := context.Background()
	api := map[string]any{
		"version": export.ToolVersion,
		"export": js.FuncOf(func(_ js.Value, args []js.Value) any {
			req := arg(args, 0)
			return Promise(func() (any, error) {
				res, err := c.Export(ctx, req)
				if err != nil {
					return nil, err
				}
				return res.toJS(), nil
			})
		}),
		"inspect": js.FuncOf(func(_ js.Value, args []js.Value) any {
			blob, opts := arg(args, 0), arg(args, 1)
			verify := opts.Type() == js.TypeObject && opts.Get("verify").Truthy()
			return Promise(func() (any, error) { return c.Inspect(blob, verify) })
		}),
		"cachedBases": js.FuncOf(func(js.Value, []js.Value) any {
			return Promise(func() (any, error) { return c.CachedBases(ctx) })
		}),
		"deleteCachedBase": js.FuncOf(func(_ js.Value, args []js.Value) any {
			id := arg(args, 0)
			return Promise(func() (any, error) {
				if id.Type() != js.TypeString {
					return nil, fmt.Errorf("deleteCachedBase: want an id string, got %s", describe(id))
				}
				return js.Undefined(), c.DeleteCachedBase(ctx, id.String())
			})
		}),
		"validateAdapterName": js.FuncOf(func(_ js.Value, args []js.Value) any {
			var others []string
			if o := arg(args, 2); o.Type() == js.TypeObject && o.Get("length").Type() == js.TypeNumber {
				for i := 0; i < o.Length(); i++ {
					others = append(others, js.Global().Call("String", o.Index(i)).String())
				}
			}
			if err := export.ValidateAdapterName(js.Global().Call("String", arg(args, 0)).String(), arg(args, 1).Truthy(), others); err != nil {
				return err.Error()
			}
			return nil
		}),
		"defaults": js.FuncOf(func(js.Value, []js.Value) any {
			return optionsToJS(export.DefaultOptions())
		}),
		"memStats": js.FuncOf(func(js.Value, []js.Value) any {
			return memStats()
		}),
		"setPool": js.FuncOf(func(_ js.Value, args []js.Value) any {
			p, err := NewPool(arg(args, 0))
			if err != nil {
				return err.Error()
			}
			c.pool = p
			return nil
		}),
	}
	global.Set(name, js.ValueOf(api))
}

// memStats reports the Go heap for benchmarks; the wasm linear memory
// itself is measured on the JS side (lorapte.memory()).
func memStats() map[string]any {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return map[string]any{"sys": float64(ms.Sys), "heapSys": float64(ms.HeapSys), "heapInuse": float64(ms.HeapInuse)}
}
