package quant

// Fast kernels for the export's conversion hot path. They reproduce
// QuantizeRowsF16 (and the export's float16 cast) exactly, specialised:
//   - inputs are rounded to float16 once while decoding (DecodeFloats), so
//     the quantizer never re-rounds them (QuantizeF16Exact);
//   - bfloat16 sources, the common case, are quantized straight from their
//     bytes (QuantizeBF16): a block's |x| maximum with SWAR integer maxima,
//     then each code is one lookup in a 64 KB table of the codes of every
//     bfloat16 value for that block's scale. Scales repeat from block to
//     block, so tables are cached (CodeTables, one per worker).
// Slices must be as large as documented; a short one panics, as with copy
// into a too-small array: callers size them from validated shapes.

import (
	"encoding/binary"
	"math"
	"sort"
)

// Format is the element type of source bytes: little-endian float32,
// IEEE float16 or bfloat16. (package safetensors imports quant, so its
// DType cannot be used here.)
type Format uint8

const (
	FormatF32 Format = iota
	FormatF16
	FormatBF16
)

// DecodeFloats converts the little-endian values in src (len(dst) of them,
// of format f) to float32; unless fp32, they are rounded to float16 as the
// export's cast does. It returns false if a value is not finite (or,
// unless fp32, overflows float16); dst is then partly written.
func DecodeFloats(dst []float32, src []byte, f Format, fp32 bool) bool {
	switch f {
	case FormatBF16:
		return decode16(dst, src, true, fp32)
	case FormatF16:
		return decode16(dst, src, false, fp32)
	}
	_ = src[:4*len(dst)]
	if fp32 {
		for i := range dst {
			v := math.Float32frombits(uint32(src[4*i]) | uint32(src[4*i+1])<<8 | uint32(src[4*i+2])<<16 | uint32(src[4*i+3])<<24)
			if v-v != 0 {
				return false
			}
			dst[i] = v
		}
		return true
	}
	for i := range dst {
		v := math.Float32frombits(uint32(src[4*i]) | uint32(src[4*i+1])<<8 | uint32(src[4*i+2])<<16 | uint32(src[4*i+3])<<24)
		r, ok := roundF16Finite(v)
		if !ok {
			return false
		}
		dst[i] = r
	}
	return true
}

// roundF16Finite is RoundF16 with the normal range inlined; ok is false if
// the result is not finite.
func roundF16Finite(v float32) (float32, bool) {
	if r, ok := roundNormalF16(math.Float32bits(v)); ok {
		return math.Float32frombits(r), true
	}
	x := RoundF16(v) // zero, subnormal, overflow, NaN
	return x, x-x == 0
}

// decode16 converts 2-byte source values; bf16 selects bfloat16 (else
// IEEE float16). Float16 sources are exact float16 values already; a
// bfloat16 value is one unless it is subnormal in float16.
func decode16(dst []float32, src []byte, bf16, fp32 bool) bool {
	_ = src[:2*len(dst)]
	switch {
	case bf16 && fp32:
		for i := range dst {
			v := math.Float32frombits(uint32(src[2*i])<<16 | uint32(src[2*i+1])<<24)
			if v-v != 0 {
				return false
			}
			dst[i] = v
		}
	case bf16:
		// bfloat16's 7 mantissa bits fit float16's 10, so a value in
		// float16's normal range (biased float32 exponent 113..142) is
		// already a float16; others take roundF16Finite's slow path.
		for i := range dst {
			b := uint32(src[2*i])<<16 | uint32(src[2*i+1])<<24
			if (b>>23)&0xff-113 <= 142-113 {
				dst[i] = math.Float32frombits(b)
				continue
			}
			r, ok := roundF16Finite(math.Float32frombits(b))
			if !ok {
				return false
			}
			dst[i] = r
		}
	default:
		for i := range dst {
			h := uint16(src[2*i]) | uint16(src[2*i+1])<<8
			if h&0x7c00 == 0x7c00 {
				return false // Inf or NaN
			}
			dst[i] = F16ToF32(h)
		}
	}
	return true
}

// EncodeF16 converts the little-endian values in src (of format f) to
// little-endian float16 in dst[:2*n], as DecodeFloats followed by PutF16
// would, in one pass; it returns false where DecodeFloats would (a value
// that is not finite or overflows float16), with dst partly written.
func EncodeF16(dst, src []byte, f Format) bool {
	switch f {
	case FormatF16:
		_ = dst[:len(src)]
		for i := 0; i+1 < len(src); i += 2 {
			if src[i+1]&0x7c == 0x7c {
				return false // Inf or NaN
			}
		}
		copy(dst, src)
		return true
	case FormatBF16:
		n := len(src) / 2
		_ = dst[:2*n]
		for i := 0; i < n; i++ {
			h, ok := f32BitsToF16(uint32(src[2*i])<<16 | uint32(src[2*i+1])<<24)
			if !ok {
				return false
			}
			dst[2*i], dst[2*i+1] = byte(h), byte(h>>8)
		}
		return true
	}
	n := len(src) / 4
	_ = dst[:2*n]
	i := 0
	// Four at a time while all four are in float16's normal range (the
	// common case, LoRA matrices): one range check and one store for four,
	// which in wasm halves the time. Others take f32BitsToF16 one by one.
	for ; i+4 <= n; i += 4 {
		s := src[4*i : 4*i+16]
		b0, b1 := binary.LittleEndian.Uint32(s), binary.LittleEndian.Uint32(s[4:])
		b2, b3 := binary.LittleEndian.Uint32(s[8:]), binary.LittleEndian.Uint32(s[12:])
		r0, r1 := (b0+0xfff+(b0>>13)&1)&^0x1fff, (b1+0xfff+(b1>>13)&1)&^0x1fff
		r2, r3 := (b2+0xfff+(b2>>13)&1)&^0x1fff, (b3+0xfff+(b3>>13)&1)&^0x1fff
		if max((b0>>23)&0xff-113, (b1>>23)&0xff-113, (b2>>23)&0xff-113, (b3>>23)&0xff-113) > 142-113 ||
			max((r0>>23)&0xff, (r1>>23)&0xff, (r2>>23)&0xff, (r3>>23)&0xff) > 142 {
			if !encodeF32ToF16(dst[2*i:2*i+8], s) {
				return false
			}
			continue
		}
		binary.LittleEndian.PutUint64(dst[2*i:], uint64(normalF16(r0))|uint64(normalF16(r1))<<16|
			uint64(normalF16(r2))<<32|uint64(normalF16(r3))<<48)
	}
	return encodeF32ToF16(dst[2*i:2*n], src[4*i:4*n])
}

// encodeF32ToF16 is EncodeF16's float32 case one value at a time.
func encodeF32ToF16(dst, src []byte) bool {
	for i := 0; 4*i+4 <= len(src); i++ {
		h, ok := f32BitsToF16(binary.LittleEndian.Uint32(src[4*i:]))
		if !ok {
			return false
		}
		binary.LittleEndian.PutUint16(dst[2*i:], h)
	}
	return true
}

// normalF16 is the float16 bits of r, float32 bits already rounded to
// float16 precision in float16's normal range (roundNormalF16).
func normalF16(r uint32) uint16 {
	return uint16((r>>16)&0x8000 | ((r>>23)&0xff-112)<<10 | (r>>13)&0x3ff)
}

// roundNormalF16 rounds float32 bits to float16 precision (nearest even)
// with integer arithmetic; ok is false unless the value and the result lie
// in float16's normal range (biased float32 exponent 113..142), where that
// is exact.
func roundNormalF16(b uint32) (r uint32, ok bool) {
	r = (b + 0xfff + (b>>13)&1) &^ 0x1fff
	return r, (b>>23)&0xff-113 <= 142-113 && (r>>23)&0xff <= 142
}

// f32BitsToF16 rounds float32 bits to float16 (nearest even); ok is false
// if the result is not finite. Float16's normal range is done with integer
// arithmetic, as in roundF16Finite; the rest takes F32ToF16.
func f32BitsToF16(b uint32) (uint16, bool) {
	if r, ok := roundNormalF16(b); ok {
		return normalF16(r), true
	}
	h := F32ToF16(math.Float32frombits(b))
	return h, h&0x7c00 != 0x7c00
}

// PutF16 writes vals as little-endian float16 (rounded to nearest even)
// into dst[:2*len(vals)] and returns that slice.
func PutF16(dst []byte, vals []float32) []byte {
	dst = dst[:2*len(vals)]
	for i, v := range vals {
		h := F32ToF16(v)
		dst[2*i], dst[2*i+1] = byte(h), byte(h>>8)
	}
	return dst
}

// PutF32 writes vals as little-endian float32 into dst[:4*len(vals)] and
// returns that slice.
func PutF32(dst []byte, vals []float32) []byte {
	dst = dst[:4*len(vals)]
	for i, v := range vals {
		u := math.Float32bits(v)
		dst[4*i], dst[4*i+1], dst[4*i+2], dst[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return dst
}

// QuantizeF16Exact is QuantizeRowsF16 for values that are already float16
// (and finite, as DecodeFloats leaves them): the same scale, inverse and
// code arithmetic in float32 with float16 rounding, without re-rounding
// the inputs. group divides cols and bits is 4 or 8; codes holds rows*cols
// codes, scales rows*(cols/group).
//
// Two shortcuts are exact here: |x| as a bit mask (the maximum of
// non-negative floats is the maximum of their bit patterns), and rounding
// x*inv to float16 by bit arithmetic without the range check, because
// |x*inv| ≤ about 128 can neither overflow nor, below float16's normal
// range, round to anything but code 0.
func QuantizeF16Exact(w []float32, rows, cols, group, bits int, codes []int8, scales []uint16) {
	qmin, qmax, div := codeRange(bits)
	per := cols / group
	for r := 0; r < rows; r++ {
		for b := 0; b < per; b++ {
			off := r*cols + b*group
			blk := w[off : off+group]
			var amax uint32
			for _, x := range blk {
				amax = max(amax, math.Float32bits(x)&0x7fffffff)
			}
			var inv float32
			scales[r*per+b], inv = ScaleF16(math.Float32frombits(amax), div)
			out := codes[off : off+group]
			for c, x := range blk {
				out[c] = int8(code(x*inv, qmin, qmax))
			}
		}
	}
}

// codeRange gives the code range and torchao's divisor for amax.
func codeRange(bits int) (qmin, qmax int32, div float32) {
	if bits == 8 {
		return -128, 127, 127.5
	}
	return -8, 7, 7.5
}

// code is clamp(round_half_even(float16(p))) for |p| ≲ 128 (see
// QuantizeF16Exact).
func code(p float32, qmin, qmax int32) int32 {
	pb := math.Float32bits(p)
	r := math.Float32frombits((pb + 0xfff + (pb>>13)&1) &^ 0x1fff)
	return min(max(int32(float32(float32(r+magic)-magic)), qmin), qmax)
}

// QuantizeBF16 is QuantizeF16Exact reading bfloat16 source bytes directly
// (src holds rows*cols values) and writing packed codes to out: int8 codes,
// or int4 pairs low nibble first (group must then be even), without a
// float32 buffer. scales receives rows*(cols/group) float16 bits; t caches
// code tables between calls.
//
// A bfloat16 value in float16's normal range is exactly a float16. One
// below it (|x| < 2^-14) would round to a float16 subnormal, but that
// changes nothing: its code is 0 either way (|x·inv| < 2^-14·1024 since
// the scale is at least 2^-10), and if it is the block's largest magnitude
// the scale is the 2^-10 floor either way. A block that overflows float16
// (or holds Inf/NaN) returns false, with out and scales partly written:
// the caller's general path reports it.
func QuantizeBF16(src []byte, rows, cols, group, bits int, out []byte, scales []uint16, t *CodeTables) bool {
	_, _, div := codeRange(bits)
	g := group
	blocks := rows * (cols / g)
	_ = src[:2*blocks*g]
	for k := 0; k < blocks; k++ {
		s := src[2*k*g : 2*(k+1)*g]
		sb, inv, ok := bf16BlockScale(s, div)
		if !ok {
			return false
		}
		scales[k] = sb
		switch {
		case g < minTableBlock && bits == 4:
			codes4Direct(out[k*g/2:(k+1)*g/2], s, inv)
		case g < minTableBlock:
			codes8Direct(out[k*g:(k+1)*g], s, inv)
		case bits == 4:
			t.get(bits, sb, inv).codes4(out[k*g/2:(k+1)*g/2], s)
		default:
			t.get(bits, sb, inv).codes8(out[k*g:(k+1)*g], s)
		}
	}
	return true
}

// codeTable is the code of every bfloat16 bit pattern for one block scale,
// so converting a value is one lookup instead of ~15 float operations.
// Blocks share scales (a scale is one of the few float16 values near
// amax/div), so each table is built once per worker and scale. Codes are
// monotone in x, so a table is filled run by run: one search per distinct
// code.
type codeTable [1 << 16]int8

// minTableBlock is the smallest block worth a table: small groups (b4w)
// have too many distinct scales to reuse tables.
const minTableBlock = 512

// bf16Top is the largest bfloat16 magnitude that fits float16 (65280);
// blocks holding larger ones never reach a table.
const bf16Top = 0x477f

// newCodeTable fills t (a new table if nil) for bits and inv.
func newCodeTable(t *codeTable, bits int, inv float32) *codeTable {
	qmin, qmax, _ := codeRange(bits)
	if t == nil {
		t = new(codeTable)
	}
	for _, sign := range []uint32{0, 0x8000} {
		f := func(a int) int32 {
			return code(math.Float32frombits(uint32(a)<<16|sign<<16)*inv, qmin, qmax)
		}
		half := t[sign : sign+0x8000]
		for a := 0; a <= bf16Top; {
			v := f(a)
			// The run of v ends at the first b > a with f(b) != v: gallop
			// to bracket it, then bisect.
			lo, step := a, 1 // f(lo) == v
			for lo+step <= bf16Top && f(lo+step) == v {
				lo += step
				step *= 2
			}
			hi := min(lo+step, bf16Top+1) // f(hi) != v, or past the end
			end := lo + 1 + sort.Search(hi-lo-1, func(i int) bool { return f(lo+1+i) != v })
			fill(half[a:end], int8(v))
			a = end
		}
		fill(half[bf16Top+1:], half[bf16Top])
	}
	return t
}

// fill sets every element of b to v by doubling copies.
func fill(b []int8, v int8) {
	if len(b) == 0 {
		return
	}
	b[0] = v
	for n := 1; n < len(b); n *= 2 {
		copy(b[n:], b[:n])
	}
}

// codes4 writes packed int4 codes of the bfloat16 pairs in s (len(s) is
// 4*len(o)).
func (t *codeTable) codes4(o, s []byte) {
	s = s[:4*len(o)]
	for i := range o {
		u := binary.LittleEndian.Uint32(s[4*i:])
		o[i] = byte(t[u&0xffff])&0xf | byte(t[u>>16])<<4
	}
}

// codes8 writes int8 codes of the bfloat16 values in s.
func (t *codeTable) codes8(o, s []byte) {
	s = s[:2*len(o)]
	for i := range o {
		o[i] = byte(t[binary.LittleEndian.Uint16(s[2*i:])])
	}
}

// CodeTables is one worker's cache of QuantizeBF16's code tables, by bits
// and scale, bounded (maxTables of 64 KB each). The zero value is ready;
// it is not safe for concurrent use.
type CodeTables struct {
	m    map[uint32]*codeTable
	free []*codeTable // evicted tables, reused
}

// maxTables bounds a worker's tables (64 KB each).
const maxTables = 128

func (c *CodeTables) get(bits int, scale uint16, inv float32) *codeTable {
	key := uint32(bits)<<16 | uint32(scale)
	if t := c.m[key]; t != nil {
		return t
	}
	if c.m == nil || len(c.m) >= maxTables {
		for _, t := range c.m {
			c.free = append(c.free, t)
		}
		c.m = map[uint32]*codeTable{}
	}
	var t *codeTable
	if n := len(c.free); n > 0 {
		t, c.free = c.free[n-1], c.free[:n-1]
	}
	t = newCodeTable(t, bits, inv)
	c.m[key] = t
	return t
}

// codes4Direct writes packed int4 codes of the bfloat16 pairs in s
// (len(s) is 4*len(o)) scaled by inv, without a table. A small function
// keeps the loop's values in registers.
func codes4Direct(o, s []byte, inv float32) {
	s = s[:4*len(o)]
	for i := range o {
		u := binary.LittleEndian.Uint32(s[4*i:])
		c0 := code(math.Float32frombits(u<<16)*inv, -8, 7)
		c1 := code(math.Float32frombits(u&^0xffff)*inv, -8, 7)
		o[i] = byte(c0)&0xf | byte(c1)<<4
	}
}

// codes8Direct writes int8 codes of the bfloat16 values in s scaled by
// inv, without a table.
func codes8Direct(o, s []byte, inv float32) {
	s = s[:2*len(o)]
	for i := range o {
		x := math.Float32frombits(uint32(binary.LittleEndian.Uint16(s[2*i:])) << 16)
		o[i] = byte(code(x*inv, -128, 127))
	}
}

// bf16BlockScale is the scale bits and inverse of a block of bfloat16
// bytes; ok is false if the block overflows float16. Bit patterns of |x|
// order like the values; above bf16Top (65280) a bfloat16 overflows
// float16 or is not finite.
func bf16BlockScale(s []byte, div float32) (scale uint16, inv float32, ok bool) {
	var m0, m1, m2, m3 uint64 // four lanes of 16 bits each; independent chains
	for len(s) >= 32 {
		m0 = maxLanes(m0, binary.LittleEndian.Uint64(s)&0x7fff7fff7fff7fff)
		m1 = maxLanes(m1, binary.LittleEndian.Uint64(s[8:])&0x7fff7fff7fff7fff)
		m2 = maxLanes(m2, binary.LittleEndian.Uint64(s[16:])&0x7fff7fff7fff7fff)
		m3 = maxLanes(m3, binary.LittleEndian.Uint64(s[24:])&0x7fff7fff7fff7fff)
		s = s[32:]
	}
	m0, m1 = maxLanes(m0, m2), maxLanes(m1, m3)
	var amax uint64
	for _, m := range [2]uint64{m0, m1} {
		amax = max(amax, m&0xffff, m>>16&0xffff, m>>32&0xffff, m>>48)
	}
	for len(s) >= 2 {
		amax = max(amax, uint64(binary.LittleEndian.Uint16(s)&0x7fff))
		s = s[2:]
	}
	return blockScale(uint16(amax), div)
}

// BF16BlockScale is the scale bits and inverse of a block of bfloat16
// values at bits (4 or 8) whose largest |x| has bit pattern amax
// (sign cleared), as QuantizeBF16 computes them; ok is false if the block
// overflows float16 (or holds Inf/NaN). For kernels that find amax
// elsewhere (package wasmsimd).
func BF16BlockScale(amax uint16, bits int) (scale uint16, inv float32, ok bool) {
	_, _, div := codeRange(bits)
	return blockScale(amax, div)
}

func blockScale(amax uint16, div float32) (scale uint16, inv float32, ok bool) {
	if amax > bf16Top {
		return 0, 0, false
	}
	scale, inv = ScaleF16(math.Float32frombits(uint32(amax)<<16), div)
	return scale, inv, true
}

// maxLanes is the lane-wise maximum of four 15-bit values in 16-bit lanes
// (SWAR: the top bit of each lane of a|0x8000.. - b is set where a >= b).
func maxLanes(a, b uint64) uint64 {
	const h = 0x8000800080008000
	ge := ((a | h) - b) & h // lane top bit: a >= b
	mask := ge - ge>>15     // 0x7fff in lanes where a >= b (values are 15-bit)
	return a&mask | b&^mask
}
