package milrun

import (
	"lorapte/core/quant"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/coremlspec/milpb"
)

// countingWeights counts blob reads (for the Session cache test).
type countingWeights struct {
	fakeWeights
	reads int
}

func (w *countingWeights) ReadBlob(file string, off uint64) (uint32, []byte, uint64, error) {
	w.reads++
	return w.fakeWeights.ReadBlob(file, off)
}

func int4Linear() (*milpb.Program, fakeWeights, [][]int, []float32, []float32) {
	q := [][]int{{-4, -3, -2, -1, 0, 1, 2, 3}, {3, 2, 1, 0, -1, -2, -3, -8}}
	scale := []float32{0.05, 0.1, -0.3, 0.0625} // [2,2]: blocks of 4 along the input dim
	bias := []float32{0.25, -1}
	w := fakeWeights{64: {code: 8, data: packInt4(append(append([]int{}, q[0]...), q[1]...))}}
	p := program("main", []*milpb.NamedValueType{nv("x", f16, 1, 3, 8)},
		[]*milpb.Operation{
			op("constexpr_blockwise_shift_scale", "w", map[string]any{
				"data": blobV(i4, []int64{2, 8}, 64), "scale": f16V([]int64{2, 2}, scale...)}, nv("w", f16, 2, 8)),
			op("linear", "y", map[string]any{"x": "x", "weight": "w", "bias": f16V([]int64{2}, bias...)}, nv("y", f16, 1, 3, 2)),
		}, "y", "w")
	return p, w, q, scale, bias
}

func TestLinearInt4Blockwise(t *testing.T) {
	p, w, q, scale, bias := int4Linear()
	require.Equal(t, []byte{0xDC, 0xFE, 0x10, 0x32}, w[64].data[:4], "int4 [-4..3] packs low nibble first")
	x := seq(24, 1, 0.3)
	out := run1(t, p, map[string]*Tensor{"x": f16In([]int64{1, 3, 8}, x)}, w)

	// Dequantized weight: fp16(scale * q), exactly.
	what := make([][]float64, 2)
	for o := 0; o < 2; o++ {
		for i := 0; i < 8; i++ {
			s := quant.RoundF16(scale[o*2+i/4])
			v := quant.RoundF16(s * float32(q[o][i]))
			what[o] = append(what[o], float64(v))
			require.Equal(t, v, out["w"].F[o*8+i], "w[%d,%d]", o, i)
		}
	}
	var want []float64
	for r := 0; r < 3; r++ {
		for o := 0; o < 2; o++ {
			acc := float64(quant.RoundF16(bias[o]))
			for i := 0; i < 8; i++ {
				acc += float64(quant.RoundF16(x[r*8+i])) * what[o][i]
			}
			want = append(want, acc)
		}
	}
	requireClose(t, want, out["y"].F, 2e-3, "linear")
	for _, v := range out["y"].F {
		require.Equal(t, quant.RoundF16(v), v, "fp16 output is fp16-representable")
	}

	// A Session dequantizes once and reuses the result.
	cw := &countingWeights{fakeWeights: w}
	s := NewSession(p, cw)
	for k := 0; k < 3; k++ {
		o2, err := s.Run("main", map[string]*Tensor{"x": f16In([]int64{1, 3, 8}, x)})
		require.NoError(t, err)
		require.Equal(t, out["y"].F, o2["y"].F)
	}
	require.Equal(t, 1, cw.reads)
}

// uint4 data with a uint4 offset, fp32 scale, odd element count (padding 4).
func TestBlockwiseUint4Offset(t *testing.T) {
	data := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15} // [3,5]
	off := []int{8, 1, 0}                                           // [3,1]
	scale := []float32{0.5, 2, -1}                                  // [3,1]
	offBytes := packInt4(off)
	w := fakeWeights{0: {code: 11, data: packInt4(data), pad: 4}}
	p := program("main", nil, []*milpb.Operation{
		op("constexpr_blockwise_shift_scale", "w", map[string]any{
			"data":   blobV(u4, []int64{3, 5}, 0),
			"scale":  f32V([]int64{3, 1}, scale...),
			"offset": bytesV(u4, []int64{3, 1}, offBytes)}, nv("w", f32, 3, 5)),
	}, "w")
	out := run1(t, p, nil, w)
	var want []float64
	for i, d := range data {
		r := i / 5
		want = append(want, float64(scale[r])*float64(d-off[r]))
	}
	requireClose(t, want, out["w"].F, 0, "dequant")

	// Wrong padding bits in the blob record is an error.
	w[0] = fakeBlob{code: 11, data: packInt4(data), pad: 0}
	_, err := Run(p, "main", nil, w)
	require.ErrorContains(t, err, "padding")
}

func TestEmbeddingInt8Gather(t *testing.T) {
	const V, D = 6, 4
	q := make([]byte, V*D)
	for i := range q {
		q[i] = byte(int8(i*37%255 - 127))
	}
	scale := []float32{0.01, 0.02, 0.003, 0.5, 0.25, 0.125}
	w := fakeWeights{
		128: {code: 4, data: q},
		256: {code: 1, data: f16Bytes(scale)},
	}
	tokens := []int32{3, 0, 5}
	p := program("main", []*milpb.NamedValueType{nv("tokens", i32, 1, 3)},
		[]*milpb.Operation{
			op("constexpr_blockwise_shift_scale", "emb", map[string]any{
				"data": blobV(i8, []int64{V, D}, 128), "scale": blobV(f16, []int64{V, 1}, 256)}, nv("emb", f16, V, D)),
			op("gather", "h", map[string]any{"x": "emb", "indices": "tokens", "axis": scalarI(0)}, nv("h", f16, 1, 3, D)),
			// Alternative that never materializes the table (coreml.md §8 step 1).
			constOp("q", blobV(i8, []int64{V, D}, 128)),
			constOp("s", blobV(f16, []int64{V, 1}, 256)),
			op("gather", "qr", map[string]any{"x": "q", "indices": "tokens"}, nv("qr", i8, 1, 3, D)),
			op("gather", "sr", map[string]any{"x": "s", "indices": "tokens"}, nv("sr", f16, 1, 3, 1)),
			op("cast", "qf", map[string]any{"x": "qr", "dtype": strV("fp16")}, nv("qf", f16, 1, 3, D)),
			op("mul", "h2", map[string]any{"x": "qf", "y": "sr"}, nv("h2", f16, 1, 3, D)),
		}, "h", "h2")
	out := run1(t, p, map[string]*Tensor{"tokens": NewInt(i32, []int64{1, 3}, tokens)}, w)
	var want []float32
	for _, tok := range tokens {
		for d := 0; d < D; d++ {
			want = append(want, quant.RoundF16(quant.RoundF16(scale[tok])*float32(int8(q[int(tok)*D+d]))))
		}
	}
	require.Equal(t, want, out["h"].F)
	require.Equal(t, want, out["h2"].F)
	require.Equal(t, []int64{1, 3, D}, out["h"].Shape)
}

// rmsNormOps appends x * rsqrt(mean(x^2) + eps) * gamma.
func rmsNormOps(dt milpb.DataType, d int64, gamma []float32) []*milpb.Operation {
	g := f32V([]int64{d}, gamma...)
	eps := scalarF(1e-5)
	if dt == f16 {
		g, eps = f16V([]int64{d}, gamma...), f16V(nil, 1e-5)
	}
	return []*milpb.Operation{
		constOp("gamma", g),
		op("mul", "x2", map[string]any{"x": "x", "y": "x"}, nv("x2", dt, 1, 3, d)),
		op("reduce_mean", "ms", map[string]any{"x": "x2", "axes": vecI(-1), "keep_dims": scalarB(true)}, nv("ms", dt, 1, 3, 1)),
		op("add", "mse", map[string]any{"x": "ms", "y": eps}, nv("mse", dt, 1, 3, 1)),
		op("rsqrt", "r", map[string]any{"x": "mse"}, nv("r", dt, 1, 3, 1)),
		op("mul", "xn", map[string]any{"x": "x", "y": "r"}, nv("xn", dt, 1, 3, d)),
		op("mul", "y", map[string]any{"x": "xn", "y": "gamma"}, nv("y", dt, 1, 3, d)),
	}
}

func TestRMSNorm(t *testing.T) {
	const D = 16
	x := seq(3*D, 3, 1)
	gamma := seq(D, 0.5, 2)
	var want []float64
	for r := 0; r < 3; r++ {
		ms := 0.0
		for i := 0; i < D; i++ {
			v := float64(x[r*D+i])
			ms += v * v
		}
		inv := 1 / math.Sqrt(ms/D+1e-5)
		for i := 0; i < D; i++ {
			want = append(want, float64(x[r*D+i])*inv*float64(gamma[i]))
		}
	}
	for _, tc := range []struct {
		dt  milpb.DataType
		tol float64
	}{{f32, 1e-5}, {f16, 1e-2}} {
		p := program("main", []*milpb.NamedValueType{nv("x", tc.dt, 1, 3, D)}, rmsNormOps(tc.dt, D, gamma), "y")
		out := run1(t, p, map[string]*Tensor{"x": NewFloat(tc.dt, []int64{1, 3, D}, append([]float32{}, x...))}, nil)
		requireClose(t, want, out["y"].F, tc.tol, "rmsnorm "+dtypeName(tc.dt))
	}
}

// Attention over a cache of C slots and L new positions with an additive
// mask, as in model.md §3 steps 4–7.
func TestAttentionBlock(t *testing.T) {
	const H, L, C, hd = 2, 3, 2, 4
	const S = C + L
	q := seq(H*L*hd, 1, 0)
	kc, kn := seq(H*C*hd, 1, 1), seq(H*L*hd, 1, 2)
	vc, vn := seq(H*C*hd, 1, 3), seq(H*L*hd, 1, 4)
	inf := math.Inf(-1)
	mask := make([]float32, L*S)
	for r := 0; r < L; r++ {
		for c := 0; c < S; c++ {
			valid := c == 0 || (c >= C && c-C <= r) // cache slot 1 empty, causal
			if !valid {
				mask[r*S+c] = float32(inf)
			}
		}
	}
	// float64 reference
	kAll := func(cache, nw []float32, h, s, d int) float64 {
		if s < C {
			return float64(cache[(h*C+s)*hd+d])
		}
		return float64(nw[(h*L+s-C)*hd+d])
	}
	want := make([]float64, L*H*hd) // [1, L, H*hd]
	for h := 0; h < H; h++ {
		for r := 0; r < L; r++ {
			sc := make([]float64, S)
			mx := math.Inf(-1)
			for s := 0; s < S; s++ {
				dotv := 0.0
				for d := 0; d < hd; d++ {
					dotv += float64(q[(h*L+r)*hd+d]) * kAll(kc, kn, h, s, d)
				}
				sc[s] = dotv/math.Sqrt(hd) + float64(mask[r*S+s])
				mx = math.Max(mx, sc[s])
			}
			den := 0.0
			for s := range sc {
				sc[s] = math.Exp(sc[s] - mx)
				den += sc[s]
			}
			for d := 0; d < hd; d++ {
				acc := 0.0
				for s := 0; s < S; s++ {
					acc += sc[s] / den * kAll(vc, vn, h, s, d)
				}
				want[r*H*hd+h*hd+d] = acc
			}
		}
	}
	for _, tc := range []struct {
		dt  milpb.DataType
		tol float64
	}{{f32, 1e-5}, {f16, 5e-3}} {
		dt := tc.dt
		scale := scalarOf(dt, 0.5)
		p := program("main",
			[]*milpb.NamedValueType{nv("q", dt, 1, H, L, hd), nv("kc", dt, 1, H, C, hd), nv("kn", dt, 1, H, L, hd),
				nv("vc", dt, 1, H, C, hd), nv("vn", dt, 1, H, L, hd), nv("mask", dt, 1, L, S)},
			[]*milpb.Operation{
				op("concat", "K", map[string]any{"values": []any{"kc", "kn"}, "axis": scalarI(2), "interleave": scalarB(false)}, nv("K", dt, 1, H, S, hd)),
				op("concat", "V", map[string]any{"values": []any{"vc", "vn"}, "axis": scalarI(2)}, nv("V", dt, 1, H, S, hd)),
				op("matmul", "qk", map[string]any{"x": "q", "y": "K", "transpose_y": scalarB(true)}, nv("qk", dt, 1, H, L, S)),
				op("mul", "sc", map[string]any{"x": "qk", "y": scale}, nv("sc", dt, 1, H, L, S)),
				op("expand_dims", "m4", map[string]any{"x": "mask", "axes": vecI(1)}, nv("m4", dt, 1, 1, L, S)),
				op("add", "scm", map[string]any{"x": "sc", "y": "m4"}, nv("scm", dt, 1, H, L, S)),
				op("softmax", "pr", map[string]any{"x": "scm", "axis": scalarI(-1)}, nv("pr", dt, 1, H, L, S)),
				op("matmul", "att", map[string]any{"x": "pr", "y": "V"}, nv("att", dt, 1, H, L, hd)),
				op("transpose", "attT", map[string]any{"x": "att", "perm": vecI(0, 2, 1, 3)}, nv("attT", dt, 1, L, H, hd)),
				op("reshape", "y", map[string]any{"x": "attT", "shape": vecI(1, L, H*hd)}, nv("y", dt, 1, L, H*hd)),
				// The same with the fused op, float and bool masks.
				op("scaled_dot_product_attention", "sd", map[string]any{"query": "q", "key": "K", "value": "V", "attn_mask": "m4"}, nv("sd", dt, 1, H, L, hd)),
				op("transpose", "sdT", map[string]any{"x": "sd", "perm": vecI(0, 2, 1, 3)}, nv("sdT", dt, 1, L, H, hd)),
				op("reshape", "y2", map[string]any{"x": "sdT", "shape": vecI(1, L, H*hd)}, nv("y2", dt, 1, L, H*hd)),
				op("greater", "mb", map[string]any{"x": "mask", "y": scalarOf(dt, -1)}, nv("mb", tb, 1, L, S)),
				op("scaled_dot_product_attention", "sb", map[string]any{"query": "q", "key": "K", "value": "V", "attn_mask": "mb"}, nv("sb", dt, 1, H, L, hd)),
				op("transpose", "sbT", map[string]any{"x": "sb", "perm": vecI(0, 2, 1, 3)}, nv("sbT", dt, 1, L, H, hd)),
				op("reshape", "y3", map[string]any{"x": "sbT", "shape": vecI(1, L, H*hd)}, nv("y3", dt, 1, L, H*hd)),
			}, "y", "pr", "y2", "y3")
		in := map[string]*Tensor{
			"q":  NewFloat(dt, []int64{1, H, L, hd}, append([]float32{}, q...)),
			"kc": NewFloat(dt, []int64{1, H, C, hd}, append([]float32{}, kc...)), "kn": NewFloat(dt, []int64{1, H, L, hd}, append([]float32{}, kn...)),
			"vc": NewFloat(dt, []int64{1, H, C, hd}, append([]float32{}, vc...)), "vn": NewFloat(dt, []int64{1, H, L, hd}, append([]float32{}, vn...)),
			"mask": NewFloat(dt, []int64{1, L, S}, append([]float32{}, mask...)),
		}
		outs, err := RunOrdered(p, "main", in, nil)
		require.NoError(t, err)
		require.Equal(t, "y", outs[0].Name)
		require.Equal(t, "pr", outs[1].Name)
		requireClose(t, want, outs[0].Tensor.F, tc.tol, "attention "+dtypeName(dt))
		requireClose(t, want, outs[2].Tensor.F, tc.tol, "sdpa float mask "+dtypeName(dt))
		requireClose(t, want, outs[3].Tensor.F, tc.tol, "sdpa bool mask "+dtypeName(dt))
		// masked entries get probability exactly 0
		for h := 0; h < H; h++ {
			for r := 0; r < L; r++ {
				for s := 0; s < S; s++ {
					if math.IsInf(float64(mask[r*S+s]), -1) {
						require.Zero(t, outs[1].Tensor.F[(h*L+r)*S+s])
					}
				}
			}
		}
	}
}

// matmul broadcasting of batch dims and rank-1 operands, against float64.
func TestMatmulBroadcast(t *testing.T) {
	a := seq(2*3*4, 1, 0) // [2,1,3,4]
	b := seq(5*4*2, 1, 1) // [5,4,2]
	v := seq(4, 1, 2)
	p := program("main", []*milpb.NamedValueType{nv("a", f32, 2, 1, 3, 4), nv("b", f32, 5, 4, 2), nv("v", f32, 4)},
		[]*milpb.Operation{
			op("matmul", "ab", map[string]any{"x": "a", "y": "b"}, nv("ab", f32, 2, 5, 3, 2)),
			op("matmul", "av", map[string]any{"x": "a", "y": "v"}, nv("av", f32, 2, 1, 3)),
			op("matmul", "vb", map[string]any{"x": "v", "y": "b"}, nv("vb", f32, 5, 2)),
			op("matmul", "bTa", map[string]any{"x": "b", "y": "a", "transpose_x": scalarB(true), "transpose_y": scalarB(true)}, nv("bTa", f32, 2, 5, 2, 3)),
		}, "ab", "av", "vb", "bTa")
	out := run1(t, p, map[string]*Tensor{"a": f32In([]int64{2, 1, 3, 4}, a), "b": f32In([]int64{5, 4, 2}, b), "v": f32In([]int64{4}, v)}, nil)
	A := func(i, m, k int) float64 { return float64(a[(i*3+m)*4+k]) }
	B := func(j, k, n int) float64 { return float64(b[(j*4+k)*2+n]) }
	var ab, av, vb, bta []float64
	for i := 0; i < 2; i++ {
		for j := 0; j < 5; j++ {
			for m := 0; m < 3; m++ {
				for n := 0; n < 2; n++ {
					s := 0.0
					for k := 0; k < 4; k++ {
						s += A(i, m, k) * B(j, k, n)
					}
					ab = append(ab, s)
				}
			}
		}
		for m := 0; m < 3; m++ {
			s := 0.0
			for k := 0; k < 4; k++ {
				s += A(i, m, k) * float64(v[k])
			}
			av = append(av, s)
		}
	}
	for j := 0; j < 5; j++ {
		for n := 0; n < 2; n++ {
			s := 0.0
			for k := 0; k < 4; k++ {
				s += float64(v[k]) * B(j, k, n)
			}
			vb = append(vb, s)
		}
	}
	for i := 0; i < 2; i++ {
		for j := 0; j < 5; j++ {
			for n := 0; n < 2; n++ {
				for m := 0; m < 3; m++ {
					s := 0.0
					for k := 0; k < 4; k++ {
						s += B(j, k, n) * A(i, m, k)
					}
					bta = append(bta, s)
				}
			}
		}
	}
	requireClose(t, ab, out["ab"].F, 1e-5, "ab")
	requireClose(t, av, out["av"].F, 1e-5, "av")
	requireClose(t, vb, out["vb"].F, 1e-5, "vb")
	requireClose(t, bta, out["bTa"].F, 1e-5, "bTa")
}

// Larger linear/matmul shapes exercise the parallel path; the result must not
// depend on how work is split.
func TestLinearLargeDeterministic(t *testing.T) {
	const in, outF, rows = 256, 1024, 4
	x := seq(rows*in, 1, 0)
	wv := seq(outF*in, 0.1, 1)
	p := program("main", []*milpb.NamedValueType{nv("x", f32, rows, in)},
		[]*milpb.Operation{
			constOp("w", f32V([]int64{outF, in}, wv...)),
			op("linear", "y", map[string]any{"x": "x", "weight": "w"}, nv("y", f32, rows, outF)),
		}, "y")
	out := run1(t, p, map[string]*Tensor{"x": f32In([]int64{rows, in}, x)}, nil)
	for r := 0; r < rows; r++ {
		for o := 0; o < outF; o += 97 {
			s := 0.0
			for i := 0; i < in; i++ {
				s += float64(x[r*in+i]) * float64(wv[o*in+i])
			}
			require.InDelta(t, s, float64(out["y"].F[r*outF+o]), 1e-4)
			require.Equal(t, dot(x[r*in:(r+1)*in], wv[o*in:(o+1)*in]), out["y"].F[r*outF+o])
		}
	}
}

// Rank-3 blocks (2,2,1) with an fp16 offset.
func TestBlockwiseRank3(t *testing.T) {
	data := make([]byte, 24) // int8 [2,4,3]
	for i := range data {
		data[i] = byte(int8(i*11%29 - 14))
	}
	scale := seq(6, 0.3, 0.5) // [1,2,3]
	offset := seq(6, 2, 1.5)  // [1,2,3]
	p := program("main", nil, []*milpb.Operation{
		op("constexpr_blockwise_shift_scale", "w", map[string]any{
			"data": bytesV(i8, []int64{2, 4, 3}, data), "scale": f16V([]int64{1, 2, 3}, scale...),
			"offset": f16V([]int64{1, 2, 3}, offset...)}, nv("w", f16, 2, 4, 3)),
	}, "w")
	out := run1(t, p, nil, nil)
	for a := 0; a < 2; a++ {
		for b := 0; b < 4; b++ {
			for c := 0; c < 3; c++ {
				si := (b/2)*3 + c
				d := float32(int8(data[(a*4+b)*3+c]))
				want := quant.RoundF16(quant.RoundF16(scale[si]) * quant.RoundF16(d-quant.RoundF16(offset[si])))
				require.Equal(t, want, out["w"].F[(a*4+b)*3+c], "w[%d,%d,%d]", a, b, c)
			}
		}
	}
}
