package milrun

import (
	"lorapte/core/coremlspec/milpb"
)

func addShapeOps(m map[string]opDef) {
	m["reshape"] = opDef{params: []paramSpec{req("x"), req("shape")}, run: opReshape}
	m["transpose"] = opDef{params: []paramSpec{req("x"), reqConst("perm")}, run: opTranspose}
	m["concat"] = opDef{
		params: []paramSpec{{name: "values", required: true, variadic: true}, reqConst("axis"), optConst("interleave")},
		run:    opConcat,
	}
	m["split"] = opDef{params: []paramSpec{req("x"), reqConst("axis"), optConst("num_splits"), optConst("split_sizes")}, run: opSplit}
	m["slice_by_index"] = opDef{
		params: []paramSpec{req("x"), req("begin"), req("end"), optConst("stride"),
			optConst("begin_mask"), optConst("end_mask"), optConst("squeeze_mask")},
		run: opSliceByIndex,
	}
	m["slice_by_size"] = opDef{params: []paramSpec{req("x"), req("begin"), req("size")}, run: opSliceBySize}
	m["expand_dims"] = opDef{params: []paramSpec{req("x"), reqConst("axes")}, run: opExpandDims}
	m["squeeze"] = opDef{params: []paramSpec{req("x"), optConst("axes")}, run: opSqueeze}
	m["tile"] = opDef{params: []paramSpec{req("x"), reqConst("reps")}, run: opTile}
	m["band_part"] = opDef{params: []paramSpec{req("x"), optConst("lower"), optConst("upper")}, run: opBandPart}
}

// gatherStrided builds a tensor of shape whose element at multi-index m is
// src's flat element base + sum_d m[d]*st[d].
func gatherStrided(src *Tensor, shape []int64, n, base int, st []int) *Tensor {
	out := newTensor(src.DType, shape, n)
	cp := copierFor(src.DType)
	rank := len(shape)
	ctr := make([]int64, rank)
	cur := base
	for i := 0; i < n; i++ {
		cp(out, src, i, cur)
		for d := rank - 1; d >= 0; d-- {
			ctr[d]++
			cur += st[d]
			if ctr[d] < shape[d] {
				break
			}
			cur -= st[d] * int(ctr[d])
			ctr[d] = 0
		}
	}
	return out
}

// opReshape follows the iOS17 rules: one -1 is inferred; a 0 copies the dim
// of x at the same position counted from the right (1 when x has no such
// dim).
func opReshape(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, dataTypes...)
	spec := c.ints1D("shape", indexTypes...)
	if c.err != nil {
		return nil, c.err
	}
	shape := make([]int64, len(spec))
	infer := -1
	for i, d := range spec {
		switch {
		case d == -1:
			if infer >= 0 {
				return nil, c.errf("shape %v has more than one -1", spec)
			}
			infer = i
		case d == 0:
			j := len(x.Shape) - (len(spec) - i)
			shape[i] = 1
			if j >= 0 {
				shape[i] = x.Shape[j]
			}
			continue
		case d < 0:
			return nil, c.errf("shape %v has invalid entry %d", spec, d)
		}
		shape[i] = d
	}
	n := x.Len()
	if infer >= 0 {
		shape[infer] = 1
		known, err := shapeLen(shape)
		if err != nil {
			return nil, c.errf("shape %v: %v", spec, err)
		}
		if known == 0 || n%known != 0 {
			return nil, c.errf("cannot infer -1 in shape %v for %s", spec, x.TypeString())
		}
		shape[infer] = int64(n / known)
	}
	m, err := shapeLen(shape)
	if err != nil || m != n {
		return nil, c.errf("cannot reshape %s to %v", x.TypeString(), shape)
	}
	return one(withShape(x, shape))
}

func opTranspose(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, dataTypes...)
	raw := c.ints1D("perm", milpb.DataType_INT32)
	if c.err != nil {
		return nil, c.err
	}
	rank := len(x.Shape)
	if len(raw) != rank {
		return nil, c.errf("perm %v has %d entries, x %s has rank %d", raw, len(raw), x.TypeString(), rank)
	}
	perm := c.axes("perm", raw, rank)
	if c.err != nil {
		return nil, c.err
	}
	is := strides(x.Shape)
	shape := make([]int64, rank)
	st := make([]int, rank)
	for i, p := range perm {
		shape[i] = x.Shape[p]
		st[i] = is[p]
	}
	return one(gatherStrided(x, shape, x.Len(), 0, st))
}

func opConcat(c *opCtx) ([]*Tensor, error) {
	vals := c.list("values")
	axis := c.scalarInt("axis", 0)
	if c.scalarBool("interleave", false) {
		c.fail("interleave=true is not supported")
	}
	for i, v := range vals {
		c.dtype("values", v, dataTypes...)
		if c.err == nil && (v.DType != vals[0].DType || len(v.Shape) != len(vals[0].Shape)) {
			c.fail("values[%d] is %s, values[0] is %s: dtype and rank must match", i, v.TypeString(), vals[0].TypeString())
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	rank := len(vals[0].Shape)
	a, err := normAxis(axis, rank)
	if err != nil {
		return nil, c.errf("axis: %v", err)
	}
	shape := append([]int64{}, vals[0].Shape...)
	shape[a] = 0
	for i, v := range vals {
		for d := range shape {
			if d != a && v.Shape[d] != shape[d] {
				return nil, c.errf("values[%d] is %s, incompatible with values[0] %s on axis %d", i, v.TypeString(), vals[0].TypeString(), d)
			}
		}
		shape[a] += v.Shape[a]
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, c.errf("output: %v", err)
	}
	outer, inner := 1, 1
	for _, d := range shape[:a] {
		outer *= int(d)
	}
	for _, d := range shape[a+1:] {
		inner *= int(d)
	}
	out := newTensor(vals[0].DType, shape, n)
	row := int(shape[a]) * inner
	off := 0
	for _, v := range vals {
		blk := int(v.Shape[a]) * inner
		for o := 0; o < outer; o++ {
			copyRange(out, v, o*row+off, o*blk, blk)
		}
		off += blk
	}
	return one(out)
}

func opSplit(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, dataTypes...)
	axis := c.scalarInt("axis", 0)
	if c.err != nil {
		return nil, c.err
	}
	a, err := normAxis(axis, len(x.Shape))
	if err != nil {
		return nil, c.errf("axis: %v", err)
	}
	dim := x.Shape[a]
	var sizes []int64
	if c.has("split_sizes") {
		sizes = c.ints1D("split_sizes", milpb.DataType_INT32)
		if c.err != nil {
			return nil, c.err
		}
		sum := int64(0)
		for _, s := range sizes {
			if s < 0 {
				return nil, c.errf("split_sizes %v has a negative entry", sizes)
			}
			sum += s
		}
		if sum != dim || len(sizes) == 0 {
			return nil, c.errf("split_sizes %v do not sum to dim %d of %s", sizes, dim, x.TypeString())
		}
	}
	if c.has("num_splits") {
		k := c.scalarInt("num_splits", 0)
		if c.err != nil {
			return nil, c.err
		}
		if k <= 0 || dim%k != 0 {
			return nil, c.errf("num_splits %d does not divide dim %d of %s", k, dim, x.TypeString())
		}
		if sizes != nil && int64(len(sizes)) != k {
			return nil, c.errf("num_splits %d disagrees with split_sizes %v", k, sizes)
		}
		if sizes == nil {
			for i := int64(0); i < k; i++ {
				sizes = append(sizes, dim/k)
			}
		}
	}
	if sizes == nil {
		return nil, c.errf("one of num_splits or split_sizes is required")
	}
	is := strides(x.Shape)
	outs := make([]*Tensor, len(sizes))
	begin := int64(0)
	for i, s := range sizes {
		shape := append([]int64{}, x.Shape...)
		shape[a] = s
		n, _ := shapeLen(shape)
		outs[i] = gatherStrided(x, shape, n, int(begin)*is[a], is)
		begin += s
	}
	return outs, nil
}

// opSliceByIndex implements numpy slicing x[b0:e0:s0, ...] with masks;
// squeeze_mask[i] takes the single index begin[i] and drops the axis.
func opSliceByIndex(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, dataTypes...)
	begin := c.ints1D("begin", indexTypes...)
	end := c.ints1D("end", indexTypes...)
	if c.err != nil {
		return nil, c.err
	}
	rank := len(x.Shape)
	if len(begin) != rank || len(end) != rank {
		return nil, c.errf("begin %v / end %v must have %d entries for %s", begin, end, rank, x.TypeString())
	}
	stride := make([]int64, rank)
	for i := range stride {
		stride[i] = 1
	}
	if c.has("stride") {
		stride = c.ints1D("stride", indexTypes...)
		if c.err == nil && len(stride) != rank {
			c.fail("stride %v must have %d entries", stride, rank)
		}
	}
	bm := c.bools1D("begin_mask", rank)
	em := c.bools1D("end_mask", rank)
	sm := c.bools1D("squeeze_mask", rank)
	if c.err != nil {
		return nil, c.err
	}
	is := strides(x.Shape)
	var shape []int64
	var st []int
	base := 0
	for i := 0; i < rank; i++ {
		d, s := x.Shape[i], stride[i]
		if s == 0 {
			return nil, c.errf("stride %v has a zero entry", stride)
		}
		if sm[i] {
			b := begin[i]
			if b < 0 {
				b += d
			}
			if b < 0 || b >= d {
				return nil, c.errf("squeezed index %d out of range for dim %d of %s", begin[i], i, x.TypeString())
			}
			base += int(b) * is[i]
			continue
		}
		b, e := begin[i], end[i]
		var cnt int64
		if s > 0 {
			b = clampIndex(b, d, bm[i], 0, 0, d)
			e = clampIndex(e, d, em[i], d, 0, d)
			if e > b {
				cnt = (e - b + s - 1) / s
			}
		} else {
			b = clampIndex(b, d, bm[i], d-1, -1, d-1)
			e = clampIndex(e, d, em[i], -1, -1, d-1)
			if b > e {
				cnt = (b - e + (-s) - 1) / (-s)
			}
		}
		if cnt > 0 {
			base += int(b) * is[i]
		}
		shape = append(shape, cnt)
		st = append(st, int(s)*is[i])
	}
	if shape == nil {
		shape = []int64{}
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, c.errf("output: %v", err)
	}
	if n == 0 {
		return one(newTensor(x.DType, shape, 0))
	}
	return one(gatherStrided(x, shape, n, base, st))
}

// clampIndex resolves one slice bound like Python's slice.indices: masked
// bounds take def, negatives count from the end, the rest is clamped to
// [lo, hi].
func clampIndex(v, dim int64, masked bool, def, lo, hi int64) int64 {
	if masked {
		return def
	}
	if v < 0 {
		v += dim
	}
	return min(max(v, lo), hi)
}

func opSliceBySize(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, dataTypes...)
	begin := c.ints1D("begin", indexTypes...)
	size := c.ints1D("size", indexTypes...)
	if c.err != nil {
		return nil, c.err
	}
	rank := len(x.Shape)
	if len(begin) != rank || len(size) != rank {
		return nil, c.errf("begin %v / size %v must have %d entries for %s", begin, size, rank, x.TypeString())
	}
	is := strides(x.Shape)
	shape := make([]int64, rank)
	base := 0
	for i := 0; i < rank; i++ {
		d, b, s := x.Shape[i], begin[i], size[i]
		if b < 0 {
			b += d
		}
		if s == -1 {
			s = d - b
		}
		if b < 0 || s < 0 || b+s > d {
			return nil, c.errf("begin %v / size %v out of range for %s", begin, size, x.TypeString())
		}
		shape[i] = s
		base += int(b) * is[i]
	}
	n, _ := shapeLen(shape)
	if n == 0 {
		return one(newTensor(x.DType, shape, 0))
	}
	return one(gatherStrided(x, shape, n, base, is))
}

func opExpandDims(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, dataTypes...)
	raw := c.ints1D("axes", milpb.DataType_INT32)
	if c.err != nil {
		return nil, c.err
	}
	if len(raw) == 0 {
		return nil, c.errf("axes is empty")
	}
	outRank := len(x.Shape) + len(raw)
	ax := c.axes("axes", raw, outRank)
	if c.err != nil {
		return nil, c.err
	}
	isNew := make([]bool, outRank)
	for _, a := range ax {
		isNew[a] = true
	}
	shape := make([]int64, outRank)
	j := 0
	for i := range shape {
		if isNew[i] {
			shape[i] = 1
			continue
		}
		shape[i] = x.Shape[j]
		j++
	}
	return one(withShape(x, shape))
}

// opSqueeze removes size-1 axes; like pymil it ignores listed axes whose size
// is not 1.
func opSqueeze(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, dataTypes...)
	if c.err != nil {
		return nil, c.err
	}
	rank := len(x.Shape)
	if rank == 0 {
		return nil, c.errf("x must have rank >= 1")
	}
	drop := make([]bool, rank)
	if c.has("axes") {
		raw := c.ints1D("axes", milpb.DataType_INT32)
		ax := c.axes("axes", raw, rank)
		if c.err != nil {
			return nil, c.err
		}
		for _, a := range ax {
			drop[a] = x.Shape[a] == 1
		}
	} else {
		for i, d := range x.Shape {
			drop[i] = d == 1
		}
	}
	shape := []int64{}
	for i, d := range x.Shape {
		if !drop[i] {
			shape = append(shape, d)
		}
	}
	return one(withShape(x, shape))
}

func opTile(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, dataTypes...)
	reps := c.ints1D("reps", milpb.DataType_INT32)
	if c.err != nil {
		return nil, c.err
	}
	rank := len(x.Shape)
	if len(reps) != rank {
		return nil, c.errf("reps %v must have %d entries for %s", reps, rank, x.TypeString())
	}
	shape := make([]int64, rank)
	for i, r := range reps {
		if r < 1 {
			return nil, c.errf("reps %v must be positive", reps)
		}
		if x.Shape[i] != 0 && r > MaxElements/x.Shape[i] {
			return nil, c.errf("reps %v too large", reps)
		}
		shape[i] = x.Shape[i] * r
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, c.errf("output: %v", err)
	}
	out := newTensor(x.DType, shape, n)
	cp := copierFor(x.DType)
	is := strides(x.Shape)
	ctr := make([]int64, rank)
	for i := 0; i < n; i++ {
		src := 0
		for d := 0; d < rank; d++ {
			src += int(ctr[d]%x.Shape[d]) * is[d]
		}
		cp(out, x, i, src)
		for d := rank - 1; d >= 0; d-- {
			ctr[d]++
			if ctr[d] < shape[d] {
				break
			}
			ctr[d] = 0
		}
	}
	return one(out)
}

// opBandPart keeps x[..., i, j] where (lower < 0 or i-j <= lower) and
// (upper < 0 or j-i <= upper), zeroing the rest.
func opBandPart(c *opCtx) ([]*Tensor, error) {
	x := c.in("x")
	c.dtype("x", x, numericTypes...)
	lower := c.scalarInt("lower", -1)
	upper := c.scalarInt("upper", -1)
	if c.err != nil {
		return nil, c.err
	}
	rank := len(x.Shape)
	if rank < 2 {
		return nil, c.errf("x is %s, want rank >= 2", x.TypeString())
	}
	rows, cols := x.Shape[rank-2], x.Shape[rank-1]
	n := x.Len()
	out := newTensor(x.DType, append([]int64{}, x.Shape...), n)
	for k := 0; k < n; k++ {
		j := int64(k) % cols
		i := (int64(k) / cols) % rows
		keep := (lower < 0 || i-j <= lower) && (upper < 0 || j-i <= upper)
		if !keep {
			continue
		}
		if out.F != nil {
			out.F[k] = x.F[k]
		} else {
			out.I[k] = x.I[k]
		}
	}
	return one(out)
}
