package main

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/internal/benchgen"
)

// TestMain lets the test binary stand in for lorapte when "lorapte bench"
// starts its export child (os.Executable is the test binary here).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestBenchTiny(t *testing.T) {
	dir := t.TempDir()
	work, docs := filepath.Join(dir, "work"), filepath.Join(dir, "docs")
	code, stdout, stderr := runCLI(t, "bench", "--sizes", "tiny", "--runs", "2", "--out", work, "--docs", docs, "--keep", "--browser", "off")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "| tiny-shaped, bf16, 2 adapters |")
	require.Contains(t, stderr, "generating model and 2 adapters")
	require.FileExists(t, filepath.Join(work, "tiny", "model", "model.safetensors"))
	require.NoFileExists(t, filepath.Join(work, "tiny", "out.pte"))
	require.NoFileExists(t, filepath.Join(work, "tiny", "floor.bin"))

	md, svg := benchDocs(t, docs)
	require.Contains(t, md, "| tiny-shaped, bf16, 2 adapters |")
	require.Contains(t, md, "![benchmark chart](bench.svg)")
	require.Contains(t, svg, "tiny")

	// A second run with --keep reuses the generated model; without it the
	// model is removed afterwards.
	code, _, stderr = runCLI(t, "bench", "--sizes", "tiny", "--runs", "1", "--out", work, "--docs", "", "--browser", "off")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, "reusing")
	require.NoDirExists(t, filepath.Join(work, "tiny"))
}

func TestBenchUsage(t *testing.T) {
	code, _, stderr := runCLI(t, "bench", "--sizes", "7b")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, `unknown model size "7b"`)
	code, _, _ = runCLI(t, "bench", "--runs", "0")
	require.Equal(t, 2, code)
	code, _, _ = runCLI(t, "bench", "extra")
	require.Equal(t, 2, code)
}

func TestGenStampStable(t *testing.T) {
	// The stamp must not contain pointers (a new one each run would force
	// regeneration), and must differ between shapes.
	a, b := genStamp(benchgen.Llama32_1B()), genStamp(benchgen.Llama32_1B())
	require.Equal(t, a, b)
	require.Contains(t, a, "Factor:32")
	require.NotEqual(t, a, genStamp(benchgen.SmolLM2_135M()))
}

func TestProcField(t *testing.T) {
	status := "Name:\tlorapte\nVmPeak:\t  123 kB\nVmHWM:\t   4567 kB\n"
	require.Equal(t, int64(4567), procField([]byte(status), "VmHWM:"))
	require.Equal(t, int64(0), procField([]byte(status), "VmRSS:"))
	require.Equal(t, int64(42), procField([]byte("rchar: 42\nwchar: 7\n"), "rchar:"))
}

func TestNiceCeil(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.07: 0.1, 1.3: 2, 2.2: 2.5, 3: 5, 13: 20, 1650: 2000, 100: 100} {
		require.InDelta(t, want, niceCeil(in), 1e-9, "niceCeil(%v)", in)
	}
}

// benchDocs reads the bench.md and bench.svg a bench run wrote to docs,
// checking that the chart is well-formed XML.
func benchDocs(t *testing.T, docs string) (md, svg string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(docs, "bench.md"))
	require.NoError(t, err)
	c, err := os.ReadFile(filepath.Join(docs, "bench.svg"))
	require.NoError(t, err)
	dec := xml.NewDecoder(strings.NewReader(string(c)))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "bench.svg is well-formed XML")
	}
	return string(b), string(c)
}
