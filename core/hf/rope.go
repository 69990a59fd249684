package hf

import "math"

// InvFreq returns the RoPE inverse frequencies, head_dim/2 of them, computed
// in float32 the way transformers does (modeling_rope_utils.py):
//
//	inv_freq = 1.0 / (theta ** (arange(0, hd, 2).float() / hd))
//
// then, for rope type llama3, _compute_llama3_parameters in float32 tensor
// arithmetic (where `scalar / tensor` is reciprocal(tensor) * scalar and
// Python scalars are cast to float32).
func InvFreq(cfg *Config) []float32 {
	hd := cfg.HeadDim
	theta := float32(cfg.RopeTheta)
	inv := make([]float32, hd/2)
	for i := range inv {
		e := float32(2*i) / float32(hd)
		// float32 pow: evaluated in float64 and rounded once.
		p := float32(math.Pow(float64(theta), float64(e)))
		inv[i] = float32(1) / p
	}
	rs := cfg.RopeScaling
	if rs == nil || rs.Type != "llama3" {
		return inv
	}
	orig := float64(rs.OriginalMaxPos)
	lowWavelen := float32(orig / rs.LowFreqFactor)
	highWavelen := float32(orig / rs.HighFreqFactor)
	factor := float32(rs.Factor)
	low := float32(rs.LowFreqFactor)
	span := float32(rs.HighFreqFactor - rs.LowFreqFactor)
	twoPi := float32(2 * math.Pi)
	for i, f := range inv {
		wavelen := float32(float32(1/f) * twoPi)
		switch {
		case wavelen > lowWavelen:
			inv[i] = f / factor
		case wavelen < highWavelen:
			// unchanged
		default:
			smooth := float32(float32(float32(float32(1/wavelen)*float32(orig))-low) / span)
			a := float32(float32(float32(1-smooth)*f) / factor)
			b := float32(smooth * f)
			inv[i] = a + b
		}
	}
	return inv
}

// RopeTables returns cos and sin of angle[p][i] = float32(p) * inv_freq[i]
// for positions 0..n-1, each row head_dim/2 wide, in float32: the
// freqs_cos/freqs_sin tables of model.md §3.4 before any cast to float16.
// n is the context length, which the caller has validated (n <= 0 gives
// empty tables).
func RopeTables(cfg *Config, n int) (cos, sin [][]float32) {
	n = max(n, 0)
	inv := InvFreq(cfg)
	cos = make([][]float32, n)
	sin = make([][]float32, n)
	cbuf := make([]float32, n*len(inv))
	sbuf := make([]float32, n*len(inv))
	for p := 0; p < n; p++ {
		cos[p] = cbuf[p*len(inv) : (p+1)*len(inv) : (p+1)*len(inv)]
		sin[p] = sbuf[p*len(inv) : (p+1)*len(inv) : (p+1)*len(inv)]
		for i, f := range inv {
			a := float32(float32(p) * f)
			cos[p][i] = float32(math.Cos(float64(a)))
			sin[p][i] = float32(math.Sin(float64(a)))
		}
	}
	return cos, sin
}
