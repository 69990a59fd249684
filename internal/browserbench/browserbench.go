// Package browserbench measures the browser exporter at real scale. It
// serves a built site (lorapte.js, lorapte-worker.js, wasm_exec.js, lorapte.wasm) on a
// loopback port, drives headless Chromium through the page's JavaScript
// API (lorapte.exportDetailed, as an embedding page calls it), and times:
//
//   - a full export from the model files with adapters, written to a file
//     through a FileSystemWritableFileStream (what the page's "write
//     straight to disk" uses; here a file of the origin's private file
//     system, so no dialog), storing the converted base in IndexedDB (the
//     API's default);
//   - a re-export from that cached base with one adapter the first export
//     did not have, into a file the same way;
//   - the same re-export returning a Blob (the API's default output), to
//     which the cached base joins by reference.
//
// Each export runs on a freshly loaded page, so the wasm linear memory read
// afterwards (it never shrinks) is that export's peak. The model files
// reach the page as File objects backed by the files on disk (DevTools'
// file-input call), so nothing is uploaded or copied before the clock
// starts; loading the wasm module is not timed either.
//
// The full export is not measured into a Blob: Chromium keeps Blob data in
// memory up to a limit, and where it cannot page blobs to disk (seen in
// headless runs: 500 MiB) a 1.2 GB output Blob is unreadable.
package browserbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/profiler"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"lorapte/internal/sitesrv"
)

// Adapter is one adapter's files (adapter_config.json and the weights).
type Adapter struct {
	Name  string
	Files []string
}

// Config says what to export and with what.
type Config struct {
	Chromium string    // browser executable
	Site     string    // built site directory
	Model    []string  // config.json and *.safetensors of the base
	Adapters []Adapter // adapters of the full export
	New      Adapter   // the adapter of the cached re-export
	Options  map[string]any
	Profile  string        // Chromium user-data directory (holds the IndexedDB cache); must be empty or absent
	Runs     int           // full + cached export pairs; the fastest of each is kept (default 1)
	Timeout  time.Duration // for everything (default 1 h)
	Log      io.Writer     // progress lines; nil for none
	Digest   bool          // hash each output after timing it (small models: the output is read into memory)
	// CPUProfile, when set, receives the page's CPU profile (JS and wasm
	// frames, DevTools' .cpuprofile JSON) of the first full export;
	// CachedCPUProfile that of the first cached re-export into a Blob.
	CPUProfile, CachedCPUProfile string
}

// Export is one measured export.
type Export struct {
	Wall      time.Duration // lorapte.exportDetailed call to resolution
	Planned   time.Duration // of Wall: reading headers, fingerprinting and planning, up to the first output byte
	Cache     time.Duration // of Wall: storing the converted base after the write
	Size      int64         // output bytes
	WasmBytes int64         // wasm linear memory afterwards, of the page's instance and its workers': the peak
	Workers   int           // conversion workers the page used
	GoSys     int64         // Go runtime's MemStats.Sys afterwards
	Notices   []string
	SHA256    string // hex digest of the output, with Config.Digest
	Timeline  string // when each tenth of the output was written
}

// Result is the fastest full and cached export and the largest memory
// seen over all runs.
type Result struct {
	Browser    string // product/version
	Full       Export // returning a Blob (the API's default), caching the base
	FullFile   Export // into a file stream, caching the base
	Cached     Export // from the cached base, into a file
	CachedBlob Export // from the cached base, into a Blob
	BaseID     string
}

// FindChromium returns $LORAPTE_CHROMIUM or the first Chromium or Chrome on
// PATH, "" when there is none.
func FindChromium() string {
	if p := os.Getenv("LORAPTE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// CheckSite reports what a site directory lacks for the benchmark.
func CheckSite(dir string) error {
	for _, f := range []string{"lorapte.js", "lorapte-worker.js", "wasm_exec.js", "lorapte.wasm"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("site %s has no %s (build it with ./build.sh wasm)", dir, f)
		}
	}
	return nil
}

// benchPath is where the harness page is served, outside the site's files.
const benchPath = "/__bench/"

// page builds the harness page: one file input per file group (model,
// adapters, new adapter) and a runner around lorapte.exportDetailed.
func page(groups int) string {
	var b strings.Builder
	b.WriteString(`<!doctype html><meta charset="utf-8"><title>lorapte browser benchmark</title>
<script src="/lorapte.js"></script>
`)
	for i := 0; i < groups; i++ {
		fmt.Fprintf(&b, "<input type=\"file\" id=\"g%d\" multiple>\n", i)
	}
	b.WriteString(`<script>
'use strict';
const group = (i, dir) => [...document.getElementById('g' + i).files].map((file) => ({ file, path: dir + '/' + file.name }));
// spec: {model: group index | null, base: id | null, adapters: [{name, group}], options, digest, output: 'file' | 'blob'}
window.benchExport = async (spec) => {
  await lorapte.ready();
  const req = { options: spec.options, adapters: spec.adapters.map((a) => ({ name: a.name, files: group(a.group, a.name) })) };
  if (spec.base) req.base = spec.base; else req.model = group(spec.model, 'model');
  // The output: a file in the origin's private file system, written through
  // the same FileSystemWritableFileStream a save dialog gives; or a Blob.
  let root = null, handle = null;
  if (spec.output === 'file') {
    root = await navigator.storage.getDirectory();
    handle = await root.getFileHandle('bench.pte', { create: true });
    req.output = await handle.createWritable();
  }
  const stages = {};
  const t0 = performance.now();
  const timeline = []; // [ms, bytes written] at each tenth of the output
  req.onProgress = (p) => {
    const ms = performance.now() - t0;
    if (!(p.stage in stages)) stages[p.stage] = ms;
    if (p.stage === 'write' && p.total > 0 && p.done * 10 >= (timeline.length + 1) * p.total) timeline.push([Math.round(ms), p.done]);
  };
  const res = await lorapte.exportDetailed(req);
  const t1 = performance.now();
  const mem = await lorapte.memory();
  const out = handle ? await handle.getFile() : res.blob;
  let sha256 = '';
  if (spec.digest) {
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', await out.arrayBuffer()));
    sha256 = [...d].map((x) => x.toString(16).padStart(2, '0')).join('');
  }
  const size = out.size;
  if (root) await root.removeEntry('bench.pte');
  return { ms: t1 - t0, cacheMs: 'cache' in stages ? t1 - t0 - stages.cache : 0, size, baseId: res.baseId || '',
    notices: res.notices, wasmBytes: mem.wasmBytes, workers: mem.workers || 0, goSys: mem.sys, sha256, stages, timeline };
};
window.benchClearCache = async () => {
  for (const b of await lorapte.cachedBases()) await lorapte.deleteCachedBase(b.id);
  return true;
};
</script>
`)
	return b.String()
}

// jsResult is what benchExport resolves with.
type jsResult struct {
	MS       float64            `json:"ms"`
	CacheMS  float64            `json:"cacheMs"`
	Size     float64            `json:"size"`
	BaseID   string             `json:"baseId"`
	Notices  []string           `json:"notices"`
	WasmSize float64            `json:"wasmBytes"`
	Workers  int                `json:"workers"`
	GoSys    float64            `json:"goSys"`
	SHA256   string             `json:"sha256"`
	Stages   map[string]float64 `json:"stages"`
	Timeline [][2]float64       `json:"timeline"`
}

func (r jsResult) export() Export {
	return Export{Wall: time.Duration(r.MS * float64(time.Millisecond)), Cache: time.Duration(r.CacheMS * float64(time.Millisecond)),
		Size: int64(r.Size), WasmBytes: int64(r.WasmSize), Workers: r.Workers, GoSys: int64(r.GoSys), Notices: r.Notices, SHA256: r.SHA256,
		Planned: time.Duration(r.Stages["write"] * float64(time.Millisecond)), Timeline: r.timeline()}
}

// timeline renders when each tenth of the output was written, for people
// looking for where the time goes: "2.1s 10%, 3.0s 20%, ...".
func (r jsResult) timeline() string {
	var parts []string
	for _, p := range r.Timeline {
		if r.Size > 0 {
			parts = append(parts, fmt.Sprintf("%.1fs %.0f%%", p[0]/1000, 100*p[1]/r.Size))
		}
	}
	return strings.Join(parts, ", ")
}

type jsAdapter struct {
	Name  string `json:"name"`
	Group int    `json:"group"`
}

type jsSpec struct {
	Model    *int           `json:"model"`
	Base     string         `json:"base,omitempty"`
	Adapters []jsAdapter    `json:"adapters"`
	Options  map[string]any `json:"options"`
	Digest   bool           `json:"digest"`
	Output   string         `json:"output"`
}

// Run measures cfg.Runs pairs of exports.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Runs < 1 {
		cfg.Runs = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Hour
	}
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "browser bench: "+format+"\n", args...)
		}
	}
	if err := CheckSite(cfg.Site); err != nil {
		return nil, err
	}
	if len(cfg.Model) == 0 || cfg.New.Name == "" {
		return nil, errors.New("browser bench: no model files or no new adapter")
	}
	for _, f := range allFiles(cfg) {
		if !filepath.IsAbs(f) {
			return nil, fmt.Errorf("browser bench: %s: file paths must be absolute", f)
		}
	}
	if ents, err := os.ReadDir(cfg.Profile); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("browser bench: profile directory %s is not empty", cfg.Profile)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	groups := 2 + len(cfg.Adapters)
	mux := http.NewServeMux()
	html := page(groups)
	mux.HandleFunc(benchPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, html) //nolint:errcheck // the page load fails visibly
	})
	mux.Handle("/", sitesrv.Handler(os.DirFS(cfg.Site)))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	defer srv.Close()
	url := "http://" + ln.Addr().String() + benchPath

	ctx, cancelT := context.WithTimeout(ctx, cfg.Timeout)
	defer cancelT()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(cfg.Chromium), chromedp.NoSandbox, chromedp.UserDataDir(cfg.Profile),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-background-networking", true))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Listen(bctx, func(ev any) {
		switch e := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			logf("page exception: %s %s", e.ExceptionDetails.Text, e.ExceptionDetails.Exception.Description)
		case *cdpruntime.EventConsoleAPICalled:
			if e.Type == "error" || e.Type == "warning" {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				logf("page console %s: %s", e.Type, strings.Join(parts, " "))
			}
		}
	}); err != nil {
		return nil, err
	}
	ver, err := chromedp.CallBrowser(bctx, browser.GetVersion, cdp.Empty{})
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", cfg.Chromium, err)
	}
	res := &Result{Browser: ver.Product}
	logf("%s, site %s", ver.Product, cfg.Site)

	h := &harness{ctx: bctx, url: url, cfg: cfg}
	for i := 0; i < cfg.Runs; i++ {
		r, err := h.run()
		if err != nil {
			return nil, err
		}
		for _, e := range []struct {
			what string
			e    Export
		}{{"full export", r.Full}, {"full export into a file", r.FullFile}, {"cached re-export into a file", r.Cached}, {"cached re-export into a Blob", r.CachedBlob}} {
			logf("run %d: %s %.2fs (planning %.2fs, caching %.2fs), wasm memory %s; output written at %s",
				i+1, e.what, e.e.Wall.Seconds(), e.e.Planned.Seconds(), e.e.Cache.Seconds(), mib(e.e.WasmBytes), e.e.Timeline)
		}
		keep(&res.Full, r.Full, i == 0)
		keep(&res.FullFile, r.FullFile, i == 0)
		keep(&res.Cached, r.Cached, i == 0)
		keep(&res.CachedBlob, r.CachedBlob, i == 0)
		res.BaseID = r.BaseID
	}
	return res, nil
}

// keep makes best the fastest run so far, with the largest memory of all:
// other load only ever slows a run, while memory is a bound to report.
func keep(best *Export, e Export, first bool) {
	wasm, sys := max(best.WasmBytes, e.WasmBytes), max(best.GoSys, e.GoSys)
	if first || e.Wall < best.Wall {
		*best = e
	}
	best.WasmBytes, best.GoSys = wasm, sys
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func allFiles(cfg Config) []string {
	files := append([]string(nil), cfg.Model...)
	for _, a := range append(append([]Adapter(nil), cfg.Adapters...), cfg.New) {
		files = append(files, a.Files...)
	}
	return files
}

type harness struct {
	ctx                      context.Context
	url                      string
	cfg                      Config
	profiled, profiledCached bool
}

func (h *harness) startProfile() error {
	if _, err := chromedp.Call(h.ctx, profiler.Enable, cdp.Empty{}); err != nil {
		return err
	}
	if _, err := chromedp.Call(h.ctx, profiler.SetSamplingInterval, profiler.SetSamplingIntervalParams{Interval: 500}); err != nil {
		return err
	}
	_, err := chromedp.Call(h.ctx, profiler.Start, cdp.Empty{})
	return err
}

func (h *harness) stopProfile(file string) error {
	res, err := chromedp.Call(h.ctx, profiler.Stop, cdp.Empty{})
	if err != nil {
		return err
	}
	b, err := json.Marshal(res.Profile)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// load opens the harness page afresh (a new wasm instance) and hands it the
// files of the given groups (0 model, 1.. adapters, last the new adapter).
func (h *harness) load(groups ...int) error {
	if err := chromedp.Do(h.ctx, chromedp.Navigate(h.url)); err != nil {
		return fmt.Errorf("loading the benchmark page: %w", err)
	}
	if _, err := h.eval(`lorapte.ready().then(() => true)`); err != nil {
		return fmt.Errorf("loading lorapte.wasm: %w", err)
	}
	for _, g := range groups {
		files := h.cfg.Model
		switch {
		case g == 1+len(h.cfg.Adapters):
			files = h.cfg.New.Files
		case g > 0:
			files = h.cfg.Adapters[g-1].Files
		}
		sel := chromedp.JSPath(fmt.Sprintf(`document.getElementById('g%d')`, g))
		if err := chromedp.Do(h.ctx, chromedp.SetUploadFiles(sel, files)); err != nil {
			return fmt.Errorf("handing files to the page: %w", err)
		}
	}
	return nil
}

func (h *harness) eval(expr string) (json.RawMessage, error) {
	return chromedp.Run(h.ctx, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
}

func (h *harness) export(spec jsSpec) (jsResult, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return jsResult{}, err
	}
	raw, err := h.eval(`benchExport(` + string(js) + `)`)
	if err != nil {
		return jsResult{}, err
	}
	var r jsResult
	err = json.Unmarshal(raw, &r)
	return r, err
}

// run does one full export (caching the base) and the two re-exports.
func (h *harness) run() (*Result, error) {
	cfg := h.cfg
	groups := []int{0}
	spec := jsSpec{Model: new(int), Options: cfg.Options, Digest: cfg.Digest, Output: "blob"}
	for i, a := range cfg.Adapters {
		groups = append(groups, 1+i)
		spec.Adapters = append(spec.Adapters, jsAdapter{Name: a.Name, Group: 1 + i})
	}
	if err := h.load(groups...); err != nil {
		return nil, err
	}
	if _, err := h.eval(`benchClearCache()`); err != nil {
		return nil, fmt.Errorf("clearing the base cache: %w", err)
	}
	profile := cfg.CPUProfile != "" && !h.profiled
	if profile {
		if err := h.startProfile(); err != nil {
			return nil, err
		}
	}
	r, err := h.export(spec)
	if err != nil {
		return nil, fmt.Errorf("full export in the browser: %w", err)
	}
	if profile {
		h.profiled = true
		if err := h.stopProfile(cfg.CPUProfile); err != nil {
			return nil, err
		}
	}
	if r.BaseID == "" {
		return nil, fmt.Errorf("full export in the browser: the base was not cached: %s", strings.Join(r.Notices, "; "))
	}
	res := &Result{Full: r.export()}

	// Again into a file stream (as "write straight to disk" does), from a
	// cleared cache so that it caches the base too.
	if err := h.load(groups...); err != nil {
		return nil, err
	}
	if _, err := h.eval(`benchClearCache()`); err != nil {
		return nil, fmt.Errorf("clearing the base cache: %w", err)
	}
	spec.Output = "file"
	if r, err = h.export(spec); err != nil {
		return nil, fmt.Errorf("full export into a file in the browser: %w", err)
	}
	if r.BaseID == "" {
		return nil, fmt.Errorf("full export into a file in the browser: the base was not cached: %s", strings.Join(r.Notices, "; "))
	}
	res.FullFile, res.BaseID = r.export(), r.BaseID

	newGroup := 1 + len(cfg.Adapters)
	for _, out := range []struct {
		output string
		dst    *Export
	}{{"file", &res.Cached}, {"blob", &res.CachedBlob}} {
		if err := h.load(newGroup); err != nil {
			return nil, err
		}
		profile := cfg.CachedCPUProfile != "" && out.output == "blob" && !h.profiledCached
		if profile {
			if err := h.startProfile(); err != nil {
				return nil, err
			}
		}
		r, err = h.export(jsSpec{Base: res.BaseID, Options: cfg.Options, Digest: cfg.Digest, Output: out.output,
			Adapters: []jsAdapter{{Name: cfg.New.Name, Group: newGroup}}})
		if err != nil {
			return nil, fmt.Errorf("cached re-export in the browser (%s output): %w", out.output, err)
		}
		if profile {
			h.profiledCached = true
			if err := h.stopProfile(cfg.CachedCPUProfile); err != nil {
				return nil, err
			}
		}
		*out.dst = r.export()
	}
	return res, nil
}
