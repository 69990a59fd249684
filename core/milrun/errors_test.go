package milrun

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"lorapte/core/coremlspec/milpb"
)

func TestErrors(t *testing.T) {
	x1 := []*milpb.NamedValueType{nv("x", f32, 2)}
	xin := map[string]*Tensor{"x": f32In([]int64{2}, []float32{1, 2})}
	withAttr := op("add", "a", map[string]any{"x": "x", "y": "x"}, nv("a", f32, 2))
	withAttr.Attributes["bogus"] = strV("z")
	nested := op("add", "a", map[string]any{"x": "x", "y": "x"}, nv("a", f32, 2))
	nested.Blocks = []*milpb.Block{{}}
	emptyArg := op("add", "a", map[string]any{"x": "x", "y": "x"}, nv("a", f32, 2))
	emptyArg.Inputs["y"] = &milpb.Argument{}
	twoBind := op("add", "a", map[string]any{"x": "x", "y": []any{"x", "x"}}, nv("a", f32, 2))
	unknownDim := op("add", "a", map[string]any{"x": "x", "y": "x"}, nv("a", f32, 2))
	unknownDim.Outputs[0].Type.GetTensorType().Dimensions[0] = &milpb.Dimension{Dimension: &milpb.Dimension_Unknown{Unknown: &milpb.Dimension_UnknownDimension{}}}
	noVal := &milpb.Value{Type: vt(f32, 2)}
	wrongField := immediate(vt(f16, 2), &milpb.TensorValue{Value: &milpb.TensorValue_Floats{Floats: &milpb.TensorValue_RepeatedFloats{Values: []float32{1, 2}}}})
	w := fakeWeights{0: {code: 1, data: f16Bytes([]float32{1, 2})}}

	cases := []struct {
		name string
		p    *milpb.Program
		in   map[string]*Tensor
		w    Weights
		want string
	}{
		{"unknown op", program("main", x1, []*milpb.Operation{op("frobnicate", "a", map[string]any{"x": "x"}, nv("a", f32, 2))}, "a"),
			xin, nil, `op "a" (frobnicate): unknown op type "frobnicate"`},
		{"unknown param", program("main", x1, []*milpb.Operation{op("exp", "a", map[string]any{"x": "x", "alpha": scalarF(1)}, nv("a", f32, 2))}, "a"),
			xin, nil, `unknown parameter "alpha"`},
		{"missing param", program("main", x1, []*milpb.Operation{op("add", "a", map[string]any{"x": "x"}, nv("a", f32, 2))}, "a"),
			xin, nil, `required parameter "y" missing`},
		{"dangling name", program("main", x1, []*milpb.Operation{op("add", "a", map[string]any{"x": "x", "y": "nope"}, nv("a", f32, 2))}, "a"),
			xin, nil, `parameter "y" binds "nope", which is not defined before this op`},
		{"use before def", program("main", x1, []*milpb.Operation{
			op("add", "a", map[string]any{"x": "x", "y": "b"}, nv("a", f32, 2)),
			op("exp", "b", map[string]any{"x": "x"}, nv("b", f32, 2))}, "a"),
			xin, nil, `binds "b", which is not defined`},
		{"declared dtype mismatch", program("main", x1, []*milpb.Operation{op("add", "a", map[string]any{"x": "x", "y": "x"}, nv("a", f16, 2))}, "a"),
			xin, nil, `output "a" declared tensor<fp16,[2]> but op computes tensor<fp32,[2]>`},
		{"declared shape mismatch", program("main", x1, []*milpb.Operation{op("add", "a", map[string]any{"x": "x", "y": "x"}, nv("a", f32, 1, 2))}, "a"),
			xin, nil, `declared tensor<fp32,[1,2]> but op computes tensor<fp32,[2]>`},
		{"output count", program("main", x1, []*milpb.Operation{op("split", "s", map[string]any{"x": "x", "axis": scalarI(0), "num_splits": scalarI(2)}, nv("s_0", f32, 1))}, "s_0"),
			xin, nil, `computes 2 outputs, op declares 1`},
		{"missing input", program("main", x1, []*milpb.Operation{op("exp", "a", map[string]any{"x": "x"}, nv("a", f32, 2))}, "a"),
			map[string]*Tensor{}, nil, `input "x" (tensor<fp32,[2]>) not given`},
		{"extra input", program("main", x1, []*milpb.Operation{op("exp", "a", map[string]any{"x": "x"}, nv("a", f32, 2))}, "a"),
			map[string]*Tensor{"x": xin["x"], "z": xin["x"]}, nil, `input "z" given but not declared`},
		{"input shape", program("main", x1, []*milpb.Operation{op("exp", "a", map[string]any{"x": "x"}, nv("a", f32, 2))}, "a"),
			map[string]*Tensor{"x": f32In([]int64{1, 2}, []float32{1, 2})}, nil, `input "x" is tensor<fp32,[1,2]>, function declares tensor<fp32,[2]>`},
		{"input dtype", program("main", x1, []*milpb.Operation{op("exp", "a", map[string]any{"x": "x"}, nv("a", f32, 2))}, "a"),
			map[string]*Tensor{"x": f16In([]int64{2}, []float32{1, 2})}, nil, `input "x" is tensor<fp16,[2]>`},
		{"input storage", program("main", x1, []*milpb.Operation{op("exp", "a", map[string]any{"x": "x"}, nv("a", f32, 2))}, "a"),
			map[string]*Tensor{"x": f32In([]int64{2}, []float32{1})}, nil, `holds 1 values, want 2`},
		{"int8 input range", program("main", []*milpb.NamedValueType{nv("x", i8, 1)}, []*milpb.Operation{op("identity", "a", map[string]any{"x": "x"}, nv("a", i8, 1))}, "a"),
			map[string]*Tensor{"x": NewInt(i8, []int64{1}, []int32{200})}, nil, `out of range`},
		{"gather index out of range", program("main", []*milpb.NamedValueType{nv("t", i32, 2)}, []*milpb.Operation{
			op("gather", "g", map[string]any{"x": f32V([]int64{3, 2}, 1, 2, 3, 4, 5, 6), "indices": "t"}, nv("g", f32, 2, 2))}, "g"),
			map[string]*Tensor{"t": NewInt(i32, []int64{2}, []int32{1, 3})}, nil, `index 3 (element 1 of indices) out of range [0, 3)`},
		{"gather negative index", program("main", []*milpb.NamedValueType{nv("t", i32, 1)}, []*milpb.Operation{
			op("gather", "g", map[string]any{"x": f32V([]int64{3}, 1, 2, 3), "indices": "t"}, nv("g", f32, 1))}, "g"),
			map[string]*Tensor{"t": NewInt(i32, []int64{1}, []int32{-1})}, nil, `index -1`},
		{"dtype mismatch x/y", program("main", x1, []*milpb.Operation{op("add", "a", map[string]any{"x": "x", "y": f16V([]int64{2}, 1, 2)}, nv("a", f32, 2))}, "a"),
			xin, nil, `dtypes must match`},
		{"bad broadcast", program("main", x1, []*milpb.Operation{op("add", "a", map[string]any{"x": "x", "y": f32V([]int64{3}, 1, 2, 3)}, nv("a", f32, 3))}, "a"),
			xin, nil, `not broadcast-compatible`},
		{"non-const weight", program("main", []*milpb.NamedValueType{nv("x", f32, 1, 2), nv("w", f32, 2, 2)}, []*milpb.Operation{
			op("linear", "l", map[string]any{"x": "x", "weight": "w"}, nv("l", f32, 1, 2))}, "l"),
			map[string]*Tensor{"x": f32In([]int64{1, 2}, []float32{1, 2}), "w": f32In([]int64{2, 2}, []float32{1, 2, 3, 4})}, nil,
			`parameter "weight" must be a compile-time constant`},
		{"constexpr from const op", program("main", nil, []*milpb.Operation{
			constOp("d", bytesV(i8, []int64{2}, []byte{1, 2})),
			op("constexpr_blockwise_shift_scale", "w", map[string]any{"data": "d", "scale": f32V([]int64{1}, 1)}, nv("w", f32, 2))}, "w"),
			nil, nil, `parameter "data" must be a value binding or a constexpr output`},
		{"scale does not divide", program("main", nil, []*milpb.Operation{
			op("constexpr_blockwise_shift_scale", "w", map[string]any{"data": bytesV(i8, []int64{3}, []byte{1, 2, 3}), "scale": f32V([]int64{2}, 1, 2)}, nv("w", f32, 3))}, "w"),
			nil, nil, `does not divide`},
		{"unknown attribute", program("main", x1, []*milpb.Operation{withAttr}, "a"), xin, nil, `unknown attribute "bogus"`},
		{"nested blocks", program("main", x1, []*milpb.Operation{nested}, "a"), xin, nil, `nested blocks`},
		{"empty argument", program("main", x1, []*milpb.Operation{emptyArg}, "a"), xin, nil, `parameter "y" has no bindings`},
		{"two bindings", program("main", x1, []*milpb.Operation{twoBind}, "a"), xin, nil, `parameter "y" has 2 bindings, want 1`},
		{"unknown dim", program("main", x1, []*milpb.Operation{unknownDim}, "a"), xin, nil, `dimension 0 is not a constant`},
		{"redefinition", program("main", x1, []*milpb.Operation{op("exp", "x", map[string]any{"x": "x"}, nv("x", f32, 2))}, "x"),
			xin, nil, `output "x" redefines an existing name`},
		{"undefined block output", program("main", x1, []*milpb.Operation{op("exp", "a", map[string]any{"x": "x"}, nv("a", f32, 2))}, "b"),
			xin, nil, `block output "b" is not defined`},
		{"value without data", program("main", x1, []*milpb.Operation{op("add", "a", map[string]any{"x": "x", "y": noVal}, nv("a", f32, 2))}, "a"),
			xin, nil, `carries no data`},
		{"immediate wrong field", program("main", nil, []*milpb.Operation{constOp("c", wrongField)}, "c"),
			nil, nil, `dtype FLOAT16 must be encoded in bytes, got floats`},
		{"immediate wrong length", program("main", nil, []*milpb.Operation{constOp("c", f32V([]int64{3}, 1, 2))}, "c"),
			nil, nil, `2 values, want 3`},
		{"blob without weights", program("main", nil, []*milpb.Operation{constOp("c", blobV(f16, []int64{2}, 0))}, "c"),
			nil, nil, `no Weights were given`},
		{"blob dtype mismatch", program("main", nil, []*milpb.Operation{constOp("c", blobV(f32, []int64{2}, 0))}, "c"),
			nil, w, `blob dtype code 1, want 2`},
		{"blob size mismatch", program("main", nil, []*milpb.Operation{constOp("c", blobV(f16, []int64{3}, 0))}, "c"),
			nil, w, `4 data bytes, want 6`},
		{"blob missing", program("main", nil, []*milpb.Operation{constOp("c", blobV(f16, []int64{2}, 64))}, "c"),
			nil, w, `no blob at`},
		{"reshape volume", program("main", x1, []*milpb.Operation{op("reshape", "r", map[string]any{"x": "x", "shape": vecI(3)}, nv("r", f32, 3))}, "r"),
			xin, nil, `cannot reshape`},
		{"huge fill", program("main", nil, []*milpb.Operation{op("fill", "f", map[string]any{"shape": vecI(1<<20, 1<<20)}, nv("f", f32, 1<<20, 1<<20))}, "f"),
			nil, nil, `elements`},
		{"bad cast target", program("main", x1, []*milpb.Operation{op("cast", "c", map[string]any{"x": "x", "dtype": strV("int64")}, nv("c", i32, 2))}, "c"),
			xin, nil, `unsupported cast dtype "int64"`},
		{"bad perm", program("main", []*milpb.NamedValueType{nv("x", f32, 2, 2)}, []*milpb.Operation{op("transpose", "t", map[string]any{"x": "x", "perm": vecI(0, 0)}, nv("t", f32, 2, 2))}, "t"),
			map[string]*Tensor{"x": f32In([]int64{2, 2}, []float32{1, 2, 3, 4})}, nil, `repeats axis`},
		{"matmul dims", program("main", []*milpb.NamedValueType{nv("x", f32, 2, 3)}, []*milpb.Operation{op("matmul", "m", map[string]any{"x": "x", "y": "x"}, nv("m", f32, 2, 3))}, "m"),
			map[string]*Tensor{"x": f32In([]int64{2, 3}, make([]float32, 6))}, nil, `contracted dims 3 and 2 differ`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Run(c.p, "main", c.in, c.w)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
			require.Contains(t, err.Error(), `milrun: `)
		})
	}
}

func TestProgramLevelErrors(t *testing.T) {
	p := program("main", nil, []*milpb.Operation{constOp("c", scalarF(1))}, "c")
	_, err := Run(p, "forward", nil, nil)
	require.ErrorContains(t, err, `program has no function "forward" (have [main])`)
	p.Functions["main"].Opset = "CoreML7"
	_, err = Run(p, "main", nil, nil)
	require.ErrorContains(t, err, `opset "CoreML7"`)
	_, err = Run(nil, "main", nil, nil)
	require.Error(t, err)
	p = program("main", nil, []*milpb.Operation{nil}, "c")
	_, err = Run(p, "main", nil, nil)
	require.Error(t, err)
}

// Outputs are copies: mutating them does not affect a Session's cache.
func TestOutputsAreCopies(t *testing.T) {
	p := program("main", nil, []*milpb.Operation{
		constOp("c", f32V([]int64{2}, 1, 2)),
		op("identity", "o", map[string]any{"x": "c"}, nv("o", f32, 2)),
	}, "o")
	s := NewSession(p, nil)
	out, err := s.Run("main", nil)
	require.NoError(t, err)
	out["o"].F[0] = 99
	out, err = s.Run("main", nil)
	require.NoError(t, err)
	require.Equal(t, []float32{1, 2}, out["o"].F)
}

// FuzzRun feeds mutated serialized programs to the interpreter: it must
// return errors, never panic.
func FuzzRun(f *testing.F) {
	lin, w, _, _, _ := int4Linear()
	seeds := []*milpb.Program{
		lin,
		program("main", []*milpb.NamedValueType{nv("x", f16, 1, 3, 8)}, []*milpb.Operation{
			op("reshape", "r", map[string]any{"x": "x", "shape": vecI(0, -1, 4)}, nv("r", f16, 1, 6, 4)),
			op("softmax", "s", map[string]any{"x": "r"}, nv("s", f16, 1, 6, 4)),
			op("slice_by_index", "sl", map[string]any{"x": "s", "begin": vecI(0, 1, 0), "end": vecI(1, 5, 4), "stride": vecI(1, 2, 1)}, nv("sl", f16, 1, 2, 4)),
			op("reduce_sum", "rs", map[string]any{"x": "sl", "axes": vecI(-1)}, nv("rs", f16, 1, 2)),
		}, "rs"),
	}
	for _, s := range seeds {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
		require.NoError(f, err)
		f.Add(b)
	}
	in := map[string]*Tensor{"x": f16In([]int64{1, 3, 8}, seq(24, 1, 0))}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p milpb.Program
		if proto.Unmarshal(b, &p) != nil {
			return
		}
		for name := range p.GetFunctions() {
			_, _ = Run(&p, name, in, w)
		}
	})
}
