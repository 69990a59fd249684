package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/internal/browserbench"
)

func TestBenchBrowserFlag(t *testing.T) {
	code, _, stderr := runCLI(t, "bench", "--browser", "maybe")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "want auto, on or off")
	if browserbench.FindChromium() != "" {
		dir := t.TempDir()
		code, _, stderr = runCLI(t, "bench", "--sizes", "tiny", "--runs", "1", "--out", dir, "--docs", "", "--browser", "on", "--site", dir)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "build it with ./build.sh wasm")
	}
	code, stdout, stderr := runCLI(t, "bench", "--sizes", "tiny", "--runs", "1", "--out", t.TempDir(), "--docs", "", "--browser", "off")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "Browser: not run (--browser off).")
}

// TestBenchBrowserTiny runs the whole benchmark on the tiny shape with the
// browser runs (Chromium and a wasm build needed; skipped without Chromium).
func TestBenchBrowserTiny(t *testing.T) {
	if browserbench.FindChromium() == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but no Chromium found")
		}
		t.Skip("no Chromium on this machine (set LORAPTE_CHROMIUM or install chromium)")
	}
	dir := t.TempDir()
	site := filepath.Join(dir, "site")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", filepath.Join(site, "lorapte.wasm"), "../../wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "building lorapte.wasm: %s", out)
	for from, to := range map[string]string{"../../site/lorapte.js": "lorapte.js", "../../site/lorapte-worker.js": "lorapte-worker.js", filepath.Join(runtime.GOROOT(), "lib", "wasm", "wasm_exec.js"): "wasm_exec.js"} {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(site, to), b, 0o644))
	}

	work, docs := filepath.Join(dir, "work"), filepath.Join(dir, "docs")
	code, stdout, stderr := runCLI(t, "bench", "--sizes", "tiny", "--runs", "1", "--out", work, "--docs", docs, "--site", site, "--browser", "on")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "| cached-base re-export, 1 new adapter: to a file | to a Blob |")
	require.Contains(t, stdout, "| tiny-shaped | ")
	require.Contains(t, stderr, "browser bench: run 1:")
	require.NoDirExists(t, filepath.Join(work, "tiny"), "generated files, the new adapter and the browser profile are removed")

	md, svg := benchDocs(t, docs)
	require.Contains(t, md, "## In the browser")
	require.Contains(t, md, "| tiny-shaped | ")
	require.Contains(t, svg, "Peak wasm memory")
	require.Contains(t, svg, "Native export time", "the native chart is kept")
}
