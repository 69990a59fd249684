package export

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/milblob"
	"lorapte/core/safetensors"
	"lorapte/internal/benchgen"
)

// benchShapes are small models whose tensors are large enough for the
// parallel path (and, for the embedding, several chunks), with odd row
// and column counts so int4 pairs straddle rows.
func convertShapes() []benchgen.Shape {
	odd := benchgen.Tiny()
	odd.Name, odd.Hidden, odd.Intermediate, odd.Heads, odd.KVHeads, odd.Vocab, odd.Tied = "odd", 130, 555, 5, 5, 8191, true
	even := benchgen.Tiny()
	even.Name, even.Hidden, even.Intermediate, even.Heads, even.KVHeads, even.Vocab = "even", 256, 512, 4, 2, 3006
	return []benchgen.Shape{odd, even}
}

type convertCase struct {
	name     string
	shape    benchgen.Shape
	dtype    safetensors.DType
	opts     Options
	adapters bool
}

func convertCases() []convertCase {
	sh := convertShapes()
	def := DefaultOptions()
	// The odd shape's 8191-row head (prime) cannot be split.
	mod := func(f func(o *Options)) Options { o := DefaultOptions(); o.TargetSplitSize = 8192; f(&o); return o }
	return []convertCase{
		{"odd-bf16-default", sh[0], safetensors.BF16, mod(func(o *Options) { o.Multifunction = true }), true},
		{"odd-f16-int4emb", sh[0], safetensors.F16, mod(func(o *Options) { o.EmbeddingQuantize = "4,0" }), false},
		{"odd-f32-fp32", sh[0], safetensors.F32, mod(func(o *Options) { o.DType = "fp32" }), true},
		{"odd-bf16-none", sh[0], safetensors.BF16, mod(func(o *Options) { o.EmbeddingQuantize, o.LinearQuantize = "none", "none" }), false},
		{"even-bf16-b4w", sh[1], safetensors.BF16, mod(func(o *Options) { o.EmbeddingQuantize, o.LinearQuantize, o.TargetSplitSize = "4,32", "b4w", 1024 }), true},
		{"even-f32-b4w-fp32", sh[1], safetensors.F32, mod(func(o *Options) { o.EmbeddingQuantize, o.LinearQuantize, o.DType = "4,32", "b4w", "fp32" }), false},
		{"even-f16-default", sh[1], safetensors.F16, def, false},
	}
}

func writeConvertModel(t *testing.T, c convertCase) Request {
	t.Helper()
	dir := t.TempDir()
	_, err := benchgen.WriteModel(filepath.Join(dir, "model"), c.shape, c.dtype)
	require.NoError(t, err)
	req := Request{FS: os.DirFS(dir), ModelDir: "model", Options: c.opts}
	o := c.opts
	req.Options.InputLen, req.Options.MaxContextLen = min(o.InputLen, 4), min(o.MaxContextLen, 16)
	if c.adapters {
		for _, name := range []string{"a1", "a2"} {
			_, err := benchgen.WriteAdapter(filepath.Join(dir, name), c.shape, name, benchgen.DefaultAdapter())
			require.NoError(t, err)
			req.Adapters = append(req.Adapters, Adapter{Name: name, FS: req.FS, Path: name})
		}
	}
	return req
}

// Every partition's weight.bin is the same from the reference loop, one
// worker, and several workers.
func TestConvertMatchesReference(t *testing.T) {
	for _, c := range convertCases() {
		t.Run(c.name, func(t *testing.T) {
			p, err := NewPlan(writeConvertModel(t, c))
			require.NoError(t, err)
			for i, pp := range p.parts {
				var want []byte
				for _, enc := range []*encoder{
					{fp32: p.opts.DType == "fp32", reference: true},
					{fp32: p.opts.DType == "fp32", workers: 1},
					{fp32: p.opts.DType == "fp32", workers: 3},
					{fp32: p.opts.DType == "fp32", workers: 4},
				} {
					var buf bytes.Buffer
					mw := milblob.NewWriter(&buf, pp.weights.blobs)
					require.NoError(t, enc.encode(pp.weights, mw))
					require.NoError(t, mw.Close())
					if want == nil {
						want = buf.Bytes()
						continue
					}
					require.True(t, bytes.Equal(want, buf.Bytes()), "partition %d: workers=%d differs from the reference", i, enc.workers)
				}
			}
		})
	}
}

// The whole .pte is byte-identical under GOMAXPROCS 1 and 4.
func TestExportSameBytesAnyGOMAXPROCS(t *testing.T) {
	c := convertCases()[0]
	req := writeConvertModel(t, c)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var outs [][]byte
	for _, procs := range []int{1, 4} {
		runtime.GOMAXPROCS(procs)
		var buf bytes.Buffer
		require.NoError(t, Export(context.Background(), req, &buf, nil))
		outs = append(outs, buf.Bytes())
	}
	require.True(t, bytes.Equal(outs[0], outs[1]), "GOMAXPROCS 1 and 4 give different files")
}

// A non-finite or float16-overflowing weight gives the reference loop's
// error from the fast path too, for any worker count, including when the
// fast path's batch spans several reference chunks (the embedding: 8191
// rows, 8066 per reference chunk).
func TestConvertErrorsMatchReference(t *testing.T) {
	c := convertCases()[0]
	dir := t.TempDir()
	_, err := benchgen.WriteModel(dir, c.shape, safetensors.F32)
	require.NoError(t, err)
	path := filepath.Join(dir, safetensors.SingleFile)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := safetensors.Open(path, bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	type poke struct {
		row, col int
		v        float32
	}
	for _, tc := range []struct {
		tensor string
		pokes  []poke
		want   string
	}{
		{"model.layers.1.mlp.down_proj.weight", []poke{{77, 3, float32(math.Inf(-1))}, {100, 9, 1e6}}, "non-finite value at row 77"},
		{"model.layers.1.mlp.down_proj.weight", []poke{{77, 3, float32(math.NaN())}}, "non-finite value at row 77"},
		{"model.layers.1.mlp.down_proj.weight", []poke{{100, 9, 70000}, {101, 0, -1e6}}, "outside the float16 range at row 100"},
		{"model.embed_tokens.weight", []poke{{100, 1, 1e6}, {8100, 2, float32(math.NaN())}}, "outside the float16 range at row 100"},
		{"model.embed_tokens.weight", []poke{{8100, 2, float32(math.NaN())}, {8190, 129, 1e6}}, "non-finite value at row 8100"},
	} {
		info, _ := f.Info(tc.tensor)
		cols := int(info.Shape[1])
		mutated := append([]byte(nil), data...)
		for _, p := range tc.pokes {
			binary.LittleEndian.PutUint32(mutated[info.Offset+int64(4*(p.row*cols+p.col)):], math.Float32bits(p.v))
		}
		require.NoError(t, os.WriteFile(path, mutated, 0o644))
		o := DefaultOptions()
		o.TargetSplitSize = 8192
		p, err := NewPlan(Request{FS: os.DirFS(dir), ModelDir: ".", Options: o})
		require.NoError(t, err)
		var msgs []string
		for _, enc := range []*encoder{{reference: true}, {workers: 1}, {workers: 2}, {workers: 3}} {
			var err error
			for _, pp := range p.parts {
				if err = enc.encode(pp.weights, milblob.NewWriter(&bytes.Buffer{}, pp.weights.blobs)); err != nil {
					break
				}
			}
			require.Error(t, err)
			msgs = append(msgs, err.Error())
		}
		require.Contains(t, msgs[0], tc.tensor)
		require.Contains(t, msgs[0], tc.want)
		for _, m := range msgs[1:] {
			require.Equal(t, msgs[0], m)
		}
	}
}

// A failing sink stops the export with its error.
func TestConvertWriteError(t *testing.T) {
	c := convertCases()[1]
	p, err := NewPlan(writeConvertModel(t, c))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err = p.Write(ctx, writerFunc(func(b []byte) (int, error) {
		if n += len(b); n > 200000 {
			cancel()
		}
		return len(b), nil
	}), nil)
	require.ErrorIs(t, err, context.Canceled)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
