package export

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"lorapte/core/hf"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/coremlspec/milpb"
	"lorapte/core/inspect"
	"lorapte/core/milrun"
	"lorapte/core/ptexec"
	"lorapte/core/safetensors"
)

const fixture = "../../testdata/tiny-llama"

// exportBytes exports a model folder (relative to the repo root) into memory.
func exportBytes(t testing.TB, modelDir string, adapters []Adapter, o Options) []byte {
	t.Helper()
	req := Request{FS: os.DirFS("../.."), ModelDir: modelDir, Adapters: adapters, Options: o}
	var buf bytes.Buffer
	require.NoError(t, Export(context.Background(), req, &buf, nil))
	return buf.Bytes()
}

func fixtureAdapters() []Adapter {
	root := os.DirFS("../..")
	return []Adapter{
		{Name: "attn", FS: root, Path: "testdata/tiny-llama/adapters/attn"},
		{Name: "mlpq", FS: root, Path: "testdata/tiny-llama/adapters/mlpq"},
	}
}

// goldenCall is one method call of the fixture.
type goldenCall struct {
	file    string
	meta    map[string]string
	inputs  []namedTensor
	outputs []namedTensor
}

type namedTensor struct {
	name  string
	shape []int64
	f     []float32
	i     []int32
}

func loadGolden(t *testing.T, path string) goldenCall {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := safetensors.Open(path, bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	g := goldenCall{file: path, meta: f.Metadata()}
	names := f.Names()
	sort.Strings(names)
	for _, n := range names {
		info, _ := f.Info(n)
		nt := namedTensor{name: n, shape: info.Shape}
		raw, err := f.Raw(n)
		require.NoError(t, err)
		b := make([]byte, info.Bytes)
		_, err = raw.ReadAt(b, 0)
		require.NoError(t, err)
		switch info.DType {
		case "F32":
			for k := 0; k < len(b); k += 4 {
				nt.f = append(nt.f, math.Float32frombits(binary.LittleEndian.Uint32(b[k:])))
			}
		case "I32":
			for k := 0; k < len(b); k += 4 {
				nt.i = append(nt.i, int32(binary.LittleEndian.Uint32(b[k:])))
			}
		case "I64":
			for k := 0; k < len(b); k += 8 {
				nt.i = append(nt.i, int32(int64(binary.LittleEndian.Uint64(b[k:]))))
			}
		default:
			t.Fatalf("%s: tensor %s: unexpected dtype %s", path, n, info.DType)
		}
		if strings.HasPrefix(n, "in.") {
			g.inputs = append(g.inputs, nt)
		} else {
			g.outputs = append(g.outputs, nt)
		}
	}
	return g
}

func (g goldenCall) feed(float milpb.DataType) []*milrun.Tensor {
	var out []*milrun.Tensor
	for _, in := range g.inputs {
		if in.f != nil {
			out = append(out, milrun.NewFloat(float, in.shape, append([]float32(nil), in.f...)))
		} else {
			out = append(out, milrun.NewInt(milpb.DataType_INT32, in.shape, in.i))
		}
	}
	return out
}

func rangeOf(v []float32) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, float64(x)), math.Max(hi, float64(x))
	}
	return hi - lo
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// compare checks one call's outputs against the golden ones with the
// fixture's tolerances (README "Tolerances").
func compare(t *testing.T, g goldenCall, got []*milrun.Tensor, fp32 bool) {
	t.Helper()
	require.Len(t, got, len(g.outputs), g.file)
	for k, want := range g.outputs {
		require.Equal(t, want.shape, got[k].Shape, "%s: %s shape", g.file, want.name)
		d := maxAbsDiff(want.f, got[k].F)
		if fp32 {
			require.LessOrEqualf(t, d, 1e-4, "%s: %s max abs error", g.file, want.name)
			continue
		}
		rng := rangeOf(want.f)
		require.LessOrEqualf(t, d, 3e-2*rng, "%s: %s max abs error %.4g (range %.4g)", g.file, want.name, d, rng)
		if k == 0 { // logits: same argmax on valid rows unless nearly tied
			checkArgmax(t, g, got[0], d)
		}
	}
}

func checkArgmax(t *testing.T, g goldenCall, logits *milrun.Tensor, err float64) {
	V := int(logits.Shape[2])
	gaps := strings.Split(g.meta["top2_gap"], ",")
	want := strings.Split(g.meta["argmax"], ",")
	rows := strings.Split(g.meta["valid_logit_rows"], ",")
	for i, r := range rows {
		row, _ := strconv.Atoi(r)
		w, _ := strconv.Atoi(want[i])
		gap, _ := strconv.ParseFloat(gaps[i], 64)
		best := 0
		for v := 1; v < V; v++ {
			if logits.F[row*V+v] > logits.F[row*V+best] {
				best = v
			}
		}
		if best != w && gap >= 2*err {
			t.Errorf("%s: row %d argmax %d, want %d (top-2 gap %.4g, error %.4g)", g.file, row, best, w, gap, err)
		}
	}
}

type goldenCase struct {
	quant  string // fp, q8c4, q4b4
	fp32   bool
	mf     bool
	breaks bool
}

func (c goldenCase) String() string {
	mode := "single"
	if c.mf {
		mode = "multifunction"
	}
	dt := "fp16"
	if c.fp32 {
		dt = "fp32"
	}
	return fmt.Sprintf("%s/%s/%s/breaks=%t", c.quant, dt, mode, c.breaks)
}

func (c goldenCase) options() Options {
	o := DefaultOptions()
	o.InputLen, o.MaxContextLen, o.Multifunction, o.NoGraphBreaks = 4, 12, c.mf, !c.breaks
	if c.fp32 {
		o.DType = "fp32"
	}
	switch c.quant {
	case "fp":
		o.EmbeddingQuantize, o.LinearQuantize = "none", "none"
	case "q4b4":
		o.EmbeddingQuantize, o.LinearQuantize = "4,32", "b4w"
	}
	return o
}

// TestGoldenFixture exports the tiny fixture with both adapters in every
// mode, dtype, graph-break setting and quantization variant, runs every
// method's delegate chain in the MIL interpreter and compares each golden
// call (inputs in, outputs out) with the independent PyTorch goldens.
func TestGoldenFixture(t *testing.T) {
	var cases []goldenCase
	for _, mf := range []bool{false, true} {
		for _, breaks := range []bool{true, false} {
			cases = append(cases,
				goldenCase{"fp", true, mf, breaks},
				goldenCase{"fp", false, mf, breaks},
				goldenCase{"q8c4", false, mf, breaks},
				goldenCase{"q4b4", false, mf, breaks})
		}
	}
	for _, c := range cases {
		t.Run(c.String(), func(t *testing.T) {
			data := exportBytes(t, "testdata/tiny-llama/model", fixtureAdapters(), c.options())
			rep, err := inspect.Inspect(bytes.NewReader(data), int64(len(data)), true)
			require.NoError(t, err)
			require.False(t, rep.Failed(), "verify: %v", rep.Findings)
			p, err := ptexec.Open(bytes.NewReader(data), int64(len(data)))
			require.NoError(t, err)
			mode := "single"
			if c.mf {
				mode = "multifunction"
			}
			float := milpb.DataType_FLOAT16
			if c.fp32 {
				float = milpb.DataType_FLOAT32
			}
			for _, model := range []string{"base", "attn", "mlpq"} {
				for _, step := range []string{"prefill0", "prefill1", "decode0"} {
					g := loadGolden(t, filepath.Join(fixture, "golden", model, c.quant, mode, step+".safetensors"))
					got, err := p.Run(g.meta["method"], g.feed(float))
					require.NoError(t, err, g.file)
					compare(t, g, got, c.fp32)
				}
			}
		})
	}
}

// loadModel reads config.json and the safetensors headers of the model.
func loadModel(fsys fs.FS, dir string) (*hf.Config, *safetensors.Source, error) {
	cfg, _, src, err := loadModelConfig(fsys, dir)
	return cfg, src, err
}
