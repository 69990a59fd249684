package milrun

import (
	"encoding/binary"
	"fmt"
	"lorapte/core/quant"
	"math"

	"lorapte/core/coremlspec/milpb"
)

// Weights resolves BlobFileValues: it returns the blob dtype code (coreml.md
// §3.3), the blob's data bytes and its padding_size_in_bits for the metadata
// record at offset in the named weight file.
type Weights interface {
	ReadBlob(fileName string, offset uint64) (blobDType uint32, data []byte, paddingBits uint64, err error)
}

// blobCode maps a MIL dtype to its blob storage dtype code (coreml.md §3.3).
func blobCode(dt milpb.DataType) (uint32, bool) {
	switch dt {
	case milpb.DataType_FLOAT16:
		return 1, true
	case milpb.DataType_FLOAT32:
		return 2, true
	case milpb.DataType_UINT8:
		return 3, true
	case milpb.DataType_INT8:
		return 4, true
	case milpb.DataType_INT16:
		return 6, true
	case milpb.DataType_UINT16:
		return 7, true
	case milpb.DataType_INT4:
		return 8, true
	case milpb.DataType_UINT1:
		return 9, true
	case milpb.DataType_UINT2:
		return 10, true
	case milpb.DataType_UINT4:
		return 11, true
	case milpb.DataType_UINT3:
		return 12, true
	case milpb.DataType_UINT6:
		return 13, true
	case milpb.DataType_INT32:
		return 14, true
	case milpb.DataType_UINT32:
		return 15, true
	}
	return 0, false
}

// tensorType extracts dtype and static shape from a ValueType. Only tensor
// types with constant dimensions are accepted.
func tensorType(vt *milpb.ValueType) (milpb.DataType, []int64, error) {
	tt := vt.GetTensorType()
	if tt == nil {
		return 0, nil, fmt.Errorf("type is not a tensor type")
	}
	if tt.GetRank() < 0 || int64(len(tt.GetDimensions())) != tt.GetRank() {
		return 0, nil, fmt.Errorf("tensor type has rank %d but %d dimensions", tt.GetRank(), len(tt.GetDimensions()))
	}
	shape := make([]int64, len(tt.GetDimensions()))
	for i, d := range tt.GetDimensions() {
		c := d.GetConstant()
		if c == nil {
			return 0, nil, fmt.Errorf("dimension %d is not a constant", i)
		}
		if c.GetSize() > MaxElements {
			return 0, nil, fmt.Errorf("dimension %d = %d too large", i, c.GetSize())
		}
		shape[i] = int64(c.GetSize())
	}
	if _, err := shapeLen(shape); err != nil {
		return 0, nil, err
	}
	dt := tt.GetDataType()
	if storageOf(dt) == storeNone {
		return 0, nil, fmt.Errorf("unsupported dtype %s", dt)
	}
	return dt, shape, nil
}

// decodeValue turns a MIL Value (immediate or blob reference) into a Tensor.
func decodeValue(v *milpb.Value, w Weights) (*Tensor, error) {
	if v == nil {
		return nil, fmt.Errorf("missing value")
	}
	dt, shape, err := tensorType(v.GetType())
	if err != nil {
		return nil, fmt.Errorf("value type: %w", err)
	}
	n, _ := shapeLen(shape) // checked by tensorType
	switch {
	case v.GetImmediateValue() != nil:
		tv := v.GetImmediateValue().GetTensor()
		if tv == nil {
			return nil, fmt.Errorf("immediate value is not a tensor (tuple/list/dictionary values are not supported)")
		}
		t, err := decodeImmediate(dt, shape, n, tv)
		if err != nil {
			return nil, fmt.Errorf("immediate %s: %w", typeString(dt, shape), err)
		}
		return t, nil
	case v.GetBlobFileValue() != nil:
		bf := v.GetBlobFileValue()
		t, err := decodeBlob(dt, shape, n, bf, w)
		if err != nil {
			return nil, fmt.Errorf("blob %s@%d (%s): %w", bf.GetFileName(), bf.GetOffset(), typeString(dt, shape), err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("value of type %s carries no data", typeString(dt, shape))
}

func decodeBlob(dt milpb.DataType, shape []int64, n int, bf *milpb.Value_BlobFileValue, w Weights) (*Tensor, error) {
	if w == nil {
		return nil, fmt.Errorf("program references a weight blob but no Weights were given")
	}
	want, ok := blobCode(dt)
	if !ok {
		return nil, fmt.Errorf("dtype %s cannot be stored in a blob", dt)
	}
	code, data, pad, err := w.ReadBlob(bf.GetFileName(), bf.GetOffset())
	if err != nil {
		return nil, err
	}
	if code != want {
		return nil, fmt.Errorf("blob dtype code %d, want %d for %s", code, want, dt)
	}
	wantPad := uint64(0)
	if b := subByteBits(dt); b > 0 {
		wantPad = uint64((8 - (n*b)%8) % 8)
	}
	if pad != wantPad {
		return nil, fmt.Errorf("blob padding %d bits, want %d", pad, wantPad)
	}
	return decodeRaw(dt, shape, n, data)
}

// rawSize is the byte size of n packed elements of dt, 0 if dt has no raw
// byte encoding.
func rawSize(dt milpb.DataType, n int) int {
	if b := subByteBits(dt); b > 0 {
		return (n*b + 7) / 8
	}
	switch dt {
	case milpb.DataType_INT8, milpb.DataType_UINT8:
		return n
	case milpb.DataType_FLOAT16, milpb.DataType_INT16, milpb.DataType_UINT16:
		return 2 * n
	case milpb.DataType_FLOAT32, milpb.DataType_INT32, milpb.DataType_UINT32:
		return 4 * n
	}
	return 0
}

// decodeRaw decodes little-endian (or LSB-first bit-packed) element bytes.
func decodeRaw(dt milpb.DataType, shape []int64, n int, data []byte) (*Tensor, error) {
	size := rawSize(dt, n)
	if size == 0 && n > 0 {
		return nil, fmt.Errorf("dtype %s has no byte encoding", dt)
	}
	if len(data) != size {
		return nil, fmt.Errorf("%d data bytes, want %d for %d elements", len(data), size, n)
	}
	t := newTensor(dt, shape, n)
	if b := subByteBits(dt); b > 0 {
		signed := dt == milpb.DataType_INT4
		for i := 0; i < n; i++ {
			var v uint32
			for k := 0; k < b; k++ {
				bit := i*b + k
				v |= uint32(data[bit/8]>>(bit%8)&1) << k
			}
			x := int32(v)
			if signed && v&(1<<(b-1)) != 0 {
				x -= 1 << b
			}
			t.I[i] = x
		}
		return t, nil
	}
	for i := 0; i < n; i++ {
		switch dt {
		case milpb.DataType_FLOAT16:
			t.F[i] = quant.F16ToF32(binary.LittleEndian.Uint16(data[2*i:]))
		case milpb.DataType_FLOAT32:
			t.F[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		case milpb.DataType_INT8:
			t.I[i] = int32(int8(data[i]))
		case milpb.DataType_UINT8:
			t.I[i] = int32(data[i])
		case milpb.DataType_INT16:
			t.I[i] = int32(int16(binary.LittleEndian.Uint16(data[2*i:])))
		case milpb.DataType_UINT16:
			t.I[i] = int32(binary.LittleEndian.Uint16(data[2*i:]))
		case milpb.DataType_INT32:
			t.I[i] = int32(binary.LittleEndian.Uint32(data[4*i:]))
		case milpb.DataType_UINT32:
			u := binary.LittleEndian.Uint32(data[4*i:])
			if u > math.MaxInt32 {
				return nil, fmt.Errorf("uint32 element %d = %d does not fit in int32", i, u)
			}
			t.I[i] = int32(u)
		}
	}
	return t, nil
}

// decodeImmediate follows the dtype → TensorValue field table of coreml.md §2.5.
func decodeImmediate(dt milpb.DataType, shape []int64, n int, tv *milpb.TensorValue) (*Tensor, error) {
	field := func() string {
		switch tv.GetValue().(type) {
		case *milpb.TensorValue_Floats:
			return "floats"
		case *milpb.TensorValue_Ints:
			return "ints"
		case *milpb.TensorValue_Bools:
			return "bools"
		case *milpb.TensorValue_Strings:
			return "strings"
		case *milpb.TensorValue_LongInts:
			return "longInts"
		case *milpb.TensorValue_Doubles:
			return "doubles"
		case *milpb.TensorValue_Bytes:
			return "bytes"
		}
		return "no field"
	}
	wrong := func(want string) error {
		return fmt.Errorf("dtype %s must be encoded in %s, got %s", dt, want, field())
	}
	count := func(got int) error {
		if got != n {
			return fmt.Errorf("%d values, want %d", got, n)
		}
		return nil
	}
	switch dt {
	case milpb.DataType_FLOAT32:
		f := tv.GetFloats()
		if f == nil {
			return nil, wrong("floats")
		}
		if err := count(len(f.GetValues())); err != nil {
			return nil, err
		}
		return &Tensor{DType: dt, Shape: shape, F: append([]float32{}, f.GetValues()...)}, nil
	case milpb.DataType_INT32, milpb.DataType_INT16, milpb.DataType_UINT16:
		iv := tv.GetInts()
		if iv == nil {
			return nil, wrong("ints")
		}
		if err := count(len(iv.GetValues())); err != nil {
			return nil, err
		}
		t := &Tensor{DType: dt, Shape: shape, I: append([]int32{}, iv.GetValues()...)}
		return t, t.validate()
	case milpb.DataType_INT64, milpb.DataType_UINT64:
		lv := tv.GetLongInts()
		if lv == nil {
			return nil, wrong("longInts")
		}
		if err := count(len(lv.GetValues())); err != nil {
			return nil, err
		}
		lo, hi, _ := intRange(dt)
		t := newTensor(dt, shape, n)
		for i, v := range lv.GetValues() {
			if v < lo || v > hi {
				return nil, fmt.Errorf("element %d = %d does not fit in int32", i, v)
			}
			t.I[i] = int32(v)
		}
		return t, nil
	case milpb.DataType_BOOL:
		bv := tv.GetBools()
		if bv == nil {
			return nil, wrong("bools")
		}
		if err := count(len(bv.GetValues())); err != nil {
			return nil, err
		}
		return &Tensor{DType: dt, Shape: shape, B: append([]bool{}, bv.GetValues()...)}, nil
	case milpb.DataType_STRING:
		sv := tv.GetStrings()
		if sv == nil {
			return nil, wrong("strings")
		}
		if err := count(len(sv.GetValues())); err != nil {
			return nil, err
		}
		return &Tensor{DType: dt, Shape: shape, S: append([]string{}, sv.GetValues()...)}, nil
	}
	if rawSize(dt, 1) > 0 {
		bv := tv.GetBytes()
		if bv == nil {
			return nil, wrong("bytes")
		}
		return decodeRaw(dt, shape, n, bv.GetValues())
	}
	return nil, fmt.Errorf("unsupported immediate dtype %s", dt)
}
