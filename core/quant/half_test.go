package quant

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestF16RoundTripAllValues(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		if f != f {
			if h&0x7c00 != 0x7c00 || !math.IsNaN(float64(F16ToF32(F32ToF16(f)))) {
				t.Fatalf("NaN %#04x", h)
			}
			continue
		}
		if got := F32ToF16(f); got != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, got)
		}
	}
}

// refF16 rounds by searching the sorted table of finite half values.
type refF16 struct{ vals []float64 }

func newRefF16() refF16 {
	var r refF16
	for h := 0; h < 0x7c00; h++ {
		r.vals = append(r.vals, float64(F16ToF32(uint16(h))))
	}
	return r
}

func (r refF16) round(f float32) uint16 {
	a := math.Abs(float64(f))
	var sign uint16
	if math.Signbit(float64(f)) {
		sign = 0x8000
	}
	if math.IsNaN(a) {
		return 0x7e00
	}
	if a >= 65520 {
		return sign | 0x7c00
	}
	i := sort.SearchFloat64s(r.vals, a) // first >= a
	if i < len(r.vals) && r.vals[i] == a {
		return sign | uint16(i)
	}
	lo, hi := i-1, i
	if hi == len(r.vals) { // between 65504 and 65520
		return sign | uint16(lo)
	}
	dl, dh := a-r.vals[lo], r.vals[hi]-a
	switch {
	case dl < dh:
		return sign | uint16(lo)
	case dh < dl:
		return sign | uint16(hi)
	case lo%2 == 0:
		return sign | uint16(lo)
	}
	return sign | uint16(hi)
}

func TestF32ToF16MatchesReference(t *testing.T) {
	ref := newRefF16()
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(f float32) {
		got := F32ToF16(f)
		if f != f {
			if got&0x7e00 != 0x7e00 {
				t.Fatalf("NaN %#08x -> %#04x", math.Float32bits(f), got)
			}
			return
		}
		want := ref.round(f)
		if got != want {
			t.Fatalf("F32ToF16(%g) bits=%#08x: got %#04x want %#04x", f, math.Float32bits(f), got, want)
		}
		if r := RoundF16(f); r != F16ToF32(want) {
			t.Fatalf("RoundF16(%g) = %g", f, r)
		}
		if v, ok := roundF16Normal(f); ok && v != F16ToF32(want) {
			t.Fatalf("roundF16Normal(%g) = %g", f, v)
		}
	}
	for i := 0; i < 200000; i++ {
		check(math.Float32frombits(rng.Uint32()))
		// Values in and around the half range, where rounding matters.
		check(float32(math.Ldexp(rng.Float64()*2-1, rng.IntN(44)-28)))
	}
	// Exact ties and boundaries.
	for _, f := range []float32{
		65504, 65519.996, 65520, 65536, -65520, 1e30, -1e30,
		1 + 1.0/2048, 1 + 3.0/2048, // ties: to even (down), to even (up)
		float32(math.Ldexp(1, -24)), float32(math.Ldexp(1, -25)), float32(math.Ldexp(1.5, -25)),
		float32(math.Ldexp(3, -25)), float32(math.Ldexp(1, -14)), float32(math.Ldexp(1023, -24)),
		float32(math.Ldexp(2047, -25)), math.SmallestNonzeroFloat32, 0, float32(math.Copysign(0, -1)),
	} {
		check(f)
	}
}

func TestF16SpecialValues(t *testing.T) {
	require.Equal(t, uint16(0x3c00), F32ToF16(1))
	require.Equal(t, uint16(0xc000), F32ToF16(-2))
	require.Equal(t, uint16(0x7bff), F32ToF16(65504))
	require.Equal(t, uint16(0x7bff), F32ToF16(65519))
	require.Equal(t, uint16(0x7c00), F32ToF16(65520))
	require.Equal(t, uint16(0x7c00), F32ToF16(float32(math.Inf(1))))
	require.Equal(t, uint16(0xfc00), F32ToF16(float32(math.Inf(-1))))
	require.Equal(t, uint16(0x8000), F32ToF16(float32(math.Copysign(0, -1))))
	require.Equal(t, uint16(0x0001), F32ToF16(float32(math.Ldexp(1, -24))))
	require.Equal(t, uint16(0x0000), F32ToF16(float32(math.Ldexp(1, -25)))) // tie to even 0
	require.Equal(t, uint16(0x0001), F32ToF16(float32(math.Ldexp(1.0001, -25))))
	require.Equal(t, uint16(0x0002), F32ToF16(float32(math.Ldexp(3, -25)))) // tie 1.5 -> 2
	require.Equal(t, uint16(0x0400), F32ToF16(float32(math.Ldexp(2047, -25))))
	require.Equal(t, uint16(0x3c00), F32ToF16(1+1.0/2048)) // tie to even
	require.Equal(t, uint16(0x3c02), F32ToF16(1+3.0/2048)) // tie to even
	require.True(t, math.IsNaN(float64(F16ToF32(F32ToF16(float32(math.NaN()))))))
	require.Equal(t, float32(math.Ldexp(1, -24)), F16ToF32(1))
	require.Equal(t, float32(-65504), F16ToF32(0xfbff))
	require.True(t, math.IsInf(float64(F16ToF32(0x7c00)), 1))
	require.True(t, math.Signbit(float64(F16ToF32(0x8000))))
}

func TestBF16(t *testing.T) {
	require.Equal(t, uint16(0x3f80), F32ToBF16(1))
	require.Equal(t, float32(1), BF16ToF32(0x3f80))
	require.Equal(t, uint16(0x3f80), F32ToBF16(1+1.0/256)) // tie to even (down)
	require.Equal(t, uint16(0x3f82), F32ToBF16(1+3.0/256)) // tie to even (up)
	require.Equal(t, uint16(0x3f81), F32ToBF16(1+1.5/256)) // above tie
	require.Equal(t, uint16(0x7f80), F32ToBF16(float32(math.Inf(1))))
	require.Equal(t, uint16(0x7f80), F32ToBF16(math.MaxFloat32)) // rounds up to Inf
	nan := F32ToBF16(math.Float32frombits(0x7f800001))           // payload only in low bits
	require.True(t, math.IsNaN(float64(BF16ToF32(nan))))
	for h := 0; h < 1<<16; h++ {
		if f := BF16ToF32(uint16(h)); f == f && F32ToBF16(f) != uint16(h) {
			t.Fatalf("bf16 %#04x does not round-trip", h)
		}
	}
}

func TestSliceAndByteConversions(t *testing.T) {
	src := []float32{1, -2.5, 0.099975586, 65504}
	h := make([]uint16, 4)
	F32ToF16Slice(h, src)
	back := make([]float32, 4)
	F16ToF32Slice(back, h)
	require.Equal(t, src, back)
	b := make([]uint16, 4)
	F32ToBF16Slice(b, []float32{1, -2.5, 0.5, 3})
	BF16ToF32Slice(back, b)
	require.Equal(t, []float32{1, -2.5, 0.5, 3}, back)

	raw := []byte{0x00, 0x3c, 0x00, 0xc0, 0xff} // 1, -2, and a stray byte
	dst := make([]float32, 3)
	DecodeF16LE(dst, raw)
	require.Equal(t, []float32{1, -2, 0}, dst)
	DecodeBF16LE(dst, []byte{0x80, 0x3f, 0x20, 0xc0})
	require.Equal(t, []float32{1, -2.5, 0}, dst)
	DecodeF32LE(dst, []byte{0, 0, 0x80, 0x3f})
	require.Equal(t, float32(1), dst[0])
}
