// Package mil builds typed Core ML MIL programs (opset CoreML8, iOS 18) with
// static shapes and serializes them as the mlProgram of a multifunction
// Core ML model (coreml.md §2, §5, §6).
//
// Every builder method infers and checks the output type (dtype and static
// shape). Errors do not abort construction: the first one is recorded and
// returned by Program.Proto / Description / Model, so graph code can be
// written straight through and checked once. Ops are appended in call order,
// which is a topological order by construction.
package mil

import (
	"fmt"
	"sort"
	"strings"

	"lorapte/core/coremlspec/coremlpb"
	"lorapte/core/coremlspec/milpb"
)

// Opset is the MIL opset every function is written for.
const Opset = "CoreML8"

// SpecificationVersion is the Core ML spec version of models built here
// (iOS 18 / macOS 15: the first with multifunction models).
const SpecificationVersion = 9

// ValidName reports whether s is a MIL identifier as coremltools sanitizes
// them: [A-Za-z_][A-Za-z0-9_]*. (A loop, not a regexp: every op name is
// checked, and a 1B model has hundreds of thousands.)
func ValidName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// Var is a named SSA value of a function: a function input or an op output.
type Var struct {
	Name  string
	DType DataType
	Shape []int64 // static shape; empty for a scalar
}

func (v *Var) String() string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s:%v%v", v.Name, v.DType, v.Shape)
}

// Program is a set of functions built together, usually sharing weight blobs.
type Program struct {
	funcs []*Function
	err   error
	types map[typeKey]*milpb.ValueType // see tensorType
}

// typeKey is a tensor type Program.tensorType keeps.
type typeKey struct {
	dt   DataType
	rank int
	dims [6]int64
}

// tensorType is TensorType for the outputs of the program's ops: one
// instance per distinct type, shared within the program. A 1B model has a
// few hundred distinct types and hundreds of thousands of outputs; the
// messages are not modified once built.
func (p *Program) tensorType(dt DataType, shape []int64) *milpb.ValueType {
	if len(shape) > len(typeKey{}.dims) {
		return TensorType(dt, shape)
	}
	k := typeKey{dt: dt, rank: len(shape)}
	copy(k.dims[:], shape)
	if t, ok := p.types[k]; ok {
		return t
	}
	if p.types == nil {
		p.types = map[typeKey]*milpb.ValueType{}
	}
	t := TensorType(dt, shape)
	p.types[k] = t
	return t
}

// NewProgram returns an empty program.
func NewProgram() *Program { return &Program{} }

func (p *Program) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// Err is the first error recorded while building.
func (p *Program) Err() error { return p.err }

// Func adds a new function. Function order is kept (it is the order of the
// model description).
func (p *Program) Func(name string) *Function {
	f := &Function{p: p, name: name, vars: map[string]*Var{}, kind: map[string]string{}, names: map[string]bool{}}
	if !ValidName(name) {
		p.fail(fmt.Errorf("mil: function name %q is not a valid identifier", name))
	}
	for _, g := range p.funcs {
		if g.name == name {
			p.fail(fmt.Errorf("mil: duplicate function %q", name))
		}
	}
	p.funcs = append(p.funcs, f)
	return f
}

// Functions lists the functions in creation order.
func (p *Program) Functions() []*Function { return append([]*Function(nil), p.funcs...) }

// Function is one MIL function: typed inputs, a flat list of ops, outputs.
type Function struct {
	p       *Program
	name    string
	inputs  []*Var
	outputs []*Var
	outSet  bool
	ops     []*milpb.Operation
	vars    map[string]*Var   // defined vars by name
	kind    map[string]string // var name -> producing op type ("input" for inputs)
	names   map[string]bool   // every var and op name used
}

// Name of the function.
func (f *Function) Name() string { return f.name }

// Inputs in declaration order.
func (f *Function) Inputs() []*Var { return append([]*Var(nil), f.inputs...) }

// Outputs as set by SetOutputs (after identity insertion).
func (f *Function) Outputs() []*Var { return append([]*Var(nil), f.outputs...) }

func (f *Function) failf(format string, args ...any) {
	f.p.fail(fmt.Errorf("mil: function %q: "+format, append([]any{f.name}, args...)...))
}

// claim reserves a var/op name, recording an error when it is invalid or taken.
func (f *Function) claim(name string) bool {
	if !ValidName(name) {
		f.failf("name %q is not a valid identifier", name)
		return false
	}
	if f.names[name] {
		f.failf("name %q is already defined", name)
		return false
	}
	f.names[name] = true
	return true
}

// Input declares a function input (a model feature).
func (f *Function) Input(name string, dt DataType, shape ...int64) *Var {
	v := &Var{Name: name, DType: dt, Shape: append([]int64{}, shape...)}
	if _, err := numElements(shape); err != nil {
		f.failf("input %q: %v", name, err)
		return v
	}
	if !f.claim(name) {
		return v
	}
	f.inputs = append(f.inputs, v)
	f.vars[name] = v
	f.kind[name] = "input"
	return v
}

// SetOutputs declares the function outputs in order. A var that is a function
// input, a constant, or listed twice is routed through an `identity` op, so
// every block output is a distinct op output (coreml.md §10.4).
func (f *Function) SetOutputs(vs ...*Var) {
	if f.outSet {
		f.failf("SetOutputs called twice")
		return
	}
	f.outSet = true
	if len(vs) == 0 {
		f.failf("no outputs")
		return
	}
	seen := map[string]bool{}
	outs := make([]*Var, 0, len(vs))
	for i, v := range vs {
		if err := f.check(v); err != nil {
			f.failf("output %d: %v", i, err)
			return
		}
		k := f.kind[v.Name]
		if seen[v.Name] || k == "input" || k == "const" || strings.HasPrefix(k, "constexpr_") {
			base := v.Name + "_out"
			name := base
			for j := 1; f.names[name]; j++ {
				name = fmt.Sprintf("%s%d", base, j)
			}
			v = f.Unary("identity", name, v)
		}
		seen[v.Name] = true
		outs = append(outs, v)
	}
	f.outputs = outs
}

// check verifies that v is a var defined in this function.
func (f *Function) check(v *Var) error {
	if v == nil {
		return fmt.Errorf("nil var")
	}
	if f.vars[v.Name] != v {
		return fmt.Errorf("var %q is not defined in function %q", v.Name, f.name)
	}
	return nil
}

// Counts is the op histogram of the function (op type -> count).
func (f *Function) Counts() map[string]int {
	m := map[string]int{}
	for _, op := range f.ops {
		m[op.GetType()]++
	}
	return m
}

// OpCounts is the op histogram of a serialized function, nested blocks included.
func OpCounts(fn *milpb.Function) map[string]int {
	m := map[string]int{}
	var walk func(b *milpb.Block)
	walk = func(b *milpb.Block) {
		for _, op := range b.GetOperations() {
			m[op.GetType()]++
			for _, sub := range op.GetBlocks() {
				walk(sub)
			}
		}
	}
	keys := make([]string, 0, len(fn.GetBlockSpecializations()))
	for k := range fn.GetBlockSpecializations() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		walk(fn.GetBlockSpecializations()[k])
	}
	return m
}

func (p *Program) finalCheck() error {
	if p.err != nil {
		return p.err
	}
	if len(p.funcs) == 0 {
		return fmt.Errorf("mil: program has no functions")
	}
	for _, f := range p.funcs {
		if len(f.outputs) == 0 {
			return fmt.Errorf("mil: function %q has no outputs (SetOutputs not called)", f.name)
		}
	}
	return nil
}

// Proto serializes the program: version 1, every function with opset CoreML8
// and one block specialization. It returns the first recorded build error.
// The result shares the operation messages with the builder: do not modify it.
func (p *Program) Proto() (*milpb.Program, error) {
	if err := p.finalCheck(); err != nil {
		return nil, err
	}
	out := &milpb.Program{Version: 1, Functions: map[string]*milpb.Function{}}
	for _, f := range p.funcs {
		inputs := make([]*milpb.NamedValueType, len(f.inputs))
		for i, v := range f.inputs {
			inputs[i] = &milpb.NamedValueType{Name: v.Name, Type: TensorType(v.DType, v.Shape)}
		}
		names := make([]string, len(f.outputs))
		for i, v := range f.outputs {
			names[i] = v.Name
		}
		// The operations are shared with the builder, not cloned: programs
		// of large models hold ~10⁵ ops and cloning dominated planning.
		ops := append([]*milpb.Operation(nil), f.ops...)
		out.Functions[f.name] = &milpb.Function{
			Inputs:               inputs,
			Opset:                Opset,
			BlockSpecializations: map[string]*milpb.Block{Opset: {Outputs: names, Operations: ops}},
		}
	}
	return out, nil
}

// FeatureType describes a static tensor as a Core ML MultiArray feature.
// Rank-0 tensors are described with shape [1]; only fp16, fp32 and int32 are
// valid I/O types for a spec-9 ML Program.
func FeatureType(dt DataType, shape []int64) (*coremlpb.FeatureType, error) {
	var adt coremlpb.ArrayFeatureType_ArrayDataType
	switch dt {
	case FP16:
		adt = coremlpb.ArrayFeatureType_FLOAT16
	case FP32:
		adt = coremlpb.ArrayFeatureType_FLOAT32
	case INT32:
		adt = coremlpb.ArrayFeatureType_INT32
	default:
		return nil, fmt.Errorf("%v is not a valid Core ML I/O type (fp16, fp32, int32)", dt)
	}
	s := append([]int64{}, shape...)
	if len(s) == 0 {
		s = []int64{1}
	}
	return &coremlpb.FeatureType{Type: &coremlpb.FeatureType_MultiArrayType{MultiArrayType: &coremlpb.ArrayFeatureType{Shape: s, DataType: adt}}}, nil
}

func features(fn string, kind string, vs []*Var) ([]*coremlpb.FeatureDescription, error) {
	out := make([]*coremlpb.FeatureDescription, len(vs))
	for i, v := range vs {
		ft, err := FeatureType(v.DType, v.Shape)
		if err != nil {
			return nil, fmt.Errorf("mil: function %q %s %q: %v", fn, kind, v.Name, err)
		}
		out[i] = &coremlpb.FeatureDescription{Name: v.Name, Type: ft}
	}
	return out, nil
}

// Description is the multifunction model description: one FunctionDescription
// per function in creation order, top-level I/O empty, defaultFunctionName set.
func (p *Program) Description(defaultFunction string) (*coremlpb.ModelDescription, error) {
	if err := p.finalCheck(); err != nil {
		return nil, err
	}
	d := &coremlpb.ModelDescription{DefaultFunctionName: defaultFunction}
	found := false
	for _, f := range p.funcs {
		in, err := features(f.name, "input", f.inputs)
		if err != nil {
			return nil, err
		}
		out, err := features(f.name, "output", f.outputs)
		if err != nil {
			return nil, err
		}
		d.Functions = append(d.Functions, &coremlpb.FunctionDescription{Name: f.name, Input: in, Output: out})
		found = found || f.name == defaultFunction
	}
	if !found {
		return nil, fmt.Errorf("mil: default function %q is not a function of the program", defaultFunction)
	}
	return d, nil
}

// Model is the complete Core ML model: spec version 9, multifunction
// description, mlProgram.
func (p *Program) Model(defaultFunction string) (*coremlpb.Model, error) {
	d, err := p.Description(defaultFunction)
	if err != nil {
		return nil, err
	}
	prog, err := p.Proto()
	if err != nil {
		return nil, err
	}
	return &coremlpb.Model{
		SpecificationVersion: SpecificationVersion,
		Description:          d,
		Type:                 &coremlpb.Model_MlProgram{MlProgram: prog},
	}, nil
}

// Marshal serializes a model deterministically (map entries sorted), so the
// same program always gives the same bytes: exactly those of protobuf-go's
// proto.MarshalOptions{Deterministic: true}.Marshal, written by a
// hand-written encoder (marshal.go), 2-3x faster. It fails when
// a string is not valid UTF-8, as protobuf-go does.
func Marshal(m *coremlpb.Model) ([]byte, error) {
	return marshalModel(m, false)
}

// MarshalBuilt is Marshal for a model made by Program.Model. Such a model
// has no unknown fields (only parsing keeps those), so they are not looked
// for: through protobuf reflection that lookup is half of the encoding
// time in wasm.
func MarshalBuilt(m *coremlpb.Model) ([]byte, error) {
	return marshalModel(m, true)
}
