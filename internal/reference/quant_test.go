package reference

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A minimal torchao IntxWeightOnlyConfig quantizer (model.md §6, Decision (d)), written only to
// build the dequantized weights w_hat that the quantized goldens use. Everything is computed on
// the fp16 weights with fp16 rounding after each torch fp16 op.

// quantized is the result of quantizing one [rows, cols] matrix with blocks of `group` columns.
type quantized struct {
	codes  []int8    // [rows*cols]
	scales []float64 // [rows*cols/group], fp16 values
	what   []float64 // dequantized fp16(q*scale)
}

func quantize(w []float64, rows, cols, bits, group int) quantized {
	qmax := float64(int(1)<<(bits-1) - 1)
	qmin := -qmax - 1
	const eps = 1.0 / 1024 // finfo(float16).eps
	out := quantized{codes: make([]int8, len(w)), scales: make([]float64, rows*cols/group), what: make([]float64, len(w))}
	for r := 0; r < rows; r++ {
		for g := 0; g < cols/group; g++ {
			blk := w[r*cols+g*group : r*cols+(g+1)*group]
			amax := 0.0
			for _, x := range blk {
				amax = math.Max(amax, math.Abs(RoundFP16(x)))
			}
			scale := math.Max(RoundFP16(amax/((qmax-qmin)/2)), eps)
			inv := RoundFP16(1 / scale)
			out.scales[r*cols/group+g] = scale
			for i, x := range blk {
				q := math.RoundToEven(RoundFP16(RoundFP16(x) * inv))
				q = math.Min(math.Max(q, qmin), qmax)
				j := r*cols + g*group + i
				out.codes[j] = int8(q)
				out.what[j] = RoundFP16(q * scale)
			}
		}
	}
	return out
}

// scheme is one quantization variant: embedding bits/group (group 0 = whole row), linear group
// (0 = whole row, int4).
type scheme struct{ embBits, embGroup, linGroup int }

var schemes = map[string]scheme{"q8c4": {8, 0, 0}, "q4b4": {4, 32, 32}}

// quantizedWeights returns the model weights with the embedding, every projection and lm_head
// replaced by w_hat, plus the quantization results by tensor name.
func quantizedWeights(base stFile, s scheme) (Weights, map[string]quantized) {
	qs := map[string]quantized{}
	for name, x := range base.tensors {
		if len(x.shape) != 2 {
			continue // norms stay in float
		}
		rows, cols := x.shape[0], x.shape[1]
		bits, group := 4, s.linGroup
		if name == "model.embed_tokens.weight" {
			bits, group = s.embBits, s.embGroup
		}
		if group == 0 {
			group = cols
		}
		qs[name] = quantize(x.f, rows, cols, bits, group)
	}
	w := func(name string) ([]float64, []int, bool) {
		x, ok := base.tensors[name]
		if q, isQ := qs[name]; isQ {
			return q.what, x.shape, ok
		}
		return x.f, x.shape, ok
	}
	return w, qs
}

// TestQuantizerMatchesGoldenCodes checks codes (exactly) and scales (exactly) against
// golden/quant/<variant>/quantized.safetensors.
func TestQuantizerMatchesGoldenCodes(t *testing.T) {
	base := loadST(t, filepath.Join(fixture, "model/model.safetensors"))
	for variant, s := range schemes {
		t.Run(variant, func(t *testing.T) {
			_, qs := quantizedWeights(base, s)
			g := loadST(t, filepath.Join(fixture, "golden/quant", variant, "quantized.safetensors"))
			checked := 0
			for name, want := range g.tensors {
				wname, ok := strings.CutSuffix(name, ".codes")
				if !ok {
					continue
				}
				q, ok := qs[wname]
				require.True(t, ok, "no quantization for %s", wname)
				require.Len(t, q.codes, len(want.f), name)
				for i, c := range want.f {
					require.Equal(t, int8(c), q.codes[i], "%s[%d]", name, i)
				}
				ws := g.tensors[wname+".scales"].f
				require.Equal(t, ws, q.scales, wname+".scales")
				checked++
			}
			require.Equal(t, 5, checked)
		})
	}
}

// TestGoldenQuant runs the reference on the dequantized weights and compares with the q8c4 and
// q4b4 goldens (which are float64 computations on the same w_hat).
func TestGoldenQuant(t *testing.T) {
	base := loadST(t, filepath.Join(fixture, "model/model.safetensors"))
	for _, variant := range []string{"q8c4", "q4b4"} {
		w, _ := quantizedWeights(base, schemes[variant])
		for _, model := range models {
			m := loadModel(t, w, model)
			for _, mode := range []string{"single", "multifunction"} {
				t.Run(fmt.Sprintf("%s/%s/%s", variant, model, mode), func(t *testing.T) {
					worst := runGolden(t, m, filepath.Join(fixture, "golden", model, variant, mode), mode, 1e-6)
					t.Logf("max abs diff %.3g", worst)
				})
			}
		}
	}
}
