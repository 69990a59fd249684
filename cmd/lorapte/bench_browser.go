package main

// The browser half of "lorapte bench" (issue 6): the same export in
// headless Chromium through the page's JS API, then a re-export from the
// base it cached with one new adapter. The driver is internal/browserbench;
// this file adds the flags, the runs per model size and the report.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"lorapte/internal/benchgen"
	"lorapte/internal/browserbench"
)

// Targets of issue 6 for the browser.
const (
	targetBrowserRatio  = 4.0  // browser export time / native export time
	targetWasmMiB       = 2048 // peak wasm memory
	targetCachedPercent = 10.0 // cached re-export / full browser export
)

// newAdapterName is the adapter only the cached re-export has.
const newAdapterName = "a3"

type browserBench struct {
	mode, site string
	chromium   string
	checked    bool
	skip       string // why the browser runs are skipped ("" when they run)
	rows       []browserRow
}

type browserRow struct {
	native benchResult
	res    *browserbench.Result
}

func newBrowserBench(fl *flag.FlagSet) *browserBench {
	b := &browserBench{mode: "auto"}
	fl.Func("browser", "also export in headless Chromium ($LORAPTE_CHROMIUM or on PATH): auto (when found; default), on, off", func(v string) error {
		if v != "auto" && v != "on" && v != "off" {
			return fmt.Errorf("want auto, on or off")
		}
		b.mode = v
		return nil
	})
	fl.StringVar(&b.site, "site", "site", "built site for the browser runs (./build.sh wasm)")
	return b
}

// ready decides once whether the browser runs happen.
func (b *browserBench) ready() error {
	if b.checked {
		return nil
	}
	b.checked = true
	switch b.mode {
	case "off":
		b.skip = "not run (--browser off)"
		return nil
	}
	if b.chromium = browserbench.FindChromium(); b.chromium == "" {
		b.skip = "not run: no Chromium found (set LORAPTE_CHROMIUM)"
	} else if err := browserbench.CheckSite(b.site); err != nil {
		b.skip = "not run: " + err.Error()
	}
	if b.skip != "" && b.mode == "on" {
		return fmt.Errorf("bench: --browser on: %s", strings.TrimPrefix(b.skip, "not run: "))
	}
	return nil
}

// run measures one model size in the browser; dir holds the generated
// model and adapters (see generate), native is its native result.
func (b *browserBench) run(dir string, native benchResult, runs int, keep bool, stderr io.Writer) error {
	if err := b.ready(); err != nil {
		return err
	}
	if b.skip != "" {
		fmt.Fprintf(stderr, "bench: browser %s\n", b.skip)
		return nil
	}
	s := native.Shape
	newDir := filepath.Join(dir, newAdapterName)
	if _, err := os.Stat(filepath.Join(newDir, "adapter_model.safetensors")); err != nil {
		if _, err := benchgen.WriteAdapter(newDir, s, newAdapterName, benchgen.DefaultAdapter()); err != nil {
			return err
		}
	}
	profile := filepath.Join(dir, "chromium-profile")
	os.RemoveAll(profile)
	defer os.RemoveAll(profile) // the cached base alone is ~1 GB for 1B
	if !keep {
		defer os.RemoveAll(newDir)
	}
	site, err := filepath.Abs(b.site)
	if err != nil {
		return err
	}
	adapter := func(name string) browserbench.Adapter {
		d := filepath.Join(dir, name)
		return browserbench.Adapter{Name: name, Files: []string{filepath.Join(d, "adapter_config.json"), filepath.Join(d, "adapter_model.safetensors")}}
	}
	cfg := browserbench.Config{
		Chromium: b.chromium, Site: site, Profile: profile, Runs: runs, Log: stderr,
		Model:   []string{filepath.Join(dir, "model", "config.json"), filepath.Join(dir, "model", "model.safetensors")},
		New:     adapter(newAdapterName),
		Options: map[string]any{"multifunction": true},
		// A DevTools CPU profile of the page during the first full export,
		// for finding where the browser's time goes.
		CPUProfile: os.Getenv("LORAPTE_BENCH_CPUPROFILE"), CachedCPUProfile: os.Getenv("LORAPTE_BENCH_CPUPROFILE_CACHED"),
	}
	for _, a := range benchAdapters {
		cfg.Adapters = append(cfg.Adapters, adapter(a))
	}
	for i, f := range cfg.Model {
		if cfg.Model[i], err = filepath.Abs(f); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "bench: %s: browser runs (%s)\n", s.Name, b.chromium)
	res, err := browserbench.Run(context.Background(), cfg)
	if err != nil {
		return err
	}
	if res.Full.Size != native.OutputSize {
		return fmt.Errorf("browser export is %d bytes, the native one %d", res.Full.Size, native.OutputSize)
	}
	b.rows = append(b.rows, browserRow{native: native, res: res})
	fmt.Fprintf(stderr, "bench: %s: browser %.2fs (%.2f× native; into a file %.2fs), peak wasm memory %.0f MiB, cached re-export %.2fs into a file (%.1f %%), %.2fs into a Blob (%.1f %%)\n",
		s.Name, res.Full.Wall.Seconds(), browserRatio(native, res), res.FullFile.Wall.Seconds(), mib(max(res.Full.WasmBytes, res.FullFile.WasmBytes)),
		res.Cached.Wall.Seconds(), cachedPercent(res.Cached, res), res.CachedBlob.Wall.Seconds(), cachedPercent(res.CachedBlob, res))
	return nil
}

func browserRatio(n benchResult, r *browserbench.Result) float64 {
	return r.Full.Wall.Seconds() / n.Export.Seconds()
}

func cachedPercent(e browserbench.Export, r *browserbench.Result) float64 {
	return 100 * e.Wall.Seconds() / r.Full.Wall.Seconds()
}

// table is the browser table (printed after the native one).
func (b *browserBench) table() string {
	if len(b.rows) == 0 {
		if b.skip == "" {
			return ""
		}
		return "\nBrowser: " + b.skip + ".\n"
	}
	var t strings.Builder
	t.WriteString("\n| model | export (native) | export (browser, caching the base) | of which planning | browser / native | same, into a file | peak wasm memory | cached-base re-export, 1 new adapter: to a file | to a Blob |\n")
	t.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range b.rows {
		fmt.Fprintf(&t, "| %s-shaped | %.2f s | %.2f s | %.2f s | %.2f× | %.2f s | %.0f MiB | %.2f s (%.1f %%) | %.2f s (%.1f %%) |\n",
			r.native.Shape.Name, r.native.Export.Seconds(), r.res.Full.Wall.Seconds(), r.res.Full.Planned.Seconds(),
			browserRatio(r.native, r.res), r.res.FullFile.Wall.Seconds(), mib(max(r.res.Full.WasmBytes, r.res.FullFile.WasmBytes)),
			r.res.Cached.Wall.Seconds(), cachedPercent(r.res.Cached, r.res), r.res.CachedBlob.Wall.Seconds(), cachedPercent(r.res.CachedBlob, r.res))
	}
	return t.String()
}

// markdown is the browser section of bench.md.
func (b *browserBench) markdown() string {
	var m strings.Builder
	m.WriteString("\n## In the browser\n\n")
	if len(b.rows) == 0 {
		m.WriteString("Browser runs " + b.skip + ".\n")
		return m.String()
	}
	fmt.Fprintf(&m, "The same files and options in headless %s through the page's JavaScript API\n", b.rows[0].res.Browser)
	m.WriteString("(`lorapte.exportDetailed`) on a page served from loopback. The files are handed to the page as disk-backed\n")
	m.WriteString("`File`s (nothing uploaded or copied first); loading the wasm module is not timed. The full export caches\n")
	m.WriteString("the converted base (the API's default): the workers write the output into a file of the origin private file\n")
	m.WriteString("system, which is both the returned `Blob` (a disk-backed `File`) and the cache entry; *planning* is the time to\n")
	m.WriteString("the first output byte. *Same, into a file* is that export into a `FileSystemWritableFileStream` (as \"write\n")
	m.WriteString("straight to disk\" does; here in the origin private file system, so no dialog): the finished file is then\n")
	m.WriteString("copied into it. The re-exports start from the cached base with one adapter the first export did not have, once\n")
	m.WriteString("into a file (the cached bytes are copied by the browser) and once returning a `Blob` (the cached blobs join it\n")
	m.WriteString("by reference). Percentages are of the full browser export. Each export runs on a freshly loaded page, so the wasm linear memory afterwards (it\n")
	m.WriteString("never shrinks) is its peak; it is the sum of the page's instance and its conversion workers'. Fastest of the same\n")
	m.WriteString("number of runs as natively.\n\n")
	fmt.Fprintf(&m, "The page converts in a pool of Web Workers: %d converter(s) (one fewer than `navigator.hardwareConcurrency`, at\n", b.rows[0].res.Full.Workers)
	m.WriteString("most 4), each running its own instance of lorapte.wasm and quantizing bfloat16 with WebAssembly SIMD kernels;\n")
	m.WriteString("a reader that fetches the pieces of the tensors from the `File`s ahead of time (pieces that follow each other in\n")
	m.WriteString("a file by one read); and a writer that writes the output file, taking the converted pieces straight from the\n")
	m.WriteString("converters. The page's instance plans and writes the rest (headers, specs, adapters) and keeps a few pieces in\n")
	m.WriteString("flight across tensors. Files of adapters (≤ 64 MB) are converted on the page's thread.\n\n")
	m.WriteString(strings.TrimPrefix(b.table(), "\n"))
	fmt.Fprintf(&m, "\nTargets: browser ≤ %.0f× the native export time, peak wasm memory ≤ %d GiB, cached-base re-export ≤ %.0f %% of the\nfull browser export.\n",
		targetBrowserRatio, targetWasmMiB/1024, targetCachedPercent)
	return m.String()
}

var svgHeight = regexp.MustCompile(`^<svg [^>]*\bheight="([0-9.]+)"`)

// svg adds the browser panels below the native chart: the native chart
// becomes a nested <svg> at the top of a taller one.
func (b *browserBench) svg(native string) string {
	if len(b.rows) == 0 {
		return native
	}
	m := svgHeight.FindStringSubmatch(native)
	if m == nil {
		return native
	}
	top, _ := strconv.ParseFloat(m[1], 64)
	const w, h = 920.0, 360.0
	var labels []string
	var nat, full, cached, cachedBlob, four, wasm []float64
	for _, r := range b.rows {
		labels = append(labels, fmt.Sprintf("%s\nbrowser/native %.2f×\ncached %.0f %% / %.0f %%", r.native.Shape.Name, browserRatio(r.native, r.res),
			cachedPercent(r.res.Cached, r.res), cachedPercent(r.res.CachedBlob, r.res)))
		nat = append(nat, r.native.Export.Seconds())
		full = append(full, r.res.Full.Wall.Seconds())
		cached = append(cached, r.res.Cached.Wall.Seconds())
		cachedBlob = append(cachedBlob, r.res.CachedBlob.Wall.Seconds())
		four = append(four, targetBrowserRatio*r.native.Export.Seconds())
		wasm = append(wasm, mib(max(r.res.Full.WasmBytes, r.res.FullFile.WasmBytes)))
	}
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		w, top+h, w, top+h)
	s.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	s.WriteString(native)
	fmt.Fprintf(&s, `<svg x="0" y="%.0f" width="%.0f" height="%.0f">`+"\n", top, w, h)
	svgBars(&s, 0, 0, w/2, h, "Browser export time (headless Chromium)", "seconds", labels,
		[]svgSeries{{"native", "#aab7b8", nat}, {"browser", "#8e44ad", full}, {"cached: file", "#f39c12", cached}, {"cached: Blob", "#f7dc6f", cachedBlob}},
		0, "target 4× native", four)
	svgBars(&s, w/2, 0, w/2, h, "Peak wasm memory (browser export)", "MiB", labels,
		[]svgSeries{{"wasm linear memory", "#8e44ad", wasm}}, targetWasmMiB, "target 2 GiB", nil)
	s.WriteString("</svg>\n</svg>\n")
	return s.String()
}
