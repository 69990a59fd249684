package export

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/safetensors"
	"lorapte/internal/benchgen"
)

// exportDigest exports req from a fresh plan and hashes the bytes.
func exportDigest(t *testing.T, req Request) (string, int64) {
	t.Helper()
	h := sha256.New()
	cw := &countWriter{w: h}
	require.NoError(t, Export(context.Background(), req, cw, nil))
	return hex.EncodeToString(h.Sum(nil)), cw.n
}

type countWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// checkDeterministic exports req at GOMAXPROCS 1, 2 and 8 and once more at
// 8, and requires the same bytes every time.
func checkDeterministic(t *testing.T, req Request) {
	t.Helper()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var want string
	var size int64
	for i, procs := range []int{1, 2, 8, 8} {
		runtime.GOMAXPROCS(procs)
		got, n := exportDigest(t, req)
		if i == 0 {
			want, size = got, n
			continue
		}
		require.Equal(t, want, got, "GOMAXPROCS %d (run %d) gave other bytes", procs, i)
		require.Equal(t, size, n)
	}
}

// TestDeterministicOutput: the same inputs and options give byte-identical
// .pte files across runs and GOMAXPROCS values, for several option sets on
// the tiny fixture and on a model large enough (tensors above the
// encoder's parallel threshold, several chunks per tensor) for the
// conversion to run on several workers.
func TestDeterministicOutput(t *testing.T) {
	tinyFS := os.DirFS("../../testdata/tiny-llama")
	attn := Adapter{Name: "attn", FS: tinyFS, Path: "adapters/attn"}
	mlpq := Adapter{Name: "mlpq", FS: tinyFS, Path: "adapters/mlpq"}
	opts := func(edit func(o *Options)) Options {
		o := DefaultOptions()
		o.InputLen, o.MaxContextLen = 4, 12
		edit(&o)
		return o
	}
	tinyCases := []struct {
		name     string
		adapters []Adapter
		o        Options
	}{
		{"single q8c4", nil, opts(func(o *Options) {})},
		{"multifunction q4b4 two adapters", []Adapter{attn, mlpq}, opts(func(o *Options) {
			o.Multifunction, o.EmbeddingQuantize, o.LinearQuantize = true, "4,32", "b4w"
		})},
		{"single fp32 unquantized adapters", []Adapter{mlpq, attn}, opts(func(o *Options) {
			o.DType, o.EmbeddingQuantize, o.LinearQuantize = "fp32", "none", "none"
		})},
		{"multifunction no graph breaks split linears", []Adapter{attn}, opts(func(o *Options) {
			o.Multifunction, o.NoGraphBreaks, o.TargetSplitSize, o.MaxSplits = true, true, 32, 4
		})},
	}
	for _, c := range tinyCases {
		t.Run("tiny "+c.name, func(t *testing.T) {
			checkDeterministic(t, Request{FS: tinyFS, ModelDir: "model", Adapters: c.adapters, Options: c.o})
		})
	}

	// 8192×256 embedding and LM head: two chunks of rows each, split
	// between workers; 4 MB per tensor in bf16.
	dir := t.TempDir()
	s := benchgen.Shape{Key: "det", Name: "det", Hidden: 256, Intermediate: 512, Layers: 1, Heads: 4, KVHeads: 2,
		Vocab: 8192, RopeTheta: 10000, MaxPositions: 2048, RMSEps: 1e-5}
	_, err := benchgen.WriteModel(filepath.Join(dir, "model"), s, safetensors.BF16)
	require.NoError(t, err)
	_, err = benchgen.WriteAdapter(filepath.Join(dir, "ad"), s, "ad", benchgen.DefaultAdapter())
	require.NoError(t, err)
	fsys := os.DirFS(dir)
	ad := Adapter{Name: "ad", FS: fsys, Path: "ad"}
	bigCases := []struct {
		name     string
		adapters []Adapter
		o        Options
	}{
		{"multifunction q4b4 adapter", []Adapter{ad}, opts(func(o *Options) {
			o.Multifunction, o.EmbeddingQuantize, o.LinearQuantize = true, "4,32", "b4w"
		})},
		{"single fp16 unquantized no graph breaks", nil, opts(func(o *Options) {
			o.EmbeddingQuantize, o.LinearQuantize, o.NoGraphBreaks = "none", "none", true
		})},
	}
	for _, c := range bigCases {
		t.Run("parallel "+c.name, func(t *testing.T) {
			checkDeterministic(t, Request{FS: fsys, ModelDir: "model", Adapters: c.adapters, Options: c.o})
		})
	}
}
