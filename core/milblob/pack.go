package milblob

// Sub-byte packing (coreml.md §3.4): elements form an LSB-first bit stream, so
// for 4-bit types element 2j is the low nibble of byte j and element 2j+1 the
// high nibble. An odd count leaves the last high nibble zero.

// PackInt4 packs int4 values (-8..7, two's complement nibbles). Only the low
// four bits of each value are used; callers clamp beforehand.
func PackInt4(v []int8) []byte {
	out := make([]byte, (len(v)+1)/2)
	PackInt4Into(out, v)
	return out
}

// PackInt4Into is PackInt4 into dst (at least (len(v)+1)/2 bytes), without
// allocating: the exporter packs every weight chunk through it.
func PackInt4Into(dst []byte, v []int8) {
	n := len(v) / 2
	_ = dst[:(len(v)+1)/2]
	for i := 0; i < n; i++ {
		dst[i] = byte(v[2*i])&0xF | byte(v[2*i+1])<<4
	}
	if len(v)%2 == 1 {
		dst[n] = byte(v[2*n]) & 0xF
	}
}

// PackUInt4 packs uint4 values (0..15); only the low four bits are used.
func PackUInt4(v []uint8) []byte {
	out := make([]byte, (len(v)+1)/2)
	for i, x := range v {
		out[i/2] |= (x & 0xF) << (4 * (i % 2))
	}
	return out
}

// UnpackInt4 returns the first n int4 elements of packed data (sign-extended).
// It reads at most len(b)*2 elements.
func UnpackInt4(b []byte, n int) []int8 {
	n = min(max(n, 0), 2*len(b))
	out := make([]int8, n)
	for i := range out {
		nib := (b[i/2] >> (4 * (i % 2))) & 0xF
		out[i] = int8(nib<<4) >> 4
	}
	return out
}

// UnpackUInt4 returns the first n uint4 elements of packed data.
// It reads at most len(b)*2 elements.
func UnpackUInt4(b []byte, n int) []uint8 {
	n = min(max(n, 0), 2*len(b))
	out := make([]uint8, n)
	for i := range out {
		out[i] = (b[i/2] >> (4 * (i % 2))) & 0xF
	}
	return out
}
