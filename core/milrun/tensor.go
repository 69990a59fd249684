package milrun

import (
	"fmt"
	"lorapte/core/quant"
	"math"
	"strings"

	"lorapte/core/coremlspec/milpb"
)

// MaxElements bounds the element count of any tensor the interpreter creates,
// so that a malformed program cannot make it allocate absurd amounts.
const MaxElements = 1 << 28

// Tensor is a dense row-major tensor. Exactly one storage slice is used,
// chosen by DType:
//   - FLOAT16, FLOAT32: F (fp16 values are stored as their exact float32 value)
//   - INT32, INT16, UINT16, INT8, UINT8, INT4, UINT4, UINT1/2/3/6, and INT64,
//     UINT32, UINT64 values that fit in int32: I
//   - BOOL: B
//   - STRING: S
//
// A rank-0 tensor (scalar) has an empty Shape and one element.
type Tensor struct {
	DType milpb.DataType
	Shape []int64
	F     []float32
	I     []int32
	B     []bool
	S     []string
}

// NewFloat returns a FLOAT16 or FLOAT32 tensor holding v (not copied). For
// FLOAT16 the values are rounded to the nearest fp16 in place.
func NewFloat(dt milpb.DataType, shape []int64, v []float32) *Tensor {
	if dt == milpb.DataType_FLOAT16 {
		for i, x := range v {
			v[i] = quant.RoundF16(x)
		}
	}
	return &Tensor{DType: dt, Shape: shape, F: v}
}

// NewInt returns an integer tensor of dtype dt holding v (not copied).
func NewInt(dt milpb.DataType, shape []int64, v []int32) *Tensor {
	return &Tensor{DType: dt, Shape: shape, I: v}
}

// NewBool returns a BOOL tensor holding v (not copied).
func NewBool(shape []int64, v []bool) *Tensor {
	return &Tensor{DType: milpb.DataType_BOOL, Shape: shape, B: v}
}

// Len is the number of elements implied by Shape (1 for a scalar). It does not
// check for overflow; use validate for untrusted tensors.
func (t *Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= int(d)
	}
	return n
}

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{DType: t.DType, Shape: append([]int64{}, t.Shape...)}
	if t.F != nil {
		c.F = append([]float32{}, t.F...)
	}
	if t.I != nil {
		c.I = append([]int32{}, t.I...)
	}
	if t.B != nil {
		c.B = append([]bool{}, t.B...)
	}
	if t.S != nil {
		c.S = append([]string{}, t.S...)
	}
	return c
}

// TypeString renders t's type the way MIL text does, e.g. tensor<fp16,[1,4]>.
func (t *Tensor) TypeString() string { return typeString(t.DType, t.Shape) }

func typeString(dt milpb.DataType, shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return fmt.Sprintf("tensor<%s,[%s]>", dtypeName(dt), strings.Join(parts, ","))
}

// dtypeName gives the short MIL spelling used in messages and by cast.
func dtypeName(dt milpb.DataType) string {
	switch dt {
	case milpb.DataType_FLOAT16:
		return "fp16"
	case milpb.DataType_FLOAT32:
		return "fp32"
	case milpb.DataType_FLOAT64:
		return "fp64"
	case milpb.DataType_BOOL:
		return "bool"
	case milpb.DataType_STRING:
		return "string"
	}
	return strings.ToLower(dt.String())
}

type storage uint8

const (
	storeNone storage = iota
	storeFloat
	storeInt
	storeBool
	storeString
)

// storageOf says which Tensor slice holds values of dt; storeNone means the
// interpreter does not support dt.
func storageOf(dt milpb.DataType) storage {
	switch dt {
	case milpb.DataType_FLOAT16, milpb.DataType_FLOAT32:
		return storeFloat
	case milpb.DataType_BOOL:
		return storeBool
	case milpb.DataType_STRING:
		return storeString
	}
	if _, _, ok := intRange(dt); ok {
		return storeInt
	}
	return storeNone
}

// intRange is the value range of an integer dtype, clipped to int32 (the
// interpreter stores all integers as int32).
func intRange(dt milpb.DataType) (lo, hi int64, ok bool) {
	switch dt {
	case milpb.DataType_INT32, milpb.DataType_INT64:
		return math.MinInt32, math.MaxInt32, true
	case milpb.DataType_UINT32, milpb.DataType_UINT64:
		return 0, math.MaxInt32, true
	case milpb.DataType_INT16:
		return math.MinInt16, math.MaxInt16, true
	case milpb.DataType_UINT16:
		return 0, math.MaxUint16, true
	case milpb.DataType_INT8:
		return math.MinInt8, math.MaxInt8, true
	case milpb.DataType_UINT8:
		return 0, math.MaxUint8, true
	case milpb.DataType_INT4:
		return -8, 7, true
	}
	if b := subByteBits(dt); b > 0 {
		return 0, 1<<b - 1, true
	}
	return 0, 0, false
}

// subByteBits is the bit width of packed sub-byte dtypes, 0 for others.
func subByteBits(dt milpb.DataType) int {
	switch dt {
	case milpb.DataType_INT4, milpb.DataType_UINT4:
		return 4
	case milpb.DataType_UINT1:
		return 1
	case milpb.DataType_UINT2:
		return 2
	case milpb.DataType_UINT3:
		return 3
	case milpb.DataType_UINT6:
		return 6
	}
	return 0
}

func isFloat(dt milpb.DataType) bool {
	return dt == milpb.DataType_FLOAT16 || dt == milpb.DataType_FLOAT32
}

// shapeLen multiplies dims, rejecting negative dims and totals above
// MaxElements.
func shapeLen(shape []int64) (int, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		if d != 0 && n > MaxElements/d {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, MaxElements)
		}
		n *= d
	}
	if n > MaxElements {
		return 0, fmt.Errorf("shape %v has more than %d elements", shape, MaxElements)
	}
	return int(n), nil
}

// validate checks that t is well formed: supported dtype, storage length
// equal to the shape's element count, other slices empty, integers in range.
func (t *Tensor) validate() error {
	if t == nil {
		return fmt.Errorf("nil tensor")
	}
	n, err := shapeLen(t.Shape)
	if err != nil {
		return err
	}
	st := storageOf(t.DType)
	if st == storeNone {
		return fmt.Errorf("unsupported dtype %s", t.DType)
	}
	lens := [...]struct {
		s storage
		l int
	}{{storeFloat, len(t.F)}, {storeInt, len(t.I)}, {storeBool, len(t.B)}, {storeString, len(t.S)}}
	for _, e := range lens {
		s, l := e.s, e.l
		switch {
		case s == st && l != n:
			return fmt.Errorf("%s holds %d values, want %d", t.TypeString(), l, n)
		case s != st && l != 0:
			return fmt.Errorf("%s has values in the wrong storage slice", t.TypeString())
		}
	}
	if st == storeInt {
		lo, hi, _ := intRange(t.DType)
		for i, v := range t.I {
			if int64(v) < lo || int64(v) > hi {
				return fmt.Errorf("%s element %d = %d out of range [%d, %d]", t.TypeString(), i, v, lo, hi)
			}
		}
	}
	return nil
}

// strides returns row-major element strides of shape.
func strides(shape []int64) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= int(shape[i])
	}
	return s
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(axis int64, rank int) (int, error) {
	a := axis
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	return int(a), nil
}

// newLike allocates a tensor of dtype dt and the given shape (already
// validated by shapeLen) with zeroed storage.
func newTensor(dt milpb.DataType, shape []int64, n int) *Tensor {
	t := &Tensor{DType: dt, Shape: shape}
	switch storageOf(dt) {
	case storeFloat:
		t.F = make([]float32, n)
	case storeInt:
		t.I = make([]int32, n)
	case storeBool:
		t.B = make([]bool, n)
	case storeString:
		t.S = make([]string, n)
	}
	return t
}

// roundTo rounds v to the precision of dt (fp16 or fp32).
func roundTo(dt milpb.DataType, v float32) float32 {
	if dt == milpb.DataType_FLOAT16 {
		return quant.RoundF16(v)
	}
	return v
}

// roundAll rounds every element of f to dt's precision in place.
func roundAll(dt milpb.DataType, f []float32) {
	if dt != milpb.DataType_FLOAT16 {
		return
	}
	for i, v := range f {
		f[i] = quant.RoundF16(v)
	}
}

// copyElems copies element src[i] to dst[j] whatever the storage.
type copier func(dst, src *Tensor, j, i int)

func copierFor(dt milpb.DataType) copier {
	switch storageOf(dt) {
	case storeFloat:
		return func(d, s *Tensor, j, i int) { d.F[j] = s.F[i] }
	case storeInt:
		return func(d, s *Tensor, j, i int) { d.I[j] = s.I[i] }
	case storeBool:
		return func(d, s *Tensor, j, i int) { d.B[j] = s.B[i] }
	default:
		return func(d, s *Tensor, j, i int) { d.S[j] = s.S[i] }
	}
}

// copyRange copies n consecutive elements src[i:i+n] to dst[j:j+n].
func copyRange(dst, src *Tensor, j, i, n int) {
	switch storageOf(src.DType) {
	case storeFloat:
		copy(dst.F[j:j+n], src.F[i:i+n])
	case storeInt:
		copy(dst.I[j:j+n], src.I[i:i+n])
	case storeBool:
		copy(dst.B[j:j+n], src.B[i:i+n])
	default:
		copy(dst.S[j:j+n], src.S[i:i+n])
	}
}

// withShape returns a tensor sharing t's storage under a new shape (ops never
// mutate their inputs, so sharing is safe).
func withShape(t *Tensor, shape []int64) *Tensor {
	return &Tensor{DType: t.DType, Shape: shape, F: t.F, I: t.I, B: t.B, S: t.S}
}
