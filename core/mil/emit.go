package mil

import (
	"fmt"
	"slices"

	"lorapte/core/coremlspec/milpb"
)

// param is one op input: vars bound by name, a literal bound as value, or a
// compile-time constant materialized as a `const` op "<op>_<param>".
type param struct {
	name  string
	vars  []*Var
	value *Value
	konst *Value
}

func vars(name string, vs ...*Var) param { return param{name: name, vars: vs} }
func konst(name string, v Value) param   { return param{name: name, konst: &v} }
func literal(name string, v Value) param {
	return param{name: name, value: &v}
}

// nameAttr is an op's attributes map with its "name" string (its type
// shared within the program, see Program.tensorType).
func (f *Function) nameAttr(name string) map[string]*milpb.Value {
	// One allocation for the eight small messages of the value: every op
	// has one, and a 1B model has hundreds of thousands of ops.
	a := &struct {
		v   milpb.Value
		iv  milpb.Value_ImmediateValue_
		imm milpb.Value_ImmediateValue
		t   milpb.Value_ImmediateValue_Tensor
		tv  milpb.TensorValue
		s   milpb.TensorValue_Strings
		rs  milpb.TensorValue_RepeatedStrings
		str [1]string
	}{}
	a.str[0] = name
	a.rs.Values = a.str[:]
	a.s.Strings = &a.rs
	a.tv.Value = &a.s
	a.t.Tensor = &a.tv
	a.imm.Value = &a.t
	a.iv.ImmediateValue = &a.imm
	a.v.Type, a.v.Value = f.p.tensorType(STRING, nil), &a.iv
	return map[string]*milpb.Value{"name": &a.v}
}

// typed is v's message with its type, shared within the program: values
// get their type only when used, so that the hundreds of thousands of
// constants of a model share a few hundred types.
func (f *Function) typed(v Value) *milpb.Value {
	if v.pb.Type == nil {
		v.pb.Type = f.p.tensorType(v.dt, v.shape)
	}
	return v.pb
}

// nameArg is an argument binding the var name, in one allocation.
func nameArg(name string) *milpb.Argument {
	a := &struct {
		arg milpb.Argument
		b   [1]*milpb.Argument_Binding
		bnd milpb.Argument_Binding
		n   milpb.Argument_Binding_Name
	}{}
	a.n.Name = name
	a.bnd.Binding = &a.n
	a.b[0] = &a.bnd
	a.arg.Arguments = a.b[:]
	return &a.arg
}

// bad records an error for op name and returns an unregistered placeholder so
// the caller can continue; the program is unusable anyway.
func (f *Function) bad(typ, name string, dt DataType, format string, args ...any) *Var {
	f.failf("op %q (%s): %s", name, typ, fmt.Sprintf(format, args...))
	return &Var{Name: name, DType: dt}
}

// checkIn verifies that every input var belongs to f.
func (f *Function) checkIn(vs ...*Var) error {
	for _, v := range vs {
		if err := f.check(v); err != nil {
			return err
		}
	}
	return nil
}

// emit appends the const ops for konst params and then the op itself, and
// registers its outputs. It returns false (error recorded) on a name clash.
func (f *Function) emit(typ, name string, params []param, outs ...*Var) bool {
	if !f.claim(name) {
		return false
	}
	for _, o := range outs {
		if o.Name != name && !f.claim(o.Name) {
			return false
		}
	}
	var op *milpb.Operation
	if len(outs) == 1 {
		op = f.newOp(typ, f.nameAttr(name), outs[0].Name, outs[0].DType, outs[0].Shape)
	} else {
		op = &milpb.Operation{Type: typ, Attributes: f.nameAttr(name)}
		for _, o := range outs {
			op.Outputs = append(op.Outputs, &milpb.NamedValueType{Name: o.Name, Type: f.p.tensorType(o.DType, o.Shape)})
		}
	}
	op.Inputs = make(map[string]*milpb.Argument, len(params))
	for _, p := range params {
		var arg *milpb.Argument
		switch {
		case p.konst != nil:
			cv := f.Const(name+"_"+p.name, *p.konst)
			if f.vars[cv.Name] != cv {
				return false
			}
			arg = nameArg(cv.Name)
		case len(p.vars) == 1 && p.value == nil:
			arg = nameArg(p.vars[0].Name)
		case p.value != nil:
			arg = &milpb.Argument{}
			if err := p.value.Err(); err != nil {
				f.failf("op %q (%s) param %q: %v", name, typ, p.name, err)
				return false
			}
			arg.Arguments = []*milpb.Argument_Binding{{Binding: &milpb.Argument_Binding_Value{Value: f.typed(*p.value)}}}
		default:
			arg = &milpb.Argument{}
			for _, v := range p.vars {
				arg.Arguments = append(arg.Arguments, &milpb.Argument_Binding{Binding: &milpb.Argument_Binding_Name{Name: v.Name}})
			}
		}
		op.Inputs[p.name] = arg
	}
	for _, o := range outs {
		f.vars[o.Name] = o
		f.kind[o.Name] = typ
	}
	f.ops = append(f.ops, op)
	return true
}

// newOp is an operation with one output, in one allocation with its
// output list.
func (f *Function) newOp(typ string, attrs map[string]*milpb.Value, out string, dt DataType, shape []int64) *milpb.Operation {
	a := &struct {
		op   milpb.Operation
		outs [1]*milpb.NamedValueType
		nv   milpb.NamedValueType
	}{}
	a.nv.Name, a.nv.Type = out, f.p.tensorType(dt, shape)
	a.outs[0] = &a.nv
	a.op.Type, a.op.Attributes, a.op.Outputs = typ, attrs, a.outs[:]
	return &a.op
}

// out is the single-output helper: emit and return the var (placeholder on error).
func (f *Function) out(typ, name string, dt DataType, shape []int64, params ...param) *Var {
	v := &Var{Name: name, DType: dt, Shape: shape}
	f.emit(typ, name, params, v)
	return v
}

// ---- type helpers

func oneOf(dt DataType, allowed ...DataType) bool { return slices.Contains(allowed, dt) }

var (
	floatTypes = []DataType{FP16, FP32}
	arithTypes = []DataType{FP16, FP32, INT32}
)

// normAxis maps axis in [-rank, rank) to [0, rank).
func normAxis(axis int64, rank int) (int, error) {
	if axis < -int64(rank) || axis >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis), nil
}

// normAxes normalizes a list of distinct axes; the result is sorted.
func normAxes(axes []int32, rank int) ([]int, error) {
	out := make([]int, 0, len(axes))
	for _, a := range axes {
		n, err := normAxis(int64(a), rank)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("axis %d repeated in %v", a, axes)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// broadcast applies numpy broadcasting to static shapes.
func broadcast(shapes ...[]int64) ([]int64, error) {
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
			case out[off+i] == d || d == 1:
			case out[off+i] == 1:
				out[off+i] = d
			default:
				return nil, fmt.Errorf("shapes %v do not broadcast", shapes)
			}
		}
	}
	return out, nil
}

func i32s(v []int) []int32 {
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	return out
}

func vec(v []int32) Value { return I32([]int64{int64(len(v))}, v) }

func boolVec(n int, b bool) Value {
	v := make([]bool, n)
	for i := range v {
		v[i] = b
	}
	return Bools([]int64{int64(n)}, v)
}

func (f *Function) isConstLike(v *Var) bool {
	k := f.kind[v.Name]
	return k == "const" || len(k) > 10 && k[:10] == "constexpr_"
}
