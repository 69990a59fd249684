package reference

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nlpodyssey/safetensors"
	"github.com/stretchr/testify/require"
)

// Helpers that load the tiny-llama fixture (testdata/tiny-llama, see its README).

const fixture = "../../testdata/tiny-llama"

// stTensor is one decoded safetensors tensor; floats and ints both land in f.
type stTensor struct {
	shape []int
	f     []float64
}

type stFile struct {
	tensors map[string]stTensor
	meta    map[string]string
}

func loadST(t testing.TB, path string) stFile {
	t.Helper()
	buf, err := os.ReadFile(path)
	require.NoError(t, err)
	st, err := safetensors.Deserialize(buf)
	require.NoError(t, err, path)
	_, md, err := safetensors.ReadMetadata(buf)
	require.NoError(t, err, path)
	out := stFile{tensors: map[string]stTensor{}, meta: md.Metadata()}
	for _, nt := range st.Tensors() {
		tv := nt.TensorView
		var shape []int
		n := 1
		for _, d := range tv.Shape() {
			shape = append(shape, int(d))
			n *= int(d)
		}
		data := tv.Data()
		f := make([]float64, n)
		for i := range f {
			switch tv.DType() {
			case safetensors.F32:
				f[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:])))
			case safetensors.F16:
				f[i] = FP16FromBits(binary.LittleEndian.Uint16(data[2*i:]))
			case safetensors.I8:
				f[i] = float64(int8(data[i]))
			case safetensors.I32:
				f[i] = float64(int32(binary.LittleEndian.Uint32(data[4*i:])))
			case safetensors.I64:
				f[i] = float64(int64(binary.LittleEndian.Uint64(data[8*i:])))
			default:
				t.Fatalf("%s: tensor %s: unsupported dtype %v", path, nt.Name, tv.DType())
			}
		}
		out.tensors[nt.Name] = stTensor{shape: shape, f: f}
	}
	return out
}

func loadConfig(t testing.TB) Config {
	t.Helper()
	buf, err := os.ReadFile(filepath.Join(fixture, "model/config.json"))
	require.NoError(t, err)
	var c struct {
		Hidden       int     `json:"hidden_size"`
		Intermediate int     `json:"intermediate_size"`
		Layers       int     `json:"num_hidden_layers"`
		Heads        int     `json:"num_attention_heads"`
		KVHeads      int     `json:"num_key_value_heads"`
		HeadDim      int     `json:"head_dim"`
		Vocab        int     `json:"vocab_size"`
		Eps          float64 `json:"rms_norm_eps"`
	}
	require.NoError(t, json.Unmarshal(buf, &c))
	return Config{Hidden: c.Hidden, Intermediate: c.Intermediate, Layers: c.Layers, Heads: c.Heads,
		KVHeads: c.KVHeads, HeadDim: c.HeadDim, Vocab: c.Vocab, Eps: c.Eps}
}

func weightsOf(f stFile) Weights {
	return func(name string) ([]float64, []int, bool) {
		x, ok := f.tensors[name]
		return x.f, x.shape, ok
	}
}

// loadAdapter reads a PEFT adapter (global r / lora_alpha only; the fixture has no patterns).
func loadAdapter(t testing.TB, name string) Adapter {
	t.Helper()
	dir := filepath.Join(fixture, "adapters", name)
	buf, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	require.NoError(t, err)
	var cfg struct {
		R     int     `json:"r"`
		Alpha float64 `json:"lora_alpha"`
	}
	require.NoError(t, json.Unmarshal(buf, &cfg))
	f := loadST(t, filepath.Join(dir, "adapter_model.safetensors"))
	ad := Adapter{}
	for key, a := range f.tensors {
		mod, ok := strings.CutSuffix(key, ".lora_A.weight")
		if !ok {
			continue
		}
		mod, ok = strings.CutPrefix(mod, "base_model.model.")
		require.True(t, ok, key)
		b, ok := f.tensors[strings.TrimSuffix(key, "A.weight")+"B.weight"]
		require.True(t, ok, "lora_B for %s", key)
		require.Equal(t, cfg.R, a.shape[0], key)
		ad[mod] = &LoRA{A: a.f, B: b.f, R: a.shape[0], In: a.shape[1], Out: b.shape[0], Scale: cfg.Alpha / float64(cfg.R)}
	}
	require.Len(t, ad, len(f.tensors)/2)
	return ad
}

// loadFreqs returns the float32 freqs_cos/freqs_sin tables of the golden constants.
func loadFreqs(t testing.TB) (cos, sin [][]float64) {
	t.Helper()
	buf, err := os.ReadFile(filepath.Join(fixture, "golden/constants/single/base.json"))
	require.NoError(t, err)
	var c struct {
		ConstantMethods map[string]struct {
			Value [][]float64 `json:"value_float32"`
		} `json:"constant_methods"`
	}
	require.NoError(t, json.Unmarshal(buf, &c))
	cos, sin = c.ConstantMethods["freqs_cos"].Value, c.ConstantMethods["freqs_sin"].Value
	require.Len(t, cos, 12)
	require.Len(t, sin, 12)
	return cos, sin
}

var (
	prompt       = []int32{68, 82, 114, 115, 86, 60}
	decodeTokens = []int32{71}
	steps        = []string{"prefill0", "prefill1", "decode0"}
)

// signatures returns the prefill and decode signatures of a mode (README "Export options").
func signatures(cfg Config, mode string) (prefill, decode Signature) {
	s := Signature{L: 4, C: 8, Layers: cfg.Layers, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim, Vocab: cfg.Vocab}
	if mode == "single" {
		return s, s
	}
	s.C, s.Multifunction = 11, true
	d := s
	d.L = 1
	return s, d
}

// runGolden drives Generate with m and compares every call with the goldens of dir
// (golden/<model>/<quant>/<mode>); it returns the largest difference seen.
func runGolden(t *testing.T, m *Model, dir, mode string, tol float64) float64 {
	t.Helper()
	cos, sin := loadFreqs(t)
	p, d := signatures(m.cfg, mode)
	calls, err := Generate(p, d, m.Step, m.Step, prompt, decodeTokens, cos, sin)
	require.NoError(t, err)
	require.Len(t, calls, len(steps))
	worst := 0.0
	for i, step := range steps {
		g := loadST(t, filepath.Join(dir, step+".safetensors"))
		c := calls[i]
		wantMethod := "prefill"
		if strings.HasPrefix(step, "decode") {
			wantMethod = "decode"
		}
		require.Equal(t, wantMethod, c.Method, step)
		// Golden method names: "forward" (single, multifunction decode) or "prefill", with the
		// adapter name as prefix ("attn", "attn_prefill", "attn_forward").
		exported := "forward"
		if mode == "multifunction" && wantMethod == "prefill" {
			exported = "prefill"
		}
		if model := g.meta["model"]; model != "base" {
			exported = model + "_" + exported
			if mode == "single" {
				exported = model
			}
		}
		require.Equal(t, exported, g.meta["method"], step)
		require.Equal(t, filepath.Base(dir), g.meta["mode"], step)
		require.Equal(t, g.meta["position"], fmt.Sprint(c.Pos), step)
		require.Equal(t, g.meta["n_real_tokens"], fmt.Sprint(c.NReal), step)

		n := m.cfg.Layers
		got := map[string][]float64{
			"in.00.tokens":    ints(c.In.Tokens),
			"in.01.mask":      flat2(c.In.Mask),
			"in.02.freqs_cos": flat2(c.In.Cos),
			"in.03.freqs_sin": flat2(c.In.Sin),
			"out.00.logits":   flat2(c.Out.Logits),
		}
		for l := 0; l < n; l++ {
			got[fmt.Sprintf("in.%02d.k_cache.l%d", 4+l, l)] = flat4(c.In.KCache, l)
			got[fmt.Sprintf("in.%02d.v_cache.l%d", 4+n+l, l)] = flat4(c.In.VCache, l)
			got[fmt.Sprintf("out.%02d.k_new.l%d", 1+l, l)] = flat4(c.Out.KNew, l)
			got[fmt.Sprintf("out.%02d.v_new.l%d", 1+n+l, l)] = flat4(c.Out.VNew, l)
		}
		if mode == "multifunction" {
			got[fmt.Sprintf("in.%02d.last_valid_token_pos", 4+2*n)] = []float64{float64(c.In.LastValid)}
		} else {
			require.Equal(t, -1, c.In.LastValid)
		}
		names := make([]string, 0, len(g.tensors))
		for name := range g.tensors {
			names = append(names, name)
		}
		sort.Strings(names)
		require.Equal(t, len(got), len(names), "%s: tensor count", step)
		for _, name := range names {
			want := g.tensors[name].f
			have, ok := got[name]
			require.True(t, ok, "%s: unexpected golden tensor %s", step, name)
			require.Len(t, have, len(want), "%s %s", step, name)
			for j := range want {
				if math.IsInf(want[j], 0) || math.IsInf(have[j], 0) {
					require.Equal(t, want[j], have[j], "%s %s[%d]", step, name, j)
					continue
				}
				diff := math.Abs(want[j] - have[j])
				worst = math.Max(worst, diff)
				require.LessOrEqual(t, diff, tol, "%s %s[%d]: got %v want %v", step, name, j, have[j], want[j])
			}
		}
	}
	return worst
}

func ints(v []int32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func flat2(v [][]float64) []float64 {
	var out []float64
	for _, r := range v {
		out = append(out, r...)
	}
	return out
}

// flat4 flattens layer l of a [layer][head][rows][hd] tensor.
func flat4(v [][][][]float64, l int) []float64 {
	var out []float64
	for _, h := range v[l] {
		out = append(out, flat2(h)...)
	}
	return out
}
