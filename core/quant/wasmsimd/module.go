// Package wasmsimd builds a small WebAssembly module, with 128-bit SIMD,
// of the bfloat16 quantizer's two inner loops (quant.QuantizeBF16): each
// block's |x| maximum, and each value's code for its block's inverse
// scale. Go compiled to wasm has no SIMD, and these loops are most of a
// browser export's CPU time; the browser's conversion workers run them
// here, the rest (scales, errors, fallbacks) in Go (jsbridge).
//
// The module is built by this package rather than shipped as a binary, so
// it is reviewable as code and needs no assembler. Its functions work on
// its own memory (exported as "mem"), which the caller sizes with
// Memory.grow and fills:
//
//	amax(src, blocks, blockBytes, dst)         u16 at dst+2k: the largest |x| bit pattern of block k
//	codes4(src, blocks, blockBytes, inv, dst)  int4 codes, two per byte, low nibble first
//	codes8(src, blocks, blockBytes, inv, dst)  int8 codes
//
// Blocks are blockBytes bytes of little-endian bfloat16, one after the
// other from src; inv holds one float32 per block. blocks must be at least
// 1 and blockBytes a positive multiple of 64 (codes4) or 32 (codes8, amax);
// the caller checks (Fits).
//
// A code is quant's code(x·inv): the product rounded to float16 precision
// by integer arithmetic on its bits, rounded half to even to an integer
// (f32x4.nearest, exact as the magic-number addition it replaces) and
// clamped, the same operations in the same order, so the bytes equal the
// Go kernels' for every input (tests in jsbridge compare them).
package wasmsimd

// Fits reports whether the kernels take blocks of group values at bits.
func Fits(group, bits int) bool {
	switch bits {
	case 4:
		return group > 0 && group%32 == 0
	case 8:
		return group > 0 && group%16 == 0
	}
	return false
}

// Module returns the module's bytes (the same every time).
func Module() []byte {
	var m []byte
	m = append(m, 0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00)
	i32 := byte(0x7f)
	// Types: 0 amax (4 × i32), 1 codes (5 × i32); no results.
	m = section(m, 1, vec(2,
		append([]byte{0x60, 4, i32, i32, i32, i32}, 0),
		append([]byte{0x60, 5, i32, i32, i32, i32, i32}, 0)))
	m = section(m, 3, vec(3, []byte{0}, []byte{1}, []byte{1}))
	m = section(m, 5, vec(1, []byte{0x00, 1})) // one memory, 1 page to start
	m = section(m, 7, vec(4,
		export("mem", 2, 0), export("amax", 0, 0), export("codes4", 0, 1), export("codes8", 0, 2)))
	m = section(m, 10, vec(3, amaxBody(), codesBody(4), codesBody(8)))
	return m
}

// Opcodes used (core, then after the 0xfd prefix for SIMD).
const (
	opBlock    = 0x02
	opLoop     = 0x03
	opEnd      = 0x0b
	opBrIf     = 0x0d
	opLocalGet = 0x20
	opLocalSet = 0x21
	opLocalTee = 0x22
	opF32Load  = 0x2a
	opI32Sto16 = 0x3b
	opI32Const = 0x41
	opI32Ne    = 0x47
	opI32LtU   = 0x49
	opI32Add   = 0x6a
	opI32Sub   = 0x6b

	simdLoad       = 0x00
	simdStore      = 0x0b
	simdConst      = 0x0c
	simdShuffle    = 0x0d
	simdF32Splat   = 0x13
	simdI16ExtU    = 0x19 // i16x8.extract_lane_u
	simdAnd        = 0x4e
	simdOr         = 0x50
	simdNarrow8S   = 0x65 // i8x16.narrow_i16x8_s
	simdNarrow8U   = 0x66 // i8x16.narrow_i16x8_u
	simdF32Nearest = 0x6a
	simdNarrow16S  = 0x85 // i16x8.narrow_i32x4_s
	simdI16ShrU    = 0x8d
	simdI16MaxU    = 0x99
	simdI32ShrU    = 0xad
	simdI32Add     = 0xae
	simdI8MinS     = 0x76
	simdI8MaxS     = 0x78
	simdF32Mul     = 0xe6
	simdTruncSatS  = 0xf8 // i32x4.trunc_sat_f32x4_s
)

// code is a function body under construction.
type code []byte

func (c *code) op(b ...byte)          { *c = append(*c, b...) }
func (c *code) get(l byte)            { c.op(opLocalGet, l) }
func (c *code) set(l byte)            { c.op(opLocalSet, l) }
func (c *code) tee(l byte)            { c.op(opLocalTee, l) }
func (c *code) i32(v int32)           { c.op(opI32Const); *c = sleb(*c, v) }
func (c *code) simd(op uint32)        { c.op(0xfd); *c = uleb(*c, op) }
func (c *code) mem(align, off uint32) { *c = uleb(uleb(*c, align), off) }

// v128 pushes a constant whose 16 bytes repeat pattern.
func (c *code) v128(pattern ...byte) {
	c.simd(simdConst)
	for i := 0; i < 16; i++ {
		*c = append(*c, pattern[i%len(pattern)])
	}
}

// shuffle pushes i8x16.shuffle with the given lane indices.
func (c *code) shuffle(lanes [16]byte) {
	c.simd(simdShuffle)
	*c = append(*c, lanes[:]...)
}

// addTo adds v to local l (i32).
func (c *code) addTo(l byte, v int32) {
	c.get(l)
	c.i32(v)
	c.op(opI32Add)
	c.set(l)
}

// whileBelow ends an inner loop, repeating it while local p < local end.
func (c *code) whileBelow(p, end byte) {
	c.get(p)
	c.get(end)
	c.op(opI32LtU, opBrIf, 0, opEnd)
}

// nextBlock ends the per-block loop (and its block): it counts the
// blocks (local 1) down and repeats while some are left.
func (c *code) nextBlock() {
	c.get(1)
	c.i32(1)
	c.op(opI32Sub)
	c.tee(1)
	c.i32(0)
	c.op(opI32Ne, opBrIf, 0, opEnd, opEnd)
}

// body wraps instructions with local declarations (groups of count ×
// type) into a function body.
func body(locals [][2]byte, c code) []byte {
	b := uleb(nil, uint32(len(locals)))
	for _, l := range locals {
		b = uleb(b, uint32(l[0]))
		b = append(b, l[1])
	}
	b = append(b, c...)
	b = append(b, opEnd)
	return append(uleb(nil, uint32(len(b))), b...)
}

const (
	tI32  = 0x7f
	tV128 = 0x7b
)

// amaxBody: params src 0, blocks 1, blockBytes 2, dst 3; locals end 4
// (i32), m 5 and mask 6 (v128).
func amaxBody() []byte {
	var c code
	c.v128(0xff, 0x7f) // 0x7fff in each 16-bit lane: |x|
	c.set(6)
	c.op(opBlock, 0x40, opLoop, 0x40) // per block
	c.v128(0)
	c.set(5)
	c.get(0)
	c.get(2)
	c.op(opI32Add)
	c.set(4)
	c.op(opLoop, 0x40) // per 16 bytes
	c.get(5)
	c.get(0)
	c.simd(simdLoad)
	c.mem(4, 0)
	c.get(6)
	c.simd(simdAnd)
	c.simd(simdI16MaxU)
	c.set(5)
	c.addTo(0, 16)
	c.whileBelow(0, 4)
	// The maximum of the 8 lanes: fold halves three times.
	for _, half := range []int{8, 4, 2} {
		var lanes [16]byte
		for i := range lanes {
			lanes[i] = byte((i + half) % 16)
		}
		c.get(5)
		c.get(5)
		c.get(5)
		c.shuffle(lanes)
		c.simd(simdI16MaxU)
		c.set(5)
	}
	c.get(3)
	c.get(5)
	c.simd(simdI16ExtU)
	c.op(0)
	c.op(opI32Sto16)
	c.mem(1, 0)
	c.addTo(3, 2)
	c.nextBlock()
	return body([][2]byte{{1, tI32}, {2, tV128}}, c)
}

// Locals of the codes functions after the params src 0, blocks 1,
// blockBytes 2, inv 3, dst 4.
const (
	lEnd   = 5 // i32
	lInv   = 6 // v128 from here
	lZero  = 7
	lOne   = 8 // 1 in each i32 lane
	lRound = 9 // 0xfff
	lMask  = 10
	lQmin  = 11 // codes4's range in each int8 lane
	lQmax  = 12
	lTmp   = 13
	lNib   = 14 // 0x0f bytes (codes4)
	lLow   = 15 // 0x00ff in 16-bit lanes (codes4)
	lA     = 16 // first 16 codes of 32 (codes4)
)

// codesBody: codes4 (bits 4) or codes8.
func codesBody(bits int) []byte {
	qmin, qmax := int8(-8), int8(7)
	perStep := 64 // source bytes per iteration: 32 values → 16 bytes of int4
	if bits == 8 {
		qmin, qmax, perStep = -128, 127, 32 // 16 values → 16 bytes
	}
	var c code
	le32 := func(v int32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
	for _, k := range []struct {
		l byte
		v []byte
	}{
		{lZero, []byte{0}}, {lOne, le32(1)}, {lRound, le32(0xfff)}, {lMask, le32(^0x1fff)},
		{lQmin, []byte{byte(qmin)}}, {lQmax, []byte{byte(qmax)}}, {lNib, []byte{0x0f}}, {lLow, []byte{0xff, 0}},
	} {
		c.v128(k.v...)
		c.set(k.l)
	}
	c.op(opBlock, 0x40, opLoop, 0x40) // per block
	c.get(3)
	c.op(opF32Load)
	c.mem(2, 0)
	c.simd(simdF32Splat)
	c.set(lInv)
	c.addTo(3, 4)
	c.get(0)
	c.get(2)
	c.op(opI32Add)
	c.set(lEnd)
	c.op(opLoop, 0x40) // per step
	// narrow16 leaves the int16 codes of the 8 values at src+off.
	narrow16 := func(off uint32) {
		for _, hi := range []byte{0, 8} {
			// The bfloat16 bits into the top halves of float32 lanes.
			c.get(lZero)
			c.get(0)
			c.simd(simdLoad)
			c.mem(4, off)
			var lanes [16]byte
			for k := byte(0); k < 4; k++ {
				lanes[4*k], lanes[4*k+1] = 0, 0
				lanes[4*k+2], lanes[4*k+3] = 16+hi+2*k, 17+hi+2*k
			}
			c.shuffle(lanes)
			c.get(lInv)
			c.simd(simdF32Mul)
			c.tee(lTmp)
			// Round to float16 precision: (b + 0xfff + (b>>13)&1) &^ 0x1fff.
			c.i32(13)
			c.simd(simdI32ShrU)
			c.get(lOne)
			c.simd(simdAnd)
			c.get(lTmp)
			c.simd(simdI32Add)
			c.get(lRound)
			c.simd(simdI32Add)
			c.get(lMask)
			c.simd(simdAnd)
			c.simd(simdF32Nearest)
			c.simd(simdTruncSatS)
		}
		c.simd(simdNarrow16S)
	}
	// |x·inv| stays below about 130, so narrowing to int16 is exact; the
	// clamp is applied to int8 lanes (int8's is narrowing's saturation).
	clamp := func() {
		if bits == 4 {
			c.get(lQmin)
			c.simd(simdI8MaxS)
			c.get(lQmax)
			c.simd(simdI8MinS)
		}
	}
	if bits == 8 {
		c.get(4)
		narrow16(0)
		narrow16(16)
		c.simd(simdNarrow8S)
		c.simd(simdStore)
		c.mem(4, 0)
	} else {
		// pack makes the 8 bytes of 16 codes' nibble pairs, in 16-bit lanes.
		pack := func() {
			c.get(lNib)
			c.simd(simdAnd)
			c.tee(lTmp)
			c.get(lTmp)
			c.i32(4)
			c.simd(simdI16ShrU)
			c.simd(simdOr)
			c.get(lLow)
			c.simd(simdAnd)
		}
		narrow16(0)
		narrow16(16)
		c.simd(simdNarrow8S)
		clamp()
		pack()
		c.set(lA)
		c.get(4)
		c.get(lA)
		narrow16(32)
		narrow16(48)
		c.simd(simdNarrow8S)
		clamp()
		pack()
		c.simd(simdNarrow8U)
		c.simd(simdStore)
		c.mem(4, 0)
	}
	c.addTo(0, int32(perStep))
	c.addTo(4, 16)
	c.whileBelow(0, lEnd)
	c.nextBlock()
	return body([][2]byte{{1, tI32}, {lA - lInv + 1, tV128}}, c)
}

func section(m []byte, id byte, content []byte) []byte {
	m = append(m, id)
	m = uleb(m, uint32(len(content)))
	return append(m, content...)
}

func vec(n int, items ...[]byte) []byte {
	b := uleb(nil, uint32(n))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func export(name string, kind byte, index uint32) []byte {
	b := uleb(nil, uint32(len(name)))
	b = append(b, name...)
	b = append(b, kind)
	return uleb(b, index)
}

func uleb(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func sleb(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
