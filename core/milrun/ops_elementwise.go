package milrun

import (
	"fmt"
	"math"
	"slices"

	"lorapte/core/coremlspec/milpb"
)

func addElementwiseOps(m map[string]opDef) {
	xy := []paramSpec{req("x"), req("y")}
	arith := map[string]struct {
		f func(x, y float32) float32
		i func(x, y int32) int32 // nil: no int32 form
	}{
		"add":      {func(x, y float32) float32 { return x + y }, func(x, y int32) int32 { return x + y }},
		"sub":      {func(x, y float32) float32 { return x - y }, func(x, y int32) int32 { return x - y }},
		"mul":      {func(x, y float32) float32 { return x * y }, func(x, y int32) int32 { return x * y }},
		"real_div": {func(x, y float32) float32 { return x / y }, nil},
		"maximum":  {maxNaN, func(x, y int32) int32 { return max(x, y) }},
		"minimum":  {minNaN, func(x, y int32) int32 { return min(x, y) }},
		"pow":      {func(x, y float32) float32 { return float32(math.Pow(float64(x), float64(y))) }, nil},
	}
	for name, fns := range arith {
		m[name] = opDef{params: xy, run: func(c *opCtx) ([]*Tensor, error) { return binaryArith(c, fns.f, fns.i) }}
	}
	cmp := map[string]func(x, y float64) bool{
		"equal":         func(x, y float64) bool { return x == y },
		"not_equal":     func(x, y float64) bool { return x != y },
		"less":          func(x, y float64) bool { return x < y },
		"less_equal":    func(x, y float64) bool { return x <= y },
		"greater":       func(x, y float64) bool { return x > y },
		"greater_equal": func(x, y float64) bool { return x >= y },
	}
	for name, f := range cmp {
		m[name] = opDef{params: xy, run: func(c *opCtx) ([]*Tensor, error) { return compare(c, f) }}
	}
	logic := map[string]func(x, y bool) bool{
		"logical_and": func(x, y bool) bool { return x && y },
		"logical_or":  func(x, y bool) bool { return x || y },
		"logical_xor": func(x, y bool) bool { return x != y },
	}
	for name, f := range logic {
		m[name] = opDef{params: xy, run: func(c *opCtx) ([]*Tensor, error) { return logical(c, f) }}
	}
	m["logical_not"] = opDef{params: []paramSpec{req("x")}, run: func(c *opCtx) ([]*Tensor, error) {
		x := c.in("x")
		c.dtype("x", x, milpb.DataType_BOOL)
		if c.err != nil {
			return nil, c.err
		}
		out := newTensor(milpb.DataType_BOOL, append([]int64{}, x.Shape...), len(x.B))
		for i, v := range x.B {
			out.B[i] = !v
		}
		return one(out)
	}}
	m["select"] = opDef{params: []paramSpec{req("cond"), req("a"), req("b")}, run: opSelect}

	unary := map[string]func(x float64) float64{
		"sqrt":    math.Sqrt,
		"exp":     math.Exp,
		"exp2":    math.Exp2,
		"tanh":    math.Tanh,
		"sin":     math.Sin,
		"cos":     math.Cos,
		"floor":   math.Floor,
		"ceil":    math.Ceil,
		"round":   math.RoundToEven,
		"erf":     math.Erf,
		"sigmoid": func(x float64) float64 { return 1 / (1 + math.Exp(-x)) },
		"silu":    func(x float64) float64 { return x / (1 + math.Exp(-x)) },
		"relu":    func(x float64) float64 { return math.Max(x, 0) },
		"sign": func(x float64) float64 {
			switch {
			case x > 0:
				return 1
			case x < 0:
				return -1
			}
			return x // keeps ±0 and NaN
		},
	}
	for name, f := range unary {
		m[name] = opDef{params: []paramSpec{req("x")}, run: func(c *opCtx) ([]*Tensor, error) { return unaryFloat(c, f) }}
	}
	// Ops with an epsilon parameter (iOS17 defaults).
	withEps := map[string]struct {
		def float32
		f   func(x, eps float32) float64
	}{
		"rsqrt":   {1e-12, func(x, eps float32) float64 { return 1 / math.Sqrt(float64(x+eps)) }},
		"inverse": {1e-4, func(x, eps float32) float64 { return 1 / float64(x+eps) }},
		"log":     {1e-45, func(x, eps float32) float64 { return math.Log(float64(x + eps)) }},
	}
	for name, e := range withEps {
		m[name] = opDef{params: []paramSpec{req("x"), optConst("epsilon")}, run: func(c *opCtx) ([]*Tensor, error) {
			eps := c.scalarFloat("epsilon", e.def)
			return unaryFloat(c, func(x float64) float64 { return e.f(float32(x), eps) })
		}}
	}
	// abs and square also take int32.
	m["abs"] = opDef{params: []paramSpec{req("x")}, run: func(c *opCtx) ([]*Tensor, error) {
		return unaryNumeric(c, math.Abs, func(v int32) int32 {
			if v < 0 {
				return -v
			}
			return v
		})
	}}
	m["square"] = opDef{params: []paramSpec{req("x")}, run: func(c *opCtx) ([]*Tensor, error) {
		return unaryNumeric(c, func(x float64) float64 { return float64(float32(x) * float32(x)) },
			func(v int32) int32 { return v * v })
	}}
	m["clip"] = opDef{params: []paramSpec{req("x"), reqConst("alpha"), reqConst("beta")}, run: func(c *opCtx) ([]*Tensor, error) {
		lo, hi := c.scalarFloat("alpha", 0), c.scalarFloat("beta", 0)
		return unaryFloat(c, func(x float64) float64 { return math.Min(math.Max(x, float64(lo)), float64(hi)) })
	}}
}

// maxNaN/minNaN propagate NaN like numpy's maximum/minimum.
func maxNaN(x, y float32) float32 {
	if x != x || y != y {
		return float32(math.NaN())
	}
	return max(x, y)
}

func minNaN(x, y float32) float32 {
	if x != x || y != y {
		return float32(math.NaN())
	}
	return min(x, y)
}

// bview maps output flat indices to an input's flat index under numpy
// broadcasting.
type bview struct {
	idx    []int // nil with !scalar: identity
	scalar bool
}

func (v bview) at(i int) int {
	switch {
	case v.scalar:
		return 0
	case v.idx == nil:
		return i
	}
	return v.idx[i]
}

// broadcastShape applies numpy broadcasting to shapes.
func broadcastShape(shapes ...[]int64) ([]int64, error) {
	rank := 0
	for _, s := range shapes {
		rank = max(rank, len(s))
	}
	out := make([]int64, rank)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		off := rank - len(s)
		for i, d := range s {
			switch {
			case d == out[off+i] || d == 1:
			case out[off+i] == 1:
				out[off+i] = d
			default:
				return nil, fmt.Errorf("shapes %v are not broadcast-compatible", shapes)
			}
		}
	}
	if _, err := shapeLen(out); err != nil {
		return nil, err
	}
	return out, nil
}

func newBView(out, in []int64, n int) bview {
	if slices.Equal(out, in) {
		return bview{}
	}
	m := 1
	for _, d := range in {
		m *= int(d)
	}
	if m == 1 {
		return bview{scalar: true}
	}
	rank := len(out)
	st := make([]int, rank) // input stride per output axis, 0 when broadcast
	is := strides(in)
	off := rank - len(in)
	for i := range in {
		if in[i] != 1 {
			st[off+i] = is[i]
		}
	}
	idx := make([]int, n)
	ctr := make([]int64, rank)
	cur := 0
	for i := 0; i < n; i++ {
		idx[i] = cur
		for d := rank - 1; d >= 0; d-- {
			ctr[d]++
			cur += st[d]
			if ctr[d] < out[d] {
				break
			}
			cur -= st[d] * int(ctr[d])
			ctr[d] = 0
		}
	}
	return bview{idx: idx}
}

// prepBinary checks x/y share a dtype from allowed and broadcasts them.
func prepBinary(c *opCtx, allowed []milpb.DataType) (x, y *Tensor, shape []int64, vx, vy bview, n int, ok bool) {
	x, y = c.in("x"), c.in("y")
	c.dtype("x", x, allowed...)
	c.dtype("y", y, allowed...)
	if c.err != nil {
		return
	}
	if x.DType != y.DType {
		c.fail("x is %s but y is %s; dtypes must match", x.TypeString(), y.TypeString())
		return
	}
	shape, err := broadcastShape(x.Shape, y.Shape)
	if err != nil {
		c.fail("%v", err)
		return
	}
	n, _ = shapeLen(shape)
	return x, y, shape, newBView(shape, x.Shape, n), newBView(shape, y.Shape, n), n, true
}

func binaryArith(c *opCtx, f func(x, y float32) float32, fi func(x, y int32) int32) ([]*Tensor, error) {
	allowed := floatTypes
	if fi != nil {
		allowed = numericTypes
	}
	x, y, shape, vx, vy, n, ok := prepBinary(c, allowed)
	if !ok {
		return nil, c.err
	}
	out := newTensor(x.DType, shape, n)
	if fi != nil && x.DType == milpb.DataType_INT32 {
		for i := 0; i < n; i++ {
			out.I[i] = fi(x.I[vx.at(i)], y.I[vy.at(i)])
		}
		return one(out)
	}
	for i := 0; i < n; i++ {
		out.F[i] = f(x.F[vx.at(i)], y.F[vy.at(i)])
	}
	roundAll(out.DType, out.F)
	return one(out)
}

func compare(c *opCtx, f func(x, y float64) bool) ([]*Tensor, error) {
	allowed := append(append([]milpb.DataType{}, numericTypes...), milpb.DataType_BOOL)
	x, y, shape, vx, vy, n, ok := prepBinary(c, allowed)
	if !ok {
		return nil, c.err
	}
	get := func(t *Tensor, i int) float64 {
		switch {
		case t.F != nil:
			return float64(t.F[i])
		case t.I != nil:
			return float64(t.I[i])
		case t.B[i]:
			return 1
		}
		return 0
	}
	out := newTensor(milpb.DataType_BOOL, shape, n)
	for i := 0; i < n; i++ {
		out.B[i] = f(get(x, vx.at(i)), get(y, vy.at(i)))
	}
	return one(out)
}

func logical(c *opCtx, f func(x, y bool) bool) ([]*Tensor, error) {
	x, y, shape, vx, vy, n, ok := prepBinary(c, []milpb.DataType{milpb.DataType_BOOL})
	if !ok {
		return nil, c.err
	}
	out := newTensor(milpb.DataType_BOOL, shape, n)
	for i := 0; i < n; i++ {
		out.B[i] = f(x.B[vx.at(i)], y.B[vy.at(i)])
	}
	return one(out)
}

// opSelect picks a where cond is true, else b, with three-way broadcasting.
func opSelect(c *opCtx) ([]*Tensor, error) {
	cond, a, b := c.in("cond"), c.in("a"), c.in("b")
	c.dtype("cond", cond, milpb.DataType_BOOL)
	c.dtype("a", a, milpb.DataType_FLOAT16, milpb.DataType_FLOAT32, milpb.DataType_INT32, milpb.DataType_BOOL)
	c.dtype("b", b, milpb.DataType_FLOAT16, milpb.DataType_FLOAT32, milpb.DataType_INT32, milpb.DataType_BOOL)
	if c.err != nil {
		return nil, c.err
	}
	if a.DType != b.DType {
		return nil, c.errf("a is %s but b is %s; dtypes must match", a.TypeString(), b.TypeString())
	}
	shape, err := broadcastShape(cond.Shape, a.Shape, b.Shape)
	if err != nil {
		return nil, c.errf("%v", err)
	}
	n, _ := shapeLen(shape)
	vc, va, vb := newBView(shape, cond.Shape, n), newBView(shape, a.Shape, n), newBView(shape, b.Shape, n)
	out := newTensor(a.DType, shape, n)
	cp := copierFor(a.DType)
	for i := 0; i < n; i++ {
		if cond.B[vc.at(i)] {
			cp(out, a, i, va.at(i))
		} else {
			cp(out, b, i, vb.at(i))
		}
	}
	return one(out)
}

// unaryFloat applies f (in float64) to an fp16/fp32 x, rounding to x's dtype.
func unaryFloat(c *opCtx, f func(x float64) float64) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, floatTypes...)
	if c.err != nil {
		return nil, c.err
	}
	out := newTensor(x.DType, append([]int64{}, x.Shape...), len(x.F))
	for i, v := range x.F {
		out.F[i] = float32(f(float64(v)))
	}
	roundAll(out.DType, out.F)
	return one(out)
}

func unaryNumeric(c *opCtx, f func(x float64) float64, fi func(int32) int32) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, numericTypes...)
	if c.err != nil {
		return nil, c.err
	}
	if x.DType != milpb.DataType_INT32 {
		return unaryFloat(c, f)
	}
	out := newTensor(x.DType, append([]int64{}, x.Shape...), len(x.I))
	for i, v := range x.I {
		out.I[i] = fi(v)
	}
	return one(out)
}
