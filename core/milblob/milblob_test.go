package milblob

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/coremlspec/milpb"
)

func TestDTypeTable(t *testing.T) {
	require.Equal(t, 4, INT4.Bits())
	require.Equal(t, 16, FP16.Bits())
	require.Equal(t, 0, DType(0).Bits())
	require.Equal(t, 0, DType(99).Bits())
	require.Equal(t, milpb.DataType_INT4, INT4.MIL())
	for d := FP16; d <= maxDType; d++ {
		back, ok := DTypeFor(d.MIL())
		require.True(t, ok, d.String())
		require.Equal(t, d, back)
	}
	_, ok := DTypeFor(milpb.DataType_BOOL)
	require.False(t, ok)
	_, ok = DTypeFor(milpb.DataType_INT64)
	require.False(t, ok)
}

func TestPackInt4(t *testing.T) {
	b := PackInt4([]int8{-4, -3, -2, -1, 0, 1, 2, 3})
	require.Equal(t, []byte{0xDC, 0xFE, 0x10, 0x32}, b)
	require.Equal(t, []int8{-4, -3, -2, -1, 0, 1, 2, 3}, UnpackInt4(b, 8))
	odd := PackInt4([]int8{-8, 7, -1})
	require.Equal(t, []byte{0x78, 0x0F}, odd)
	require.Equal(t, []int8{-8, 7, -1}, UnpackInt4(odd, 3))
	require.Len(t, UnpackInt4(odd, 100), 4) // never reads past the data

	u := PackUInt4([]uint8{1, 2, 15})
	require.Equal(t, []byte{0x21, 0x0F}, u)
	require.Equal(t, []uint8{1, 2, 15}, UnpackUInt4(u, 3))
}

func TestHeaderAndRecordBytes(t *testing.T) {
	h := Header(3)
	want := make([]byte, 64)
	copy(want, []byte{3, 0, 0, 0, 2, 0, 0, 0})
	require.Equal(t, want, h)

	r := Record(Entry{DType: INT4, Bytes: 8, Data: 128, PaddingBits: 4})
	want = make([]byte, 64)
	copy(want, []byte{
		0xEF, 0xBE, 0xAD, 0xDE, 8, 0, 0, 0, // sentinel, dtype int4
		8, 0, 0, 0, 0, 0, 0, 0, // sizeInBytes
		128, 0, 0, 0, 0, 0, 0, 0, // data offset
		4, 0, 0, 0, 0, 0, 0, 0, // padding bits
	})
	require.Equal(t, want, r)
}

// writeAll writes every Add entry of p with data from src (by key) in chunks of chunk bytes.
func writeAll(t *testing.T, p *Plan, src map[string][]byte, chunk int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, p)
	for _, e := range p.Entries() {
		d, ok := src[e.Key]
		if !ok {
			continue // AddBytes entry
		}
		for len(d) > 0 {
			n := min(chunk, len(d))
			require.NoError(t, w.Write(e.Key, d[:n]))
			d = d[n:]
		}
	}
	require.NoError(t, w.Close())
	require.Equal(t, p.Size(), int64(buf.Len()))
	return buf.Bytes()
}

func TestRoundTripLayout(t *testing.T) {
	p := NewPlan()
	emb := bytes.Repeat([]byte{1, 2, 3}, 100) // int8 [300]
	w4 := PackInt4([]int8{-4, -3, -2, -1, 0, 1, 2, 3, 5})
	scale := []byte{0x00, 0x3C, 0x00, 0x40} // fp16 [1, 2]

	oEmb := p.Add("emb", INT8, 300)
	oW := p.Add("w", INT4, 9)
	oS := p.AddBytes(FP16, 2, scale)
	oEmb2 := p.Add("emb", INT8, 300)
	oS2 := p.AddBytes(FP16, 2, append([]byte(nil), scale...))
	oOther := p.AddBytes(FP16, 2, []byte{0, 0x3C, 0, 0x3C})
	require.NoError(t, p.Err())

	require.Equal(t, uint64(64), oEmb)
	require.Equal(t, oEmb, oEmb2)
	require.Equal(t, oS, oS2)
	require.NotEqual(t, oS, oOther)
	// emb data 128..428 -> next record at 448; w data 512..517 -> 576; scale data 640..644 -> 704
	require.Equal(t, uint64(448), oW)
	require.Equal(t, uint64(576), oS)
	require.Equal(t, uint64(704), oOther)
	require.Equal(t, int64(704+64+4), p.Size())

	es := p.Entries()
	require.Len(t, es, 4)
	require.Equal(t, int64(5), es[1].Bytes)
	require.Equal(t, uint64(4), es[1].PaddingBits)
	require.Equal(t, uint64(0), es[0].PaddingBits)

	file := writeAll(t, p, map[string][]byte{"emb": emb, "w": w4}, 7)
	require.Equal(t, uint32(4), binary.LittleEndian.Uint32(file[0:]))
	require.Equal(t, uint32(2), binary.LittleEndian.Uint32(file[4:]))
	require.Equal(t, make([]byte, 56), file[8:64])
	require.Equal(t, make([]byte, 20), file[428:448], "gap must be zero")
	require.Equal(t, Record(es[1]), file[448:512])

	r, err := NewReader(bytes.NewReader(file), int64(len(file)))
	require.NoError(t, err)
	require.Equal(t, 4, r.Count())
	walked, err := r.Walk()
	require.NoError(t, err)
	require.Len(t, walked, 4)
	for i, e := range walked {
		want := es[i]
		want.Key = ""
		require.Equal(t, want, e)
	}
	got, err := r.Blob(oW)
	require.NoError(t, err)
	require.Equal(t, int64(9), got.N)
	data, err := r.Read(got)
	require.NoError(t, err)
	require.Equal(t, w4, data)
	data, err = r.Read(walked[0])
	require.NoError(t, err)
	require.Equal(t, emb, data)
	data, err = r.Read(walked[2])
	require.NoError(t, err)
	require.Equal(t, scale, data)
	sec, err := r.Section(walked[3])
	require.NoError(t, err)
	require.Equal(t, int64(4), sec.Size())

	// same plan, different chunking -> identical bytes
	require.Equal(t, file, writeAll(t, p, map[string][]byte{"emb": emb, "w": w4}, 1000))
}

func TestEmptyPlan(t *testing.T) {
	var p Plan
	require.Equal(t, int64(64), p.Size())
	var buf bytes.Buffer
	require.NoError(t, NewWriter(&buf, &p).Close())
	require.Equal(t, Header(0), buf.Bytes())
	r, err := NewReader(bytes.NewReader(buf.Bytes()), 64)
	require.NoError(t, err)
	es, err := r.Walk()
	require.NoError(t, err)
	require.Empty(t, es)
}

func TestPlanErrors(t *testing.T) {
	p := NewPlan()
	p.Add("a", FP16, 4)
	p.Add("a", FP16, 5)
	require.ErrorContains(t, p.Err(), `"a"`)

	p = NewPlan()
	p.Add("x", DType(42), 4)
	require.ErrorContains(t, p.Err(), "unknown dtype")

	p = NewPlan()
	p.Add("x", FP16, 0)
	require.ErrorContains(t, p.Err(), "element count")

	p = NewPlan()
	p.AddBytes(FP16, 3, []byte{1, 2})
	require.ErrorContains(t, p.Err(), "needs 6 bytes")
	require.Empty(t, p.Entries())

	var buf bytes.Buffer
	require.Error(t, NewWriter(&buf, p).Close(), "writer of a failed plan fails")
}

func TestWriterProtocolErrors(t *testing.T) {
	p := NewPlan()
	p.Add("a", UINT8, 4)
	p.Add("b", UINT8, 2)

	w := NewWriter(&bytes.Buffer{}, p)
	require.ErrorContains(t, w.Write("b", []byte{1, 2}), "out of plan order")
	require.Error(t, w.Write("a", []byte{1, 2, 3, 4}), "errors are sticky")

	w = NewWriter(&bytes.Buffer{}, p)
	require.ErrorContains(t, w.Write("a", []byte{1, 2, 3, 4, 5}), "planned size is 4")

	w = NewWriter(&bytes.Buffer{}, p)
	require.NoError(t, w.Write("a", []byte{1, 2}))
	require.ErrorContains(t, w.Close(), `"a" incomplete: 2 of 4`)

	w = NewWriter(&bytes.Buffer{}, p)
	require.NoError(t, w.Write("a", []byte{1, 2, 3, 4}))
	require.NoError(t, w.Write("b", []byte{1, 2}))
	require.ErrorContains(t, w.Write("c", []byte{1}), "all planned blobs are complete")
}

func goodFile(t *testing.T) []byte {
	p := NewPlan()
	p.AddBytes(FP16, 2, []byte{0, 0x3C, 0, 0x40})
	p.AddBytes(INT4, 3, PackInt4([]int8{1, 2, 3}))
	var buf bytes.Buffer
	require.NoError(t, NewWriter(&buf, p).Close())
	return buf.Bytes()
}

func TestReaderRejects(t *testing.T) {
	good := goodFile(t)
	r, err := NewReader(bytes.NewReader(good), int64(len(good)))
	require.NoError(t, err)
	_, err = r.Walk()
	require.NoError(t, err)

	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	check := func(b []byte, meta uint64, msg string) {
		t.Helper()
		r, err := NewReader(bytes.NewReader(b), int64(len(b)))
		if err == nil {
			_, err = r.Blob(meta)
		}
		require.ErrorContains(t, err, msg)
	}
	check(mod(func(b []byte) { b[64] = 0 }), 64, "bad sentinel")
	check(mod(func(b []byte) { b[68] = 99 }), 64, "unknown dtype")
	check(mod(func(b []byte) { b[72] = 0xFF; b[73] = 0xFF }), 64, "past the end")
	check(mod(func(b []byte) { b[80] = 0x81 }), 64, "not an aligned offset")
	check(mod(func(b []byte) { b[88] = 8 }), 64, "padding of 8 bits")
	check(mod(func(b []byte) { b[88] = 4 }), 64, "whole number") // padding on fp16
	check(mod(func(b []byte) { b[4] = 1 }), 64, "header version")
	check(mod(func(b []byte) { b[0] = 50 }), 64, "header claims 50 blobs")
	check(good[:40], 64, "shorter than")
	check(good, 128, "bad sentinel")            // data, not a record
	check(good, 96, "not a 64-byte aligned")    // misaligned
	check(good, 0, "not a 64-byte aligned")     // the header
	check(good, 1<<40, "runs past the end")     // far out
	check(good[:200], 192, "runs past the end") // record cut off

	_, err = r.Read(Entry{Data: uint64(len(good)) - 2, Bytes: 10})
	require.ErrorContains(t, err, "outside")

	// a chain whose count is one too many
	b := mod(func(b []byte) { b[0] = 3 })
	b = append(b, make([]byte, 128)...)
	r, err = NewReader(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	_, err = r.Walk()
	require.ErrorContains(t, err, "blob #2 of 3")
}

func FuzzReader(f *testing.F) {
	p := NewPlan()
	p.AddBytes(FP16, 2, []byte{0, 0x3C, 0, 0x40})
	p.AddBytes(INT4, 3, PackInt4([]int8{1, 2, 3}))
	var buf bytes.Buffer
	if err := NewWriter(&buf, p).Close(); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes(), uint64(64))
	f.Add(buf.Bytes(), uint64(192))
	f.Add(Header(0), uint64(64))
	f.Add(Header(1), uint64(64))
	f.Add([]byte{}, uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, meta uint64) {
		r, err := NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if e, err := r.Blob(meta); err == nil {
			b, err := r.Read(e)
			if err != nil || int64(len(b)) != e.Bytes {
				t.Fatalf("valid blob unreadable: %v", err)
			}
		}
		es, _ := r.Walk()
		for _, e := range es {
			if e.End() > uint64(len(data)) {
				t.Fatalf("entry past end: %+v", e)
			}
		}
	})
}

// TestPackInt4Into: the allocation-free packer gives the same bytes for
// every length, including odd ones (last high nibble zero).
func TestPackInt4Into(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 64, 65} {
		codes := make([]int8, n)
		for i := range codes {
			codes[i] = int8(i*5%16 - 8)
		}
		got := make([]byte, (n+1)/2)
		PackInt4Into(got, codes)
		require.Equal(t, codes, UnpackInt4(got, n), "n=%d", n)
		if n%2 == 1 {
			require.Zero(t, got[n/2]>>4, "n=%d: padding nibble", n)
		}
	}
}
