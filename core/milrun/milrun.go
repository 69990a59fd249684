// Package milrun interprets Core ML MIL programs (opset CoreML8) the way a
// device would run the programs lorapte writes, so tests can compare an
// exported model with an independent float64 reference.
//
// The interpreter is strict: unknown ops, parameters or attributes, unbound
// names, wrong dtypes or shapes, and any difference between an op's declared
// output type and what it computes are errors naming the function, op and
// parameter. Precision is simulated: an op whose output dtype is FLOAT16
// computes in float32 (reductions and softmax in float64) and rounds its
// result to the nearest fp16 (ties to even); FLOAT32 results stay float32;
// integer dtypes are exact.
//
// Only static shapes and tensor values are supported; control flow, states
// and list/tuple/dictionary values are rejected, as are a few op variants
// lorapte does not emit (int32 linear/matmul, gather with batch_dims != 0,
// concat with interleave). Function inputs of dtype FLOAT16 are rounded to
// fp16 on entry, as filling an fp16 MultiArray would.
//
// Weight blobs are read through the Weights interface; Run and RunOrdered
// re-read and re-dequantize them on every call, a Session caches them.
package milrun

import (
	"fmt"
	"slices"
	"sort"

	"lorapte/core/coremlspec/milpb"
)

// Opset is the only MIL opset the interpreter accepts.
const Opset = "CoreML8"

// NamedTensor is one function output.
type NamedTensor struct {
	Name   string
	Tensor *Tensor
}

// Run executes function of prog with the given inputs (keyed by input name)
// and returns its outputs keyed by block output name.
func Run(prog *milpb.Program, function string, inputs map[string]*Tensor, w Weights) (map[string]*Tensor, error) {
	outs, err := RunOrdered(prog, function, inputs, w)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*Tensor, len(outs))
	for _, o := range outs {
		m[o.Name] = o.Tensor
	}
	return m, nil
}

// RunOrdered is Run returning the outputs in block output order. The returned
// tensors are fresh copies owned by the caller.
func RunOrdered(prog *milpb.Program, function string, inputs map[string]*Tensor, w Weights) ([]NamedTensor, error) {
	return (&Session{prog: prog, w: w}).RunOrdered(function, inputs)
}

// Session runs functions of one program repeatedly, caching the results of
// const and constexpr_* ops (e.g. dequantized weights) across runs. Use it for
// benchmarks; it keeps every constant alive, which for a real model costs
// float32 memory for all weights. The program must not change while the
// Session is used. A Session is not safe for concurrent use.
type Session struct {
	prog  *milpb.Program
	w     Weights
	cache map[*milpb.Operation][]*Tensor // nil: no caching
}

// NewSession returns a Session over prog whose constants are cached.
func NewSession(prog *milpb.Program, w Weights) *Session {
	return &Session{prog: prog, w: w, cache: map[*milpb.Operation][]*Tensor{}}
}

// Run is like the package-level Run.
func (s *Session) Run(function string, inputs map[string]*Tensor) (map[string]*Tensor, error) {
	outs, err := s.RunOrdered(function, inputs)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*Tensor, len(outs))
	for _, o := range outs {
		m[o.Name] = o.Tensor
	}
	return m, nil
}

// origin records how a var's value is known, for the "const" requirements
// of op parameters.
type origin uint8

const (
	fromRuntime   origin = iota // function input or result of a regular op
	fromValue                   // inline value binding
	fromConstOp                 // output of a const op
	fromConstexpr               // output of a constexpr_* op
)

type slot struct {
	t      *Tensor
	origin origin
}

// RunOrdered is like the package-level RunOrdered.
func (s *Session) RunOrdered(function string, inputs map[string]*Tensor) ([]NamedTensor, error) {
	fail := func(format string, a ...any) ([]NamedTensor, error) {
		return nil, fmt.Errorf("milrun: function %q: %s", function, fmt.Sprintf(format, a...))
	}
	if s.prog == nil {
		return nil, fmt.Errorf("milrun: nil program")
	}
	fn := s.prog.GetFunctions()[function]
	if fn == nil {
		names := make([]string, 0, len(s.prog.GetFunctions()))
		for n := range s.prog.GetFunctions() {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("milrun: program has no function %q (have %v)", function, names)
	}
	if fn.GetOpset() != Opset {
		return fail("opset %q, want %q", fn.GetOpset(), Opset)
	}
	if len(fn.GetBlockSpecializations()) != 1 {
		return fail("has %d block specializations, want exactly 1", len(fn.GetBlockSpecializations()))
	}
	block := fn.GetBlockSpecializations()[Opset]
	if block == nil {
		return fail("no block specialization for opset %q", Opset)
	}
	if len(block.GetInputs()) != 0 {
		return fail("top block declares %d block inputs, want none", len(block.GetInputs()))
	}

	env := map[string]slot{}
	defined := map[string]bool{} // every name ever defined, for SSA checks
	declared := map[string]bool{}
	for _, in := range fn.GetInputs() {
		name := in.GetName()
		if name == "" {
			return fail("function input with empty name")
		}
		if declared[name] {
			return fail("input %q declared twice", name)
		}
		declared[name] = true
		dt, shape, err := tensorType(in.GetType())
		if err != nil {
			return fail("input %q: %v", name, err)
		}
		t, ok := inputs[name]
		if !ok || t == nil {
			return fail("input %q (%s) not given", name, typeString(dt, shape))
		}
		if err := t.validate(); err != nil {
			return fail("input %q: %v", name, err)
		}
		if t.DType != dt || !slices.Equal(t.Shape, shape) {
			return fail("input %q is %s, function declares %s", name, t.TypeString(), typeString(dt, shape))
		}
		if dt == milpb.DataType_FLOAT16 {
			// The host hands fp16 MultiArrays to Core ML: round like the
			// conversion into such an array would.
			c := t.Clone()
			roundAll(dt, c.F)
			t = c
		}
		env[name] = slot{t: t}
		defined[name] = true
	}
	given := make([]string, 0, len(inputs))
	for n := range inputs {
		given = append(given, n)
	}
	sort.Strings(given)
	for _, n := range given {
		if !declared[n] {
			return fail("input %q given but not declared by the function", n)
		}
	}

	ops := block.GetOperations()
	lastUse := liveness(block)
	for i, op := range ops {
		if op == nil {
			return fail("operation %d is nil", i)
		}
		outs, err := s.runOp(function, env, defined, op)
		if err != nil {
			return nil, err
		}
		for j, o := range op.GetOutputs() {
			or := fromRuntime
			switch {
			case op.GetType() == "const":
				or = fromConstOp
			case isConstexpr(op.GetType()):
				or = fromConstexpr
			}
			env[o.GetName()] = slot{t: outs[j], origin: or}
			defined[o.GetName()] = true
		}
		for _, name := range lastUse[i] {
			delete(env, name)
		}
	}

	result := make([]NamedTensor, 0, len(block.GetOutputs()))
	for _, name := range block.GetOutputs() {
		sl, ok := env[name]
		if !ok {
			return fail("block output %q is not defined", name)
		}
		result = append(result, NamedTensor{Name: name, Tensor: sl.t.Clone()})
	}
	return result, nil
}

// liveness lists, per op index, the vars whose last reader is that op, so
// large intermediates (dequantized weights) are dropped as soon as possible.
// Block outputs are never dropped.
func liveness(b *milpb.Block) [][]string {
	last := map[string]int{}
	for i, op := range b.GetOperations() {
		for _, o := range op.GetOutputs() {
			last[o.GetName()] = i
		}
		for _, arg := range op.GetInputs() {
			for _, bd := range arg.GetArguments() {
				if n, ok := bd.GetBinding().(*milpb.Argument_Binding_Name); ok {
					last[n.Name] = i
				}
			}
		}
	}
	for _, o := range b.GetOutputs() {
		delete(last, o)
	}
	drop := make([][]string, len(b.GetOperations()))
	names := make([]string, 0, len(last))
	for n := range last {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		drop[last[n]] = append(drop[last[n]], n)
	}
	return drop
}

func isConstexpr(opType string) bool {
	return len(opType) > 9 && opType[:9] == "constexpr"
}

// opName is the op's "name" attribute, or a stand-in for messages.
func opName(op *milpb.Operation) string {
	if v := op.GetAttributes()["name"]; v != nil {
		if s := v.GetImmediateValue().GetTensor().GetStrings().GetValues(); len(s) == 1 {
			return s[0]
		}
	}
	if outs := op.GetOutputs(); len(outs) > 0 {
		return outs[0].GetName()
	}
	return "?"
}

// runOp resolves the op's bindings, runs it, and checks its declared outputs.
func (s *Session) runOp(function string, env map[string]slot, defined map[string]bool, op *milpb.Operation) ([]*Tensor, error) {
	c := &opCtx{fn: function, op: op, name: opName(op), args: map[string][]slot{}, w: s.w}
	def, ok := opTable[op.GetType()]
	if !ok {
		return nil, c.errf("unknown op type %q", op.GetType())
	}
	if len(op.GetBlocks()) != 0 {
		return nil, c.errf("nested blocks are not supported")
	}
	if err := c.checkAttributes(); err != nil {
		return nil, err
	}
	if err := c.checkOutputNames(defined); err != nil {
		return nil, err
	}
	if cached, ok := s.cache[op]; ok {
		return cached, nil
	}

	params := make([]string, 0, len(op.GetInputs()))
	for p := range op.GetInputs() {
		params = append(params, p)
	}
	sort.Strings(params)
	for _, p := range params {
		spec, ok := def.param(p)
		if !ok {
			return nil, c.errf("unknown parameter %q", p)
		}
		bindings := op.GetInputs()[p].GetArguments()
		if len(bindings) == 0 {
			return nil, c.errf("parameter %q has no bindings", p)
		}
		if !spec.variadic && len(bindings) != 1 {
			return nil, c.errf("parameter %q has %d bindings, want 1", p, len(bindings))
		}
		for k, bd := range bindings {
			var sl slot
			switch b := bd.GetBinding().(type) {
			case *milpb.Argument_Binding_Name:
				v, ok := env[b.Name]
				if !ok {
					return nil, c.errf("parameter %q binds %q, which is not defined before this op", p, b.Name)
				}
				sl = v
			case *milpb.Argument_Binding_Value:
				t, err := decodeValue(b.Value, s.w)
				if err != nil {
					return nil, c.errf("parameter %q binding %d: %v", p, k, err)
				}
				sl = slot{t: t, origin: fromValue}
			default:
				return nil, c.errf("parameter %q binding %d is empty", p, k)
			}
			if spec.constness != anyOrigin && !spec.constness.allows(sl.origin) {
				return nil, c.errf("parameter %q must be %s", p, spec.constness)
			}
			c.args[p] = append(c.args[p], sl)
		}
	}
	for _, spec := range def.params {
		if spec.required && len(c.args[spec.name]) == 0 {
			return nil, c.errf("required parameter %q missing", spec.name)
		}
	}

	outs, err := def.run(c)
	if err != nil {
		return nil, err
	}
	if c.err != nil {
		return nil, c.err
	}
	if len(outs) != len(op.GetOutputs()) {
		return nil, c.errf("computes %d outputs, op declares %d", len(outs), len(op.GetOutputs()))
	}
	for j, o := range op.GetOutputs() {
		dt, shape, err := tensorType(o.GetType())
		if err != nil {
			return nil, c.errf("output %q: %v", o.GetName(), err)
		}
		if outs[j].DType != dt || !slices.Equal(outs[j].Shape, shape) {
			return nil, c.errf("output %q declared %s but op computes %s", o.GetName(), typeString(dt, shape), outs[j].TypeString())
		}
	}
	if s.cache != nil && (op.GetType() == "const" || isConstexpr(op.GetType())) {
		s.cache[op] = outs
	}
	return outs, nil
}

// checkAttributes allows "name" (string scalar) on every op and "val" on const.
func (c *opCtx) checkAttributes() error {
	keys := make([]string, 0, len(c.op.GetAttributes()))
	for k := range c.op.GetAttributes() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := c.op.GetAttributes()[k]
		switch {
		case k == "name":
			t, err := decodeValue(v, nil)
			if err != nil {
				return c.errf("attribute \"name\": %v", err)
			}
			if t.DType != milpb.DataType_STRING || len(t.Shape) != 0 {
				return c.errf("attribute \"name\" is %s, want a string scalar", t.TypeString())
			}
		case k == "val" && c.op.GetType() == "const":
		default:
			return c.errf("unknown attribute %q", k)
		}
	}
	return nil
}

// checkOutputNames enforces SSA: every output name is new in scope.
func (c *opCtx) checkOutputNames(defined map[string]bool) error {
	if len(c.op.GetOutputs()) == 0 {
		return c.errf("op declares no outputs")
	}
	seen := map[string]bool{}
	for _, o := range c.op.GetOutputs() {
		n := o.GetName()
		if n == "" {
			return c.errf("output with empty name")
		}
		if defined[n] || seen[n] {
			return c.errf("output %q redefines an existing name", n)
		}
		seen[n] = true
	}
	return nil
}
