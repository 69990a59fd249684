package reference

import "math"

// RoundFP16 rounds x to the nearest IEEE binary16 value (ties to even), returned as float64.
// Magnitudes from 65520 up become ±Inf; NaN stays NaN. Used to emulate float16 casts (for
// example the fp16 weights a quantizer sees) without a float16 type.
func RoundFP16(x float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	_, e := math.Frexp(x) // |x| = f * 2^e, f in [0.5, 1)
	// Spacing of binary16 values around x: 10 fraction bits; subnormals below 2^-14 share 2^-24.
	q := max(e-1, -14) - 10
	r := math.Ldexp(math.RoundToEven(math.Ldexp(x, -q)), q)
	if math.Abs(r) > 65504 {
		return math.Copysign(math.Inf(1), x)
	}
	return r
}

// FP16FromBits decodes an IEEE binary16 bit pattern.
func FP16FromBits(b uint16) float64 {
	sign := 1.0
	if b&0x8000 != 0 {
		sign = -1
	}
	exp := int(b>>10) & 0x1f
	frac := float64(b & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * math.Ldexp(1024+frac, exp-25)
}
