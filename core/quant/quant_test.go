package quant

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQuantizeBasics(t *testing.T) {
	// One int4 row: amax 0.75 -> scale 0.1; the largest value maps to 7.5,
	// rounds to 8 and is clipped to 7; the most negative maps to -8.
	w := []float32{0.75, -0.75, 0.25, -0.05, 0, 0.3}
	codes := make([]int8, 6)
	scales := make([]uint16, 1)
	require.NoError(t, QuantizeRowsF16(w, 1, 6, Scheme{Bits: 4}, codes, scales))
	require.Equal(t, F32ToF16(RoundF16(0.75)/7.5), scales[0])
	require.Equal(t, int8(7), codes[0])
	require.Equal(t, int8(-8), codes[1])
	require.Equal(t, int8(-0), codes[4])
	inv := RoundF16(1 / F16ToF32(scales[0]))
	require.Equal(t, int8(math.RoundToEven(float64(RoundF16(RoundF16(0.25)*inv)))), codes[2])

	// A zero row and a tiny row get the eps floor 2^-10.
	w = []float32{0, 0, 0, 0, 1.0 / 1024, -2.0 / 1024, 1.0 / 2048, 3.0 / 2048}
	codes = make([]int8, 8)
	scales = make([]uint16, 2)
	require.NoError(t, QuantizeRowsF16(w, 2, 4, Scheme{Bits: 8}, codes, scales))
	require.Equal(t, []uint16{F32ToF16(1.0 / 1024), F32ToF16(1.0 / 1024)}, scales)
	require.Equal(t, []int8{0, 0, 0, 0, 1, -2, 0, 2}, codes) // 0.5 and 1.5 tie to even
	// Codes are clamped to int8 range for 8-bit: 127.5 -> 128 -> 127.
	codes = make([]int8, 2)
	scales = make([]uint16, 1)
	require.NoError(t, QuantizeRowsF16([]float32{1, -1}, 1, 2, Scheme{Bits: 8}, codes, scales))
	require.Equal(t, []int8{127, -128}, codes)
}

func TestQuantizeGroups(t *testing.T) {
	w := make([]float32, 2*8)
	for i := range w {
		w[i] = float32(i-7) / 16
	}
	codes := make([]int8, 16)
	scales := make([]uint16, 4)
	require.NoError(t, QuantizeRowsF16(w, 2, 8, Scheme{Bits: 4, Group: 4}, codes, scales))
	// Each group has its own scale: group 0 = {-7..-4}/16 -> amax 7/16.
	require.Equal(t, F32ToF16(float32(7.0/16)/7.5), scales[0])
	require.Equal(t, F32ToF16(float32(3.0/16)/7.5), scales[1])
	hat := make([]float32, 16)
	require.NoError(t, DequantizeRowsF16(codes, scales, 2, 8, Scheme{Bits: 4, Group: 4}, hat))
	for i := range w {
		sc := F16ToF32(scales[i/4])
		require.InDelta(t, w[i], hat[i], float64(sc)*0.5+1e-3, "i=%d", i)
		require.Equal(t, RoundF16(float32(codes[i])*sc), hat[i])
	}
}

func TestQuantizeF32(t *testing.T) {
	w := []float32{0.3, -0.1, 0.2, 1e-9, 0, 0}
	codes := make([]int8, 6)
	scales := make([]float32, 2)
	require.NoError(t, QuantizeRowsF32(w, 2, 3, Scheme{Bits: 4}, codes, scales))
	require.Equal(t, float32(0.3)/7.5, scales[0])
	require.Equal(t, float32(1.0/(1<<23)), scales[1]) // fp32 eps floor
	require.Equal(t, int8(7), codes[0])
	inv := 1 / scales[0]
	require.Equal(t, int8(math.RoundToEven(float64(float32(-0.1)*inv))), codes[1])
	hat := make([]float32, 6)
	require.NoError(t, DequantizeRowsF32(codes, scales, 2, 3, Scheme{Bits: 4}, hat))
	require.Equal(t, float32(codes[2])*scales[0], hat[2])
}

func TestQuantizeErrors(t *testing.T) {
	codes := make([]int8, 8)
	scales := make([]uint16, 8)
	w := make([]float32, 8)
	require.ErrorContains(t, QuantizeRowsF16(w, 2, 4, Scheme{Bits: 3}, codes, scales), "bits")
	require.ErrorContains(t, QuantizeRowsF16(w, 2, 4, Scheme{Bits: 4, Group: 3}, codes, scales), "does not divide")
	require.ErrorContains(t, QuantizeRowsF16(w, 3, 4, Scheme{Bits: 4}, codes, scales), "need 12")
	require.ErrorContains(t, QuantizeRowsF16(w, 2, 4, Scheme{Bits: 4, Group: 1}, codes, scales[:7]), "scales")
	require.ErrorContains(t, QuantizeRowsF16(w, -1, 4, Scheme{Bits: 4}, codes, scales), "rows")
	w[5] = float32(math.NaN())
	require.ErrorContains(t, QuantizeRowsF16(w, 2, 4, Scheme{Bits: 4}, codes, scales), "[1, 1]")
	w[5] = 70000 // overflows float16
	require.ErrorContains(t, QuantizeRowsF16(w, 2, 4, Scheme{Bits: 4}, codes, scales), "finite float16")
	w[5] = float32(math.Inf(-1))
	require.ErrorContains(t, QuantizeRowsF32(w, 2, 4, Scheme{Bits: 4}, codes, make([]float32, 2)), "not finite")
}

func TestParse(t *testing.T) {
	s, err := ParseEmbedding("8,0")
	require.NoError(t, err)
	require.Equal(t, &Scheme{Bits: 8}, s)
	s, err = ParseEmbedding("4,32")
	require.NoError(t, err)
	require.Equal(t, &Scheme{Bits: 4, Group: 32}, s)
	require.Equal(t, "4,32", s.String())
	s, err = ParseEmbedding("none")
	require.NoError(t, err)
	require.Nil(t, s)
	for _, bad := range []string{"", "8", "2,0", "8,-1", "x,0", "8,y"} {
		_, err = ParseEmbedding(bad)
		require.Error(t, err, bad)
	}
	s, err = ParseLinear("c4w")
	require.NoError(t, err)
	require.Equal(t, &Scheme{Bits: 4}, s)
	s, err = ParseLinear("b4w")
	require.NoError(t, err)
	require.Equal(t, &Scheme{Bits: 4, Group: 32}, s)
	s, err = ParseLinear("none")
	require.NoError(t, err)
	require.Nil(t, s)
	_, err = ParseLinear("8da4w")
	require.ErrorContains(t, err, "8da4w")
}

func TestQuantizeAllocatesNothing(t *testing.T) {
	w := make([]float32, 64*64)
	for i := range w {
		w[i] = float32(i%37-18) / 256
	}
	codes := make([]int8, len(w))
	scales := make([]uint16, 64*2)
	allocs := testing.AllocsPerRun(10, func() {
		_ = QuantizeRowsF16(w, 64, 64, Scheme{Bits: 4, Group: 32}, codes, scales)
	})
	require.Zero(t, allocs)
}

func BenchmarkQuantizeRowsF16(b *testing.B) {
	const rows, cols = 256, 2048
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = RoundF16(float32(i%997-498) / 4096)
	}
	codes := make([]int8, len(w))
	scales := make([]uint16, rows*cols/32)
	b.SetBytes(int64(len(w) * 2))
	for b.Loop() {
		if err := QuantizeRowsF16(w, rows, cols, Scheme{Bits: 4, Group: 32}, codes, scales); err != nil {
			b.Fatal(err)
		}
	}
}
