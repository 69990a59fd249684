package export

import (
	"bytes"
	"math"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/coremlspec/milpb"
	"lorapte/core/hf"
	"lorapte/core/inspect"
	"lorapte/core/lora"
	"lorapte/core/milrun"
	"lorapte/core/ptexec"
	"lorapte/core/quant"
	"lorapte/core/safetensors"
	"lorapte/internal/reference"
)

// refCase is one export compared against the plain-Go float64 reference.
type refCase struct {
	model    string // folder under the repo root
	adapters []Adapter
	opts     Options
}

func modelAdapters(model string, names ...string) []Adapter {
	var out []Adapter
	for _, n := range names {
		out = append(out, Adapter{Name: n, FS: os.DirFS("../.."), Path: path.Join(model, "adapters", n)})
	}
	return out
}

// refWeights serves the reference the weights the export stores: cast to
// the float dtype, and for quantized variants dequantized w_hat, so the
// comparison separates graph errors from quantization (model.md §8).
func refWeights(t *testing.T, cfg *hf.Config, src *safetensors.Source, o Options) reference.Weights {
	require.NoError(t, o.parse())
	fp16 := o.DType == "fp16"
	return func(name string) ([]float64, []int, bool) {
		tensor := name
		scheme := o.linScheme
		switch {
		case name == "lm_head.weight" && cfg.Tied:
			tensor = "model.embed_tokens.weight"
		case name == "model.embed_tokens.weight":
			scheme = o.embScheme
		case !strings.HasSuffix(name, "_proj.weight") && name != "lm_head.weight":
			scheme = nil // norms and biases stay float
		}
		info, ok := src.Info(tensor)
		if !ok {
			return nil, nil, false
		}
		rows, cols := int(info.Shape[0]), 1
		if len(info.Shape) == 2 {
			cols = int(info.Shape[1])
		}
		w := make([]float32, rows*cols)
		r := int64(rows)
		if len(info.Shape) == 1 {
			r = 1
		}
		require.NoError(t, src.ReadFloat32(tensor, 0, r, w))
		if fp16 {
			for i := range w {
				w[i] = quant.RoundF16(w[i])
			}
		}
		if scheme != nil {
			groups, err := scheme.ScaleCount(cols)
			require.NoError(t, err)
			codes := make([]int8, len(w))
			if fp16 {
				scales := make([]uint16, rows*groups)
				require.NoError(t, quant.QuantizeRowsF16(w, rows, cols, *scheme, codes, scales))
				require.NoError(t, quant.DequantizeRowsF16(codes, scales, rows, cols, *scheme, w))
			} else {
				scales := make([]float32, rows*groups)
				require.NoError(t, quant.QuantizeRowsF32(w, rows, cols, *scheme, codes, scales))
				require.NoError(t, quant.DequantizeRowsF32(codes, scales, rows, cols, *scheme, w))
			}
		}
		out := make([]float64, len(w))
		for i, v := range w {
			out[i] = float64(v)
		}
		shape := make([]int, len(info.Shape))
		for i, d := range info.Shape {
			shape[i] = int(d)
		}
		return out, shape, true
	}
}

// refAdapter applies PEFT's formula on the adapter's own A/B (cast to the
// float dtype, never quantized).
func refAdapter(t *testing.T, ad *lora.Adapter, fp16 bool) reference.Adapter {
	out := reference.Adapter{}
	read := func(name string, rows, cols int) []float64 {
		w := make([]float32, rows*cols)
		require.NoError(t, ad.Source.ReadFloat32(name, 0, int64(rows), w))
		f := make([]float64, len(w))
		for i, v := range w {
			if fp16 {
				v = quant.RoundF16(v)
			}
			f[i] = float64(v)
		}
		return f
	}
	for name, m := range ad.Modules {
		out[name] = &reference.LoRA{A: read(m.A, m.R, m.In), B: read(m.B, m.Out, m.R), R: m.R, In: m.In, Out: m.Out, Scale: m.Scale}
	}
	return out
}

// toTensors turns a reference step input into method inputs.
func toTensors(in reference.StepIn, sig reference.Signature, float milpb.DataType) []*milrun.Tensor {
	L, C, hd := sig.L, sig.C, sig.HeadDim
	var out []*milrun.Tensor
	out = append(out, milrun.NewInt(milpb.DataType_INT32, []int64{1, int64(L)}, append([]int32(nil), in.Tokens...)))
	flat := func(rows [][]float64) []float32 {
		var f []float32
		for _, r := range rows {
			for _, v := range r {
				f = append(f, float32(v))
			}
		}
		return f
	}
	out = append(out, milrun.NewFloat(float, []int64{1, int64(L), int64(C + L)}, flat(in.Mask)))
	out = append(out, milrun.NewFloat(float, []int64{int64(L), int64(hd / 2)}, flat(in.Cos)))
	out = append(out, milrun.NewFloat(float, []int64{int64(L), int64(hd / 2)}, flat(in.Sin)))
	for _, cache := range [][][][][]float64{in.KCache, in.VCache} {
		for _, layer := range cache {
			var f []float32
			for _, head := range layer {
				f = append(f, flat(head)...)
			}
			out = append(out, milrun.NewFloat(float, []int64{1, int64(sig.KVHeads), int64(C), int64(hd)}, f))
		}
	}
	if sig.Multifunction {
		out = append(out, milrun.NewInt(milpb.DataType_INT32, []int64{1}, []int32{int32(in.LastValid)}))
	}
	return out
}

func fromTensors(ts []*milrun.Tensor, sig reference.Signature) reference.StepOut {
	var o reference.StepOut
	V := sig.Vocab
	lg := ts[0]
	for r := 0; r < len(lg.F)/V; r++ {
		row := make([]float64, V)
		for v := range row {
			row[v] = float64(lg.F[r*V+v])
		}
		o.Logits = append(o.Logits, row)
	}
	unpack := func(t *milrun.Tensor) [][][]float64 {
		kv, L, hd := int(t.Shape[1]), int(t.Shape[2]), int(t.Shape[3])
		out := make([][][]float64, kv)
		for h := range out {
			out[h] = make([][]float64, L)
			for l := range out[h] {
				out[h][l] = make([]float64, hd)
				for d := range out[h][l] {
					out[h][l][d] = float64(t.F[(h*L+l)*hd+d])
				}
			}
		}
		return out
	}
	n := sig.Layers
	for i := 0; i < n; i++ {
		o.KNew = append(o.KNew, unpack(ts[1+i]))
		o.VNew = append(o.VNew, unpack(ts[1+n+i]))
	}
	return o
}

func flat3(x [][][][]float64) []float64 {
	var out []float64
	for _, a := range x {
		for _, b := range a {
			for _, c := range b {
				out = append(out, c...)
			}
		}
	}
	return out
}

func flat1(x [][]float64) []float64 {
	var out []float64
	for _, r := range x {
		out = append(out, r...)
	}
	return out
}

func compareRef(t *testing.T, what string, want, got []float64, fp32 bool) float64 {
	t.Helper()
	require.Equal(t, len(want), len(got), what)
	lo, hi, d := math.Inf(1), math.Inf(-1), 0.0
	for i := range want {
		lo, hi = math.Min(lo, want[i]), math.Max(hi, want[i])
		d = math.Max(d, math.Abs(want[i]-got[i]))
	}
	if fp32 {
		require.LessOrEqualf(t, d, 1e-4, "%s: max abs error", what)
	} else {
		require.LessOrEqualf(t, d, 3e-2*(hi-lo)+1e-3, "%s: max abs error (range %.4g)", what, hi-lo)
	}
	return d
}

// runReference exports c, verifies it, drives a generation through the
// exported methods with the runner protocol and checks every call against
// the reference forward on the very same inputs.
func runReference(t *testing.T, c refCase) {
	data := exportBytes(t, c.model, c.adapters, c.opts)
	rep, err := inspect.Inspect(bytes.NewReader(data), int64(len(data)), true)
	require.NoError(t, err)
	require.False(t, rep.Failed(), "verify: %v", rep.Findings)

	root := os.DirFS("../..")
	cfg, src, err := loadModel(root, c.model)
	require.NoError(t, err)
	fp32 := c.opts.DType == "fp32"
	float := milpb.DataType_FLOAT16
	if fp32 {
		float = milpb.DataType_FLOAT32
	}
	p, err := ptexec.Open(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	rcfg := reference.Config{Hidden: cfg.Hidden, Intermediate: cfg.Intermediate, Layers: cfg.Layers, Heads: cfg.Heads,
		KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim, Vocab: cfg.Vocab, Eps: cfg.RMSEps, QKNorm: cfg.QKNorm}
	weights := refWeights(t, cfg, src, c.opts)

	cos32, sin32 := hf.RopeTables(cfg, c.opts.MaxContextLen+c.opts.InputLen)
	conv := func(tab [][]float32) [][]float64 {
		out := make([][]float64, len(tab))
		for i, r := range tab {
			out[i] = make([]float64, len(r))
			for j, v := range r {
				out[i][j] = float64(v)
			}
		}
		return out
	}
	cos, sin := conv(cos32), conv(sin32)

	L := c.opts.InputLen
	C := c.opts.MaxContextLen - L
	pre := reference.Signature{L: L, C: C, Layers: cfg.Layers, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim, Vocab: cfg.Vocab}
	dec := pre
	if c.opts.Multifunction {
		C = c.opts.MaxContextLen - 1
		pre.C, pre.Multifunction = C, true
		dec = pre
		dec.L = 1
	}
	prompt := []int32{3, 17, 100, 5, 64, 9, 120}
	decode := []int32{42, 7}

	variants := []string{""}
	for _, a := range c.adapters {
		variants = append(variants, a.Name)
	}
	for _, v := range variants {
		var ad reference.Adapter
		preM, decM := "forward", "forward"
		if c.opts.Multifunction {
			preM = "prefill"
		}
		if v != "" {
			var a Adapter
			for _, x := range c.adapters {
				if x.Name == v {
					a = x
				}
			}
			loaded, err := lora.Load(v, a.FS, a.Path, cfg)
			require.NoError(t, err)
			ad = refAdapter(t, loaded, !fp32)
			preM, decM = v, v
			if c.opts.Multifunction {
				preM, decM = v+"_prefill", v+"_forward"
			}
		}
		model, err := reference.New(rcfg, weights, ad)
		require.NoError(t, err)
		step := func(method string, sig reference.Signature) reference.StepFunc {
			return func(in reference.StepIn) (reference.StepOut, error) {
				outs, err := p.Run(method, toTensors(in, sig, float))
				if err != nil {
					return reference.StepOut{}, err
				}
				return fromTensors(outs, sig), nil
			}
		}
		calls, err := reference.Generate(pre, dec, step(preM, pre), step(decM, dec), prompt, decode, cos, sin)
		require.NoError(t, err)
		require.Len(t, calls, 4)
		for i, call := range calls {
			want, err := model.Step(call.In)
			require.NoError(t, err)
			what := c.model + " " + v + " call " + string(rune('0'+i))
			compareRef(t, what+" logits", flat1(want.Logits), flat1(call.Out.Logits), fp32)
			compareRef(t, what+" k_new", flat3(want.KNew), flat3(call.Out.KNew), fp32)
			compareRef(t, what+" v_new", flat3(want.VNew), flat3(call.Out.VNew), fp32)
		}
	}
}

// TestReferenceModels compares exports of every architecture in testdata
// (Qwen2 biases, Qwen3 q/k norm, tied bf16 with llama3 RoPE scaling,
// sharded) with the independent reference, in both modes, fp32 and fp16,
// quantized and not, with and without graph breaks, with LoRA adapters.
func TestReferenceModels(t *testing.T) {
	models := []struct {
		dir      string
		adapters []string
	}{
		{"testdata/models/qwen2-bias", []string{"rs", "mlp"}},
		{"testdata/models/qwen3-qknorm", nil},
		{"testdata/models/llama-tied-bf16", nil},
		{"testdata/models/llama-sharded", nil},
	}
	type variant struct {
		name       string
		dtype      string
		emb, lin   string
		mf, breaks bool
	}
	variants := []variant{
		{"fp32-single", "fp32", "none", "none", false, true},
		{"fp32-mf-nobreaks", "fp32", "none", "none", true, false},
		{"fp16-mf", "fp16", "none", "none", true, true},
		{"q8c4-single", "fp16", "8,0", "c4w", false, true},
		{"q4b4-mf", "fp16", "4,32", "b4w", true, true},
	}
	for _, m := range models {
		for _, v := range variants {
			t.Run(path.Base(m.dir)+"/"+v.name, func(t *testing.T) {
				o := DefaultOptions()
				o.DType, o.EmbeddingQuantize, o.LinearQuantize = v.dtype, v.emb, v.lin
				o.Multifunction, o.NoGraphBreaks = v.mf, !v.breaks
				o.InputLen, o.MaxContextLen = 4, 16
				// Small split targets exercise linear splitting on tiny shapes.
				o.TargetSplitSize, o.MaxSplits = 32, 4
				runReference(t, refCase{model: m.dir, adapters: modelAdapters(m.dir, m.adapters...), opts: o})
			})
		}
	}
}

// TestRopeScalingIndependent recomputes the llama3-scaled inverse
// frequencies of the tied test model straight from model.md Decision (b)
// in float64 and checks the tables the export uses.
func TestRopeScalingIndependent(t *testing.T) {
	data, err := os.ReadFile("../../testdata/models/llama-tied-bf16/config.json")
	require.NoError(t, err)
	cfg, err := hf.ParseConfig(data, "config.json")
	require.NoError(t, err)
	rs := cfg.RopeScaling
	require.NotNil(t, rs)
	hd := cfg.HeadDim
	got := hf.InvFreq(cfg)
	scaled := 0
	for i := 0; i < hd/2; i++ {
		f := 1 / math.Pow(cfg.RopeTheta, float64(2*i)/float64(hd))
		wl := 2 * math.Pi / f
		orig := float64(rs.OriginalMaxPos)
		switch {
		case wl < orig/rs.HighFreqFactor:
		case wl > orig/rs.LowFreqFactor:
			f /= rs.Factor
			scaled++
		default:
			a := (orig/wl - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			f = (1-a)*f/rs.Factor + a*f
			scaled++
		}
		require.InEpsilonf(t, f, float64(got[i]), 1e-6, "inv_freq[%d]", i)
	}
	require.Greater(t, scaled, 0, "the test model must exercise the scaling")
	require.Less(t, scaled, hd/2, "and leave some frequencies unscaled")
}
