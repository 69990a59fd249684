package export

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"lorapte/core/safetensors"
)

// BenchmarkConverterBF16 converts a 1024×2048 bfloat16 piece the way the
// default options do (int4 channel-wise for linears, int8 for the
// embedding); it runs natively and in wasm (GOOS=js GOARCH=wasm go test
// -exec go_js_wasm_exec), where the browser's workers run it.
func BenchmarkConverterBF16(b *testing.B) {
	const rows, cols = 1024, 2048
	src := make([]byte, 2*rows*cols)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < rows*cols; i++ {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(math.Float32bits(float32(rng.NormFloat64()*0.02))>>16))
	}
	for _, c := range []struct {
		name string
		p    Piece
	}{
		{"int4-channelwise", Piece{DType: safetensors.BF16, Rows: rows, Cols: cols, Quant: true, Bits: 4, Groups: 1}},
		{"int8-channelwise", Piece{DType: safetensors.BF16, Rows: rows, Cols: cols, Quant: true, Bits: 8, Groups: 1}},
		{"fp16", Piece{DType: safetensors.BF16, Rows: rows, Cols: cols}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var conv Converter
			out, scales := make([]byte, c.p.OutBytes()), make([]byte, c.p.ScaleBytes())
			b.SetBytes(int64(len(src)))
			for i := 0; i < b.N; i++ {
				if err := conv.Convert(c.p, src, out, scales); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
