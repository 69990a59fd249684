package milrun

import (
	"testing"

	"lorapte/core/coremlspec/milpb"
)

// SmolLM2-135M MLP-sized projection: x [1,32,576] · int4 W[1536,576]
// (group 32) in fp16.
func benchLinear(b *testing.B, cached bool) {
	const in, out, rows, group = 576, 1536, 32, 32
	q := make([]int, in*out)
	for i := range q {
		q[i] = i%16 - 8
	}
	w := fakeWeights{0: {code: 8, data: packInt4(q)}, 1 << 20: {code: 1, data: f16Bytes(seq(out*in/group, 0.01, 0))}}
	p := program("main", []*milpb.NamedValueType{nv("x", f16, 1, rows, in)},
		[]*milpb.Operation{
			op("constexpr_blockwise_shift_scale", "w", map[string]any{
				"data": blobV(i4, []int64{out, in}, 0), "scale": blobV(f16, []int64{out, in / group}, 1<<20)}, nv("w", f16, out, in)),
			op("linear", "y", map[string]any{"x": "x", "weight": "w"}, nv("y", f16, 1, rows, out)),
		}, "y")
	x := map[string]*Tensor{"x": f16In([]int64{1, rows, in}, seq(rows*in, 1, 0))}
	s := &Session{prog: p, w: w}
	if cached {
		s = NewSession(p, w)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Run("main", x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLinearInt4(b *testing.B)       { benchLinear(b, false) }
func BenchmarkLinearInt4Cached(b *testing.B) { benchLinear(b, true) }
