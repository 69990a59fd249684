package browserbench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/export"
	"lorapte/core/safetensors"
	"lorapte/internal/benchgen"
)

// buildSite builds the three files the benchmark page loads.
func buildSite(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", filepath.Join(dir, "lorapte.wasm"), "../../wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "building lorapte.wasm: %s", out)
	for _, f := range []struct{ from, to string }{
		{"../../site/lorapte.js", "lorapte.js"},
		{"../../site/lorapte-worker.js", "lorapte-worker.js"},
		{filepath.Join(runtime.GOROOT(), "lib", "wasm", "wasm_exec.js"), "wasm_exec.js"},
	} {
		b, err := os.ReadFile(f.from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f.to), b, 0o644))
	}
	return dir
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestRunTiny runs the harness on a tiny generated model: both browser
// exports (the second from the IndexedDB cache, its base blobs joined by
// reference) must equal the native exports byte for byte, and memory is
// reported. It checks the harness works, not how fast anything is.
func TestRunTiny(t *testing.T) {
	chrome := FindChromium()
	if chrome == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but no Chromium found")
		}
		t.Skip("no Chromium on this machine (set LORAPTE_CHROMIUM or install chromium)")
	}
	require.ErrorContains(t, CheckSite(t.TempDir()), "build it with ./build.sh wasm")
	site := buildSite(t)
	dir := t.TempDir()
	s := benchgen.Tiny()
	s.Tied = true
	_, err := benchgen.WriteModel(filepath.Join(dir, "model"), s, safetensors.BF16)
	require.NoError(t, err)
	for _, name := range []string{"a1", "a2", "a3"} {
		_, err := benchgen.WriteAdapter(filepath.Join(dir, name), s, name, benchgen.DefaultAdapter())
		require.NoError(t, err)
	}
	adapter := func(name string) Adapter {
		return Adapter{Name: name, Files: []string{filepath.Join(dir, name, "adapter_config.json"), filepath.Join(dir, name, "adapter_model.safetensors")}}
	}
	native := func(names ...string) []byte {
		o := export.DefaultOptions()
		o.Multifunction, o.InputLen, o.MaxContextLen = true, 4, 16
		req := export.Request{FS: os.DirFS(dir), ModelDir: "model", Options: o}
		for _, n := range names {
			req.Adapters = append(req.Adapters, export.Adapter{Name: n, FS: os.DirFS(dir), Path: n})
		}
		var buf bytes.Buffer
		require.NoError(t, export.Export(context.Background(), req, &buf, nil))
		return buf.Bytes()
	}

	var log bytes.Buffer
	res, err := Run(context.Background(), Config{
		Chromium: chrome, Site: site, Profile: filepath.Join(t.TempDir(), "profile"), Runs: 2, Log: &log, Digest: true,
		Model:    []string{filepath.Join(dir, "model", "config.json"), filepath.Join(dir, "model", "model.safetensors")},
		Adapters: []Adapter{adapter("a1"), adapter("a2")},
		New:      adapter("a3"),
		Options:  map[string]any{"multifunction": true, "inputLen": 4, "maxContextLen": 16},
	})
	require.NoError(t, err, "log:\n%s", log.String())
	t.Log(log.String())

	full, cached := native("a1", "a2"), native("a3")
	require.Equal(t, sha(full), res.Full.SHA256, "browser export differs from the native export")
	require.EqualValues(t, len(full), res.Full.Size)
	require.Equal(t, sha(full), res.FullFile.SHA256, "browser export into a file differs from the native export")
	require.Equal(t, sha(cached), res.Cached.SHA256, "cached-base browser export into a file differs from the native export")
	require.EqualValues(t, len(cached), res.Cached.Size)
	require.Equal(t, sha(cached), res.CachedBlob.SHA256, "cached-base browser export into a Blob differs from the native export")
	require.NotEmpty(t, res.BaseID)
	require.NotEmpty(t, res.Browser)
	for _, e := range []Export{res.Full, res.FullFile, res.Cached, res.CachedBlob} {
		require.Positive(t, e.Wall)
		require.Greater(t, e.WasmBytes, int64(1<<20))
		require.Greater(t, e.WasmBytes, e.GoSys/2, "the linear memory holds the Go heap")
		require.Empty(t, e.Notices)
	}
	require.Zero(t, res.Cached.Cache)
	require.Zero(t, res.CachedBlob.Cache)
	require.Contains(t, log.String(), "run 2:")
}
