package reference

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var tinyCfg = Config{Hidden: 8, Intermediate: 12, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 4, Vocab: 10, Eps: 1e-5}

// synthWeights builds deterministic random weights for cfg; with bias, every projection
// gets a bias; with cfg.QKNorm, non-uniform q/k norm weights.
func synthWeights(cfg Config, bias bool) map[string]stTensor {
	rng := rand.New(rand.NewPCG(1, 2))
	w := map[string]stTensor{}
	add := func(name string, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		f := make([]float64, n)
		for i := range f {
			f[i] = rng.Float64() - 0.5
		}
		w[name] = stTensor{shape: shape, f: f}
	}
	D, hd := cfg.Hidden, cfg.HeadDim
	add("model.embed_tokens.weight", cfg.Vocab, D)
	add("model.norm.weight", D)
	add("lm_head.weight", cfg.Vocab, D)
	for i := 0; i < cfg.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", D)
		add(p+"post_attention_layernorm.weight", D)
		for _, s := range projShapes(cfg) {
			add(p+s.name+".weight", s.out, s.in)
			if bias {
				add(p+s.name+".bias", s.out)
			}
		}
		if cfg.QKNorm {
			add(p+"self_attn.q_norm.weight", hd)
			add(p+"self_attn.k_norm.weight", hd)
		}
	}
	return w
}

type projShape struct {
	name    string
	out, in int
}

func projShapes(cfg Config) []projShape {
	D, F := cfg.Hidden, cfg.Intermediate
	q, kv := cfg.Heads*cfg.HeadDim, cfg.KVHeads*cfg.HeadDim
	return []projShape{
		{"self_attn.q_proj", q, D}, {"self_attn.k_proj", kv, D}, {"self_attn.v_proj", kv, D},
		{"self_attn.o_proj", D, q}, {"mlp.gate_proj", F, D}, {"mlp.up_proj", F, D}, {"mlp.down_proj", D, F},
	}
}

func mapWeights(m map[string]stTensor) Weights {
	return weightsOf(stFile{tensors: m})
}

// stepIn builds a valid single-position-0 call: tokens at positions 0..L-1 with an empty cache
// of length C, causal mask and the given angle table (angles[t][i]).
func stepIn(cfg Config, tokens []int32, C int, angles [][]float64) StepIn {
	L := len(tokens)
	in := StepIn{Tokens: tokens, LastValid: -1,
		KCache: zeros4(cfg.Layers, cfg.KVHeads, C, cfg.HeadDim),
		VCache: zeros4(cfg.Layers, cfg.KVHeads, C, cfg.HeadDim)}
	for t := 0; t < L; t++ {
		row := make([]float64, C+L)
		for j := range row {
			if j < C || j-C > t {
				row[j] = math.Inf(-1)
			}
		}
		in.Mask = append(in.Mask, row)
		c, s := make([]float64, cfg.HeadDim/2), make([]float64, cfg.HeadDim/2)
		for i := range c {
			a := 0.0
			if angles != nil {
				a = angles[t][i]
			}
			c[i], s[i] = math.Cos(a), math.Sin(a)
		}
		in.Cos, in.Sin = append(in.Cos, c), append(in.Sin, s)
	}
	return in
}

func TestNewErrors(t *testing.T) {
	good := synthWeights(tinyCfg, false)
	_, err := New(tinyCfg, mapWeights(good), nil)
	require.NoError(t, err)

	bad := tinyCfg
	bad.KVHeads = 3
	_, err = New(bad, mapWeights(good), nil)
	require.ErrorContains(t, err, "kv heads")
	bad = tinyCfg
	bad.HeadDim = 3
	_, err = New(bad, mapWeights(good), nil)
	require.ErrorContains(t, err, "even")
	_, err = New(tinyCfg, nil, nil)
	require.Error(t, err)

	without := func(name string) map[string]stTensor {
		m := map[string]stTensor{}
		for k, v := range good {
			if k != name {
				m[k] = v
			}
		}
		return m
	}
	_, err = New(tinyCfg, mapWeights(without("lm_head.weight")), nil)
	require.ErrorContains(t, err, `"lm_head.weight"`)
	_, err = New(tinyCfg, mapWeights(without("model.layers.1.mlp.up_proj.weight")), nil)
	require.ErrorContains(t, err, "model.layers.1.mlp.up_proj.weight")

	reshaped := without("model.layers.0.self_attn.k_proj.weight")
	reshaped["model.layers.0.self_attn.k_proj.weight"] = stTensor{shape: []int{8, 9}, f: make([]float64, 72)}
	_, err = New(tinyCfg, mapWeights(reshaped), nil)
	require.ErrorContains(t, err, "k_proj.weight\" has shape [8 9]")
	short := without("model.norm.weight")
	short["model.norm.weight"] = stTensor{shape: []int{8}, f: make([]float64, 7)}
	_, err = New(tinyCfg, mapWeights(short), nil)
	require.ErrorContains(t, err, "7 values")
	badBias := without("x")
	badBias["model.layers.0.self_attn.v_proj.bias"] = stTensor{shape: []int{3}, f: make([]float64, 3)}
	_, err = New(tinyCfg, mapWeights(badBias), nil)
	require.ErrorContains(t, err, "v_proj.bias")

	qk := tinyCfg
	qk.QKNorm = true
	_, err = New(qk, mapWeights(good), nil)
	require.ErrorContains(t, err, "q_norm.weight")

	lo := func(r, in, out int) *LoRA {
		return &LoRA{A: make([]float64, r*in), B: make([]float64, out*r), R: r, In: in, Out: out, Scale: 1}
	}
	for _, c := range []struct {
		ad   Adapter
		want string
	}{
		{Adapter{"lm_head": lo(1, 8, 10)}, `"lm_head" is not a projection`},
		{Adapter{"model.layers.5.self_attn.q_proj": lo(1, 8, 16)}, "not a projection"},
		{Adapter{"model.layers.0.self_attn.q_proj": lo(1, 8, 8)}, "LoRA is 8->8, projection is 8->16"},
		{Adapter{"model.layers.0.self_attn.q_proj": {A: make([]float64, 7), B: make([]float64, 16), R: 1, In: 8, Out: 16}}, "A has 7 values"},
		{Adapter{"model.layers.0.self_attn.q_proj": {A: make([]float64, 8), B: make([]float64, 15), R: 1, In: 8, Out: 16}}, "B has 15 values"},
		{Adapter{"model.layers.0.self_attn.q_proj": lo(0, 8, 16)}, "rank 0"},
		{Adapter{"model.layers.0.self_attn.q_proj": nil}, "nil LoRA"},
	} {
		_, err = New(tinyCfg, mapWeights(good), c.ad)
		require.ErrorContains(t, err, c.want)
	}
}

func TestStepErrors(t *testing.T) {
	m, err := New(tinyCfg, mapWeights(synthWeights(tinyCfg, false)), nil)
	require.NoError(t, err)
	valid := func() StepIn { return stepIn(tinyCfg, []int32{1, 2, 3}, 5, nil) }
	_, err = m.Step(valid())
	require.NoError(t, err)

	for _, c := range []struct {
		mut  func(*StepIn)
		want string
	}{
		{func(in *StepIn) { in.Tokens = nil; in.Mask = nil }, "no tokens"},
		{func(in *StepIn) { in.Tokens[1] = 10 }, "token 10 at row 1"},
		{func(in *StepIn) { in.Tokens[0] = -1 }, "token -1"},
		{func(in *StepIn) { in.Mask = in.Mask[:2] }, "mask has 2 rows"},
		{func(in *StepIn) { in.Mask[2] = in.Mask[2][:7] }, "mask row 2 has 7 values"},
		{func(in *StepIn) { in.Mask[0][0] = math.NaN() }, "mask[0][0]"},
		{func(in *StepIn) { in.Cos[1] = nil }, "freqs cos row 1"},
		{func(in *StepIn) { in.Sin = in.Sin[:1] }, "freqs sin has 1 rows"},
		{func(in *StepIn) { in.KCache = in.KCache[:1] }, "k cache"},
		{func(in *StepIn) { in.KCache[1][0] = in.KCache[1][0][:4] }, "k cache layer 1 head 0 has 4 rows"},
		{func(in *StepIn) { in.VCache[0][1][2] = nil }, "v cache layer 0 head 1 row 2"},
		{func(in *StepIn) { in.LastValid = 3 }, "last valid token pos 3"},
		{func(in *StepIn) { in.LastValid = -2 }, "last valid token pos -2"},
		{func(in *StepIn) { in.Mask[1][5] = math.Inf(-1); in.Mask[1][6] = math.Inf(-1) }, "row 1: every attention column is masked"},
	} {
		in := valid()
		c.mut(&in)
		_, err := m.Step(in)
		require.ErrorContains(t, err, c.want)
	}
}

// TestLoRAEqualsMergedWeights: a LoRA delta on any projection equals the base model with
// W + Scale * B A, for all seven projections (fixture adapters cover only some).
func TestLoRAEqualsMergedWeights(t *testing.T) {
	w := synthWeights(tinyCfg, true)
	rng := rand.New(rand.NewPCG(3, 4))
	ad := Adapter{}
	merged := map[string]stTensor{}
	for k, v := range w {
		merged[k] = stTensor{shape: v.shape, f: append([]float64(nil), v.f...)}
	}
	for l := 0; l < tinyCfg.Layers; l++ {
		for i, s := range projShapes(tinyCfg) {
			r := 1 + (i+l)%3
			lo := &LoRA{R: r, In: s.in, Out: s.out, Scale: 0.5 + float64(i), A: make([]float64, r*s.in), B: make([]float64, s.out*r)}
			for j := range lo.A {
				lo.A[j] = rng.Float64() - 0.5
			}
			for j := range lo.B {
				lo.B[j] = rng.Float64() - 0.5
			}
			name := fmt.Sprintf("model.layers.%d.%s", l, s.name)
			ad[name] = lo
			mw := merged[name+".weight"].f
			for o := 0; o < s.out; o++ {
				for c := 0; c < s.in; c++ {
					for k := 0; k < r; k++ {
						mw[o*s.in+c] += lo.Scale * lo.B[o*r+k] * lo.A[k*s.in+c]
					}
				}
			}
		}
	}
	withLoRA, err := New(tinyCfg, mapWeights(w), ad)
	require.NoError(t, err)
	base, err := New(tinyCfg, mapWeights(w), nil)
	require.NoError(t, err)
	mergedM, err := New(tinyCfg, mapWeights(merged), nil)
	require.NoError(t, err)

	angles := [][]float64{{0.1, 0.01}, {0.2, 0.02}, {0.3, 0.03}}
	in := stepIn(tinyCfg, []int32{4, 0, 9}, 2, angles)
	a, err := withLoRA.Step(in)
	require.NoError(t, err)
	b, err := mergedM.Step(in)
	require.NoError(t, err)
	c, err := base.Step(in)
	require.NoError(t, err)
	requireClose(t, flat2(b.Logits), flat2(a.Logits), 1e-12)
	for l := 0; l < tinyCfg.Layers; l++ {
		requireClose(t, flat4(b.KNew, l), flat4(a.KNew, l), 1e-12)
		requireClose(t, flat4(b.VNew, l), flat4(a.VNew, l), 1e-12)
	}
	require.Greater(t, maxDiff(flat2(a.Logits), flat2(c.Logits)), 1e-3, "LoRA had no effect")
}

// TestBiasesAndQKNorm checks Decision (f) through k_new/v_new, which depend only on the token
// itself: with identity RoPE (angle 0) a bias shifts k_new/v_new of layer 0 by exactly the bias
// (head-major), and q/k norm is applied per head before RoPE.
func TestBiasesAndQKNorm(t *testing.T) {
	withBias := synthWeights(tinyCfg, true)
	noBias := map[string]stTensor{}
	for k, v := range withBias {
		if !strings.HasSuffix(k, ".bias") {
			noBias[k] = v
		}
	}
	mb, err := New(tinyCfg, mapWeights(withBias), nil)
	require.NoError(t, err)
	mn, err := New(tinyCfg, mapWeights(noBias), nil)
	require.NoError(t, err)
	in := stepIn(tinyCfg, []int32{7, 3}, 1, nil)
	ob, err := mb.Step(in)
	require.NoError(t, err)
	on, err := mn.Step(in)
	require.NoError(t, err)
	hd := tinyCfg.HeadDim
	for _, p := range []struct {
		name     string
		got, ref [][][][]float64
	}{{"k_proj", ob.KNew, on.KNew}, {"v_proj", ob.VNew, on.VNew}} {
		b := withBias["model.layers.0.self_attn."+p.name+".bias"].f
		for h := 0; h < tinyCfg.KVHeads; h++ {
			for tok := range in.Tokens {
				for d := 0; d < hd; d++ {
					require.InDelta(t, b[h*hd+d], p.got[0][h][tok][d]-p.ref[0][h][tok][d], 1e-12, "%s head %d", p.name, h)
				}
			}
		}
	}
	require.Greater(t, maxDiff(flat2(ob.Logits), flat2(on.Logits)), 1e-3, "q/o/mlp biases had no effect")

	cfg := tinyCfg
	cfg.QKNorm = true
	w := synthWeights(cfg, true)
	m, err := New(cfg, mapWeights(w), nil)
	require.NoError(t, err)
	plain, err := m.Step(stepIn(cfg, []int32{5}, 1, nil))
	require.NoError(t, err)
	angle := []float64{0.7, -1.3}
	rot, err := m.Step(stepIn(cfg, []int32{5}, 1, [][]float64{angle}))
	require.NoError(t, err)
	kn := w["model.layers.0.self_attn.k_norm.weight"].f
	for h := 0; h < cfg.KVHeads; h++ {
		k := plain.KNew[0][h][0] // = rmsnorm(k_proj(x) + b) * k_norm
		var ss float64
		for d, x := range k {
			ss += (x / kn[d]) * (x / kn[d])
		}
		require.InDelta(t, 1, ss/float64(hd), 1e-3, "head %d not RMS-normalised", h)
		want := append([]float64(nil), k...)
		c := []float64{math.Cos(angle[0]), math.Cos(angle[1])}
		s := []float64{math.Sin(angle[0]), math.Sin(angle[1])}
		rope(want, c, s, hd/2)
		requireClose(t, want, rot.KNew[0][h][0], 1e-12)
	}
}

// TestRoPERotateHalf pins the rotate-half pairing of Decision (a) on an explicit vector.
func TestRoPERotateHalf(t *testing.T) {
	x := []float64{1, 2, 3, 4}
	rope(x, []float64{0, 1}, []float64{1, 0}, 2) // channel 0 rotated by 90°, channel 1 untouched
	require.Equal(t, []float64{-3, 2, 1, 4}, x)
}

// TestLastValidSelectsRow: multifunction logits equal the selected row of the full logits.
func TestLastValidSelectsRow(t *testing.T) {
	m, err := New(tinyCfg, mapWeights(synthWeights(tinyCfg, false)), nil)
	require.NoError(t, err)
	in := stepIn(tinyCfg, []int32{1, 2, 3}, 2, nil)
	full, err := m.Step(in)
	require.NoError(t, err)
	require.Len(t, full.Logits, 3)
	for r := 0; r < 3; r++ {
		in.LastValid = r
		one, err := m.Step(in)
		require.NoError(t, err)
		require.Len(t, one.Logits, 1)
		require.Equal(t, full.Logits[r], one.Logits[0])
		require.Equal(t, full.KNew, one.KNew)
	}
}

func TestFP16(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{1.0 / 3, 0.333251953125},
		{65504, 65504},
		{65519.99, 65504},
		{65520, math.Inf(1)},
		{-1e6, math.Inf(-1)},
		{1 + 1.0/2048, 1},           // tie, to even
		{1 + 3.0/2048, 1 + 1.0/512}, // tie, to even
		{math.Ldexp(1, -25), 0},     // half the smallest subnormal: tie to 0
		{math.Ldexp(3, -25), math.Ldexp(1, -23)},
		{math.Ldexp(1, -24), math.Ldexp(1, -24)},
		{-0.1, -0.0999755859375},
		{0, 0},
	} {
		require.Equal(t, c.want, RoundFP16(c.in), "RoundFP16(%v)", c.in)
	}
	require.True(t, math.IsNaN(RoundFP16(math.NaN())))
	require.True(t, math.IsNaN(FP16FromBits(0x7e00)))
	require.Equal(t, math.Inf(-1), FP16FromBits(0xfc00))
	require.Equal(t, 65504.0, FP16FromBits(0x7bff))
	require.Equal(t, math.Ldexp(1, -24), FP16FromBits(1))
	require.Equal(t, -2.0, FP16FromBits(0xc000))
	// Every finite fp16 value is a fixed point of RoundFP16, and values are strictly increasing.
	prev := math.Inf(-1)
	for b := 0xfbff; b >= 0x8000; b-- { // negative values, most negative first
		v := FP16FromBits(uint16(b))
		require.Equal(t, v, RoundFP16(v))
		require.Greater(t, v, prev)
		prev = v
	}
	for b := 0; b <= 0x7bff; b++ {
		v := FP16FromBits(uint16(b))
		require.Equal(t, v, RoundFP16(v))
		if b > 0 {
			require.Greater(t, v, prev)
			// The midpoint between neighbours rounds to the one with an even bit pattern.
			mid := (prev + v) / 2
			want := v
			if (b-1)%2 == 0 {
				want = prev
			}
			require.Equal(t, want, RoundFP16(mid), "midpoint below bits %#x", b)
		}
		prev = v
	}
}

// TestFixtureIsFP16Exact backs the README claim the quantized test relies on: the checkpoint
// and adapter values survive the fp16 cast, so the quantizer sees the same weights.
func TestFixtureIsFP16Exact(t *testing.T) {
	for _, p := range []string{"model/model.safetensors", "adapters/attn/adapter_model.safetensors", "adapters/mlpq/adapter_model.safetensors"} {
		f := loadST(t, filepath.Join(fixture, p))
		for name, x := range f.tensors {
			for i, v := range x.f {
				require.Equal(t, v, RoundFP16(v), "%s %s[%d]", p, name, i)
			}
		}
	}
}

func requireClose(t *testing.T, want, got []float64, tol float64) {
	t.Helper()
	require.Len(t, got, len(want))
	require.LessOrEqual(t, maxDiff(want, got), tol)
}

func maxDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}
