package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"lorapte/core/export"
	"lorapte/core/safetensors"
	"lorapte/internal/benchgen"
	"lorapte/internal/sitesrv"
)

const tinyDir = "../testdata/tiny-llama"

// shadow is the exporter element's shadow root in page JavaScript.
const shadow = `document.querySelector('lorapte-exporter').shadowRoot`

// findChromium returns the browser to drive, or skips (fails on CI).
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LORAPTE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but no Chromium found (install the Debian package chromium; .ci/run does)")
	}
	t.Skip("no Chromium on this machine (set LORAPTE_CHROMIUM or install chromium)")
	return ""
}

// buildSite assembles site/ the way ./build.sh wasm does, in a temp dir.
func buildSite(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := "../site"
	ents, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || n == "lorapte.wasm" || n == "wasm_exec.js" || strings.HasPrefix(n, ".") {
			continue
		}
		copyFile(t, filepath.Join(src, n), filepath.Join(dir, n))
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", filepath.Join(dir, "lorapte.wasm"), "../wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "building lorapte.wasm: %s", out)
	copyFile(t, filepath.Join(runtime.GOROOT(), "lib", "wasm", "wasm_exec.js"), filepath.Join(dir, "wasm_exec.js"))

	// The demo model, as ./build.sh wasm copies it.
	var list []string
	for _, sub := range []string{"model", "adapters/attn", "adapters/mlpq"} {
		files, err := os.ReadDir(filepath.Join(tinyDir, sub))
		require.NoError(t, err)
		for _, f := range files {
			rel := "tiny-llama/" + sub + "/" + f.Name()
			copyFile(t, filepath.Join(tinyDir, sub, f.Name()), filepath.Join(dir, "demo", rel))
			list = append(list, rel)
		}
	}
	sort.Strings(list)
	js, _ := json.Marshal(list)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "demo", "files.json"), js, 0o644))
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o755))
	require.NoError(t, os.WriteFile(to, b, 0o644))
}

// testFolders lays out what the tests drop: the full model, the adapters
// alone, and a model with a truncated checkpoint.
func testFolders(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"model", "adapters/attn", "adapters/mlpq"} {
		files, err := os.ReadDir(filepath.Join(tinyDir, sub))
		require.NoError(t, err)
		for _, f := range files {
			copyFile(t, filepath.Join(tinyDir, sub, f.Name()), filepath.Join(dir, "tiny-llama", sub, f.Name()))
			if strings.HasPrefix(sub, "adapters/") {
				copyFile(t, filepath.Join(tinyDir, sub, f.Name()), filepath.Join(dir, "only", sub, f.Name()))
			}
		}
	}
	copyFile(t, filepath.Join(tinyDir, "model", "config.json"), filepath.Join(dir, "broken", "model", "config.json"))
	b, err := os.ReadFile(filepath.Join(tinyDir, "model", "model.safetensors"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken", "model", "model.safetensors"), b[:len(b)/2], 0o644))

	// A model whose last tensor holds a NaN: the export fails while
	// streaming, after the base cache has started to fill.
	copyFile(t, filepath.Join(tinyDir, "model", "config.json"), filepath.Join(dir, "nan", "model", "config.json"))
	st, err := safetensors.Open("model.safetensors", bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	info, ok := st.Info("lm_head.weight")
	require.True(t, ok)
	nan := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(nan[info.Offset+info.Bytes-4:], 0x7fc00000)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nan", "model", "model.safetensors"), nan, 0o644))
	return dir
}

// serve starts the static server on a loopback port; stop ends it.
func serve(t *testing.T, dir string) (base string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: sitesrv.Handler(os.DirFS(dir)), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), func() { srv.Close() }
}

// nativeExport is what `lorapte export` writes for these options.
func nativeExport(t *testing.T, o export.Options, adapters ...string) []byte {
	t.Helper()
	req := export.Request{FS: os.DirFS(tinyDir), ModelDir: "model", Options: o}
	for _, a := range adapters {
		req.Adapters = append(req.Adapters, export.Adapter{Name: a, FS: os.DirFS(tinyDir), Path: "adapters/" + a})
	}
	var buf bytes.Buffer
	require.NoError(t, export.Export(context.Background(), req, &buf, nil))
	return buf.Bytes()
}

// eval runs a JS expression (awaiting a Promise) and decodes its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "evaluating %s", expr)
	return v
}

func do(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](expr, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "evaluating %s", expr)
}

// waitFor polls a JS condition.
func waitFor(t *testing.T, ctx context.Context, cond string, timeout time.Duration) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond)))
	require.NoError(t, err, "waiting for %s", cond)
}

func upload(t *testing.T, ctx context.Context, jsPath string, paths ...string) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, chromedp.SetUploadFiles(chromedp.JSPath(jsPath), paths)))
}

// netLog records the page's requests and which happened during an export.
type netLog struct {
	exporting atomic.Bool
	mu        sync.Mutex
	before    []string
	during    []string
}

func (n *netLog) add(u string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exporting.Load() {
		n.during = append(n.during, u)
	} else {
		n.before = append(n.before, u)
	}
}

// exportOnPage clicks Export and waits until the element is done (or
// failed); no request may happen meanwhile.
func exportOnPage(t *testing.T, ctx context.Context, nl *netLog, want string) {
	t.Helper()
	nl.exporting.Store(true)
	do(t, ctx, shadow+`.querySelector('#export').click()`)
	waitFor(t, ctx, `['done', 'error', 'idle'].includes(document.querySelector('lorapte-exporter').dataset.state)`, 60*time.Second)
	nl.exporting.Store(false)
	state := eval[string](t, ctx, `document.querySelector('lorapte-exporter').dataset.state`)
	if state != want {
		msg := eval[string](t, ctx, shadow+`.querySelector('#error').textContent`)
		t.Fatalf("export ended in state %s, want %s: %s", state, want, msg)
	}
}

// setOptions fills the options panel like the CLI flags of the demo.
func setOptions(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, `(() => { const s = `+shadow+`;
		s.querySelector('#o-multifunction').checked = true;
		s.querySelector('#o-multifunction').dispatchEvent(new Event('change'));
		s.querySelector('#o-inputLen').value = '4';
		s.querySelector('#o-maxContextLen').value = '12'; })()`)
}

// blobBytes reads a Blob of the page (the CSP forbids fetching blob: URLs).
func blobBytes(t *testing.T, ctx context.Context, blobExpr string) []byte {
	t.Helper()
	b64 := eval[string](t, ctx, `(async () => {
		const b = new Uint8Array(await (`+blobExpr+`).arrayBuffer());
		let s = ''; for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
		return btoa(s); })()`)
	out, err := base64.StdEncoding.DecodeString(b64)
	require.NoError(t, err)
	return out
}

func TestBrowserExporter(t *testing.T) {
	chrome := findChromium(t)
	start := time.Now()
	site := buildSite(t)
	base, stopServer := serve(t, site)
	data := testFolders(t)
	downloads := t.TempDir()
	artifacts := os.Getenv("LORAPTE_ARTIFACTS")
	if artifacts == "" {
		artifacts = "artifacts"
	}
	require.NoError(t, os.MkdirAll(artifacts, 0o755))

	o := export.DefaultOptions()
	o.Multifunction, o.InputLen, o.MaxContextLen = true, 4, 12
	want := nativeExport(t, o, "attn", "mlpq")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.WindowSize(1100, 1400))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	nl := &netLog{}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			nl.add(e.Request.URL)
		}
	}))
	_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: ptr(true)})
	require.NoError(t, err)
	var consoleMu sync.Mutex
	var console, cspViolations []string
	_, err = chromedp.Call(ctx, cdplog.Enable, cdp.Empty{})
	require.NoError(t, err)
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *cdplog.EventEntryAdded:
			consoleMu.Lock()
			if strings.Contains(e.Entry.Text, "Content Security Policy") {
				cspViolations = append(cspViolations, e.Entry.Text)
			} else if e.Entry.Level == "error" || e.Entry.Level == "warning" {
				console = append(console, "log "+string(e.Entry.Level)+": "+e.Entry.Text+" "+e.Entry.URL)
			}
			consoleMu.Unlock()
		case *cdpruntime.EventExceptionThrown:
			consoleMu.Lock()
			console = append(console, "exception: "+e.ExceptionDetails.Text+" "+fmt.Sprint(e.ExceptionDetails.Exception))
			consoleMu.Unlock()
		case *cdpruntime.EventConsoleAPICalled:
			if e.Type == "error" || e.Type == "warning" {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				consoleMu.Lock()
				console = append(console, string(e.Type)+": "+strings.Join(parts, " "))
				consoleMu.Unlock()
			}
		}
	}))
	defer func() {
		consoleMu.Lock()
		defer consoleMu.Unlock()
		for _, c := range console {
			t.Log("page console:", c)
		}
	}()

	loadPage := func(path string) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+path)))
	}
	waitIdle := func() {
		t.Helper()
		waitFor(t, ctx, `document.querySelector('lorapte-exporter')?.dataset.state === 'idle'`, 30*time.Second)
		// The element announces each result; keep the Blob for the checks.
		do(t, ctx, `document.querySelector('lorapte-exporter').addEventListener('exported', (e) => { window.__exported = e.detail.blob; })`)
	}

	t.Run("export from a picked folder, download", func(t *testing.T) {
		loadPage("/")
		waitIdle()
		// Let the service worker finish caching the shell before exporting.
		require.True(t, eval[bool](t, ctx, `navigator.serviceWorker.ready.then(() => true)`))
		setOptions(t, ctx)
		do(t, ctx, `window.showSaveFilePicker = undefined`) // the Blob download path
		upload(t, ctx, shadow+`.querySelector('#folder')`, filepath.Join(data, "tiny-llama"))
		waitFor(t, ctx, shadow+`.querySelectorAll('.adapter').length === 2 && !!`+shadow+`.querySelector('input[name=base]:checked')?.value.startsWith('files:')`, 10*time.Second)
		names := eval[[]string](t, ctx, `[...`+shadow+`.querySelectorAll('input.name')].map(i => i.value)`)
		require.Equal(t, []string{"attn", "mlpq"}, names)

		// Names are checked live with the CLI's rules.
		setName := func(v string) {
			do(t, ctx, `(() => { const i = `+shadow+`.querySelector('input.name'); i.value = '`+v+`'; i.dispatchEvent(new Event('input')); })()`)
		}
		setName("forward")
		require.Contains(t, eval[string](t, ctx, shadow+`.querySelector('.adapter.bad .msg').textContent`), `adapter name "forward"`)
		require.True(t, eval[bool](t, ctx, shadow+`.querySelector('#export').disabled`))
		setName("mlpq")
		require.Contains(t, eval[string](t, ctx, shadow+`.querySelector('.adapter.bad .msg').textContent`), "given twice")
		setName("attn")
		require.Zero(t, eval[int](t, ctx, shadow+`.querySelectorAll('.adapter.bad').length`))
		require.False(t, eval[bool](t, ctx, shadow+`.querySelector('#export').disabled`))
		exportOnPage(t, ctx, nl, "done")

		dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
		defer dcancel()
		progress := chromedp.Events(dctx, browser.DownloadProgress) // subscribe before the click
		do(t, ctx, shadow+`.querySelector('#download').click()`)
		var got []byte
		for ev, err := range progress {
			require.NoError(t, err)
			if ev.State == browser.DownloadProgressStateCompleted {
				got, err = os.ReadFile(filepath.Join(downloads, ev.GUID))
				require.NoError(t, err)
				break
			}
			require.NotEqual(t, browser.DownloadProgressStateCanceled, ev.State)
		}
		require.True(t, bytes.Equal(want, got), "downloaded .pte (%d bytes) differs from lorapte export (%d bytes)", len(got), len(want))

		card, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.JSPath(shadow+`.querySelector('#result')`)))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(artifacts, "result-card.png"), card, 0o644))
		full, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(artifacts, "page.png"), full, 0o644))
		methods := eval[[]string](t, ctx, `[...`+shadow+`.querySelectorAll('#result .chip')].map(c => c.textContent)`)
		require.Equal(t, []string{"attn_forward", "attn_prefill", "forward", "mlpq_forward", "mlpq_prefill", "prefill"}, sorted(methods))
	})

	t.Run("reload, adapters only, cached base, streamed to disk", func(t *testing.T) {
		loadPage("/")
		waitIdle()
		bases := eval[[]map[string]any](t, ctx, `lorapte.cachedBases()`)
		require.Len(t, bases, 1)
		require.Equal(t, "tiny-llama/model", bases[0]["name"])
		setOptions(t, ctx)
		// A stand-in for the File System Access save dialog: collects the
		// stream's chunks in page memory.
		do(t, ctx, `window.showSaveFilePicker = async (o) => {
			const chunks = window.__saved = [];
			const ws = new WritableStream({ write(c) { chunks.push(new Uint8Array(c)); } });
			return { name: o.suggestedName, createWritable: async () => ws, getFile: async () => new File(chunks, o.suggestedName) };
		}`)
		upload(t, ctx, shadow+`.querySelector('#folder')`, filepath.Join(data, "only", "adapters"))
		waitFor(t, ctx, shadow+`.querySelectorAll('.adapter').length === 2`, 10*time.Second)
		require.True(t, eval[bool](t, ctx, shadow+`.querySelector('input[name=base]:checked').value.startsWith('cache:')`))
		exportOnPage(t, ctx, nl, "done")
		got := blobBytes(t, ctx, `new Blob(window.__saved)`)
		require.True(t, bytes.Equal(want, got), "cached-base export (%d bytes) differs from lorapte export (%d bytes)", len(got), len(want))
		require.Contains(t, eval[string](t, ctx, shadow+`.querySelector('#result h2').textContent`), "Saved")

		// Again into a Blob: the cached chunks join the output by reference.
		do(t, ctx, `window.showSaveFilePicker = undefined`)
		exportOnPage(t, ctx, nl, "done")
		got = blobBytes(t, ctx, `window.__exported`)
		require.True(t, bytes.Equal(want, got), "cached-base export into a Blob (%d bytes) differs from lorapte export (%d bytes)", len(got), len(want))
	})

	t.Run("broken file shows an error, then a good export works", func(t *testing.T) {
		do(t, ctx, `window.showSaveFilePicker = undefined`)
		do(t, ctx, shadow+`.querySelector('#clear').click()`)
		upload(t, ctx, shadow+`.querySelector('#folder')`, filepath.Join(data, "broken"))
		waitFor(t, ctx, `!!`+shadow+`.querySelector('input[name=base]:checked')?.value.startsWith('files:')`, 10*time.Second)
		exportOnPage(t, ctx, nl, "error")
		msg := eval[string](t, ctx, shadow+`.querySelector('#errmsg').textContent`)
		require.Contains(t, msg, "broken/model/model.safetensors")
		require.False(t, eval[bool](t, ctx, shadow+`.querySelector('#error').hidden`))

		do(t, ctx, shadow+`.querySelector('#clear').click()`)
		upload(t, ctx, shadow+`.querySelector('#folder')`, filepath.Join(data, "tiny-llama"))
		waitFor(t, ctx, shadow+`.querySelectorAll('.adapter').length === 2 && !!`+shadow+`.querySelector('input[name=base]:checked')?.value.startsWith('files:')`, 10*time.Second)
		exportOnPage(t, ctx, nl, "done")
		require.True(t, eval[bool](t, ctx, shadow+`.querySelector('#error').hidden`), "the error goes away")
		got := blobBytes(t, ctx, `window.__exported`)
		require.True(t, bytes.Equal(want, got), "export after an error differs")
	})

	t.Run("failure mid-export offers no download and leaves no cache entry", func(t *testing.T) {
		before := eval[int](t, ctx, `lorapte.cachedBases().then((b) => b.length)`)
		do(t, ctx, `window.showSaveFilePicker = undefined`)
		do(t, ctx, shadow+`.querySelector('#clear').click()`)
		upload(t, ctx, shadow+`.querySelector('#folder')`, filepath.Join(data, "nan"))
		waitFor(t, ctx, `!!`+shadow+`.querySelector('input[name=base]:checked')?.value.startsWith('files:')`, 10*time.Second)
		exportOnPage(t, ctx, nl, "error")
		msg := eval[string](t, ctx, shadow+`.querySelector('#errmsg').textContent`)
		require.Contains(t, msg, "lm_head.weight")
		require.Contains(t, msg, "non-finite")
		require.True(t, eval[bool](t, ctx, shadow+`.querySelector('#result').hidden`), "no result card, no download")
		require.Equal(t, before, eval[int](t, ctx, `lorapte.cachedBases().then((b) => b.length)`), "no cache entry from a failed export")
	})

	t.Run("demo model", func(t *testing.T) {
		do(t, ctx, shadow+`.querySelector('#clear').click()`)
		do(t, ctx, shadow+`.querySelector('#demo').click()`)
		waitFor(t, ctx, shadow+`.querySelectorAll('.adapter').length === 2 && !!`+shadow+`.querySelector('input[name=base]:checked')?.value.startsWith('files:')`, 10*time.Second)
		exportOnPage(t, ctx, nl, "done")
		got := blobBytes(t, ctx, `window.__exported`)
		require.True(t, bytes.Equal(want, got), "demo export differs")

		// The result is (made of) the cached base's file: deleting that base
		// takes the download away instead of leaving a broken link.
		id := eval[string](t, ctx, `document.querySelector('lorapte-exporter').resultBase || ''`)
		require.NotEmpty(t, id)
		require.True(t, eval[bool](t, ctx, `!!`+shadow+`.querySelector('#download')`))
		do(t, ctx, shadow+fmt.Sprintf(`.querySelector('#bases button[data-id=%q]').click()`, id))
		waitFor(t, ctx, `!`+shadow+`.querySelector('#download')`, 10*time.Second)
		require.Contains(t, eval[string](t, ctx, shadow+`.querySelector('#result').textContent`), "Deleted with its cached base")
	})

	t.Run("drop a folder onto the page", func(t *testing.T) {
		do(t, ctx, shadow+`.querySelector('#clear').click()`)
		// The drop zone's centre, in viewport coordinates.
		xy := eval[[]float64](t, ctx, `(() => { const e = `+shadow+`.querySelector('#drop'); e.scrollIntoView();
			const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`)
		drag := &input.DragData{Files: []string{filepath.Join(data, "tiny-llama")}, DragOperationsMask: 1}
		for _, typ := range []input.DispatchDragEventType{input.DispatchDragEventTypeDragEnter, input.DispatchDragEventTypeDragOver, input.DispatchDragEventTypeDrop} {
			_, err := chromedp.Call(ctx, input.DispatchDragEvent, input.DispatchDragEventParams{Type: typ, X: xy[0], Y: xy[1], Data: drag})
			require.NoError(t, err)
		}
		waitFor(t, ctx, shadow+`.querySelectorAll('.adapter').length === 2 && !!`+shadow+`.querySelector('input[name=base]:checked')?.value.startsWith('files:tiny-llama/model')`, 10*time.Second)
		labels := eval[[]string](t, ctx, `[...`+shadow+`.querySelectorAll('.adapter strong')].map((e) => e.textContent)`)
		require.Equal(t, []string{"tiny-llama/adapters/attn", "tiny-llama/adapters/mlpq"}, labels)
		setOptions(t, ctx)
		exportOnPage(t, ctx, nl, "done")
		require.True(t, bytes.Equal(want, blobBytes(t, ctx, `window.__exported`)), "export of a dropped folder differs")
	})

	t.Run("cache upkeep: stale chunks and files, delete, quota", func(t *testing.T) {
		const idb = `const idb = (fn) => new Promise((res, rej) => { const r = indexedDB.open('lorapte');
			r.onsuccess = () => Promise.resolve(fn(r.result)).then((v) => { r.result.close(); res(v); }, rej); r.onerror = () => rej(r.error); });
			const req = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
			const opfs = async () => (await navigator.storage.getDirectory()).getDirectoryHandle('lorapte', { create: true });`
		// sessions lists what the cache stores: sessions with chunks in
		// IndexedDB and output files that are also cache entries.
		sessions := func() []string {
			return eval[[]string](t, ctx, `(async () => { `+idb+`
				const keys = await idb((db) => req(db.transaction('chunks').objectStore('chunks').getAllKeys()));
				const files = []; for await (const name of (await opfs()).keys()) files.push(name.replace(/\.pte$/, ''));
				return [...new Set([...keys.map((k) => k[0]), ...files])]; })()`)
		}
		// A chunk and a file of writers that crashed before their commit: no
		// entry, no pending heartbeat. The next start-up removes them.
		do(t, ctx, `(async () => { `+idb+`
			await idb((db) => req(db.transaction('chunks', 'readwrite').objectStore('chunks').put(new Uint8Array(10), ['stale0', 'p0/x', 0])));
			await (await opfs()).getFileHandle('stale1.pte', { create: true }); })()`)
		require.Subset(t, sessions(), []string{"stale0", "stale1"})
		loadPage("/")
		waitIdle()
		require.NotContains(t, sessions(), "stale0")
		require.NotContains(t, sessions(), "stale1")
		require.Len(t, sessions(), 1, "the committed entry keeps its file")

		// Delete from the list.
		do(t, ctx, shadow+`.querySelector('#bases button[data-id]').click()`)
		waitFor(t, ctx, `lorapte.cachedBases().then((b) => b.length === 0)`, 10*time.Second)
		require.Empty(t, sessions())
		waitFor(t, ctx, `!`+shadow+`.querySelector('#bases button[data-id]')`, 5*time.Second)

		// Not enough room by the browser's estimate: not even tried.
		do(t, ctx, `navigator.storage.estimate = async () => ({ quota: 20 << 20, usage: 12 << 20 })`)
		do(t, ctx, `window.showSaveFilePicker = undefined`)
		setOptions(t, ctx)
		upload(t, ctx, shadow+`.querySelector('#folder')`, filepath.Join(data, "tiny-llama"))
		waitFor(t, ctx, shadow+`.querySelectorAll('.adapter').length === 2 && !!`+shadow+`.querySelector('input[name=base]:checked')?.value.startsWith('files:')`, 10*time.Second)
		exportOnPage(t, ctx, nl, "done")
		do(t, ctx, `delete navigator.storage.estimate`) // back to the prototype's
		require.Contains(t, eval[string](t, ctx, shadow+`.querySelector('#notices').textContent`), "not cached: browser storage has")
		require.True(t, bytes.Equal(want, blobBytes(t, ctx, `window.__exported`)))
		require.Empty(t, sessions())

		// Storage full mid-way: the browser's estimate says there is room,
		// but the origin's real quota (overridden through DevTools) does not
		// hold the output file. The export still works, written again without
		// the file, with a notice, and leaves nothing stored.
		usage := eval[float64](t, ctx, `navigator.storage.estimate().then((e) => e.usage)`)
		do(t, ctx, `navigator.storage.estimate = async () => ({ quota: 1 << 30, usage: 0 })`)
		origin := strings.TrimSuffix(base, "/")
		_, err := chromedp.Call(ctx, storage.OverrideQuotaForOrigin, storage.OverrideQuotaForOriginParams{Origin: origin, QuotaSize: ptr(usage + 4096)})
		require.NoError(t, err)
		exportOnPage(t, ctx, nl, "done")
		_, err = chromedp.Call(ctx, storage.OverrideQuotaForOrigin, storage.OverrideQuotaForOriginParams{Origin: origin})
		require.NoError(t, err)
		do(t, ctx, `delete navigator.storage.estimate`)
		notice := eval[string](t, ctx, shadow+`.querySelector('#notices').textContent`)
		require.Contains(t, notice, "not cached: browser storage is full")
		require.True(t, bytes.Equal(want, blobBytes(t, ctx, `window.__exported`)))
		require.Zero(t, eval[int](t, ctx, `lorapte.cachedBases().then((b) => b.length)`))
		require.Empty(t, sessions())
	})

	t.Run("embed example exports through the JS API", func(t *testing.T) {
		loadPage("/embed-example.html")
		require.True(t, eval[bool](t, ctx, `lorapte.ready().then(() => true)`))
		upload(t, ctx, `document.getElementById('model')`, filepath.Join(data, "tiny-llama", "model", "config.json"), filepath.Join(data, "tiny-llama", "model", "model.safetensors"))
		upload(t, ctx, `document.getElementById('adapter')`, filepath.Join(data, "tiny-llama", "adapters", "attn", "adapter_config.json"), filepath.Join(data, "tiny-llama", "adapters", "attn", "adapter_model.safetensors"))
		do(t, ctx, `document.getElementById('name').value = 'attn'`)
		nl.exporting.Store(true)
		do(t, ctx, `document.getElementById('go').click()`)
		waitFor(t, ctx, `!!document.getElementById('out').dataset.done`, 60*time.Second)
		nl.exporting.Store(false)
		out := eval[string](t, ctx, `document.getElementById('out').textContent`)
		sum := sha256.Sum256(nativeExport(t, export.DefaultOptions(), "attn"))
		require.Contains(t, out, "sha256 "+hex.EncodeToString(sum[:]), out)

		// A rejected promise carries the CLI's message.
		msg := eval[string](t, ctx, `lorapte.export({ model: [], options: { dtype: 'fp8' } }).then(() => 'resolved', (e) => e instanceof Error ? e.message : 'not an Error')`)
		require.Equal(t, "no base model: give the model files (config.json and *.safetensors) or the id of a cached base", msg)
	})

	t.Run("without the origin private file system the base is cached in IndexedDB", func(t *testing.T) {
		// The embed page still has the files of the previous subtest.
		for _, b := range eval[[]map[string]any](t, ctx, `lorapte.cachedBases()`) {
			do(t, ctx, fmt.Sprintf(`lorapte.deleteCachedBase(%q)`, b["id"]))
		}
		do(t, ctx, `navigator.storage.getDirectory = undefined`)
		defer do(t, ctx, `delete navigator.storage.getDirectory`)
		nl.exporting.Store(true)
		got := eval[map[string]any](t, ctx, `(async () => {
			const sha = async (blob) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))].map((x) => x.toString(16).padStart(2, '0')).join('');
			const adapters = [{ name: 'attn', files: [...document.getElementById('adapter').files] }];
			const res = await lorapte.exportDetailed({ model: [...document.getElementById('model').files], adapters });
			const again = await lorapte.exportDetailed({ base: res.baseId, adapters });
			const chunks = await new Promise((ok, fail) => { const r = indexedDB.open('lorapte'); r.onerror = () => fail(r.error);
				r.onsuccess = () => { const q = r.result.transaction('chunks').objectStore('chunks').count(); q.onsuccess = () => { r.result.close(); ok(q.result); }; }; });
			return { sha256: await sha(res.blob), file: res.blob instanceof File, baseId: res.baseId || '', notices: res.notices.join(' '),
				cached: await sha(again.blob), chunks };
		})()`)
		nl.exporting.Store(false)
		sum := sha256.Sum256(nativeExport(t, export.DefaultOptions(), "attn"))
		require.Empty(t, got["notices"])
		require.Equal(t, hex.EncodeToString(sum[:]), got["sha256"])
		require.Equal(t, false, got["file"], "a Blob of parts, not the cache's file")
		require.NotEmpty(t, got["baseId"], "the base is cached")
		require.Positive(t, got["chunks"], "in IndexedDB chunks")
		require.Equal(t, hex.EncodeToString(sum[:]), got["cached"], "re-export from the IndexedDB entry")
	})

	t.Run("a model above 64 MB converts in the workers, same bytes as natively", func(t *testing.T) {
		// Files up to 64 MB are converted on the page's thread (read whole);
		// larger ones go piece by piece to the worker pool.
		dir := t.TempDir()
		s := benchgen.Shape{Key: "e2e", Name: "e2e", Hidden: 512, Intermediate: 1536, Layers: 2, Heads: 8, KVHeads: 2,
			Vocab: 64000, Tied: true, RopeTheta: 10000, MaxPositions: 2048, RMSEps: 1e-5}
		_, err := benchgen.WriteModel(filepath.Join(dir, "model"), s, safetensors.BF16)
		require.NoError(t, err)
		_, err = benchgen.WriteAdapter(filepath.Join(dir, "ad"), s, "ad", benchgen.DefaultAdapter())
		require.NoError(t, err)
		st, err := os.Stat(filepath.Join(dir, "model", "model.safetensors"))
		require.NoError(t, err)
		require.Greater(t, st.Size(), int64(64<<20))
		o := export.DefaultOptions()
		o.Multifunction, o.InputLen, o.MaxContextLen = true, 8, 64
		fsys := os.DirFS(dir)
		var native bytes.Buffer
		require.NoError(t, export.Export(context.Background(), export.Request{FS: fsys, ModelDir: "model", Options: o,
			Adapters: []export.Adapter{{Name: "ad", FS: fsys, Path: "ad"}}}, &native, nil))
		sum := sha256.Sum256(native.Bytes())

		// With this machine's converters, and with three (the pool's
		// pieces of one read then go to several converters).
		cores := eval[float64](t, ctx, `navigator.hardwareConcurrency`)
		defer func() {
			_, err := chromedp.Call(ctx, emulation.SetHardwareConcurrencyOverride, emulation.SetHardwareConcurrencyOverrideParams{HardwareConcurrency: int64(cores)})
			require.NoError(t, err)
		}()
		for _, conc := range []float64{cores, 4} {
			t.Run(fmt.Sprintf("hardwareConcurrency=%.0f", conc), func(t *testing.T) {
				_, err := chromedp.Call(ctx, emulation.SetHardwareConcurrencyOverride, emulation.SetHardwareConcurrencyOverrideParams{HardwareConcurrency: int64(conc)})
				require.NoError(t, err)

				loadPage("/embed-example.html")
				require.True(t, eval[bool](t, ctx, `lorapte.ready().then(() => true)`))
				upload(t, ctx, `document.getElementById('model')`, filepath.Join(dir, "model", "config.json"), filepath.Join(dir, "model", "model.safetensors"))
				upload(t, ctx, `document.getElementById('adapter')`, filepath.Join(dir, "ad", "adapter_config.json"), filepath.Join(dir, "ad", "adapter_model.safetensors"))
				nl.exporting.Store(true)
				got := eval[map[string]any](t, ctx, `(async () => {
				const before = (await lorapte.memory()).workerPieces;
				const simdBefore = (await lorapte.memory()).workerSIMD;
				const blob = await lorapte.export({ model: [...document.getElementById('model').files],
					adapters: [{ name: 'ad', files: [...document.getElementById('adapter').files] }],
					options: { multifunction: true, inputLen: 8, maxContextLen: 64 }, cache: false });
				const d = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
				const m = await lorapte.memory();
				return { sha256: [...d].map((x) => x.toString(16).padStart(2, '0')).join(''), pieces: m.workerPieces - before, workers: m.workers,
					simd: m.workerSIMD - simdBefore };
			})()`)
				require.Equal(t, hex.EncodeToString(sum[:]), got["sha256"])
				require.Equal(t, max(1, min(conc-1, 4)), got["workers"], "converters")
				require.Greater(t, got["pieces"], float64(10), "pieces converted in the workers")
				require.Greater(t, got["simd"], float64(10), "pieces converted by the workers' SIMD kernels")

				// Caching the base (the default): the workers write the converted
				// pieces straight into a file of the origin private file system,
				// which is the result and the cache entry; a re-export from that
				// entry is the native bytes too.
				for _, b := range eval[[]map[string]any](t, ctx, `lorapte.cachedBases()`) {
					do(t, ctx, fmt.Sprintf(`lorapte.deleteCachedBase(%q)`, b["id"]))
				}
				got = eval[map[string]any](t, ctx, `(async () => {
				const sha = async (blob) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))].map((x) => x.toString(16).padStart(2, '0')).join('');
				const before = (await lorapte.memory()).workerPieces;
				const twinsBefore = (await lorapte.memory()).workerTwins;
				const files = [...document.getElementById('adapter').files];
				const res = await lorapte.exportDetailed({ model: [...document.getElementById('model').files],
					adapters: [{ name: 'ad', files }], options: { multifunction: true, inputLen: 8, maxContextLen: 64 } });
				const pieces = (await lorapte.memory()).workerPieces - before;
				const twins = (await lorapte.memory()).workerTwins - twinsBefore;
				const again = await lorapte.exportDetailed({ base: res.baseId, adapters: [{ name: 'ad', files }],
					options: { multifunction: true, inputLen: 8, maxContextLen: 64 } });
				return { sha256: await sha(res.blob), file: res.blob instanceof File ? res.blob.name : '', baseId: res.baseId || '',
					notices: res.notices.join(' '), pieces, twins, cached: await sha(again.blob) };
			})()`)
				nl.exporting.Store(false)
				require.Empty(t, got["notices"])
				require.Equal(t, hex.EncodeToString(sum[:]), got["sha256"], "export written by the workers into a file")
				require.Regexp(t, `^[0-9a-f]+\.pte$`, got["file"], "the result is the cache's file")
				require.NotEmpty(t, got["baseId"])
				require.Greater(t, got["pieces"], float64(10), "pieces converted in the workers")
				require.Positive(t, got["twins"], "the tied head converted from the embedding's reads")
				require.Equal(t, hex.EncodeToString(sum[:]), got["cached"], "re-export from the cached file")
			})
		}
	})

	t.Run("offline after the first visit", func(t *testing.T) {
		stopServer()
		loadPage("/")
		waitIdle()
		do(t, ctx, shadow+`.querySelector('#demo').click()`)
		waitFor(t, ctx, shadow+`.querySelectorAll('.adapter').length === 2 && !!`+shadow+`.querySelector('input[name=base]:checked')?.value.startsWith('files:')`, 10*time.Second)
		do(t, ctx, `window.showSaveFilePicker = undefined`)
		exportOnPage(t, ctx, nl, "done")
		sum := sha256.Sum256(nativeExport(t, export.DefaultOptions(), "attn", "mlpq"))
		got := sha256.Sum256(blobBytes(t, ctx, `window.__exported`))
		require.Equal(t, sum, got, "offline demo export with default options")
	})

	t.Run("strict CSP holds", func(t *testing.T) {
		consoleMu.Lock()
		defer consoleMu.Unlock()
		require.Empty(t, cspViolations)
	})

	t.Run("no network during exports, loopback only", func(t *testing.T) {
		nl.mu.Lock()
		defer nl.mu.Unlock()
		require.Empty(t, nl.during, "requests made while exporting")
		require.NotEmpty(t, nl.before)
		origin, _ := url.Parse(base)
		for _, u := range nl.before {
			p, err := url.Parse(u)
			require.NoError(t, err)
			if p.Scheme == "blob" || p.Scheme == "data" {
				continue
			}
			require.Equal(t, origin.Host, p.Host, "request to %s", u)
		}
	})
	t.Logf("e2e took %s; screenshot in %s", time.Since(start).Round(time.Millisecond), filepath.Join(artifacts, "result-card.png"))
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func ptr[T any](v T) *T { return &v }
