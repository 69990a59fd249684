//go:build js && wasm

package jsbridge

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"syscall/js"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/export"
	"lorapte/core/safetensors"
)

// simdCase is a bfloat16 matrix to quantize both ways.
type simdCase struct {
	name       string
	rows, cols int
	src        []byte
}

func bf16Matrix(rows, cols int, value func(i int) uint16) []byte {
	b := make([]byte, 2*rows*cols)
	for i := range rows * cols {
		binary.LittleEndian.PutUint16(b[2*i:], value(i))
	}
	return b
}

func simdCases() []simdCase {
	rng := rand.New(rand.NewPCG(7, 9))
	normal := func(sd float64) func(int) uint16 {
		return func(int) uint16 { return uint16(math.Float32bits(float32(rng.NormFloat64()*sd)) >> 16) }
	}
	// Any finite bfloat16 that fits float16 (|x| ≤ 65280), zeros,
	// subnormals and both signs included.
	anyFit := func(int) uint16 { return uint16(rng.IntN(0x4780)) | uint16(rng.IntN(2))<<15 }
	// Every such magnitude once, both signs, the largest one per row
	// varying from row to row, so blocks see every scale's ties.
	var every []uint16
	for a := 0; a < 0x4780; a++ {
		every = append(every, uint16(a), uint16(a)|0x8000)
	}
	rng.Shuffle(len(every), func(i, j int) { every[i], every[j] = every[j], every[i] })
	const everyCols = 512
	everyRows := len(every) / everyCols
	return []simdCase{
		{"normal", 64, 2048, bf16Matrix(64, 2048, normal(0.02))},
		{"wide", 16, 8192, bf16Matrix(16, 8192, normal(1))},
		{"any finite", 96, 1024, bf16Matrix(96, 1024, anyFit)},
		{"every value", everyRows, everyCols, bf16Matrix(everyRows, everyCols, func(i int) uint16 {
			v := every[i]
			if r := i / everyCols; v&0x7fff > uint16(r*0x4780/everyRows) {
				v = uint16(r*0x4780/everyRows) | v&0x8000 // rows grow in range
			}
			return v
		})},
		{"zeros", 4, 256, make([]byte, 2*4*256)},
	}
}

// TestSIMDKernelsMatchTheGoKernels: the SIMD kernels give exactly the Go
// converter's codes and scales for int4 and int8, channel-wise and in
// groups, on every bfloat16 value; blocks that overflow float16, and
// pieces they do not take, are left to Go.
func TestSIMDKernelsMatchTheGoKernels(t *testing.T) {
	k := newSIMDKernel()
	require.NotNil(t, k, "Node has WebAssembly SIMD")
	u8 := js.Global().Get("Uint8Array")
	toJS := func(b []byte) js.Value {
		v := u8.New(len(b))
		js.CopyBytesToJS(v, b)
		return v
	}
	var c export.Converter
	for _, sc := range simdCases() {
		for _, bits := range []int{4, 8} {
			for _, group := range []int{sc.cols, 32, 64, 128} {
				t.Run(fmt.Sprintf("%s/int%d/group%d", sc.name, bits, group), func(t *testing.T) {
					p := export.Piece{DType: safetensors.BF16, Rows: sc.rows, Cols: sc.cols, Quant: true, Bits: bits, Groups: sc.cols / group}
					wantOut, wantScales := make([]byte, p.OutBytes()), make([]byte, p.ScaleBytes())
					require.NoError(t, c.Convert(p, sc.src, wantOut, wantScales))
					scales := make([]byte, p.ScaleBytes())
					out := u8.New(p.OutBytes())
					ok, err := k.quantize(p, toJS(sc.src), scales, out)
					require.NoError(t, err)
					require.True(t, ok)
					got := make([]byte, out.Length())
					js.CopyBytesToGo(got, out)
					require.True(t, bytes.Equal(wantScales, scales), "scales")
					if !bytes.Equal(wantOut, got) {
						for i := range got {
							if got[i] != wantOut[i] {
								t.Fatalf("code byte %d: got %#x, want %#x (source %#04x %#04x)", i, got[i], wantOut[i],
									binary.LittleEndian.Uint16(sc.src[4*i:]), binary.LittleEndian.Uint16(sc.src[4*i+2:]))
							}
						}
					}
				})
			}
		}
	}

	// Overflowing blocks (65536 and +Inf), and pieces the kernels do not
	// take (a group of 16 at int4, float16 source, fp32 scales).
	for _, v := range []uint16{0x4780, 0x7f80} {
		src := bf16Matrix(2, 64, func(i int) uint16 { return map[bool]uint16{true: v, false: 0x3f80}[i == 70] })
		p := export.Piece{DType: safetensors.BF16, Rows: 2, Cols: 64, Quant: true, Bits: 4, Groups: 1}
		ok, err := k.quantize(p, toJS(src), make([]byte, p.ScaleBytes()), u8.New(p.OutBytes()))
		require.NoError(t, err)
		require.False(t, ok, "%#x overflows float16", v)
	}
	for _, p := range []export.Piece{
		{DType: safetensors.BF16, Rows: 2, Cols: 64, Quant: true, Bits: 4, Groups: 4},
		{DType: safetensors.F16, Rows: 2, Cols: 64, Quant: true, Bits: 4, Groups: 1},
		{DType: safetensors.BF16, Rows: 2, Cols: 64, Quant: true, Bits: 4, Groups: 1, FP32: true},
		{DType: safetensors.BF16, Rows: 2, Cols: 64},
	} {
		ok, err := k.quantize(p, toJS(make([]byte, p.SourceBytes())), make([]byte, p.ScaleBytes()), u8.New(p.OutBytes()))
		require.NoError(t, err)
		require.False(t, ok, "%+v", p)
	}

	// Through the worker's API: marked as made by the kernels, same bytes.
	g := js.Global().Get("Object").New()
	RegisterWorker(g, "w")
	sc := simdCases()[0]
	p := export.Piece{DType: safetensors.BF16, Rows: sc.rows, Cols: sc.cols, Quant: true, Bits: 4, Groups: 1}
	pj, err := json.Marshal(p)
	require.NoError(t, err)
	want := make([]byte, p.OutBytes())
	require.NoError(t, c.Convert(p, sc.src, want, make([]byte, p.ScaleBytes())))
	// A spare buffer large enough is filled from its start; one too small
	// is left alone. The same for a piece the Go kernels convert (float16).
	fp := export.Piece{DType: safetensors.BF16, Rows: sc.rows, Cols: sc.cols}
	fj, err := json.Marshal(fp)
	require.NoError(t, err)
	fwant := make([]byte, fp.OutBytes())
	require.NoError(t, c.Convert(fp, sc.src, fwant, nil))
	ab := js.Global().Get("ArrayBuffer")
	for _, tc := range []struct {
		piece string
		want  []byte
		simd  bool
	}{{string(pj), want, true}, {string(fj), fwant, false}} {
		for _, spare := range []js.Value{js.Undefined(), ab.New(len(tc.want) + 100), ab.New(len(tc.want) - 1)} {
			res := g.Get("w").Call("convert", toJS(sc.src), tc.piece, spare)
			require.Equal(t, tc.simd, res.Get("simd").Truthy())
			out := res.Get("out")
			got := make([]byte, out.Length())
			js.CopyBytesToGo(got, out)
			require.True(t, bytes.Equal(tc.want, got))
			size := -1
			if !spare.IsUndefined() {
				size = spare.Get("byteLength").Int()
			}
			require.Equal(t, size >= len(tc.want), out.Get("buffer").Equal(spare), "spare of %d bytes", size)
			require.Zero(t, out.Get("byteOffset").Int())
		}
	}
}

// BenchmarkWorkerConvert converts a 1024×2048 bfloat16 piece to int4 the
// way a browser worker does (from a Uint8Array, to a new one), with the
// SIMD kernels and with the Go ones.
func BenchmarkWorkerConvert(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := bf16Matrix(1024, 2048, func(int) uint16 { return uint16(math.Float32bits(float32(rng.NormFloat64()*0.02)) >> 16) })
	u := js.Global().Get("Uint8Array").New(len(src))
	js.CopyBytesToJS(u, src)
	p := export.Piece{DType: safetensors.BF16, Rows: 1024, Cols: 2048, Quant: true, Bits: 4, Groups: 1}
	b.Run("simd", func(b *testing.B) {
		k := newSIMDKernel()
		scales := make([]byte, p.ScaleBytes())
		b.SetBytes(int64(len(src)))
		out := js.Global().Get("Uint8Array").New(p.OutBytes())
		for i := 0; i < b.N; i++ {
			if ok, err := k.quantize(p, u, scales, out); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("go", func(b *testing.B) {
		var c export.Converter
		buf, out, scales := make([]byte, len(src)), make([]byte, p.OutBytes()), make([]byte, p.ScaleBytes())
		b.SetBytes(int64(len(src)))
		for i := 0; i < b.N; i++ {
			js.CopyBytesToGo(buf, u)
			if err := c.Convert(p, buf, out, scales); err != nil {
				b.Fatal(err)
			}
			js.CopyBytesToJS(js.Global().Get("Uint8Array").New(len(out)), out)
		}
	})
}
