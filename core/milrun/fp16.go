package milrun

import "math"

// FP16Bits converts f to IEEE binary16 bits, rounding to nearest with ties to
// even. Overflow gives ±Inf, NaN stays NaN (quiet), tiny values become
// subnormals or ±0.
func FP16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b >> 23) & 0xff)
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // binary16 biased exponent
	if e >= 31 {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal result: value in units of 2^-24 is m >> (14 - e).
		shift := uint(14 - e)
		if shift > 24 {
			return sign
		}
		m := man | 0x800000
		return sign | uint16(roundShift(m, shift))
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // a carry into the exponent is the correct result (up to Inf)
	}
	return sign | uint16(r)
}

// roundShift returns m >> s rounded to nearest, ties to even (s >= 1).
func roundShift(m uint32, s uint) uint32 {
	r := m >> s
	rem := m & (1<<s - 1)
	half := uint32(1) << (s - 1)
	if rem > half || (rem == half && r&1 == 1) {
		r++
	}
	return r
}

// FP16Value returns the float32 value of IEEE binary16 bits h (exact).
func FP16Value(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		if man != 0 {
			return math.Float32frombits(sign | 0x7fc00000 | man<<13)
		}
		return math.Float32frombits(sign | 0x7f800000)
	case exp == 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		v := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// RoundFP16 rounds f to the nearest binary16 value (ties to even) and returns
// it as float32.
func RoundFP16(f float32) float32 { return FP16Value(FP16Bits(f)) }
