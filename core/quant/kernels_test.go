package quant

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/milblob"
)

// lcg is a tiny deterministic generator for test inputs.
type lcg uint64

func (l *lcg) next() uint64 {
	*l = *l*6364136223846793005 + 1442695040888963407
	return uint64(*l >> 11)
}

// f16Values gives float16-exact values of several kinds: normal weights,
// wide magnitudes, exact zeros and float16 subnormals.
func f16Values(n int, seed lcg) []float32 {
	v := make([]float32, n)
	for i := range v {
		x := seed.next()
		switch x % 7 {
		case 0:
			v[i] = 0
		case 1:
			v[i] = F16ToF32(uint16(x>>8) & 0x83ff) // subnormal or ±0
		case 2:
			h := uint16(x >> 8)
			if h&0x7c00 == 0x7c00 {
				h &^= 0x4000 // no Inf/NaN
			}
			v[i] = F16ToF32(h) // anything finite
		default:
			v[i] = RoundF16(float32(int64(x>>20)-(1<<31)) / (1 << 31) * 0.1)
		}
	}
	return v
}

func TestQuantizeF16ExactMatchesRowsF16(t *testing.T) {
	seed := lcg(1)
	for _, tc := range []struct{ rows, cols, group, bits int }{
		{7, 96, 0, 4}, {7, 96, 32, 4}, {5, 333, 0, 4}, {9, 64, 0, 8}, {4, 64, 32, 8}, {3, 1, 0, 4},
	} {
		for round := 0; round < 20; round++ {
			w := f16Values(tc.rows*tc.cols, lcg(seed.next()))
			switch round {
			case 0: // all zero rows: scale is eps
				clear(w)
			case 1: // one tiny block
				for i := range w {
					w[i] = F16ToF32(uint16(i%3) + 1)
				}
			}
			s := Scheme{Bits: tc.bits, Group: tc.group}
			per, err := s.ScaleCount(tc.cols)
			require.NoError(t, err)
			wantC, gotC := make([]int8, len(w)), make([]int8, len(w))
			wantS, gotS := make([]uint16, tc.rows*per), make([]uint16, tc.rows*per)
			require.NoError(t, QuantizeRowsF16(w, tc.rows, tc.cols, s, wantC, wantS))
			QuantizeF16Exact(w, tc.rows, tc.cols, tc.cols/per, tc.bits, gotC, gotS)
			require.Equal(t, wantS, gotS, "%+v round %d", tc, round)
			require.Equal(t, wantC, gotC, "%+v round %d", tc, round)
		}
	}
}

// bf16Bytes encodes values (already bfloat16-exact or not) as bfloat16.
func bf16Bytes(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], F32ToBF16(x))
	}
	return b
}

// The bfloat16 kernel (direct and table paths, int4 and int8) equals
// QuantizeRowsF16 on the decoded values, and refuses blocks that
// overflow float16.
func TestQuantizeBF16MatchesRowsF16(t *testing.T) {
	seed := lcg(3)
	tc := &CodeTables{}
	refused := 0
	for _, c := range []struct{ rows, cols, group, bits int }{
		{6, 576, 0, 4}, {6, 576, 0, 8}, {3, 2048, 0, 4}, {3, 70, 0, 4}, {3, 70, 0, 8}, {5, 64, 32, 4}, {5, 64, 32, 8}, {4, 1024, 512, 8},
	} {
		for round := 0; round < 30; round++ {
			n := c.rows * c.cols
			w := make([]float32, n)
			for i := range w {
				x := seed.next()
				switch x % 9 {
				case 0:
					w[i] = 0
				case 1:
					w[i] = math.Float32frombits(uint32(x>>8) & 0x387fffff) // below float16's normal range
				case 2:
					w[i] = float32(int64(x>>20)-(1<<31)) / (1 << 31) * float32(1+round*3000) // wide; overflows float16 in late rounds
				default:
					w[i] = float32(int64(x>>20)-(1<<31)) / (1 << 31) * 0.08
				}
			}
			if round == 1 {
				clear(w[:c.cols]) // a zero row
			}
			src := bf16Bytes(w)
			vals := make([]float32, n)
			DecodeBF16LE(vals, src)
			s := Scheme{Bits: c.bits, Group: c.group}
			per, err := s.ScaleCount(c.cols)
			require.NoError(t, err)
			wantC, wantS := make([]int8, n), make([]uint16, c.rows*per)
			wantErr := QuantizeRowsF16(vals, c.rows, c.cols, s, wantC, wantS)
			got, gotS := make([]byte, n), make([]uint16, c.rows*per)
			ok := QuantizeBF16(src, c.rows, c.cols, c.cols/per, c.bits, got, gotS, tc)
			if wantErr != nil {
				require.False(t, ok, "%+v round %d: %v", c, round, wantErr)
				refused++
				continue
			}
			require.True(t, ok, "%+v round %d", c, round)
			require.Equal(t, wantS, gotS, "%+v round %d", c, round)
			want := make([]byte, n)
			if c.bits == 4 {
				want = milblob.PackInt4(wantC)
				got = got[:len(want)]
			} else {
				for i, v := range wantC {
					want[i] = byte(v)
				}
			}
			require.Equal(t, want, got, "%+v round %d", c, round)
		}
	}
	require.NotEmpty(t, tc.m, "the table path ran")
	require.NotZero(t, refused, "some blocks overflowed")
}

// A code table holds code(x·inv) for every bfloat16 that fits float16.
func TestCodeTableExhaustive(t *testing.T) {
	for _, bits := range []int{4, 8} {
		_, _, div := codeRange(bits)
		for _, amax := range []float32{0, 1e-6, 0.0012, 0.07, 0.5, 3.5, 1000, 65280} {
			_, inv := ScaleF16(amax, div)
			qmin, qmax, _ := codeRange(bits)
			tbl := newCodeTable(nil, bits, inv)
			for h := 0; h < 1<<16; h++ {
				if h&0x7fff > bf16Top {
					continue
				}
				want := code(math.Float32frombits(uint32(h)<<16)*inv, qmin, qmax)
				require.Equal(t, int8(want), tbl[h], "bits %d amax %v h %#04x", bits, amax, h)
			}
		}
	}
}

func TestDecodeFloatsMatchesReference(t *testing.T) {
	seed := lcg(7)
	const n = 4096
	specials := []uint32{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x477fe000, 0x477ff000, 0x47800000, 0x38800000, 0x33800000, 0x00000001}
	for _, dt := range []Format{FormatBF16, FormatF16, FormatF32} {
		for _, fp32 := range []bool{false, true} {
			for round := 0; round < 50; round++ {
				raw := make([]byte, n*formatSize(dt))
				for i := 0; i < n; i++ {
					x := seed.next()
					bits := uint32(x)
					if x>>40%5 == 0 {
						bits = specials[int(x>>48)%len(specials)]
					} else if x>>40%5 == 1 {
						bits = math.Float32bits(float32(int64(x>>20)-(1<<31)) / (1 << 31) * 0.1)
					}
					switch dt {
					case FormatF32:
						binary.LittleEndian.PutUint32(raw[4*i:], bits)
					case FormatBF16:
						binary.LittleEndian.PutUint16(raw[2*i:], uint16(bits>>16))
					default:
						binary.LittleEndian.PutUint16(raw[2*i:], F32ToF16(math.Float32frombits(bits)))
					}
				}
				requireDecodeFloats(t, raw, dt, fp32)
			}
		}
	}
}

// referenceDecode is DecodeFloats the plain way: exact float32, then the
// reference loop's checks and float16 rounding.
func referenceDecode(raw []byte, dt Format, fp32 bool) ([]float32, bool) {
	want := make([]float32, len(raw)/formatSize(dt))
	switch dt {
	case FormatF32:
		DecodeF32LE(want, raw)
	case FormatBF16:
		DecodeBF16LE(want, raw)
	default:
		DecodeF16LE(want, raw)
	}
	ok := true
	for i, v := range want {
		if !fp32 {
			v = RoundF16(v)
			want[i] = v
		}
		ok = ok && v-v == 0
	}
	return want, ok
}

// requireDecodeFloats checks DecodeFloats against referenceDecode: the
// same refusal, else the same bits.
func requireDecodeFloats(t *testing.T, raw []byte, dt Format, fp32 bool) {
	t.Helper()
	want, wantOK := referenceDecode(raw, dt, fp32)
	got := make([]float32, len(want))
	require.Equal(t, wantOK, DecodeFloats(got, raw, dt, fp32), "format %d fp32=%t", dt, fp32)
	if wantOK {
		for i := range want {
			require.Equal(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "format %d fp32=%t element %d", dt, fp32, i)
		}
	}
}

// formatSize is the element size of a Format.
func formatSize(f Format) int {
	if f == FormatF32 {
		return 4
	}
	return 2
}

// PutF16 and PutF32 write exactly what DecodeF16LE and DecodeF32LE read
// back (float16 after rounding), and return the written prefix of dst.
func TestPutF16F32(t *testing.T) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -2.5, 65504, 70000, 1e-8, 3.14159, float32(math.Inf(-1))}
	dst := make([]byte, 4*len(vals)+3)
	b := PutF16(dst, vals)
	require.Len(t, b, 2*len(vals))
	require.Equal(t, []byte{0x00, 0x3c}, b[4:6]) // 1.0, little-endian
	got := make([]float32, len(vals))
	DecodeF16LE(got, b)
	for i, v := range vals {
		require.Equal(t, math.Float32bits(RoundF16(v)), math.Float32bits(got[i]), "element %d", i)
	}
	b = PutF32(dst, vals)
	require.Len(t, b, 4*len(vals))
	require.Equal(t, []byte{0x00, 0x00, 0x80, 0x3f}, b[8:12]) // 1.0
	DecodeF32LE(got, b)
	for i, v := range vals {
		require.Equal(t, math.Float32bits(v), math.Float32bits(got[i]), "element %d", i)
	}
}

// CodeTables stays bounded when blocks have more distinct scales than it
// keeps, reuses evicted tables, and still gives QuantizeRowsF16's codes.
func TestCodeTablesEviction(t *testing.T) {
	const rows, cols = 2 * maxTables, minTableBlock
	w := make([]float32, rows*cols)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			// Row r's largest magnitude grows with r: a new scale per row.
			w[r*cols+c] = BF16ToF32(F32ToBF16(float32(c-cols/2) / cols * float32(r+1) * 0.01))
		}
	}
	src := bf16Bytes(w)
	wantC, wantS := make([]int8, len(w)), make([]uint16, rows)
	require.NoError(t, QuantizeRowsF16(w, rows, cols, Scheme{Bits: 8}, wantC, wantS))
	var tc CodeTables
	got, gotS := make([]byte, len(w)), make([]uint16, rows)
	require.True(t, QuantizeBF16(src, rows, cols, cols, 8, got, gotS, &tc))
	require.Equal(t, wantS, gotS)
	distinct := map[uint16]bool{}
	for _, sc := range wantS {
		distinct[sc] = true
	}
	require.Greater(t, len(distinct), maxTables, "the test evicts tables")
	for i, c := range wantC {
		require.Equal(t, byte(c), got[i], "element %d", i)
	}
	require.LessOrEqual(t, len(tc.m), maxTables)
	require.LessOrEqual(t, len(tc.m)+len(tc.free), maxTables, "evicted tables are reused, not piled up")
}

// FuzzQuantizeBF16 checks the bfloat16 kernel against QuantizeRowsF16 on
// arbitrary bytes: same scales and codes, or a refusal exactly when the
// reference fails.
func FuzzQuantizeBF16(f *testing.F) {
	f.Add([]byte{0x00, 0x3c, 0x80, 0xbf, 0x12, 0x34, 0x00, 0x00}, uint8(2), false)
	f.Add([]byte{0x80, 0x7f, 0x00, 0x3f}, uint8(1), true)
	f.Add(bf16Bytes(f16Values(1024, 5)), uint8(2), true)
	f.Add(bf16Bytes(f16Values(2048, 9)), uint8(1), false)
	f.Fuzz(func(t *testing.T, src []byte, rows uint8, int8Codes bool) {
		n := len(src) / 2
		r := int(rows%4) + 1
		cols := n / r &^ 1 // even, so int4 groups pair up
		if cols == 0 {
			return
		}
		src = src[:2*r*cols]
		bits := 4
		if int8Codes {
			bits = 8
		}
		vals := make([]float32, r*cols)
		DecodeBF16LE(vals, src)
		for _, group := range []int{cols, 2} {
			if cols%group != 0 {
				continue
			}
			s := Scheme{Bits: bits, Group: group}
			per := cols / group
			wantC, wantS := make([]int8, r*cols), make([]uint16, r*per)
			wantErr := QuantizeRowsF16(vals, r, cols, s, wantC, wantS)
			var tc CodeTables
			got, gotS := make([]byte, r*cols), make([]uint16, r*per)
			ok := QuantizeBF16(src, r, cols, group, bits, got, gotS, &tc)
			require.Equal(t, wantErr == nil, ok, "group %d: %v", group, wantErr)
			if !ok {
				continue
			}
			require.Equal(t, wantS, gotS)
			want := make([]byte, r*cols)
			if bits == 4 {
				want = milblob.PackInt4(wantC)
				got = got[:len(want)]
			} else {
				for i, c := range wantC {
					want[i] = byte(c)
				}
			}
			require.Equal(t, want, got, "group %d", group)
		}
	})
}

// FuzzDecodeFloats checks DecodeFloats against the exact decoders plus
// the reference loop's checks and float16 rounding.
func FuzzDecodeFloats(f *testing.F) {
	f.Add([]byte{0x00, 0x3c, 0x00, 0x7c, 0x01, 0x00, 0xff, 0x7b}, uint8(0))
	f.Add([]byte{0x00, 0x00, 0x80, 0x7f, 0xff, 0xe0, 0x7f, 0x47}, uint8(1))
	f.Add([]byte{0x00, 0xf0, 0x7f, 0x47, 0x01, 0x00, 0x00, 0x00}, uint8(2))
	f.Fuzz(func(t *testing.T, raw []byte, kind uint8) {
		dt := Format(kind % 3)
		n := len(raw) / formatSize(dt)
		for _, fp32 := range []bool{false, true} {
			requireDecodeFloats(t, raw[:n*formatSize(dt)], dt, fp32)
		}
	})
}

// TestEncodeF16MatchesDecodePut: EncodeF16 gives the bytes (and refusals)
// of DecodeFloats + PutF16 for every float16 and bfloat16 bit pattern and
// for float32 values around every float16 rounding boundary, overflow and
// the non-finite ones.
func TestEncodeF16MatchesDecodePut(t *testing.T) {
	check := func(t *testing.T, src []byte, f Format) {
		t.Helper()
		n := len(src) / formatSize(f)
		vals := make([]float32, n)
		wantOK := DecodeFloats(vals, src, f, false)
		got := make([]byte, 2*n)
		require.Equal(t, wantOK, EncodeF16(got, src, f))
		if wantOK {
			require.Equal(t, PutF16(make([]byte, 2*n), vals), got)
		}
	}
	for _, f := range []Format{FormatF16, FormatBF16} {
		for h := 0; h < 1<<16; h++ {
			check(t, []byte{byte(h), byte(h >> 8)}, f)
		}
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var src []byte
	for h := 0; h < 1<<16; h++ {
		v := F16ToF32(uint16(h))
		for _, x := range []float32{v, math.Nextafter32(v, 0), math.Nextafter32(v, float32(math.Inf(1))), v * (1 + float32(rng.Float64())*1e-3)} {
			src = binary.LittleEndian.AppendUint32(src, math.Float32bits(x))
			check(t, src[len(src)-4:], FormatF32)
		}
	}
	check(t, src, FormatF32)
	for _, x := range []float32{65504, 65519.99, 65520, 1e9, float32(math.Inf(-1)), float32(math.NaN())} {
		check(t, binary.LittleEndian.AppendUint32(nil, math.Float32bits(x)), FormatF32)
	}
	// Runs mixing normal values with zeros, subnormals, tiny values and one
	// overflow, at every position of the four-at-a-time loop and its tail.
	odd := []float32{0, float32(math.Copysign(0, -1)), 1e-6, 6.1e-5, 3e-8, -65504, 65519}
	for trial := 0; trial < 2000; trial++ {
		n := 1 + rng.IntN(13)
		var run []byte
		for k := 0; k < n; k++ {
			x := float32(rng.NormFloat64() * 0.05)
			if rng.IntN(4) == 0 {
				x = odd[rng.IntN(len(odd))]
			}
			if trial%50 == 0 && k == n-1 {
				x = 70000 // overflows: refused
			}
			run = binary.LittleEndian.AppendUint32(run, math.Float32bits(x))
		}
		check(t, run, FormatF32)
	}
}

// BenchmarkEncodeF16 converts 1M float32 LoRA-like values to float16.
func BenchmarkEncodeF16(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, 4<<20)
	for i := 0; i < len(src); i += 4 {
		binary.LittleEndian.PutUint32(src[i:], math.Float32bits(float32(rng.NormFloat64()*0.02)))
	}
	dst := make([]byte, len(src)/2)
	b.SetBytes(int64(len(src)))
	for i := 0; i < b.N; i++ {
		if !EncodeF16(dst, src, FormatF32) {
			b.Fatal("refused")
		}
	}
}
