package milrun

import (
	"fmt"

	"lorapte/core/coremlspec/milpb"
)

// constness is what a parameter requires of its binding's origin.
type constness uint8

const (
	anyOrigin  constness = iota
	mustConst            // inline value, const op output or constexpr output
	mustInline           // inline value or constexpr output (constexpr_* params, coreml.md §5.2)
)

func (k constness) allows(o origin) bool {
	switch k {
	case mustConst:
		return o != fromRuntime
	case mustInline:
		return o == fromValue || o == fromConstexpr
	}
	return true
}

func (k constness) String() string {
	switch k {
	case mustConst:
		return "a compile-time constant (value binding, const or constexpr output)"
	case mustInline:
		return "a value binding or a constexpr output"
	}
	return "anything"
}

type paramSpec struct {
	name      string
	required  bool
	variadic  bool
	constness constness
}

type opDef struct {
	params []paramSpec
	run    func(c *opCtx) ([]*Tensor, error)
}

func (d opDef) param(name string) (paramSpec, bool) {
	for _, p := range d.params {
		if p.name == name {
			return p, true
		}
	}
	return paramSpec{}, false
}

// Parameter spec shorthands.
func req(n string) paramSpec      { return paramSpec{name: n, required: true} }
func opt(n string) paramSpec      { return paramSpec{name: n} }
func reqConst(n string) paramSpec { return paramSpec{name: n, required: true, constness: mustConst} }
func optConst(n string) paramSpec { return paramSpec{name: n, constness: mustConst} }

// opTable maps op type to its definition; filled by the ops_*.go files'
// init-free constructors below so the table is built once.
var opTable = buildOpTable()

func buildOpTable() map[string]opDef {
	m := map[string]opDef{}
	addTensorOps(m)
	addElementwiseOps(m)
	addLinalgOps(m)
	addReduceOps(m)
	addShapeOps(m)
	return m
}

// opCtx carries one op's resolved bindings. Accessors record the first
// failure in err and return zero values, so op code can fetch all parameters
// and then check err once.
type opCtx struct {
	fn   string
	op   *milpb.Operation
	name string
	args map[string][]slot
	w    Weights
	err  error
}

func (c *opCtx) errf(format string, a ...any) error {
	return fmt.Errorf("milrun: function %q: op %q (%s): %s", c.fn, c.name, c.op.GetType(), fmt.Sprintf(format, a...))
}

// fail records the first error.
func (c *opCtx) fail(format string, a ...any) {
	if c.err == nil {
		c.err = c.errf(format, a...)
	}
}

func (c *opCtx) has(p string) bool { return len(c.args[p]) > 0 }

// in returns the tensor bound to p, or nil when p is absent.
func (c *opCtx) in(p string) *Tensor {
	if a := c.args[p]; len(a) > 0 {
		return a[0].t
	}
	return nil
}

func (c *opCtx) origin(p string) origin {
	if a := c.args[p]; len(a) > 0 {
		return a[0].origin
	}
	return fromRuntime
}

// list returns all tensors bound to the variadic parameter p.
func (c *opCtx) list(p string) []*Tensor {
	out := make([]*Tensor, len(c.args[p]))
	for i, s := range c.args[p] {
		out[i] = s.t
	}
	return out
}

// dtype checks that p's dtype is one of allowed.
func (c *opCtx) dtype(p string, t *Tensor, allowed ...milpb.DataType) {
	if t == nil {
		return
	}
	for _, a := range allowed {
		if t.DType == a {
			return
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = dtypeName(a)
	}
	c.fail("parameter %q has dtype %s, want one of %v", p, dtypeName(t.DType), names)
}

func (c *opCtx) rank(p string, t *Tensor, want int) {
	if t != nil && len(t.Shape) != want {
		c.fail("parameter %q is %s, want rank %d", p, t.TypeString(), want)
	}
}

var (
	floatTypes   = []milpb.DataType{milpb.DataType_FLOAT16, milpb.DataType_FLOAT32}
	numericTypes = []milpb.DataType{milpb.DataType_FLOAT16, milpb.DataType_FLOAT32, milpb.DataType_INT32}
	indexTypes   = []milpb.DataType{milpb.DataType_INT8, milpb.DataType_INT16, milpb.DataType_INT32}
	// dataTypes is the iOS17 "T" domain of the shape ops.
	dataTypes = []milpb.DataType{milpb.DataType_FLOAT16, milpb.DataType_FLOAT32, milpb.DataType_INT8,
		milpb.DataType_UINT8, milpb.DataType_INT16, milpb.DataType_UINT16, milpb.DataType_INT32, milpb.DataType_BOOL}
)

// scalarInt reads an int32 scalar parameter, def when absent.
func (c *opCtx) scalarInt(p string, def int64) int64 {
	t := c.in(p)
	if t == nil {
		return def
	}
	c.dtype(p, t, milpb.DataType_INT32)
	c.rank(p, t, 0)
	if c.err != nil {
		return def
	}
	return int64(t.I[0])
}

func (c *opCtx) scalarBool(p string, def bool) bool {
	t := c.in(p)
	if t == nil {
		return def
	}
	c.dtype(p, t, milpb.DataType_BOOL)
	c.rank(p, t, 0)
	if c.err != nil {
		return def
	}
	return t.B[0]
}

func (c *opCtx) scalarFloat(p string, def float32) float32 {
	t := c.in(p)
	if t == nil {
		return def
	}
	c.dtype(p, t, floatTypes...)
	c.rank(p, t, 0)
	if c.err != nil {
		return def
	}
	return t.F[0]
}

func (c *opCtx) scalarString(p string) string {
	t := c.in(p)
	if t == nil {
		return ""
	}
	c.dtype(p, t, milpb.DataType_STRING)
	c.rank(p, t, 0)
	if c.err != nil {
		return ""
	}
	return t.S[0]
}

// ints1D reads a rank-1 integer parameter of one of allowed dtypes.
func (c *opCtx) ints1D(p string, allowed ...milpb.DataType) []int64 {
	t := c.in(p)
	if t == nil {
		return nil
	}
	c.dtype(p, t, allowed...)
	c.rank(p, t, 1)
	if c.err != nil {
		return nil
	}
	out := make([]int64, len(t.I))
	for i, v := range t.I {
		out[i] = int64(v)
	}
	return out
}

// bools1D reads a rank-1 bool parameter of length n, def (all false) when
// absent.
func (c *opCtx) bools1D(p string, n int) []bool {
	t := c.in(p)
	if t == nil {
		return make([]bool, n)
	}
	c.dtype(p, t, milpb.DataType_BOOL)
	c.rank(p, t, 1)
	if c.err == nil && len(t.B) != n {
		c.fail("parameter %q has %d entries, want %d", p, len(t.B), n)
	}
	if c.err != nil {
		return make([]bool, n)
	}
	return t.B
}

// axes normalizes a list of axes for the given rank and rejects duplicates.
func (c *opCtx) axes(p string, raw []int64, rank int) []int {
	out := make([]int, len(raw))
	seen := map[int]bool{}
	for i, a := range raw {
		n, err := normAxis(a, rank)
		if err != nil {
			c.fail("parameter %q: %v", p, err)
			return nil
		}
		if seen[n] {
			c.fail("parameter %q repeats axis %d", p, a)
			return nil
		}
		seen[n] = true
		out[i] = n
	}
	return out
}

// one wraps a single result.
func one(t *Tensor) ([]*Tensor, error) { return []*Tensor{t}, nil }
