package milrun

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFP16KnownValues(t *testing.T) {
	cases := []struct {
		f    float32
		bits uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{65519.99, 0x7bff},
		{65520, 0x7c00}, // rounds up to Inf
		{1e9, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{1.0 / (1 << 14), 0x0400},               // smallest normal
		{1.0 / (1 << 24), 0x0001},               // smallest subnormal
		{1.0 / (1 << 25), 0x0000},               // tie between 0 and 2^-24 → even (0)
		{1.5 / (1 << 25), 0x0001},               // above the tie
		{3.0 / (1 << 25), 0x0002},               // tie between 1 and 2 ulps → even (2)
		{1 + 1.0/(1<<11), 0x3c00},               // tie → even (1.0)
		{1 + 3.0/(1<<11), 0x3c02},               // tie → even (1+2^-9)
		{1 + 1.0/(1<<11) + 1.0/(1<<20), 0x3c01}, // just above the tie
		{-0.1, 0xae66},
	}
	for _, c := range cases {
		require.Equal(t, c.bits, FP16Bits(c.f), "FP16Bits(%v)", c.f)
	}
	require.True(t, math.IsNaN(float64(RoundFP16(float32(math.NaN())))))
	require.Equal(t, float32(65504), FP16Value(0x7bff))
	require.Equal(t, float32(1.0/(1<<24)), FP16Value(0x0001))
	require.True(t, math.IsInf(float64(FP16Value(0xfc00)), -1))
}

// Every finite fp16 round-trips, and every midpoint between neighbours rounds
// to the even one while values just beside it round to the nearer one.
func TestFP16ExhaustiveRounding(t *testing.T) {
	for h := 0; h < 0x7c00; h++ {
		for _, sign := range []uint16{0, 0x8000} {
			b := uint16(h) | sign
			require.Equal(t, b, FP16Bits(FP16Value(b)))
		}
	}
	for h := uint16(0); h < 0x7bff; h++ {
		a, b := FP16Value(h), FP16Value(h+1)
		mid := float32((float64(a) + float64(b)) / 2) // exact in float32
		even := h
		if h&1 == 1 {
			even = h + 1
		}
		require.Equal(t, even, FP16Bits(mid), "midpoint of %#04x", h)
		require.Equal(t, h, FP16Bits(math.Nextafter32(mid, 0)), "below midpoint of %#04x", h)
		require.Equal(t, h+1, FP16Bits(math.Nextafter32(mid, 1e9)), "above midpoint of %#04x", h)
		require.Equal(t, h|0x8000, FP16Bits(-math.Nextafter32(mid, 0)))
	}
}
