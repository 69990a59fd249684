package milrun

import (
	"math"

	"lorapte/core/coremlspec/milpb"
)

type reduceKind uint8

const (
	redSum reduceKind = iota
	redMean
	redMax
	redMin
	redProd
)

func addReduceOps(m map[string]opDef) {
	for name, k := range map[string]reduceKind{
		"reduce_sum": redSum, "reduce_mean": redMean, "reduce_max": redMax, "reduce_min": redMin, "reduce_prod": redProd,
	} {
		m[name] = opDef{
			params: []paramSpec{req("x"), optConst("axes"), optConst("keep_dims")},
			run:    func(c *opCtx) ([]*Tensor, error) { return opReduce(c, k) },
		}
	}
	m["softmax"] = opDef{params: []paramSpec{req("x"), optConst("axis")}, run: opSoftmax}
}

// opReduce accumulates in float64 (int64 for int32) and rounds once to the
// output dtype.
func opReduce(c *opCtx, kind reduceKind) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, numericTypes...)
	keep := c.scalarBool("keep_dims", false)
	if c.err != nil {
		return nil, c.err
	}
	isInt := x.DType == milpb.DataType_INT32
	if isInt && kind == redMean {
		return nil, c.errf("reduce_mean of int32 is not supported")
	}
	rank := len(x.Shape)
	reduced := make([]bool, rank)
	if c.has("axes") {
		raw := c.ints1D("axes", milpb.DataType_INT32)
		ax := c.axes("axes", raw, rank)
		if c.err != nil {
			return nil, c.err
		}
		if len(ax) == 0 {
			return nil, c.errf("axes is empty")
		}
		for _, a := range ax {
			reduced[a] = true
		}
	} else {
		for i := range reduced {
			reduced[i] = true
		}
	}
	var shape []int64
	ostr := make([]int, rank) // output stride per input axis (0 when reduced)
	outN := 1
	for i := rank - 1; i >= 0; i-- {
		if !reduced[i] {
			ostr[i] = outN
			outN *= int(x.Shape[i])
		}
	}
	for i, d := range x.Shape {
		switch {
		case !reduced[i]:
			shape = append(shape, d)
		case keep:
			shape = append(shape, 1)
		}
	}
	if shape == nil {
		shape = []int64{}
	}
	n := x.Len()
	count := 1
	if outN > 0 {
		count = n / outN
	}
	if count == 0 && (kind == redMax || kind == redMin) {
		return nil, c.errf("cannot reduce an empty %s with %s", x.TypeString(), c.op.GetType())
	}
	acc := make([]float64, outN)
	iacc := make([]int64, outN)
	for i := range acc {
		switch kind {
		case redMax:
			acc[i], iacc[i] = math.Inf(-1), math.MinInt64
		case redMin:
			acc[i], iacc[i] = math.Inf(1), math.MaxInt64
		case redProd:
			acc[i], iacc[i] = 1, 1
		}
	}
	ctr := make([]int64, rank)
	o := 0
	for i := 0; i < n; i++ {
		if isInt {
			v := int64(x.I[i])
			switch kind {
			case redSum:
				iacc[o] += v
			case redMax:
				iacc[o] = max(iacc[o], v)
			case redMin:
				iacc[o] = min(iacc[o], v)
			case redProd:
				iacc[o] = int64(int32(iacc[o] * v)) // wraps like int32 arithmetic
			}
		} else {
			v := float64(x.F[i])
			switch kind {
			case redSum, redMean:
				acc[o] += v
			case redMax:
				if v > acc[o] || v != v {
					acc[o] = v
				}
			case redMin:
				if v < acc[o] || v != v {
					acc[o] = v
				}
			case redProd:
				acc[o] *= v
			}
		}
		for d := rank - 1; d >= 0; d-- {
			ctr[d]++
			o += ostr[d]
			if ctr[d] < x.Shape[d] {
				break
			}
			o -= ostr[d] * int(ctr[d])
			ctr[d] = 0
		}
	}
	out := newTensor(x.DType, shape, outN)
	for i := range acc {
		if isInt {
			out.I[i] = int32(iacc[i])
			continue
		}
		v := acc[i]
		if kind == redMean {
			v /= float64(count)
		}
		out.F[i] = roundTo(x.DType, float32(v))
	}
	return one(out)
}

// opSoftmax is numerically stable softmax in float64: entries of -inf get
// probability 0; a slice that is entirely -inf (or holds +inf/NaN) yields NaN,
// as exp(x - max) / sum does.
func opSoftmax(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, floatTypes...)
	axis := c.scalarInt("axis", -1)
	if c.err != nil {
		return nil, c.err
	}
	a, err := normAxis(axis, len(x.Shape))
	if err != nil {
		return nil, c.errf("axis: %v", err)
	}
	outer, inner := 1, 1
	for _, d := range x.Shape[:a] {
		outer *= int(d)
	}
	for _, d := range x.Shape[a+1:] {
		inner *= int(d)
	}
	dim := int(x.Shape[a])
	out := newTensor(x.DType, append([]int64{}, x.Shape...), len(x.F))
	e := make([]float64, dim)
	for o := 0; o < outer; o++ {
		for in := 0; in < inner; in++ {
			base := o*dim*inner + in
			mx := math.Inf(-1)
			for j := 0; j < dim; j++ {
				v := float64(x.F[base+j*inner])
				if v > mx || v != v {
					mx = v
				}
			}
			sum := 0.0
			for j := 0; j < dim; j++ {
				e[j] = math.Exp(float64(x.F[base+j*inner]) - mx)
				sum += e[j]
			}
			for j := 0; j < dim; j++ {
				out.F[base+j*inner] = roundTo(x.DType, float32(e[j]/sum))
			}
		}
	}
	return one(out)
}
