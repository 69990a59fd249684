package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

const tiny = "../../testdata/tiny-llama"

func TestExportInspectRoundTrip(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.pte")
	code, _, stderr := runCLI(t, "export", "--model", tiny+"/model", "--output", out, "--multifunction",
		"--adapter", "attn="+tiny+"/adapters/attn", "--adapter", "mlpq="+tiny+"/adapters/mlpq/adapter_model.safetensors",
		"--input_len", "4", "--max_context_len", "12", "-E", "4,32", "--linear_quantize", "b4w")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, "wrote "+out)
	require.Contains(t, stderr, "attn_forward, attn_prefill, forward, mlpq_forward, mlpq_prefill, prefill")

	code, stdout, stderr := runCLI(t, "inspect", out, "--verify")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "verify: ok")

	code, stdout, _ = runCLI(t, "inspect", "--json", out)
	require.Equal(t, 0, code)
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
	require.Len(t, rep["models"], 3)

	x := filepath.Join(dir, "x")
	code, _, stderr = runCLI(t, "inspect", out, "--extract", x)
	require.Equal(t, 0, code, stderr)
	pkgs, _ := filepath.Glob(filepath.Join(x, "*", "model.mlpackage", "Manifest.json"))
	require.Len(t, pkgs, 3)
	mds, _ := filepath.Glob(filepath.Join(x, "*", "metadata.json"))
	require.Len(t, mds, 3)

	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		require.False(t, strings.Contains(e.Name(), ".tmp-"), "temporary file left: %s", e.Name())
	}
}

func TestExportFailuresLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.pte")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"export", "--output", out}, 2, "--model DIR is required"},
		{[]string{"export", "--model", tiny + "/model", "--output", out, "--adapter", "nameonly"}, 2, "NAME=DIR"},
		{[]string{"export", "--model", tiny + "/model", "--output", out, "--adapter", "x=" + tiny + "/nope"}, 1, "adapter x"},
		{[]string{"export", "--model", tiny, "--output", out}, 1, "config.json: not found"},
		{[]string{"export", "--model", tiny + "/model", "--output", out, "--dtype", "bf16"}, 1, "--dtype"},
		{[]string{"export", "--model", tiny + "/model", "--output", out, "--linear-quantize", "c8w"}, 1, "linear quantization"},
		{[]string{"export", "--model", tiny + "/model", "--output", out, "--input-len", "20", "--max-context-len", "16"}, 1, "--max-context-len"},
		{[]string{"export", "--model", tiny + "/model", "--output", filepath.Join(dir, "missing", "m.pte")}, 1, "cannot write output"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"inspect"}, 2, "usage"},
		{[]string{"inspect", filepath.Join(tiny, "model", "config.json"), "--verify"}, 1, "config.json"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, c.args...)
		require.Equal(t, c.code, code, "%v: %s", c.args, stderr)
		require.Contains(t, stderr, c.want, c.args)
		_, err := os.Stat(out)
		require.True(t, os.IsNotExist(err), "output written on failure: %v", c.args)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			require.False(t, strings.Contains(e.Name(), ".tmp-"), "temporary file left: %s", e.Name())
		}
	}
}
