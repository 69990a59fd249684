package milrun

import (
	"lorapte/core/quant"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/coremlspec/milpb"
)

func TestElementwiseBroadcast(t *testing.T) {
	x := []float32{1, 2, 3, 4, 5, 6} // [2,3]
	y := []float32{10, 20, 30}       // [3]
	z := []float32{-1, 2}            // [2,1]
	p := program("main",
		[]*milpb.NamedValueType{nv("x", f32, 2, 3), nv("y", f32, 3), nv("z", f32, 2, 1)},
		[]*milpb.Operation{
			op("add", "a", map[string]any{"x": "x", "y": "y"}, nv("a", f32, 2, 3)),
			op("mul", "m", map[string]any{"x": "z", "y": "y"}, nv("m", f32, 2, 3)),
			op("sub", "s", map[string]any{"x": "a", "y": scalarF(0.5)}, nv("s", f32, 2, 3)),
			op("real_div", "d", map[string]any{"x": "s", "y": "z"}, nv("d", f32, 2, 3)),
			op("maximum", "mx", map[string]any{"x": "x", "y": f32V([]int64{1, 3}, 2, 2, 2)}, nv("mx", f32, 2, 3)),
			op("pow", "pw", map[string]any{"x": "x", "y": scalarF(2)}, nv("pw", f32, 2, 3)),
			op("greater", "g", map[string]any{"x": "x", "y": scalarF(3)}, nv("g", tb, 2, 3)),
			op("select", "sel", map[string]any{"cond": "g", "a": "x", "b": "y"}, nv("sel", f32, 2, 3)),
		}, "a", "m", "d", "mx", "pw", "g", "sel")
	out := run1(t, p, map[string]*Tensor{"x": f32In([]int64{2, 3}, x), "y": f32In([]int64{3}, y), "z": f32In([]int64{2, 1}, z)}, nil)

	var a, m, d, mx, pw, sel []float64
	var g []bool
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			xv, yv, zv := float64(x[i*3+j]), float64(y[j]), float64(z[i])
			a = append(a, xv+yv)
			m = append(m, zv*yv)
			d = append(d, (xv+yv-0.5)/zv)
			mx = append(mx, math.Max(xv, 2))
			pw = append(pw, xv*xv)
			g = append(g, xv > 3)
			if xv > 3 {
				sel = append(sel, xv)
			} else {
				sel = append(sel, yv)
			}
		}
	}
	requireClose(t, a, out["a"].F, 0, "add")
	requireClose(t, m, out["m"].F, 0, "mul")
	requireClose(t, d, out["d"].F, 1e-6, "real_div")
	requireClose(t, mx, out["mx"].F, 0, "maximum")
	requireClose(t, pw, out["pw"].F, 0, "pow")
	requireClose(t, sel, out["sel"].F, 0, "select")
	require.Equal(t, g, out["g"].B)
	require.Equal(t, []int64{2, 3}, out["a"].Shape)
}

func TestIntArithmeticAndCast(t *testing.T) {
	p := program("main", []*milpb.NamedValueType{nv("x", i32, 4)},
		[]*milpb.Operation{
			op("add", "a", map[string]any{"x": "x", "y": scalarI(-3)}, nv("a", i32, 4)),
			op("abs", "b", map[string]any{"x": "a"}, nv("b", i32, 4)),
			op("cast", "c", map[string]any{"x": "b", "dtype": strV("fp16")}, nv("c", f16, 4)),
			op("cast", "d", map[string]any{"x": f32V([]int64{3}, -2.7, 0.5, 126.9), "dtype": strV("int8")}, nv("d", i8, 3)),
			op("cast", "e", map[string]any{"x": "x", "dtype": strV("bool")}, nv("e", tb, 4)),
		}, "a", "b", "c", "d", "e")
	out := run1(t, p, map[string]*Tensor{"x": NewInt(i32, []int64{4}, []int32{0, 1, 5, 2049})}, nil)
	require.Equal(t, []int32{-3, -2, 2, 2046}, out["a"].I)
	require.Equal(t, []int32{3, 2, 2, 2046}, out["b"].I)
	require.Equal(t, []float32{3, 2, 2, 2046}, out["c"].F) // 2046 exact in fp16
	require.Equal(t, []int32{-2, 0, 126}, out["d"].I)
	require.Equal(t, []bool{false, true, true, true}, out["e"].B)

	// Out of range float → int8 is an error, not a wrap.
	bad := program("main", nil, []*milpb.Operation{
		op("cast", "d", map[string]any{"x": f32V([]int64{1}, 300), "dtype": strV("int8")}, nv("d", i8, 1)),
	}, "d")
	_, err := Run(bad, "main", nil, nil)
	require.ErrorContains(t, err, "does not fit in int8")
}

// fp16 outputs are rounded after computing in float32; fp32 outputs are not.
func TestFP16Rounding(t *testing.T) {
	tiny := float32(1.0 / (1 << 11)) // exactly representable in fp16
	for _, dt := range []milpb.DataType{f16, f32} {
		p := program("main", []*milpb.NamedValueType{nv("x", dt, 3)},
			[]*milpb.Operation{
				op("add", "a", map[string]any{"x": "x", "y": "x"}, nv("a", dt, 3)),
				op("add", "b", map[string]any{"x": "a", "y": "x"}, nv("b", dt, 3)),
				op("exp", "e", map[string]any{"x": "x"}, nv("e", dt, 3)),
				op("mul", "big", map[string]any{"x": "x", "y": "x"}, nv("big", dt, 3)),
			}, "b", "e", "big")
		in := []float32{1, tiny, 300}
		// 1 + 2^-11 cannot be represented in fp16 (tie → 1); exercise it via
		// a separate add with an immediate.
		p.Functions["main"].BlockSpecializations["CoreML8"].Operations = append(
			p.Functions["main"].BlockSpecializations["CoreML8"].Operations,
			op("add", "tie", map[string]any{"x": "x", "y": scalarOf(dt, tiny)}, nv("tie", dt, 3)))
		p.Functions["main"].BlockSpecializations["CoreML8"].Outputs = append(
			p.Functions["main"].BlockSpecializations["CoreML8"].Outputs, "tie")
		out := run1(t, p, map[string]*Tensor{"x": NewFloat(dt, []int64{3}, append([]float32{}, in...))}, nil)
		if dt == f16 {
			require.Equal(t, float32(1), out["tie"].F[0], "1+2^-11 ties to even in fp16")
			require.Equal(t, quant.RoundF16(float32(math.E)), out["e"].F[0])
			require.True(t, math.IsInf(float64(out["big"].F[2]), 1), "300*300 overflows fp16")
		} else {
			require.Equal(t, 1+tiny, out["tie"].F[0])
			require.Equal(t, float32(math.E), out["e"].F[0])
			require.Equal(t, float32(90000), out["big"].F[2])
		}
		require.Equal(t, []float32{3, 3 * tiny, 900}, out["b"].F)
	}
}

func scalarOf(dt milpb.DataType, v float32) *milpb.Value {
	if dt == f16 {
		return f16V(nil, v)
	}
	return scalarF(v)
}

func TestUnaryOps(t *testing.T) {
	in := []float32{-2, -0.5, 0, 0.75, 3}
	ref := map[string]func(float64) float64{
		"sqrt":    func(x float64) float64 { return math.Sqrt(math.Abs(x)) },
		"exp":     math.Exp,
		"tanh":    math.Tanh,
		"sigmoid": func(x float64) float64 { return 1 / (1 + math.Exp(-x)) },
		"silu":    func(x float64) float64 { return x / (1 + math.Exp(-x)) },
		"abs":     math.Abs,
		"square":  func(x float64) float64 { return x * x },
		"relu":    func(x float64) float64 { return math.Max(x, 0) },
	}
	var ops []*milpb.Operation
	var outs []string
	for name := range ref {
		src := "x"
		if name == "sqrt" {
			src = "ax"
		}
		ops = append(ops, op(name, name+"_o", map[string]any{"x": src}, nv(name+"_o", f32, 5)))
		outs = append(outs, name+"_o")
	}
	ops = append([]*milpb.Operation{op("abs", "ax", map[string]any{"x": "x"}, nv("ax", f32, 5))}, ops...)
	ops = append(ops, op("rsqrt", "rs", map[string]any{"x": "ax", "epsilon": scalarF(1e-2)}, nv("rs", f32, 5)))
	outs = append(outs, "rs")
	p := program("main", []*milpb.NamedValueType{nv("x", f32, 5)}, ops, outs...)
	out := run1(t, p, map[string]*Tensor{"x": f32In([]int64{5}, in)}, nil)
	for name, f := range ref {
		want := make([]float64, len(in))
		for i, v := range in {
			want[i] = f(float64(v))
		}
		requireClose(t, want, out[name+"_o"].F, 1e-6, name)
	}
	want := make([]float64, len(in))
	for i, v := range in {
		want[i] = 1 / math.Sqrt(math.Abs(float64(v))+1e-2)
	}
	requireClose(t, want, out["rs"].F, 1e-5, "rsqrt")
}

func TestReductionsAndSoftmax(t *testing.T) {
	x := seq(24, 2, 0) // [2,3,4]
	p := program("main", []*milpb.NamedValueType{nv("x", f32, 2, 3, 4)},
		[]*milpb.Operation{
			op("reduce_sum", "s", map[string]any{"x": "x", "axes": vecI(1), "keep_dims": scalarB(true)}, nv("s", f32, 2, 1, 4)),
			op("reduce_mean", "m", map[string]any{"x": "x", "axes": vecI(-1, 0)}, nv("m", f32, 3)),
			op("reduce_max", "mx", map[string]any{"x": "x"}, nv("mx", f32)),
			op("softmax", "sm", map[string]any{"x": "x", "axis": scalarI(1)}, nv("sm", f32, 2, 3, 4)),
		}, "s", "m", "mx", "sm")
	out := run1(t, p, map[string]*Tensor{"x": f32In([]int64{2, 3, 4}, x)}, nil)
	at := func(i, j, k int) float64 { return float64(x[i*12+j*4+k]) }
	var s, m []float64
	for i := 0; i < 2; i++ {
		for k := 0; k < 4; k++ {
			v := 0.0
			for j := 0; j < 3; j++ {
				v += at(i, j, k)
			}
			s = append(s, v)
		}
	}
	for j := 0; j < 3; j++ {
		v := 0.0
		for i := 0; i < 2; i++ {
			for k := 0; k < 4; k++ {
				v += at(i, j, k)
			}
		}
		m = append(m, v/8)
	}
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, float64(v))
	}
	requireClose(t, s, out["s"].F, 1e-6, "reduce_sum")
	requireClose(t, m, out["m"].F, 1e-6, "reduce_mean")
	requireClose(t, []float64{mx}, out["mx"].F, 0, "reduce_max")
	require.Equal(t, []int64{}, out["mx"].Shape)
	var sm []float64
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			for k := 0; k < 4; k++ {
				den := 0.0
				for jj := 0; jj < 3; jj++ {
					den += math.Exp(at(i, jj, k))
				}
				sm = append(sm, math.Exp(at(i, j, k))/den)
			}
		}
	}
	requireClose(t, sm, out["sm"].F, 1e-7, "softmax")
}

func TestSoftmaxInfinities(t *testing.T) {
	inf := float32(math.Inf(-1))
	p := program("main", []*milpb.NamedValueType{nv("x", f16, 2, 3)},
		[]*milpb.Operation{op("softmax", "sm", map[string]any{"x": "x", "axis": scalarI(-1)}, nv("sm", f16, 2, 3))}, "sm")
	out := run1(t, p, map[string]*Tensor{"x": f16In([]int64{2, 3}, []float32{0, inf, 0, inf, inf, inf})}, nil)
	requireClose(t, []float64{0.5, 0, 0.5, math.NaN(), math.NaN(), math.NaN()}, out["sm"].F, 0, "softmax")
}

func TestShapeOps(t *testing.T) {
	x := make([]float32, 24) // [2,3,4] = 0..23
	for i := range x {
		x[i] = float32(i)
	}
	p := program("main", []*milpb.NamedValueType{nv("x", f32, 2, 3, 4)},
		[]*milpb.Operation{
			op("reshape", "r", map[string]any{"x": "x", "shape": vecI(0, -1, 2)}, nv("r", f32, 2, 6, 2)),
			op("transpose", "tr", map[string]any{"x": "x", "perm": vecI(2, 0, 1)}, nv("tr", f32, 4, 2, 3)),
			op("concat", "cc", map[string]any{"values": []any{"x", "x"}, "axis": scalarI(1)}, nv("cc", f32, 2, 6, 4)),
			op("split", "sp", map[string]any{"x": "x", "axis": scalarI(-1), "split_sizes": vecI(1, 3)}, nv("sp_0", f32, 2, 3, 1), nv("sp_1", f32, 2, 3, 3)),
			op("split", "sq", map[string]any{"x": "x", "axis": scalarI(1), "num_splits": scalarI(3)}, nv("sq_0", f32, 2, 1, 4), nv("sq_1", f32, 2, 1, 4), nv("sq_2", f32, 2, 1, 4)),
			op("slice_by_index", "sl", map[string]any{"x": "x", "begin": vecI(1, 0, 1), "end": vecI(2, -1, 0),
				"stride": vecI(1, 2, 2), "end_mask": boolV([]int64{3}, false, false, true), "squeeze_mask": boolV([]int64{3}, true, false, false)},
				nv("sl", f32, 1, 2)),
			op("slice_by_index", "rev", map[string]any{"x": "x", "begin": vecI(0, 0, -1), "end": vecI(0, 0, 0),
				"stride": vecI(1, 1, -1), "begin_mask": boolV([]int64{3}, true, true, false), "end_mask": boolV([]int64{3}, true, true, true)},
				nv("rev", f32, 2, 3, 4)),
			op("slice_by_size", "ss", map[string]any{"x": "x", "begin": vecI(0, 1, -2), "size": vecI(-1, 1, 2)}, nv("ss", f32, 2, 1, 2)),
			op("expand_dims", "ed", map[string]any{"x": "x", "axes": vecI(0, -1)}, nv("ed", f32, 1, 2, 3, 4, 1)),
			op("squeeze", "sz", map[string]any{"x": "ed"}, nv("sz", f32, 2, 3, 4)),
			op("tile", "ti", map[string]any{"x": "sp_0", "reps": vecI(1, 1, 2)}, nv("ti", f32, 2, 3, 2)),
			op("band_part", "bp", map[string]any{"x": "x", "lower": scalarI(0), "upper": scalarI(1)}, nv("bp", f32, 2, 3, 4)),
			op("gather", "ga", map[string]any{"x": "x", "indices": i32V([]int64{2}, 2, 0), "axis": scalarI(1)}, nv("ga", f32, 2, 2, 4)),
			op("fill", "fl", map[string]any{"shape": vecI(2, 2), "value": scalarF(7)}, nv("fl", f32, 2, 2)),
		}, "r", "tr", "cc", "sp_1", "sq_2", "sl", "rev", "ss", "sz", "ti", "bp", "ga", "fl")
	out := run1(t, p, map[string]*Tensor{"x": f32In([]int64{2, 3, 4}, x)}, nil)
	at := func(i, j, k int) float32 { return x[i*12+j*4+k] }

	// iOS17 reshape: the 0 is aligned from the right, so it copies x.shape[0].
	require.Equal(t, x, out["r"].F)
	require.Equal(t, []int64{2, 6, 2}, out["r"].Shape)

	var tr []float32
	for k := 0; k < 4; k++ {
		for i := 0; i < 2; i++ {
			for j := 0; j < 3; j++ {
				tr = append(tr, at(i, j, k))
			}
		}
	}
	require.Equal(t, tr, out["tr"].F)
	var cc []float32
	for i := 0; i < 2; i++ {
		cc = append(cc, x[i*12:(i+1)*12]...)
		cc = append(cc, x[i*12:(i+1)*12]...)
	}
	require.Equal(t, cc, out["cc"].F)
	var sp1, sq2 []float32
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			sp1 = append(sp1, at(i, j, 1), at(i, j, 2), at(i, j, 3))
		}
		sq2 = append(sq2, x[i*12+8:i*12+12]...)
	}
	require.Equal(t, sp1, out["sp_1"].F)
	require.Equal(t, sq2, out["sq_2"].F)
	// x[1, 0:-1:2, 1:] with the first axis squeezed → rows j=0 only, k=1..3 step 2.
	require.Equal(t, []float32{at(1, 0, 1), at(1, 0, 3)}, out["sl"].F)
	var rev []float32
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			for k := 3; k >= 0; k-- {
				rev = append(rev, at(i, j, k))
			}
		}
	}
	require.Equal(t, rev, out["rev"].F)
	require.Equal(t, []float32{at(0, 1, 2), at(0, 1, 3), at(1, 1, 2), at(1, 1, 3)}, out["ss"].F)
	require.Equal(t, x, out["sz"].F)
	require.Equal(t, []int64{2, 3, 4}, out["sz"].Shape)
	var ti []float32
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			ti = append(ti, at(i, j, 0), at(i, j, 0))
		}
	}
	require.Equal(t, ti, out["ti"].F)
	var bp []float32
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			for k := 0; k < 4; k++ {
				if j-k <= 0 && k-j <= 1 {
					bp = append(bp, at(i, j, k))
				} else {
					bp = append(bp, 0)
				}
			}
		}
	}
	require.Equal(t, bp, out["bp"].F)
	var ga []float32
	for i := 0; i < 2; i++ {
		ga = append(ga, x[i*12+8:i*12+12]...)
		ga = append(ga, x[i*12:i*12+4]...)
	}
	require.Equal(t, ga, out["ga"].F)
	require.Equal(t, []float32{7, 7, 7, 7}, out["fl"].F)
	require.Equal(t, f32, out["fl"].DType)
}

// The iOS17 reshape example from the op documentation: [2,50] with
// shape [1,0,-1,0] → [1,1,2,50].
func TestReshapeZeroRule(t *testing.T) {
	p := program("main", []*milpb.NamedValueType{nv("x", i32, 2, 50)},
		[]*milpb.Operation{op("reshape", "r", map[string]any{"x": "x", "shape": vecI(1, 0, -1, 0)}, nv("r", i32, 1, 1, 2, 50))}, "r")
	in := make([]int32, 100)
	for i := range in {
		in[i] = int32(i)
	}
	out := run1(t, p, map[string]*Tensor{"x": NewInt(i32, []int64{2, 50}, in)}, nil)
	require.Equal(t, []int64{1, 1, 2, 50}, out["r"].Shape)
	require.Equal(t, in, out["r"].I)
}
