package mil

import (
	"fmt"
	"slices"
)

// Const defines a `const` op whose output var carries v (immediate or blob).
func (f *Function) Const(name string, v Value) *Var {
	out := &Var{Name: name, DType: v.dt, Shape: v.Shape()}
	if err := v.Err(); err != nil {
		f.failf("const %q: %v", name, err)
		return out
	}
	if !f.claim(name) {
		return out
	}
	attrs := f.nameAttr(name)
	attrs["val"] = f.typed(v)
	op := f.newOp("const", attrs, name, v.dt, v.shape)
	f.ops = append(f.ops, op)
	f.vars[name] = out
	f.kind[name] = "const"
	return out
}

// ConstexprBlockwiseShiftScale dequantizes weights at load time (iOS18,
// coreml.md §5.2): out = scale * data, blockwise. data and scale are bound
// as values (BlobFileValue or immediate), not as const ops.
func (f *Function) ConstexprBlockwiseShiftScale(name string, data, scale Value) *Var {
	return f.cbss(name, data, scale, nil)
}

// ConstexprBlockwiseShiftScaleOffset is ConstexprBlockwiseShiftScale with a
// zero point: out = scale * (data - offset).
func (f *Function) ConstexprBlockwiseShiftScaleOffset(name string, data, scale, offset Value) *Var {
	return f.cbss(name, data, scale, &offset)
}

func (f *Function) cbss(name string, data, scale Value, offset *Value) *Var {
	const typ = "constexpr_blockwise_shift_scale"
	for _, v := range []Value{data, scale} {
		if err := v.Err(); err != nil {
			return f.bad(typ, name, scale.dt, "%v", err)
		}
	}
	if !oneOf(data.dt, INT4, UINT4, INT8, UINT8, FP16, FP32) {
		return f.bad(typ, name, scale.dt, "data dtype %v not allowed (int4/uint4/int8/uint8/fp16/fp32)", data.dt)
	}
	if !oneOf(scale.dt, floatTypes...) {
		return f.bad(typ, name, scale.dt, "scale dtype %v not allowed (fp16/fp32)", scale.dt)
	}
	if len(data.shape) == 0 || len(data.shape) != len(scale.shape) {
		return f.bad(typ, name, scale.dt, "data shape %v and scale shape %v need the same rank >= 1", data.shape, scale.shape)
	}
	for i := range data.shape {
		if data.shape[i]%scale.shape[i] != 0 {
			return f.bad(typ, name, scale.dt, "data dim %d (%d) not divisible by scale dim (%d)", i, data.shape[i], scale.shape[i])
		}
	}
	params := []param{literal("data", data), literal("scale", scale)}
	if offset != nil {
		if err := offset.Err(); err != nil {
			return f.bad(typ, name, scale.dt, "offset: %v", err)
		}
		if !slices.Equal(offset.shape, scale.shape) {
			return f.bad(typ, name, scale.dt, "offset shape %v != scale shape %v", offset.shape, scale.shape)
		}
		if !oneOf(offset.dt, floatTypes...) && offset.dt != data.dt {
			return f.bad(typ, name, scale.dt, "offset dtype %v must be fp16/fp32 or the data dtype %v", offset.dt, data.dt)
		}
		params = append(params, literal("offset", *offset))
	}
	return f.out(typ, name, scale.dt, data.Shape(), params...)
}

// Gather selects slices of x along axis (batch_dims 0, validate_indices false).
// Indices must be non-negative (iOS17+ rule; not checkable statically).
func (f *Function) Gather(name string, x, indices *Var, axis int32) *Var {
	const typ = "gather"
	if err := f.checkIn(x, indices); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if !oneOf(x.DType, FP16, FP32, INT32, INT16, UINT16, INT8, UINT8) {
		return f.bad(typ, name, x.DType, "x dtype %v not allowed", x.DType)
	}
	if !oneOf(indices.DType, INT32, INT16, UINT16, INT8, UINT8) {
		return f.bad(typ, name, x.DType, "indices dtype %v not allowed", indices.DType)
	}
	a, err := normAxis(int64(axis), len(x.Shape))
	if err != nil {
		return f.bad(typ, name, x.DType, "%v", err)
	}
	shape := slices.Concat(x.Shape[:a], indices.Shape, x.Shape[a+1:])
	return f.out(typ, name, x.DType, shape, vars("x", x), vars("indices", indices),
		konst("axis", ScalarI32(axis)), konst("batch_dims", ScalarI32(0)), konst("validate_indices", ScalarBool(false)))
}

// Linear computes x·weightᵀ + bias. weight [out, in] (and bias [out]) must be
// const or constexpr outputs; bias may be nil (then the param is omitted).
func (f *Function) Linear(name string, x, weight, bias *Var) *Var {
	const typ = "linear"
	if err := f.checkIn(x, weight); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if r := len(x.Shape); r < 1 || r > 3 {
		return f.bad(typ, name, x.DType, "x rank %d not in 1..3", r)
	}
	if !oneOf(x.DType, arithTypes...) || !oneOf(weight.DType, arithTypes...) {
		return f.bad(typ, name, x.DType, "dtypes x %v / weight %v not allowed (fp16/fp32/int32)", x.DType, weight.DType)
	}
	if len(weight.Shape) != 2 || weight.Shape[1] != x.Shape[len(x.Shape)-1] {
		return f.bad(typ, name, x.DType, "weight shape %v does not match x shape %v", weight.Shape, x.Shape)
	}
	if !f.isConstLike(weight) {
		return f.bad(typ, name, x.DType, "weight %q must be a const or constexpr output", weight.Name)
	}
	params := []param{vars("x", x), vars("weight", weight)}
	if bias != nil {
		if err := f.checkIn(bias); err != nil {
			return f.bad(typ, name, x.DType, "%v", err)
		}
		if !slices.Equal(bias.Shape, weight.Shape[:1]) || bias.DType != weight.DType || !f.isConstLike(bias) {
			return f.bad(typ, name, x.DType, "bias %v must be a const %v[%d]", bias, weight.DType, weight.Shape[0])
		}
		params = append(params, vars("bias", bias))
	}
	shape := slices.Concat(x.Shape[:len(x.Shape)-1], weight.Shape[:1])
	return f.out(typ, name, x.DType, shape, params...)
}

// Matmul is batched matrix multiplication with numpy broadcasting of batch dims.
func (f *Function) Matmul(name string, x, y *Var, transposeX, transposeY bool) *Var {
	const typ = "matmul"
	if err := f.checkIn(x, y); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if !oneOf(x.DType, arithTypes...) || !oneOf(y.DType, arithTypes...) {
		return f.bad(typ, name, x.DType, "dtypes %v / %v not allowed", x.DType, y.DType)
	}
	xc, yc := f.kind[x.Name] == "const", f.kind[y.Name] == "const"
	dt := x.DType
	if x.DType != y.DType {
		if xc == yc {
			return f.bad(typ, name, x.DType, "x %v and y %v differ and are not exactly one const", x.DType, y.DType)
		}
		if xc {
			dt = y.DType
		}
	}
	if len(x.Shape) == 0 || len(y.Shape) == 0 {
		return f.bad(typ, name, dt, "scalar operand")
	}
	xs, ys := slices.Clone(x.Shape), slices.Clone(y.Shape)
	xv, yv := len(xs) == 1, len(ys) == 1
	if xv {
		xs = []int64{1, xs[0]}
	} else if transposeX {
		xs[len(xs)-1], xs[len(xs)-2] = xs[len(xs)-2], xs[len(xs)-1]
	}
	if yv {
		ys = []int64{ys[0], 1}
	} else if transposeY {
		ys[len(ys)-1], ys[len(ys)-2] = ys[len(ys)-2], ys[len(ys)-1]
	}
	if xs[len(xs)-1] != ys[len(ys)-2] {
		return f.bad(typ, name, dt, "inner dims differ: %v x %v (transpose %v/%v)", x.Shape, y.Shape, transposeX, transposeY)
	}
	batch, err := broadcast(xs[:len(xs)-2], ys[:len(ys)-2])
	if err != nil {
		return f.bad(typ, name, dt, "batch dims: %v", err)
	}
	shape := batch
	if !xv {
		shape = append(shape, xs[len(xs)-2])
	}
	if !yv {
		shape = append(shape, ys[len(ys)-1])
	}
	return f.out(typ, name, dt, shape, vars("x", x), vars("y", y),
		konst("transpose_x", ScalarBool(transposeX)), konst("transpose_y", ScalarBool(transposeY)))
}

func (f *Function) binary(typ, name string, x, y *Var, outBool bool) *Var {
	if err := f.checkIn(x, y); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if !oneOf(x.DType, arithTypes...) || x.DType != y.DType {
		return f.bad(typ, name, x.DType, "operands %v and %v must share one of fp16/fp32/int32", x.DType, y.DType)
	}
	shape, err := broadcast(x.Shape, y.Shape)
	if err != nil {
		return f.bad(typ, name, x.DType, "%v", err)
	}
	dt := x.DType
	if outBool {
		dt = BOOL
	}
	return f.out(typ, name, dt, shape, vars("x", x), vars("y", y))
}

// Add is x + y (numpy broadcasting, same dtype).
func (f *Function) Add(name string, x, y *Var) *Var { return f.binary("add", name, x, y, false) }

// Sub is x - y.
func (f *Function) Sub(name string, x, y *Var) *Var { return f.binary("sub", name, x, y, false) }

// Mul is x * y.
func (f *Function) Mul(name string, x, y *Var) *Var { return f.binary("mul", name, x, y, false) }

// RealDiv is x / y.
func (f *Function) RealDiv(name string, x, y *Var) *Var {
	return f.binary("real_div", name, x, y, false)
}

// Maximum is the elementwise maximum.
func (f *Function) Maximum(name string, x, y *Var) *Var {
	return f.binary("maximum", name, x, y, false)
}

// Minimum is the elementwise minimum.
func (f *Function) Minimum(name string, x, y *Var) *Var {
	return f.binary("minimum", name, x, y, false)
}

// Pow is x ** y.
func (f *Function) Pow(name string, x, y *Var) *Var { return f.binary("pow", name, x, y, false) }

// Compare is an elementwise comparison with a bool result; op is one of
// "equal", "not_equal", "less", "less_equal", "greater", "greater_equal".
func (f *Function) Compare(op, name string, x, y *Var) *Var {
	switch op {
	case "equal", "not_equal", "less", "less_equal", "greater", "greater_equal":
		return f.binary(op, name, x, y, true)
	}
	return f.bad(op, name, BOOL, "not a comparison op")
}

// Rsqrt is 1/sqrt(x + eps); eps becomes a const of x's dtype.
func (f *Function) Rsqrt(name string, x *Var, eps float32) *Var {
	const typ = "rsqrt"
	if err := f.checkIn(x); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if !oneOf(x.DType, floatTypes...) {
		return f.bad(typ, name, x.DType, "x dtype %v not fp16/fp32", x.DType)
	}
	e := ScalarF32(eps)
	if x.DType == FP16 {
		e = ScalarF16(eps)
	}
	return f.out(typ, name, x.DType, slices.Clone(x.Shape), vars("x", x), konst("epsilon", e))
}

var unaryTypes = map[string][]DataType{
	"sqrt": floatTypes, "exp": floatTypes, "silu": floatTypes, "sigmoid": floatTypes, "tanh": floatTypes,
	"square": arithTypes, "abs": arithTypes,
}

// Unary applies an elementwise op: "sqrt", "square", "abs", "exp", "silu",
// "sigmoid", "tanh", or "identity" (any dtype).
func (f *Function) Unary(op, name string, x *Var) *Var {
	if err := f.checkIn(x); err != nil {
		return f.bad(op, name, FP16, "%v", err)
	}
	allowed, ok := unaryTypes[op]
	if !ok && op != "identity" {
		return f.bad(op, name, x.DType, "unknown unary op")
	}
	if ok && !oneOf(x.DType, allowed...) {
		return f.bad(op, name, x.DType, "x dtype %v not allowed", x.DType)
	}
	return f.out(op, name, x.DType, slices.Clone(x.Shape), vars("x", x))
}

// Reduce is "reduce_mean", "reduce_sum", "reduce_max" or "reduce_min" over
// axes (all axes when empty).
func (f *Function) Reduce(op, name string, x *Var, axes []int32, keepDims bool) *Var {
	if err := f.checkIn(x); err != nil {
		return f.bad(op, name, FP16, "%v", err)
	}
	switch op {
	case "reduce_mean", "reduce_sum", "reduce_max", "reduce_min":
	default:
		return f.bad(op, name, x.DType, "unknown reduction")
	}
	if !oneOf(x.DType, arithTypes...) {
		return f.bad(op, name, x.DType, "x dtype %v not allowed", x.DType)
	}
	r := len(x.Shape)
	all := len(axes) == 0
	var ax []int
	if all {
		for i := 0; i < r; i++ {
			ax = append(ax, i)
		}
	} else {
		var err error
		if ax, err = normAxes(axes, r); err != nil {
			return f.bad(op, name, x.DType, "%v", err)
		}
	}
	shape := []int64{}
	for i, d := range x.Shape {
		switch {
		case !slices.Contains(ax, i):
			shape = append(shape, d)
		case keepDims:
			shape = append(shape, 1)
		}
	}
	params := []param{vars("x", x)}
	if !all {
		params = append(params, konst("axes", vec(axes)))
	}
	params = append(params, konst("keep_dims", ScalarBool(keepDims)))
	return f.out(op, name, x.DType, shape, params...)
}

// Softmax along axis.
func (f *Function) Softmax(name string, x *Var, axis int32) *Var {
	const typ = "softmax"
	if err := f.checkIn(x); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if !oneOf(x.DType, floatTypes...) {
		return f.bad(typ, name, x.DType, "x dtype %v not fp16/fp32", x.DType)
	}
	if _, err := normAxis(int64(axis), len(x.Shape)); err != nil {
		return f.bad(typ, name, x.DType, "%v", err)
	}
	return f.out(typ, name, x.DType, slices.Clone(x.Shape), vars("x", x), konst("axis", ScalarI32(axis)))
}

var shapeOpTypes = []DataType{FP16, FP32, INT8, UINT8, INT16, UINT16, INT32, BOOL}

// Reshape to shape; -1 (one at most) is inferred and 0 copies the matching
// dim of x counted from the right (1 when out of range), as iOS17 defines.
// The emitted shape const holds the resolved sizes.
func (f *Function) Reshape(name string, x *Var, shape []int64) *Var {
	const typ = "reshape"
	if err := f.checkIn(x); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if !oneOf(x.DType, shapeOpTypes...) {
		return f.bad(typ, name, x.DType, "x dtype %v not allowed", x.DType)
	}
	total, _ := numElements(x.Shape)
	out := make([]int64, len(shape))
	infer := -1
	known := int64(1)
	for i, d := range shape {
		switch {
		case d == -1:
			if infer >= 0 {
				return f.bad(typ, name, x.DType, "shape %v has more than one -1", shape)
			}
			infer = i
			continue
		case d == 0:
			j := len(x.Shape) - (len(shape) - i)
			d = 1
			if j >= 0 {
				d = x.Shape[j]
			}
		case d < 0:
			return f.bad(typ, name, x.DType, "shape %v has a negative size", shape)
		}
		out[i] = d
		if known > maxElements/d {
			return f.bad(typ, name, x.DType, "shape %v too large", shape)
		}
		known *= d
	}
	if infer >= 0 {
		if total%known != 0 {
			return f.bad(typ, name, x.DType, "cannot infer -1 in %v for %d elements", shape, total)
		}
		out[infer] = total / known
		known = total
	}
	if known != total {
		return f.bad(typ, name, x.DType, "shape %v has %d elements, x %v has %d", shape, known, x.Shape, total)
	}
	s32 := make([]int32, len(out))
	for i, d := range out {
		if d > 1<<31-1 {
			return f.bad(typ, name, x.DType, "dim %d too large for int32", d)
		}
		s32[i] = int32(d)
	}
	return f.out(typ, name, x.DType, out, vars("x", x), konst("shape", vec(s32)))
}

// Transpose permutes the axes of x (negative entries allowed; emitted normalized).
func (f *Function) Transpose(name string, x *Var, perm []int32) *Var {
	const typ = "transpose"
	if err := f.checkIn(x); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if len(perm) != len(x.Shape) {
		return f.bad(typ, name, x.DType, "perm %v for rank %d", perm, len(x.Shape))
	}
	// distinct in-range axes of the right count form a permutation
	if _, err := normAxes(perm, len(x.Shape)); err != nil {
		return f.bad(typ, name, x.DType, "perm %v: %v", perm, err)
	}
	norm := make([]int32, len(perm))
	shape := make([]int64, len(perm))
	for i, a := range perm {
		n, _ := normAxis(int64(a), len(perm))
		norm[i] = int32(n)
		shape[i] = x.Shape[n]
	}
	return f.out(typ, name, x.DType, shape, vars("x", x), konst("perm", vec(norm)))
}

// Concat joins xs along axis (one binding per input, interleave false).
func (f *Function) Concat(name string, axis int32, xs ...*Var) *Var {
	const typ = "concat"
	if len(xs) == 0 {
		return f.bad(typ, name, FP16, "no inputs")
	}
	if err := f.checkIn(xs...); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	x0 := xs[0]
	a, err := normAxis(int64(axis), len(x0.Shape))
	if err != nil {
		return f.bad(typ, name, x0.DType, "%v", err)
	}
	shape := slices.Clone(x0.Shape)
	for _, x := range xs[1:] {
		if x.DType != x0.DType || len(x.Shape) != len(x0.Shape) {
			return f.bad(typ, name, x0.DType, "input %v does not match %v", x, x0)
		}
		for i := range x.Shape {
			if i != a && x.Shape[i] != x0.Shape[i] {
				return f.bad(typ, name, x0.DType, "input %v does not match %v outside axis %d", x, x0, axis)
			}
		}
		shape[a] += x.Shape[a]
	}
	return f.out(typ, name, x0.DType, shape, vars("values", xs...),
		konst("axis", ScalarI32(axis)), konst("interleave", ScalarBool(false)))
}

// Split cuts x along axis into pieces of the given sizes; the outputs are
// named "<name>_0", "<name>_1", ...
func (f *Function) Split(name string, x *Var, axis int32, sizes []int32) []*Var {
	const typ = "split"
	outs := make([]*Var, len(sizes))
	fail := func(format string, args ...any) []*Var {
		f.bad(typ, name, FP16, format, args...)
		for i := range outs {
			outs[i] = &Var{Name: fmt.Sprintf("%s_%d", name, i)}
		}
		return outs
	}
	if err := f.checkIn(x); err != nil {
		return fail("%v", err)
	}
	a, err := normAxis(int64(axis), len(x.Shape))
	if err != nil {
		return fail("%v", err)
	}
	if len(sizes) == 0 {
		return fail("no split sizes")
	}
	sum := int64(0)
	for i, s := range sizes {
		if s <= 0 {
			return fail("split size %d is not positive", s)
		}
		sum += int64(s)
		shape := slices.Clone(x.Shape)
		shape[a] = int64(s)
		outs[i] = &Var{Name: fmt.Sprintf("%s_%d", name, i), DType: x.DType, Shape: shape}
	}
	if sum != x.Shape[a] {
		return fail("split sizes %v do not add up to dim %d", sizes, x.Shape[a])
	}
	f.emit(typ, name, []param{vars("x", x), konst("axis", ScalarI32(axis)), konst("split_sizes", vec(sizes))}, outs...)
	return outs
}

// SliceByIndex takes x[begin:end] per axis (stride 1, masks false). Negative
// indices count from the end and are resolved statically; ends are clamped to
// the dim like numpy; every resulting size must be >= 1.
func (f *Function) SliceByIndex(name string, x *Var, begin, end []int32) *Var {
	const typ = "slice_by_index"
	if err := f.checkIn(x); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	r := len(x.Shape)
	if len(begin) != r || len(end) != r {
		return f.bad(typ, name, x.DType, "begin %v / end %v need %d entries", begin, end, r)
	}
	b, e := make([]int32, r), make([]int32, r)
	shape := make([]int64, r)
	for i, d := range x.Shape {
		lo, hi := int64(begin[i]), int64(end[i])
		if lo < 0 {
			lo += d
		}
		if hi < 0 {
			hi += d
		}
		lo, hi = min(max(lo, 0), d), min(max(hi, 0), d)
		if hi <= lo {
			return f.bad(typ, name, x.DType, "empty slice [%d:%d] on axis %d of size %d", begin[i], end[i], i, d)
		}
		b[i], e[i], shape[i] = int32(lo), int32(hi), hi-lo
	}
	ones := make([]int32, r)
	for i := range ones {
		ones[i] = 1
	}
	return f.out(typ, name, x.DType, shape, vars("x", x), konst("begin", vec(b)), konst("end", vec(e)),
		konst("stride", vec(ones)), konst("begin_mask", boolVec(r, false)),
		konst("end_mask", boolVec(r, false)), konst("squeeze_mask", boolVec(r, false)))
}

// ExpandDims inserts size-1 axes; axes index the output (negative allowed).
func (f *Function) ExpandDims(name string, x *Var, axes []int32) *Var {
	const typ = "expand_dims"
	if err := f.checkIn(x); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if len(axes) == 0 {
		return f.bad(typ, name, x.DType, "no axes")
	}
	r := len(x.Shape) + len(axes)
	ax, err := normAxes(axes, r)
	if err != nil {
		return f.bad(typ, name, x.DType, "%v", err)
	}
	shape := make([]int64, 0, r)
	src := 0
	for i := 0; i < r; i++ {
		if slices.Contains(ax, i) {
			shape = append(shape, 1)
		} else {
			shape = append(shape, x.Shape[src])
			src++
		}
	}
	return f.out(typ, name, x.DType, shape, vars("x", x), konst("axes", vec(i32s(ax))))
}

// Squeeze removes size-1 axes (all of them when axes is empty).
func (f *Function) Squeeze(name string, x *Var, axes []int32) *Var {
	const typ = "squeeze"
	if err := f.checkIn(x); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	var ax []int
	if len(axes) == 0 {
		for i, d := range x.Shape {
			if d == 1 {
				ax = append(ax, i)
			}
		}
		if len(ax) == 0 {
			return f.bad(typ, name, x.DType, "x %v has no size-1 axis", x.Shape)
		}
	} else {
		var err error
		if ax, err = normAxes(axes, len(x.Shape)); err != nil {
			return f.bad(typ, name, x.DType, "%v", err)
		}
	}
	shape := []int64{}
	for i, d := range x.Shape {
		if slices.Contains(ax, i) {
			if d != 1 {
				return f.bad(typ, name, x.DType, "axis %d has size %d", i, d)
			}
			continue
		}
		shape = append(shape, d)
	}
	return f.out(typ, name, x.DType, shape, vars("x", x), konst("axes", vec(i32s(ax))))
}

var castNames = map[DataType]string{
	FP16: "fp16", FP32: "fp32", INT8: "int8", UINT8: "uint8", INT16: "int16", UINT16: "uint16", INT32: "int32", BOOL: "bool",
}

// Cast converts x to dtype to (fp16, fp32, int8, uint8, int16, uint16, int32, bool).
func (f *Function) Cast(name string, x *Var, to DataType) *Var {
	const typ = "cast"
	if err := f.checkIn(x); err != nil {
		return f.bad(typ, name, to, "%v", err)
	}
	s, ok := castNames[to]
	if _, okx := castNames[x.DType]; !ok || !okx {
		return f.bad(typ, name, to, "cast %v -> %v not supported", x.DType, to)
	}
	return f.out(typ, name, to, slices.Clone(x.Shape), vars("x", x), konst("dtype", Str(s)))
}

// Tile repeats x reps[i] times along axis i.
func (f *Function) Tile(name string, x *Var, reps []int32) *Var {
	const typ = "tile"
	if err := f.checkIn(x); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if len(reps) != len(x.Shape) {
		return f.bad(typ, name, x.DType, "reps %v for rank %d", reps, len(x.Shape))
	}
	shape := make([]int64, len(reps))
	for i, r := range reps {
		if r < 1 {
			return f.bad(typ, name, x.DType, "reps %v must be >= 1", reps)
		}
		shape[i] = x.Shape[i] * int64(r)
	}
	if _, err := numElements(shape); err != nil {
		return f.bad(typ, name, x.DType, "%v", err)
	}
	return f.out(typ, name, x.DType, shape, vars("x", x), konst("reps", vec(reps)))
}

// Select is cond ? a : b elementwise with broadcasting.
func (f *Function) Select(name string, cond, a, b *Var) *Var {
	const typ = "select"
	if err := f.checkIn(cond, a, b); err != nil {
		return f.bad(typ, name, FP16, "%v", err)
	}
	if cond.DType != BOOL {
		return f.bad(typ, name, a.DType, "cond dtype %v is not bool", cond.DType)
	}
	if a.DType != b.DType || !oneOf(a.DType, FP16, FP32, BOOL, INT32) {
		return f.bad(typ, name, a.DType, "a %v and b %v must share one of fp16/fp32/bool/int32", a.DType, b.DType)
	}
	shape, err := broadcast(cond.Shape, a.Shape, b.Shape)
	if err != nil {
		return f.bad(typ, name, a.DType, "%v", err)
	}
	return f.out(typ, name, a.DType, shape, vars("cond", cond), vars("a", a), vars("b", b))
}
