package mil

import (
	"lorapte/core/quant"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/coremlspec/milpb"
	"lorapte/core/milblob"
)

func TestF16Bits(t *testing.T) {
	cases := map[float32]uint16{
		1: 0x3C00, 0.5: 0x3800, -2: 0xC000, 65504: 0x7BFF, 65520: 0x7C00, 1e9: 0x7C00,
		1e-5: 0x00A8, // subnormal: 1e-5 * 2^24 = 167.77 -> 168
		0:    0, float32(math.Inf(-1)): 0xFC00, 1.0 / (1 << 25): 0, 3.0 / (1 << 26): 1,
	}
	for x, want := range cases {
		require.Equal(t, want, quant.F32ToF16(x), "%g", x)
	}
	require.Equal(t, uint16(0x8000), quant.F32ToF16(float32(math.Copysign(0, -1))))
	require.True(t, math.IsNaN(float64(quant.F16ToF32(quant.F32ToF16(float32(math.NaN()))))))
	// exhaustive: exact values round trip, midpoints round to even
	for h := uint16(0); h < 0x7C00; h++ {
		x := quant.F16ToF32(h)
		require.Equal(t, h, quant.F32ToF16(x))
		require.Equal(t, h|0x8000, quant.F32ToF16(-x))
		if h+1 < 0x7C00 {
			mid := float32((float64(x) + float64(quant.F16ToF32(h+1))) / 2)
			want := h
			if h&1 == 1 {
				want = h + 1
			}
			require.Equal(t, want, quant.F32ToF16(mid), "midpoint after %#04x", h)
		}
	}
}

func newFunc() (*Program, *Function) {
	p := NewProgram()
	return p, p.Func("main")
}

func constOf(t *testing.T, f *Function, name string) *milpb.Operation {
	t.Helper()
	for _, op := range f.ops {
		if op.GetType() == "const" && op.GetOutputs()[0].GetName() == name {
			return op
		}
	}
	t.Fatalf("no const %q", name)
	return nil
}

func intsOf(op *milpb.Operation) []int32 {
	return op.GetAttributes()["val"].GetImmediateValue().GetTensor().GetInts().GetValues()
}

func TestShapes(t *testing.T) {
	p, f := newFunc()
	x := f.Input("x", FP16, 2, 50)
	require.Equal(t, []int64{1, 1, 2, 50}, f.Reshape("r", x, []int64{1, 0, -1, 0}).Shape)
	require.Equal(t, []int32{1, 1, 2, 50}, intsOf(constOf(t, f, "r_shape")))
	require.Equal(t, []int64{100}, f.Reshape("r2", x, []int64{-1}).Shape)

	a := f.Input("a", FP16, 3, 1, 4, 5)
	b := f.Input("b", FP16, 2, 5, 6)
	require.Equal(t, []int64{3, 2, 4, 6}, f.Matmul("mm", a, b, false, false).Shape)
	require.Equal(t, []int64{3, 1, 5, 5}, f.Matmul("mm2", a, a, true, false).Shape, "transpose_x")
	v := f.Input("v", FP16, 5)
	require.Equal(t, []int64{3, 1, 4}, f.Matmul("mv", a, v, false, false).Shape)
	require.Equal(t, []int64{2, 6}, f.Matmul("vm", v, b, false, false).Shape)

	s := f.Input("s", FP16, 1, 4, 8)
	sl := f.SliceByIndex("sl", s, []int32{0, -1, 0}, []int32{1, 4, 8})
	require.Equal(t, []int64{1, 1, 8}, sl.Shape)
	require.Equal(t, []int32{0, 3, 0}, intsOf(constOf(t, f, "sl_begin")))
	require.Equal(t, []int64{1, 2, 4}, f.SliceByIndex("sl2", s, []int32{0, 1, -4}, []int32{1, -1, 100}).Shape)

	parts := f.Split("sp", s, -1, []int32{2, 6})
	require.Len(t, parts, 2)
	require.Equal(t, "sp_1", parts[1].Name)
	require.Equal(t, []int64{1, 4, 6}, parts[1].Shape)

	require.Equal(t, []int64{1, 4, 8, 1}, f.ExpandDims("e1", s, []int32{-1}).Shape)
	require.Equal(t, []int64{1, 1, 1, 4, 8}, f.ExpandDims("e2", s, []int32{0, 2}).Shape)
	require.Equal(t, []int64{4, 8}, f.Squeeze("q1", s, nil).Shape)
	require.Equal(t, []int32{0}, intsOf(constOf(t, f, "q1_axes")))
	one := f.Input("one", FP32, 1)
	require.Empty(t, f.Squeeze("q2", one, nil).Shape)

	require.Equal(t, []int64{1, 4, 1}, f.Reduce("reduce_sum", "rs", s, []int32{-1}, true).Shape)
	require.Equal(t, []int64{1, 8}, f.Reduce("reduce_max", "rm", s, []int32{1}, false).Shape)
	require.Empty(t, f.Reduce("reduce_mean", "ra", s, nil, false).Shape)

	require.Equal(t, []int64{2, 8, 16}, f.Tile("t", s, []int32{2, 2, 2}).Shape)
	require.Equal(t, []int64{8, 1, 4}, f.Transpose("tr", s, []int32{2, 0, -2}).Shape)
	require.Equal(t, []int32{2, 0, 1}, intsOf(constOf(t, f, "tr_perm")))

	c := f.Cast("c", s, FP32)
	require.Equal(t, FP32, c.DType)
	require.Equal(t, []string{"fp32"}, constOf(t, f, "c_dtype").GetAttributes()["val"].GetImmediateValue().GetTensor().GetStrings().GetValues())

	m := f.Input("m", FP16, 4, 1)
	cmp := f.Compare("less", "lt", m, s)
	require.Equal(t, BOOL, cmp.DType)
	require.Equal(t, []int64{1, 4, 8}, cmp.Shape)
	require.Equal(t, []int64{1, 4, 8}, f.Select("sel", cmp, s, m).Shape)

	idx := f.Input("idx", INT32, 1, 3)
	table := f.Const("table", Blob(FP16, []int64{10, 4}, 64))
	require.Equal(t, []int64{1, 3, 4}, f.Gather("g", table, idx, 0).Shape)
	require.Equal(t, []int64{10, 1, 3}, f.Gather("g1", table, idx, -1).Shape)

	require.Equal(t, []int64{1, 4, 16}, f.Concat("cat", -1, s, s).Shape)
	r := f.Rsqrt("rsq", s, 1e-6)
	require.Equal(t, FP16, r.DType)
	require.Equal(t, milblob.FP16.MIL(), constOf(t, f, "rsq_epsilon").GetOutputs()[0].GetType().GetTensorType().GetDataType())

	require.NoError(t, p.Err())
}

func TestLinearAndConstexpr(t *testing.T) {
	p, f := newFunc()
	x := f.Input("x", FP16, 1, 3, 8)
	w := f.ConstexprBlockwiseShiftScale("w", Raw(INT4, []int64{4, 8}, make([]byte, 16)), F16([]int64{4, 2}, make([]uint16, 8)))
	require.Equal(t, FP16, w.DType)
	require.Equal(t, []int64{4, 8}, w.Shape)
	bias := f.Const("bias", F16([]int64{4}, []uint16{0, 0, 0, 0}))
	y := f.Linear("y", x, w, bias)
	require.Equal(t, []int64{1, 3, 4}, y.Shape)
	require.NoError(t, p.Err())

	wo := f.ConstexprBlockwiseShiftScaleOffset("wo", Raw(UINT4, []int64{4, 8}, make([]byte, 16)), F32([]int64{4, 1}, make([]float32, 4)), Raw(UINT4, []int64{4, 1}, make([]byte, 2)))
	require.Equal(t, FP32, wo.DType)
	require.NoError(t, p.Err())
}

func TestBuildErrors(t *testing.T) {
	cases := map[string]func(f *Function){
		"already defined": func(f *Function) {
			x := f.Input("x", FP16, 2)
			f.Add("x", x, x)
		},
		"not a valid identifier": func(f *Function) { f.Input("bad-name", FP16, 2) },
		"nil var":                func(f *Function) { f.Unary("exp", "e", nil) },
		"must share one of": func(f *Function) {
			f.Add("a", f.Input("x", FP16, 2), f.Input("y", FP32, 2))
		},
		"do not broadcast": func(f *Function) {
			f.Add("a", f.Input("x", FP16, 2), f.Input("y", FP16, 3))
		},
		"must be a const": func(f *Function) {
			f.Linear("l", f.Input("x", FP16, 1, 4), f.Input("w", FP16, 3, 4), nil)
		},
		"x rank 4": func(f *Function) {
			w := f.Const("w", F32([]int64{3, 4}, make([]float32, 12)))
			f.Linear("l", f.Input("x", FP32, 1, 1, 1, 4), w, nil)
		},
		"not divisible": func(f *Function) {
			f.ConstexprBlockwiseShiftScale("w", Raw(INT8, []int64{4, 6}, make([]byte, 24)), F16([]int64{4, 4}, make([]uint16, 16)))
		},
		"same rank": func(f *Function) {
			f.ConstexprBlockwiseShiftScale("w", Raw(INT8, []int64{4, 6}, make([]byte, 24)), F16([]int64{4}, make([]uint16, 4)))
		},
		"needs 4 elements": func(f *Function) { f.Const("c", F16([]int64{2, 2}, []uint16{1})) },
		"not a metadata record offset": func(f *Function) {
			f.Const("c", Blob(FP16, []int64{2}, 100))
		},
		"cannot be stored": func(f *Function) { f.Const("c", Blob(BOOL, []int64{2}, 64)) },
		"more than one -1": func(f *Function) {
			f.Reshape("r", f.Input("x", FP16, 2, 4), []int64{-1, -1})
		},
		"has 6 elements": func(f *Function) {
			f.Reshape("r", f.Input("x", FP16, 2, 4), []int64{2, 3})
		},
		"inner dims differ": func(f *Function) {
			f.Matmul("m", f.Input("x", FP16, 2, 3), f.Input("y", FP16, 2, 3), false, false)
		},
		"not exactly one const": func(f *Function) {
			f.Matmul("m", f.Input("x", FP16, 2, 3), f.Input("y", FP32, 3, 3), false, false)
		},
		"empty slice": func(f *Function) {
			f.SliceByIndex("s", f.Input("x", FP16, 2, 3), []int32{0, 2}, []int32{2, 1})
		},
		"do not add up": func(f *Function) { f.Split("s", f.Input("x", FP16, 6), 0, []int32{2, 2}) },
		"axis 1 has size 3": func(f *Function) {
			f.Squeeze("s", f.Input("x", FP16, 1, 3), []int32{1})
		},
		"axis 2 out of range": func(f *Function) { f.Softmax("s", f.Input("x", FP16, 1, 3), 2) },
		"repeated":            func(f *Function) { f.Transpose("t", f.Input("x", FP16, 1, 3), []int32{0, 0}) },
		"not supported":       func(f *Function) { f.Cast("c", f.Input("x", FP16, 3), INT64) },
		"unknown unary op":    func(f *Function) { f.Unary("cosh", "c", f.Input("x", FP16, 3)) },
		"cond dtype": func(f *Function) {
			x := f.Input("x", FP16, 3)
			f.Select("s", x, x, x)
		},
		"SetOutputs called twice": func(f *Function) {
			x := f.Unary("exp", "e", f.Input("x", FP16, 3))
			f.SetOutputs(x)
			f.SetOutputs(x)
		},
		"indices dtype": func(f *Function) {
			f.Gather("g", f.Input("x", FP16, 3, 2), f.Input("i", FP16, 1), 0)
		},
	}
	for msg, build := range cases {
		p, f := newFunc()
		build(f)
		require.ErrorContains(t, p.Err(), msg)
		_, err := p.Proto()
		require.ErrorContains(t, err, msg, "Proto returns the recorded error")
	}

	// A var of another function is rejected.
	p := NewProgram()
	a, b := p.Func("a"), p.Func("b")
	x := a.Input("x", FP16, 2)
	b.Unary("exp", "e", x)
	require.ErrorContains(t, p.Err(), `var "x" is not defined in function "b"`)

	// Duplicate function.
	p = NewProgram()
	p.Func("a")
	p.Func("a")
	require.ErrorContains(t, p.Err(), "duplicate function")
}

func TestOutputsAndDescription(t *testing.T) {
	p := NewProgram()
	f := p.Func("forward")
	tok := f.Input("tokens", INT32, 1, 2)
	s := f.Input("pos", INT32)
	e := f.Unary("abs", "e", tok)
	c := f.Const("k", I32([]int64{2}, []int32{1, 2}))
	f.SetOutputs(e, tok, e, c, s)
	names := []string{}
	for _, o := range f.Outputs() {
		names = append(names, o.Name)
	}
	require.Equal(t, []string{"e", "tokens_out", "e_out", "k_out", "pos_out"}, names)
	require.Equal(t, 4, f.Counts()["identity"])

	d, err := p.Description("forward")
	require.NoError(t, err)
	fd := d.GetFunctions()[0]
	require.Equal(t, []int64{1}, fd.GetInput()[1].GetType().GetMultiArrayType().GetShape(), "rank-0 input is described as [1]")
	require.Equal(t, "pos_out", fd.GetOutput()[4].GetName())

	_, err = p.Description("prefill")
	require.ErrorContains(t, err, "default function")

	g := p.Func("bad")
	g.SetOutputs(g.Cast("b", g.Input("x", FP16, 2), BOOL))
	_, err = p.Model("forward")
	require.ErrorContains(t, err, "not a valid Core ML I/O type")

	p2 := NewProgram()
	p2.Func("f")
	_, err = p2.Proto()
	require.ErrorContains(t, err, "no outputs")
}
