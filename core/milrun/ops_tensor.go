package milrun

import (
	"math"
	"slices"

	"lorapte/core/coremlspec/milpb"
)

func addTensorOps(m map[string]opDef) {
	m["const"] = opDef{run: opConst}
	m["constexpr_blockwise_shift_scale"] = opDef{
		params: []paramSpec{
			{name: "data", required: true, constness: mustInline},
			{name: "scale", required: true, constness: mustInline},
			{name: "offset", constness: mustInline},
		},
		run: opBlockwiseShiftScale,
	}
	m["identity"] = opDef{params: []paramSpec{req("x")}, run: func(c *opCtx) ([]*Tensor, error) {
		return one(c.in("x"))
	}}
	m["cast"] = opDef{params: []paramSpec{req("x"), reqConst("dtype")}, run: opCast}
	m["fill"] = opDef{params: []paramSpec{req("shape"), optConst("value")}, run: opFill}
	m["gather"] = opDef{
		params: []paramSpec{req("x"), req("indices"), optConst("axis"), optConst("batch_dims"), optConst("validate_indices")},
		run:    opGather,
	}
}

func opConst(c *opCtx) ([]*Tensor, error) {
	v := c.op.GetAttributes()["val"]
	if v == nil {
		return nil, c.errf("const without a \"val\" attribute")
	}
	t, err := decodeValue(v, c.w)
	if err != nil {
		return nil, c.errf("attribute \"val\": %v", err)
	}
	return one(t)
}

// opBlockwiseShiftScale dequantizes: out = scale * (data - offset), with
// scale/offset repeated blockwise. Like coremltools' reference it converts
// data to the scale dtype, subtracts the offset and multiplies, each step
// rounded to the scale dtype.
func opBlockwiseShiftScale(c *opCtx) ([]*Tensor, error) {
	data, scale, offset := c.in("data"), c.in("scale"), c.in("offset")
	c.dtype("data", data, milpb.DataType_INT4, milpb.DataType_UINT4, milpb.DataType_INT8, milpb.DataType_UINT8,
		milpb.DataType_FLOAT16, milpb.DataType_FLOAT32)
	c.dtype("scale", scale, floatTypes...)
	if c.err != nil {
		return nil, c.err
	}
	rank := len(data.Shape)
	if rank < 1 {
		return nil, c.errf("data must have rank >= 1")
	}
	if len(scale.Shape) != rank {
		return nil, c.errf("scale is %s, want rank %d like data %s", scale.TypeString(), rank, data.TypeString())
	}
	block := make([]int64, rank)
	for i := range block {
		if scale.Shape[i] == 0 || data.Shape[i]%scale.Shape[i] != 0 {
			return nil, c.errf("scale dim %d = %d does not divide data dim %d", i, scale.Shape[i], data.Shape[i])
		}
		block[i] = data.Shape[i] / scale.Shape[i]
	}
	if offset != nil {
		if !slices.Equal(offset.Shape, scale.Shape) {
			return nil, c.errf("offset is %s, want the shape of scale %s", offset.TypeString(), scale.TypeString())
		}
		if !isFloat(offset.DType) && offset.DType != data.DType {
			return nil, c.errf("integer offset dtype %s must equal data dtype %s", dtypeName(offset.DType), dtypeName(data.DType))
		}
	}
	dt := scale.DType
	n := data.Len()
	out := newTensor(dt, append([]int64{}, data.Shape...), n)
	val := func(t *Tensor, i int) float32 {
		if t.F != nil {
			return t.F[i]
		}
		return float32(t.I[i])
	}
	if n == 0 {
		return one(out)
	}
	// Walk rows of the last axis; the scale index only changes per block.
	ss := strides(scale.Shape)
	last := rank - 1
	rowLen, blk := int(data.Shape[last]), int(block[last])
	intData := data.F == nil // int8/int4 values are exact in fp16: no rounding needed
	parallelRows(n/rowLen, rowLen*8, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			sbase, rem := 0, r
			for d := last - 1; d >= 0; d-- { // r as a multi-index over the leading axes
				sbase += (rem % int(data.Shape[d]) / int(block[d])) * ss[d]
				rem /= int(data.Shape[d])
			}
			for j := 0; j < rowLen; j++ {
				i, si := r*rowLen+j, sbase+j/blk
				x := val(data, i)
				if !intData {
					x = roundTo(dt, x)
				}
				if offset != nil {
					x = roundTo(dt, x-roundTo(dt, val(offset, si)))
				}
				out.F[i] = roundTo(dt, scale.F[si]*x)
			}
		}
	})
	return one(out)
}

// castTargets maps cast's dtype strings (iOS17) to MIL dtypes.
var castTargets = map[string]milpb.DataType{
	"fp16": milpb.DataType_FLOAT16, "fp32": milpb.DataType_FLOAT32,
	"int32": milpb.DataType_INT32, "int16": milpb.DataType_INT16, "uint16": milpb.DataType_UINT16,
	"int8": milpb.DataType_INT8, "uint8": milpb.DataType_UINT8, "bool": milpb.DataType_BOOL,
}

// opCast converts dtypes. Float → integer truncates toward zero; a value
// that does not fit the target (or NaN) is an error rather than a silent wrap.
func opCast(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, dataTypes...)
	name := c.scalarString("dtype")
	if c.err != nil {
		return nil, c.err
	}
	dt, ok := castTargets[name]
	if !ok {
		return nil, c.errf("unsupported cast dtype %q", name)
	}
	n := x.Len()
	out := newTensor(dt, append([]int64{}, x.Shape...), n)
	lo, hi, _ := intRange(dt)
	for i := 0; i < n; i++ {
		var f float64
		switch {
		case x.F != nil:
			f = float64(x.F[i])
		case x.I != nil:
			f = float64(x.I[i])
		case x.B[i]:
			f = 1
		}
		switch storageOf(dt) {
		case storeFloat:
			out.F[i] = roundTo(dt, float32(f))
		case storeBool:
			out.B[i] = f != 0
		case storeInt:
			v := math.Trunc(f)
			if math.IsNaN(v) || v < float64(lo) || v > float64(hi) {
				return nil, c.errf("element %d = %v does not fit in %s", i, f, name)
			}
			out.I[i] = int32(v)
		}
	}
	return one(out)
}

// opFill makes a tensor of the given shape filled with value (default fp32 0).
func opFill(c *opCtx) ([]*Tensor, error) {
	shape := c.ints1D("shape", milpb.DataType_INT32)
	v := c.in("value")
	if v == nil {
		v = &Tensor{DType: milpb.DataType_FLOAT32, F: []float32{0}}
	}
	c.dtype("value", v, milpb.DataType_FLOAT16, milpb.DataType_FLOAT32, milpb.DataType_INT32, milpb.DataType_BOOL)
	c.rank("value", v, 0)
	if c.err != nil {
		return nil, c.err
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, c.errf("shape: %v", err)
	}
	out := newTensor(v.DType, shape, n)
	cp := copierFor(v.DType)
	for i := 0; i < n; i++ {
		cp(out, v, i, 0)
	}
	return one(out)
}

// opGather is iOS17 gather with batch_dims 0: indices must be in
// [0, x.shape[axis]).
func opGather(c *opCtx) ([]*Tensor, error) {
	x, ind := c.in("x"), c.in("indices")
	c.dtype("x", x, milpb.DataType_FLOAT16, milpb.DataType_FLOAT32, milpb.DataType_INT32, milpb.DataType_INT16,
		milpb.DataType_UINT16, milpb.DataType_INT8, milpb.DataType_UINT8)
	c.dtype("indices", ind, milpb.DataType_INT32, milpb.DataType_INT16, milpb.DataType_UINT16, milpb.DataType_INT8,
		milpb.DataType_UINT8)
	axis := c.scalarInt("axis", 0)
	bd := c.scalarInt("batch_dims", 0)
	c.scalarBool("validate_indices", false)
	if c.err != nil {
		return nil, c.err
	}
	if bd != 0 {
		return nil, c.errf("batch_dims %d is not supported (only 0)", bd)
	}
	if len(x.Shape) == 0 {
		return nil, c.errf("x must have rank >= 1")
	}
	a, err := normAxis(axis, len(x.Shape))
	if err != nil {
		return nil, c.errf("axis: %v", err)
	}
	shape := append(append(append([]int64{}, x.Shape[:a]...), ind.Shape...), x.Shape[a+1:]...)
	n, err := shapeLen(shape)
	if err != nil {
		return nil, c.errf("output: %v", err)
	}
	outer, inner := 1, 1
	for _, d := range x.Shape[:a] {
		outer *= int(d)
	}
	for _, d := range x.Shape[a+1:] {
		inner *= int(d)
	}
	dim := int(x.Shape[a])
	for j, v := range ind.I {
		if v < 0 || int(v) >= dim {
			return nil, c.errf("index %d (element %d of indices) out of range [0, %d)", v, j, dim)
		}
	}
	out := newTensor(x.DType, shape, n)
	k := len(ind.I)
	for o := 0; o < outer; o++ {
		for j, v := range ind.I {
			copyRange(out, x, (o*k+j)*inner, (o*dim+int(v))*inner, inner)
		}
	}
	return one(out)
}
