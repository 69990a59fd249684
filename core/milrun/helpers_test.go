package milrun

import (
	"encoding/binary"
	"fmt"
	"lorapte/core/quant"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/coremlspec/milpb"
)

// Tiny local MIL builder for tests (the real builder lives elsewhere).

const (
	f16  = milpb.DataType_FLOAT16
	f32  = milpb.DataType_FLOAT32
	i32  = milpb.DataType_INT32
	i8   = milpb.DataType_INT8
	u8   = milpb.DataType_UINT8
	i4   = milpb.DataType_INT4
	u4   = milpb.DataType_UINT4
	tb   = milpb.DataType_BOOL
	tstr = milpb.DataType_STRING
)

func vt(dt milpb.DataType, shape ...int64) *milpb.ValueType {
	dims := make([]*milpb.Dimension, len(shape))
	for i, d := range shape {
		dims[i] = &milpb.Dimension{Dimension: &milpb.Dimension_Constant{Constant: &milpb.Dimension_ConstantDimension{Size: uint64(d)}}}
	}
	return &milpb.ValueType{Type: &milpb.ValueType_TensorType{TensorType: &milpb.TensorType{DataType: dt, Rank: int64(len(shape)), Dimensions: dims}}}
}

func nv(name string, dt milpb.DataType, shape ...int64) *milpb.NamedValueType {
	return &milpb.NamedValueType{Name: name, Type: vt(dt, shape...)}
}

func immediate(t *milpb.ValueType, tv *milpb.TensorValue) *milpb.Value {
	return &milpb.Value{Type: t, Value: &milpb.Value_ImmediateValue_{ImmediateValue: &milpb.Value_ImmediateValue{
		Value: &milpb.Value_ImmediateValue_Tensor{Tensor: tv}}}}
}

func strV(s string) *milpb.Value {
	return immediate(vt(tstr), &milpb.TensorValue{Value: &milpb.TensorValue_Strings{Strings: &milpb.TensorValue_RepeatedStrings{Values: []string{s}}}})
}

func f32V(shape []int64, v ...float32) *milpb.Value {
	return immediate(vt(f32, shape...), &milpb.TensorValue{Value: &milpb.TensorValue_Floats{Floats: &milpb.TensorValue_RepeatedFloats{Values: v}}})
}

func f16Bytes(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], quant.F32ToF16(x))
	}
	return b
}

func f16V(shape []int64, v ...float32) *milpb.Value {
	return bytesV(f16, shape, f16Bytes(v))
}

func bytesV(dt milpb.DataType, shape []int64, b []byte) *milpb.Value {
	return immediate(vt(dt, shape...), &milpb.TensorValue{Value: &milpb.TensorValue_Bytes{Bytes: &milpb.TensorValue_RepeatedBytes{Values: b}}})
}

func i32V(shape []int64, v ...int32) *milpb.Value {
	return immediate(vt(i32, shape...), &milpb.TensorValue{Value: &milpb.TensorValue_Ints{Ints: &milpb.TensorValue_RepeatedInts{Values: v}}})
}

func boolV(shape []int64, v ...bool) *milpb.Value {
	return immediate(vt(tb, shape...), &milpb.TensorValue{Value: &milpb.TensorValue_Bools{Bools: &milpb.TensorValue_RepeatedBools{Values: v}}})
}

func scalarI(v int32) *milpb.Value   { return i32V(nil, v) }
func scalarB(v bool) *milpb.Value    { return boolV(nil, v) }
func scalarF(v float32) *milpb.Value { return f32V(nil, v) }
func vecI(v ...int32) *milpb.Value   { return i32V([]int64{int64(len(v))}, v...) }

func blobV(dt milpb.DataType, shape []int64, offset uint64) *milpb.Value {
	return &milpb.Value{Type: vt(dt, shape...), Value: &milpb.Value_BlobFileValue_{BlobFileValue: &milpb.Value_BlobFileValue{
		FileName: "@model_path/weights/weight.bin", Offset: offset}}}
}

// op builds an operation. Input values: string = name binding,
// *milpb.Value = value binding, []any = variadic bindings.
func op(typ, name string, in map[string]any, outs ...*milpb.NamedValueType) *milpb.Operation {
	o := &milpb.Operation{Type: typ, Inputs: map[string]*milpb.Argument{}, Outputs: outs,
		Attributes: map[string]*milpb.Value{"name": strV(name)}}
	bind := func(v any) *milpb.Argument_Binding {
		switch x := v.(type) {
		case string:
			return &milpb.Argument_Binding{Binding: &milpb.Argument_Binding_Name{Name: x}}
		case *milpb.Value:
			return &milpb.Argument_Binding{Binding: &milpb.Argument_Binding_Value{Value: x}}
		}
		panic(fmt.Sprintf("bad binding %T", v))
	}
	for k, v := range in {
		arg := &milpb.Argument{}
		if list, ok := v.([]any); ok {
			for _, e := range list {
				arg.Arguments = append(arg.Arguments, bind(e))
			}
		} else {
			arg.Arguments = []*milpb.Argument_Binding{bind(v)}
		}
		o.Inputs[k] = arg
	}
	return o
}

// constOp is a const op whose output is named like the op.
func constOp(name string, v *milpb.Value) *milpb.Operation {
	return &milpb.Operation{Type: "const", Outputs: []*milpb.NamedValueType{{Name: name, Type: v.Type}},
		Attributes: map[string]*milpb.Value{"name": strV(name), "val": v}}
}

func program(fn string, inputs []*milpb.NamedValueType, ops []*milpb.Operation, outputs ...string) *milpb.Program {
	return &milpb.Program{Version: 1, Functions: map[string]*milpb.Function{fn: {
		Inputs: inputs, Opset: "CoreML8",
		BlockSpecializations: map[string]*milpb.Block{"CoreML8": {Outputs: outputs, Operations: ops}},
	}}}
}

// fakeWeights serves blobs keyed by offset.
type fakeWeights map[uint64]fakeBlob

type fakeBlob struct {
	code uint32
	data []byte
	pad  uint64
}

func (w fakeWeights) ReadBlob(file string, off uint64) (uint32, []byte, uint64, error) {
	b, ok := w[off]
	if !ok || file != "@model_path/weights/weight.bin" {
		return 0, nil, 0, fmt.Errorf("no blob at %s@%d", file, off)
	}
	return b.code, b.data, b.pad, nil
}

// packInt4 packs int4 values low nibble first.
func packInt4(v []int) []byte {
	b := make([]byte, (len(v)+1)/2)
	for i, x := range v {
		b[i/2] |= byte(x&0xF) << (4 * (i % 2))
	}
	return b
}

func f32In(shape []int64, v []float32) *Tensor { return &Tensor{DType: f32, Shape: shape, F: v} }
func f16In(shape []int64, v []float32) *Tensor {
	return &Tensor{DType: f16, Shape: shape, F: append([]float32{}, v...)}
}

func run1(t *testing.T, p *milpb.Program, in map[string]*Tensor, w Weights) map[string]*Tensor {
	t.Helper()
	out, err := Run(p, "main", in, w)
	require.NoError(t, err)
	return out
}

// requireClose compares element-wise with an absolute tolerance.
func requireClose(t *testing.T, want []float64, got []float32, tol float64, msg string) {
	t.Helper()
	require.Len(t, got, len(want), msg)
	for i := range want {
		if math.IsNaN(want[i]) {
			require.True(t, math.IsNaN(float64(got[i])), "%s[%d]: want NaN, got %v", msg, i, got[i])
			continue
		}
		require.InDelta(t, want[i], float64(got[i]), tol, "%s[%d]", msg, i)
	}
}

// seq returns 0.1*(i - n/2) style deterministic test data.
func seq(n int, scale, shift float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale*math.Sin(float64(i)*1.3+shift) + 0.01*float64(i%7))
	}
	return v
}
