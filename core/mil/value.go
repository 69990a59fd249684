package mil

import (
	"encoding/binary"
	"fmt"
	"lorapte/core/quant"

	"google.golang.org/protobuf/proto"

	"lorapte/core/coremlspec/milpb"
	"lorapte/core/milblob"
)

// DataType is the MIL tensor element type.
type DataType = milpb.DataType

// Element types used by lorapte's graphs.
const (
	FP16   = milpb.DataType_FLOAT16
	FP32   = milpb.DataType_FLOAT32
	INT32  = milpb.DataType_INT32
	INT64  = milpb.DataType_INT64
	INT16  = milpb.DataType_INT16
	UINT16 = milpb.DataType_UINT16
	INT8   = milpb.DataType_INT8
	UINT8  = milpb.DataType_UINT8
	INT4   = milpb.DataType_INT4
	UINT4  = milpb.DataType_UINT4
	BOOL   = milpb.DataType_BOOL
	STRING = milpb.DataType_STRING
)

// WeightFile is the BlobFileValue file name of the package's weight file.
const WeightFile = "@model_path/weights/weight.bin"

// maxElements bounds tensor sizes so element counts never overflow.
const maxElements = int64(1) << 48

// Value is a typed compile-time literal: an immediate tensor or a reference to
// a blob in WeightFile. Constructors never fail; a malformed value carries its
// error, which is recorded when the value is used by a Function.
type Value struct {
	pb    *milpb.Value
	dt    DataType
	shape []int64
	err   error
}

// DType is the element type of the value.
func (v Value) DType() DataType { return v.dt }

// Shape is a copy of the value's static shape (empty for a scalar).
func (v Value) Shape() []int64 { return append([]int64{}, v.shape...) }

// Err reports why the value is malformed, if it is.
func (v Value) Err() error {
	if v.err == nil && v.pb == nil {
		return fmt.Errorf("mil: empty Value")
	}
	return v.err
}

// Proto returns a copy of the value as a MIL protobuf Value (nil when malformed).
func (v Value) Proto() *milpb.Value {
	if v.err != nil || v.pb == nil {
		return nil
	}
	c := proto.Clone(v.pb).(*milpb.Value)
	if c.Type == nil {
		c.Type = TensorType(v.dt, v.shape)
	}
	return c
}

// BlobOffset returns the metadata offset of a blob value.
func (v Value) BlobOffset() (uint64, bool) {
	if b := v.pb.GetBlobFileValue(); b != nil {
		return b.GetOffset(), true
	}
	return 0, false
}

// numElements validates a static shape and returns its element count.
func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d <= 0 {
			return 0, fmt.Errorf("dimension %d of shape %v is %d (static shapes need sizes >= 1)", i, shape, d)
		}
		if n > maxElements/d {
			return 0, fmt.Errorf("shape %v has too many elements", shape)
		}
		n *= d
	}
	return n, nil
}

// TensorType builds the MIL ValueType of a static tensor (rank 0 = scalar).
func TensorType(dt DataType, shape []int64) *milpb.ValueType {
	dims := make([]*milpb.Dimension, len(shape))
	for i, d := range shape {
		dims[i] = &milpb.Dimension{Dimension: &milpb.Dimension_Constant{Constant: &milpb.Dimension_ConstantDimension{Size: uint64(d)}}}
	}
	return &milpb.ValueType{Type: &milpb.ValueType_TensorType{TensorType: &milpb.TensorType{
		DataType: dt, Rank: int64(len(shape)), Dimensions: dims,
	}}}
}

func bad(dt DataType, shape []int64, format string, args ...any) Value {
	return Value{dt: dt, shape: append([]int64{}, shape...), err: fmt.Errorf("mil: "+format, args...)}
}

func immediate(dt DataType, shape []int64, tv *milpb.TensorValue) Value {
	// The four wrapper messages in one allocation (a model has hundreds of
	// thousands of constants). The type is set when a Function uses the
	// value (Function.typed).
	a := &struct {
		v   milpb.Value
		iv  milpb.Value_ImmediateValue_
		imm milpb.Value_ImmediateValue
		t   milpb.Value_ImmediateValue_Tensor
	}{}
	a.t.Tensor = tv
	a.imm.Value = &a.t
	a.iv.ImmediateValue = &a.imm
	a.v.Value = &a.iv
	return Value{pb: &a.v, dt: dt, shape: append([]int64{}, shape...)}
}

// Blob references the blob whose metadata record is at offset in WeightFile.
// dt must be a type that can live in a blob file (see milblob.DTypeFor).
func Blob(dt DataType, shape []int64, offset uint64) Value {
	if _, err := numElements(shape); err != nil {
		return bad(dt, shape, "blob value: %v", err)
	}
	if _, ok := milblob.DTypeFor(dt); !ok {
		return bad(dt, shape, "blob value: %v cannot be stored in a weight file", dt)
	}
	if offset < milblob.HeaderSize || offset%milblob.Align != 0 {
		return bad(dt, shape, "blob value: offset %d is not a metadata record offset", offset)
	}
	return Value{
		pb: &milpb.Value{ // Type: set when a Function uses it (Function.typed)
			Value: &milpb.Value_BlobFileValue_{BlobFileValue: &milpb.Value_BlobFileValue{FileName: WeightFile, Offset: offset}},
		},
		dt: dt, shape: append([]int64{}, shape...),
	}
}

func checkCount(dt DataType, shape []int64, have int) (Value, bool) {
	n, err := numElements(shape)
	if err != nil {
		return bad(dt, shape, "%v value: %v", dt, err), false
	}
	if int64(have) != n {
		return bad(dt, shape, "%v value of shape %v needs %d elements, got %d", dt, shape, n, have), false
	}
	return Value{}, true
}

// F16 is an fp16 immediate tensor from raw IEEE binary16 bits (stored as
// little-endian bytes, coreml.md §2.5).
func F16(shape []int64, bits []uint16) Value {
	if v, ok := checkCount(FP16, shape, len(bits)); !ok {
		return v
	}
	b := make([]byte, 2*len(bits))
	for i, h := range bits {
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return immediate(FP16, shape, &milpb.TensorValue{Value: &milpb.TensorValue_Bytes{Bytes: &milpb.TensorValue_RepeatedBytes{Values: b}}})
}

// F32 is an fp32 immediate tensor.
func F32(shape []int64, v []float32) Value {
	if bv, ok := checkCount(FP32, shape, len(v)); !ok {
		return bv
	}
	return immediate(FP32, shape, &milpb.TensorValue{Value: &milpb.TensorValue_Floats{Floats: &milpb.TensorValue_RepeatedFloats{Values: append([]float32{}, v...)}}})
}

// I32 is an int32 immediate tensor.
func I32(shape []int64, v []int32) Value {
	if bv, ok := checkCount(INT32, shape, len(v)); !ok {
		return bv
	}
	return immediate(INT32, shape, &milpb.TensorValue{Value: &milpb.TensorValue_Ints{Ints: &milpb.TensorValue_RepeatedInts{Values: append([]int32{}, v...)}}})
}

// Bools is a bool immediate tensor.
func Bools(shape []int64, v []bool) Value {
	if bv, ok := checkCount(BOOL, shape, len(v)); !ok {
		return bv
	}
	return immediate(BOOL, shape, &milpb.TensorValue{Value: &milpb.TensorValue_Bools{Bools: &milpb.TensorValue_RepeatedBools{Values: append([]bool{}, v...)}}})
}

// Raw is an immediate tensor of a bytes-encoded dtype (fp16, int8, uint8,
// uint32, int4, uint4, ...) given in its wire encoding: little-endian,
// sub-byte types packed low bits first (milblob.PackInt4).
func Raw(dt DataType, shape []int64, data []byte) Value {
	bd, ok := milblob.DTypeFor(dt)
	if !ok || dt == FP32 || dt == INT32 || dt == INT16 || dt == UINT16 {
		return bad(dt, shape, "raw value: %v is not encoded as bytes", dt)
	}
	n, err := numElements(shape)
	if err != nil {
		return bad(dt, shape, "raw %v value: %v", dt, err)
	}
	if want, _ := bd.ByteSize(n); int64(len(data)) != want {
		return bad(dt, shape, "raw %v value of shape %v needs %d bytes, got %d", dt, shape, want, len(data))
	}
	return immediate(dt, shape, &milpb.TensorValue{Value: &milpb.TensorValue_Bytes{Bytes: &milpb.TensorValue_RepeatedBytes{Values: append([]byte{}, data...)}}})
}

// Str is a rank-0 string.
func Str(s string) Value {
	return immediate(STRING, nil, &milpb.TensorValue{Value: &milpb.TensorValue_Strings{Strings: &milpb.TensorValue_RepeatedStrings{Values: []string{s}}}})
}

// ScalarF32 is a rank-0 fp32.
func ScalarF32(x float32) Value { return F32(nil, []float32{x}) }

// ScalarF16 is a rank-0 fp16 holding x rounded to nearest-even.
func ScalarF16(x float32) Value { return F16(nil, []uint16{quant.F32ToF16(x)}) }

// ScalarI32 is a rank-0 int32.
func ScalarI32(x int32) Value { return I32(nil, []int32{x}) }

// ScalarBool is a rank-0 bool.
func ScalarBool(b bool) Value { return Bools(nil, []bool{b}) }
