package reference

import (
	"math"
	"testing"
)

// Step and Generate take caller-built (possibly runtime-produced) nested slices; neither may
// panic on any shape. The fuzzers derive shapes and values from the input bytes.

type byteSrc struct {
	b []byte
	i int
}

func (s *byteSrc) next() int {
	if s.i >= len(s.b) {
		return 0
	}
	s.i++
	return int(s.b[s.i-1])
}

// ragged4 builds a [a][b][c][d] tensor whose sizes are perturbed by the source.
func ragged4(s *byteSrc, a, b, c, d int) [][][][]float64 {
	jit := func(n int) int { return max(0, n+s.next()%3-1) }
	v := make([][][][]float64, jit(a))
	for i := range v {
		v[i] = make([][][]float64, jit(b))
		for j := range v[i] {
			v[i][j] = make([][]float64, jit(c))
			for k := range v[i][j] {
				v[i][j][k] = make([]float64, jit(d))
			}
		}
	}
	return v
}

func FuzzStep(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte{3, 0, 7, 9, 200, 1, 2, 0, 0, 0, 5, 5, 5, 255, 255})
	m, err := New(tinyCfg, mapWeights(synthWeights(tinyCfg, true)), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &byteSrc{b: data}
		L := s.next() % 4
		C := s.next() % 4
		in := StepIn{LastValid: s.next()%6 - 2}
		for t := 0; t < L; t++ {
			in.Tokens = append(in.Tokens, int32(s.next()%12-1))
		}
		mask := ragged4(s, 1, 1, L, C+L)
		if len(mask) > 0 && len(mask[0]) > 0 {
			in.Mask = mask[0][0]
			for _, r := range in.Mask {
				for j := range r {
					switch s.next() % 4 {
					case 0:
						r[j] = math.Inf(-1)
					case 1:
						r[j] = math.NaN()
					}
				}
			}
		}
		cs := ragged4(s, 1, 2, L, tinyCfg.HeadDim/2)
		if len(cs) > 0 && len(cs[0]) == 2 {
			in.Cos, in.Sin = cs[0][0], cs[0][1]
		}
		in.KCache = ragged4(s, tinyCfg.Layers, tinyCfg.KVHeads, C, tinyCfg.HeadDim)
		in.VCache = ragged4(s, tinyCfg.Layers, tinyCfg.KVHeads, C, tinyCfg.HeadDim)
		out, err := m.Step(in)
		if err == nil && len(out.Logits) == 0 {
			t.Fatal("success without logits")
		}
	})
}

func FuzzGenerate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte{4, 0, 9, 2, 2, 0, 1, 1, 2, 2, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &byteSrc{b: data}
		sig := Signature{L: s.next() % 4, C: s.next() % 6, Layers: 1 + s.next()%2, KVHeads: 1 + s.next()%2,
			HeadDim: 2 * (s.next() % 3), Vocab: 1 + s.next()%5, Multifunction: s.next()%2 == 1}
		dec := sig
		if sig.Multifunction {
			dec.L = 1
		}
		var prompt []int32
		for n := s.next() % 7; n > 0; n-- {
			prompt = append(prompt, int32(s.next()%7-1))
		}
		cos := ragged4(s, 1, 1, s.next()%8, sig.HeadDim/2)
		var tab [][]float64
		if len(cos) > 0 && len(cos[0]) > 0 {
			tab = cos[0][0]
		}
		fn := func(in StepIn) (StepOut, error) {
			rows := len(in.Tokens)
			if in.LastValid >= 0 {
				rows = 1
			}
			lg := ragged4(s, 1, 1, rows, sig.Vocab)
			out := StepOut{
				KNew: ragged4(s, sig.Layers, sig.KVHeads, len(in.Tokens), sig.HeadDim),
				VNew: ragged4(s, sig.Layers, sig.KVHeads, len(in.Tokens), sig.HeadDim),
			}
			if len(lg) > 0 && len(lg[0]) > 0 {
				out.Logits = lg[0][0]
			}
			return out, nil
		}
		_, _ = Generate(sig, dec, fn, fn, prompt, []int32{int32(s.next() % 5)}, tab, tab)
	})
}
