package milrun

import (
	"math"
	"runtime"
	"slices"
	"sync"

	"lorapte/core/coremlspec/milpb"
)

func addLinalgOps(m map[string]opDef) {
	m["linear"] = opDef{params: []paramSpec{req("x"), reqConst("weight"), optConst("bias")}, run: opLinear}
	m["matmul"] = opDef{params: []paramSpec{req("x"), req("y"), optConst("transpose_x"), optConst("transpose_y")}, run: opMatmul}
	m["scaled_dot_product_attention"] = opDef{params: []paramSpec{req("query"), req("key"), req("value"), opt("attn_mask")}, run: opSDPA}
}

// opLinear: y[..., o] = sum_i x[..., i] * W[o, i] + b[o], accumulated in
// float32 and rounded once to x's dtype.
func opLinear(c *opCtx) ([]*Tensor, error) {
	x, w, b := c.in("x"), c.in("weight"), c.in("bias")
	c.dtype("x", x, floatTypes...)
	c.dtype("weight", w, floatTypes...)
	c.dtype("bias", b, floatTypes...)
	c.rank("weight", w, 2)
	c.rank("bias", b, 1)
	if c.err != nil {
		return nil, c.err
	}
	if b != nil && b.DType != w.DType {
		return nil, c.errf("bias dtype %s differs from weight dtype %s", dtypeName(b.DType), dtypeName(w.DType))
	}
	r := len(x.Shape)
	if r < 1 || r > 3 {
		return nil, c.errf("x is %s, want rank 1 to 3", x.TypeString())
	}
	in, outF := int(w.Shape[1]), int(w.Shape[0])
	if x.Shape[r-1] != w.Shape[1] {
		return nil, c.errf("x is %s but weight is %s: inner dims differ", x.TypeString(), w.TypeString())
	}
	if b != nil && b.Shape[0] != w.Shape[0] {
		return nil, c.errf("bias is %s, want [%d]", b.TypeString(), w.Shape[0])
	}
	shape := append(append([]int64{}, x.Shape[:r-1]...), w.Shape[0])
	n, err := shapeLen(shape)
	if err != nil {
		return nil, c.errf("output: %v", err)
	}
	rows := 1
	if outF > 0 {
		rows = n / outF
	}
	out := newTensor(x.DType, shape, n)
	parallelRows(outF, rows*in, func(o0, o1 int) {
		for o := o0; o < o1; o++ {
			wr := w.F[o*in : (o+1)*in]
			var bias float32
			if b != nil {
				bias = b.F[o]
			}
			for rr := 0; rr < rows; rr++ {
				out.F[rr*outF+o] = dot(x.F[rr*in:(rr+1)*in], wr) + bias
			}
		}
	})
	roundAll(out.DType, out.F)
	return one(out)
}

// dot is a float32 dot product with a fixed summation order.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// parallelRows splits [0, n) into chunks run concurrently when the work
// (n * costPerItem multiply-adds) is large. Each item is computed by exactly
// one goroutine with the same arithmetic, so results do not depend on the
// split.
func parallelRows(n, costPerItem int, f func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers < 2 || n < 2 || n*costPerItem < 1<<18 {
		f(0, n)
		return
	}
	workers = min(workers, n)
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// opMatmul is batched matrix multiplication with numpy broadcasting of the
// batch dims (iOS17 matmul: when exactly one operand comes from a const, the
// output takes the other operand's dtype).
func opMatmul(c *opCtx) ([]*Tensor, error) {
	x, y := c.in("x"), c.in("y")
	c.dtype("x", x, floatTypes...)
	c.dtype("y", y, floatTypes...)
	tx := c.scalarBool("transpose_x", false)
	ty := c.scalarBool("transpose_y", false)
	if c.err != nil {
		return nil, c.err
	}
	dt := x.DType
	if x.DType != y.DType {
		xc, yc := c.origin("x") == fromValue || c.origin("x") == fromConstOp, c.origin("y") == fromValue || c.origin("y") == fromConstOp
		if xc == yc {
			return nil, c.errf("x is %s but y is %s; dtypes must match unless exactly one is a const", x.TypeString(), y.TypeString())
		}
		if xc {
			dt = y.DType
		}
	}
	if len(x.Shape) < 1 || len(y.Shape) < 1 {
		return nil, c.errf("x %s and y %s must have rank >= 1", x.TypeString(), y.TypeString())
	}
	// Promote rank-1 operands to matrices; their unit dim is dropped again.
	xs, ys := append([]int64{}, x.Shape...), append([]int64{}, y.Shape...)
	xVec, yVec := len(xs) == 1, len(ys) == 1
	if xVec {
		xs, tx = []int64{1, xs[0]}, false
	}
	if yVec {
		ys, ty = []int64{ys[0], 1}, false
	}
	xr, yr := len(xs), len(ys)
	M, K := xs[xr-2], xs[xr-1]
	if tx {
		M, K = K, M
	}
	K2, N := ys[yr-2], ys[yr-1]
	if ty {
		K2, N = N, K2
	}
	if K != K2 {
		return nil, c.errf("x %s and y %s: contracted dims %d and %d differ", x.TypeString(), y.TypeString(), K, K2)
	}
	batch, err := broadcastShape(xs[:xr-2], ys[:yr-2])
	if err != nil {
		return nil, c.errf("batch dims: %v", err)
	}
	shape := append([]int64{}, batch...)
	if !xVec {
		shape = append(shape, M)
	}
	if !yVec {
		shape = append(shape, N)
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, c.errf("output: %v", err)
	}
	nb, _ := shapeLen(batch)
	vx, vy := newBView(batch, xs[:xr-2], nb), newBView(batch, ys[:yr-2], nb)
	m, k, nn := int(M), int(K), int(N)
	xm, ym := int(xs[xr-2]*xs[xr-1]), int(ys[yr-2]*ys[yr-1])
	out := newTensor(dt, shape, n)
	a := make([]float32, m*k)   // x batch as [M,K]
	bt := make([]float32, nn*k) // y batch transposed to [N,K]
	for bi := 0; bi < nb; bi++ {
		xo, yo := vx.at(bi)*xm, vy.at(bi)*ym
		if tx { // stored [K,M]
			for i := 0; i < m; i++ {
				for j := 0; j < k; j++ {
					a[i*k+j] = x.F[xo+j*m+i]
				}
			}
		} else {
			copy(a, x.F[xo:xo+m*k])
		}
		if ty { // stored [N,K]
			copy(bt, y.F[yo:yo+nn*k])
		} else {
			for j := 0; j < k; j++ {
				for i := 0; i < nn; i++ {
					bt[i*k+j] = y.F[yo+j*nn+i]
				}
			}
		}
		o := out.F[bi*m*nn : (bi+1)*m*nn]
		parallelRows(nn, m*k, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				col := bt[j*k : (j+1)*k]
				for i := 0; i < m; i++ {
					o[i*nn+j] = dot(a[i*k:(i+1)*k], col)
				}
			}
		})
	}
	roundAll(out.DType, out.F)
	return one(out)
}

// opSDPA is iOS18 scaled_dot_product_attention: softmax(q·kᵀ/√E + mask)·v.
// q [B,*,L,E], k [B,*,S,E], v [B,*,S,EV] share dtype and batch dims; a bool
// mask keeps entries where true, a float mask is added. Scores are computed
// in float32, softmax in float64, probabilities are rounded to the dtype
// (as a decomposed graph would), the weighted sum is float32 rounded once.
func opSDPA(c *opCtx) ([]*Tensor, error) {
	q, k, v, mask := c.in("query"), c.in("key"), c.in("value"), c.in("attn_mask")
	c.dtype("query", q, floatTypes...)
	c.dtype("key", k, floatTypes...)
	c.dtype("value", v, floatTypes...)
	if c.err != nil {
		return nil, c.err
	}
	dt := q.DType
	if k.DType != dt || v.DType != dt {
		return nil, c.errf("query %s, key %s and value %s must share a dtype", q.TypeString(), k.TypeString(), v.TypeString())
	}
	r := len(q.Shape)
	if r < 3 || len(k.Shape) != r || len(v.Shape) != r {
		return nil, c.errf("query %s, key %s, value %s must have the same rank >= 3", q.TypeString(), k.TypeString(), v.TypeString())
	}
	if !slices.Equal(q.Shape[:r-2], k.Shape[:r-2]) || !slices.Equal(q.Shape[:r-2], v.Shape[:r-2]) {
		return nil, c.errf("batch dims of query %s, key %s, value %s differ", q.TypeString(), k.TypeString(), v.TypeString())
	}
	L, E, S, EV := int(q.Shape[r-2]), int(q.Shape[r-1]), int(k.Shape[r-2]), int(v.Shape[r-1])
	if int(k.Shape[r-1]) != E || int(v.Shape[r-2]) != S {
		return nil, c.errf("key %s / value %s do not match query %s", k.TypeString(), v.TypeString(), q.TypeString())
	}
	scoreShape := append(append([]int64{}, q.Shape[:r-1]...), int64(S))
	n, err := shapeLen(scoreShape)
	if err != nil {
		return nil, c.errf("scores: %v", err)
	}
	var vm bview
	if mask != nil {
		if mask.DType != milpb.DataType_BOOL && mask.DType != dt {
			return nil, c.errf("attn_mask dtype %s must be bool or %s", dtypeName(mask.DType), dtypeName(dt))
		}
		bs, err := broadcastShape(scoreShape, mask.Shape)
		if err != nil || !slices.Equal(bs, scoreShape) {
			return nil, c.errf("attn_mask %s does not broadcast to %v", mask.TypeString(), scoreShape)
		}
		vm = newBView(scoreShape, mask.Shape, n)
	}
	shape := append(append([]int64{}, q.Shape[:r-1]...), int64(EV))
	on, err := shapeLen(shape)
	if err != nil {
		return nil, c.errf("output: %v", err)
	}
	out := newTensor(dt, shape, on)
	nb := n / max(L*S, 1)
	scale := float32(1 / math.Sqrt(float64(E)))
	sc := make([]float64, S)
	p := make([]float32, S)
	for b := 0; b < nb; b++ {
		for l := 0; l < L; l++ {
			qrow := q.F[(b*L+l)*E : (b*L+l+1)*E]
			mx := math.Inf(-1)
			for s := 0; s < S; s++ {
				x := roundTo(dt, dot(qrow, k.F[(b*S+s)*E:(b*S+s+1)*E])*scale)
				if mask != nil {
					mi := vm.at((b*L+l)*S + s)
					if mask.B != nil {
						if !mask.B[mi] {
							x = float32(math.Inf(-1))
						}
					} else {
						x = roundTo(dt, x+mask.F[mi])
					}
				}
				sc[s] = float64(x)
				if sc[s] > mx || sc[s] != sc[s] {
					mx = sc[s]
				}
			}
			sum := 0.0
			for s := range sc {
				sc[s] = math.Exp(sc[s] - mx)
				sum += sc[s]
			}
			for s := range sc {
				p[s] = roundTo(dt, float32(sc[s]/sum))
			}
			o := out.F[(b*L+l)*EV : (b*L+l+1)*EV]
			for s := 0; s < S; s++ {
				vrow := v.F[(b*S+s)*EV : (b*S+s+1)*EV]
				for j := range o {
					o[j] += p[s] * vrow[j]
				}
			}
		}
	}
	roundAll(dt, out.F)
	return one(out)
}
