package quant

import (
	"encoding/binary"
	"math"
)

// Half-precision conversions. All rounding is IEEE round-to-nearest-even,
// matching what torch does when it casts float32 tensors to float16/bfloat16.

// F32ToF16 converts f to IEEE binary16 bits, rounding to nearest even.
// Overflow gives ±Inf, tiny values become subnormals or ±0, NaN stays NaN
// (quiet, sign and top payload bits kept).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	switch {
	case exp == 0xff:
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	case exp > 127+15:
		return sign | 0x7c00 // |f| >= 2^16: beyond the largest finite half
	case exp >= 127-14:
		// Normal half (possibly rounding up into the next binade or to Inf;
		// the carry into the exponent field does the right thing).
		h := uint32(exp-127+15)<<10 | man>>13
		rem := man & 0x1fff
		if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	case exp == 0:
		return sign // float32 subnormals are far below half's range
	}
	// Subnormal half: value = m * 2^(exp-150); in units of 2^-24 that is
	// m >> (126-exp).
	m := man | 0x800000
	shift := uint(126 - exp) // >= 14
	if shift > 24 {
		return sign // below half of the smallest subnormal
	}
	q := m >> shift
	rem := m & (1<<shift - 1)
	halfway := uint32(1) << (shift - 1)
	if rem > halfway || (rem == halfway && q&1 == 1) {
		q++
	}
	return sign | uint16(q)
}

// F16ToF32 converts IEEE binary16 bits to float32 (exact).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch exp {
	case 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: exact in float32 as man * 2^-24.
		v := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// RoundF16 rounds f to the nearest float16 value and returns it as float32.
func RoundF16(f float32) float32 {
	b := math.Float32bits(f)
	// Fast path for the normal float16 range (2^-14 <= |f| < 2^16): clear
	// the 13 low mantissa bits with round-half-even directly on the bits.
	r := (b + 0xfff + (b>>13)&1) &^ 0x1fff
	if (b>>23)&0xff-113 <= 142-113 && (r>>23)&0xff <= 142 {
		return math.Float32frombits(r)
	}
	return roundF16Slow(f)
}

func roundF16Slow(f float32) float32 { return F16ToF32(F32ToF16(f)) }

// BF16ToF32 converts bfloat16 bits to float32 (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 converts f to bfloat16 bits, rounding to nearest even; NaN stays
// a quiet NaN.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7f800000 == 0x7f800000 && b&0x7fffff != 0 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// F16ToF32Slice converts min(len(dst), len(src)) values.
func F16ToF32Slice(dst []float32, src []uint16) {
	n := min(len(dst), len(src))
	for i := 0; i < n; i++ {
		dst[i] = F16ToF32(src[i])
	}
}

// F32ToF16Slice converts min(len(dst), len(src)) values.
func F32ToF16Slice(dst []uint16, src []float32) {
	n := min(len(dst), len(src))
	for i := 0; i < n; i++ {
		dst[i] = F32ToF16(src[i])
	}
}

// BF16ToF32Slice converts min(len(dst), len(src)) values.
func BF16ToF32Slice(dst []float32, src []uint16) {
	n := min(len(dst), len(src))
	for i := 0; i < n; i++ {
		dst[i] = BF16ToF32(src[i])
	}
}

// F32ToBF16Slice converts min(len(dst), len(src)) values.
func F32ToBF16Slice(dst []uint16, src []float32) {
	n := min(len(dst), len(src))
	for i := 0; i < n; i++ {
		dst[i] = F32ToBF16(src[i])
	}
}

// DecodeF16LE converts little-endian float16 bytes to float32 values:
// min(len(dst), len(src)/2) of them.
func DecodeF16LE(dst []float32, src []byte) {
	n := min(len(dst), len(src)/2)
	for i := 0; i < n; i++ {
		dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// DecodeBF16LE converts little-endian bfloat16 bytes to float32 values:
// min(len(dst), len(src)/2) of them.
func DecodeBF16LE(dst []float32, src []byte) {
	n := min(len(dst), len(src)/2)
	for i := 0; i < n; i++ {
		dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// DecodeF32LE converts little-endian float32 bytes to float32 values:
// min(len(dst), len(src)/4) of them.
func DecodeF32LE(dst []float32, src []byte) {
	n := min(len(dst), len(src)/4)
	for i := 0; i < n; i++ {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}
