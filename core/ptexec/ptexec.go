// Package ptexec runs the methods of a Core ML-delegated .pte the way the
// ExecuTorch runtime would, with the MIL interpreter standing in for Core
// ML: it follows each method's chain of DelegateCalls, resolves every CMJR
// reference through the named data, unflattens the Core ML model, binds
// arguments by the metadata's names and carries intermediate values from one
// delegate to the next. Tests use it to check exported files numerically.
package ptexec

import (
	"fmt"
	"io"

	"lorapte/core/coremlspec/milpb"
	"lorapte/core/inspect"
	"lorapte/core/milblob"
	"lorapte/core/milrun"
	"lorapte/core/pte"
)

// Program is an opened .pte.
type Program struct {
	f      *pte.File
	models map[string]*model // by named-data key
}

type model struct {
	pkg     *inspect.Package
	session *milrun.Session
}

// Open reads the program; models are decoded on first use.
func Open(r io.ReaderAt, size int64) (*Program, error) {
	f, err := pte.Read(r, size)
	if err != nil {
		return nil, err
	}
	return &Program{f: f, models: map[string]*model{}}, nil
}

func (p *Program) method(name string) (*pte.Method, error) {
	for i := range p.f.Program.Methods {
		if p.f.Program.Methods[i].Name == name {
			return &p.f.Program.Methods[i], nil
		}
	}
	return nil, fmt.Errorf("method %q not found", name)
}

// weights adapts a blob reader to the interpreter.
type weights struct{ r *milblob.Reader }

func (w weights) ReadBlob(fileName string, offset uint64) (uint32, []byte, uint64, error) {
	if fileName != "@model_path/weights/weight.bin" {
		return 0, nil, 0, fmt.Errorf("unknown weight file %q", fileName)
	}
	if w.r == nil {
		return 0, nil, 0, fmt.Errorf("package has no weight.bin")
	}
	e, err := w.r.Blob(offset)
	if err != nil {
		return 0, nil, 0, err
	}
	data, err := w.r.Read(e)
	return uint32(e.DType), data, e.PaddingBits, err
}

func (p *Program) model(key string) (*model, error) {
	if m, ok := p.models[key]; ok {
		return m, nil
	}
	seg := -1
	for _, nd := range p.f.Program.NamedData {
		if nd.Key == key {
			seg = nd.Segment
			break
		}
	}
	if seg < 0 {
		return nil, fmt.Errorf("named data %q not found", key)
	}
	sr, err := p.f.Segment(seg)
	if err != nil {
		return nil, err
	}
	pkg, err := inspect.OpenPackage(sr, sr.Size())
	if err != nil {
		return nil, fmt.Errorf("named data %q: %w", key, err)
	}
	prog := pkg.Spec.GetMlProgram()
	if prog == nil {
		return nil, fmt.Errorf("named data %q: not an ML program", key)
	}
	m := &model{pkg: pkg, session: milrun.NewSession(prog, weights{pkg.Weights})}
	p.models[key] = m
	return m, nil
}

// Run executes a method. inputs are given in the method's input order with
// the Core ML-side dtypes the interpreter understands (fp16/fp32 as float,
// int64 as INT32 — the delegate narrows int64 to int32 as the runtime
// does); outputs come back in the method's output order.
func (p *Program) Run(method string, inputs []*milrun.Tensor) ([]*milrun.Tensor, error) {
	m, err := p.method(method)
	if err != nil {
		return nil, err
	}
	if len(inputs) != len(m.Inputs) {
		return nil, fmt.Errorf("method %s: %d inputs given, want %d", method, len(inputs), len(m.Inputs))
	}
	vals := make([]*milrun.Tensor, len(m.Values))
	for i, vi := range m.Inputs {
		if err := checkShape(m, vi, inputs[i]); err != nil {
			return nil, fmt.Errorf("method %s input %d: %w", method, i, err)
		}
		vals[vi] = inputs[i]
	}
	for ci, call := range m.Calls {
		if call.Delegate < 0 || call.Delegate >= len(m.Delegates) {
			return nil, fmt.Errorf("method %s call %d: bad delegate index", method, ci)
		}
		d := m.Delegates[call.Delegate]
		payload, err := p.f.Segment(d.Segment)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, payload.Size())
		if _, err := io.ReadFull(payload, buf); err != nil {
			return nil, err
		}
		ref, err := pte.ParseCMJR(buf)
		if err != nil {
			return nil, fmt.Errorf("method %s delegate %d: %w", method, call.Delegate, err)
		}
		mod, err := p.model(ref.Key)
		if err != nil {
			return nil, err
		}
		io, ok := mod.pkg.Metadata.Methods[method]
		if !ok {
			return nil, fmt.Errorf("method %s: not in the metadata of %s", method, ref.Key)
		}
		if len(call.Args) != len(io.InputNames)+len(io.OutputNames) {
			return nil, fmt.Errorf("method %s call %d: %d args for %d+%d names", method, ci, len(call.Args), len(io.InputNames), len(io.OutputNames))
		}
		fn := mod.pkg.Spec.GetMlProgram().Functions[ref.FunctionName]
		if fn == nil {
			return nil, fmt.Errorf("method %s: function %q not in %s", method, ref.FunctionName, ref.Key)
		}
		declared := map[string]*milpb.NamedValueType{}
		for _, in := range fn.Inputs {
			declared[in.Name] = in
		}
		feed := map[string]*milrun.Tensor{}
		for i, name := range io.InputNames {
			v := vals[call.Args[i]]
			if v == nil {
				return nil, fmt.Errorf("method %s call %d: argument %d (%s) has no value yet", method, ci, i, name)
			}
			d := declared[name]
			if d == nil {
				return nil, fmt.Errorf("method %s: %s is not an input of function %s", method, name, ref.FunctionName)
			}
			feed[name] = convert(v, d.GetType().GetTensorType().GetDataType())
		}
		outs, err := mod.session.Run(ref.FunctionName, feed)
		if err != nil {
			return nil, err
		}
		for j, name := range io.OutputNames {
			t, ok := outs[name]
			if !ok {
				return nil, fmt.Errorf("method %s: function %s has no output %s", method, ref.FunctionName, name)
			}
			vi := call.Args[len(io.InputNames)+j]
			if err := checkShape(m, vi, t); err != nil {
				return nil, fmt.Errorf("method %s output %s: %w", method, name, err)
			}
			vals[vi] = t
		}
	}
	out := make([]*milrun.Tensor, len(m.Outputs))
	for i, vi := range m.Outputs {
		if vals[vi] == nil {
			return nil, fmt.Errorf("method %s: output %d was never produced", method, i)
		}
		out[i] = vals[vi]
	}
	return out, nil
}

// checkShape mirrors the runtime's resize of a static output: the value's
// declared sizes must equal the tensor's shape.
func checkShape(m *pte.Method, vi int32, t *milrun.Tensor) error {
	if vi < 0 || int(vi) >= len(m.Values) || m.Values[vi].Tensor == nil {
		return fmt.Errorf("value %d is not a tensor", vi)
	}
	sz := m.Values[vi].Tensor.Sizes
	if len(sz) != len(t.Shape) {
		return fmt.Errorf("shape %v, declared %v", t.Shape, sz)
	}
	for i := range sz {
		if int64(sz[i]) != t.Shape[i] {
			return fmt.Errorf("shape %v, declared %v", t.Shape, sz)
		}
	}
	return nil
}

// convert casts between float dtypes the way the delegate copies an
// ExecuTorch tensor into a Core ML multi-array of another dtype.
func convert(t *milrun.Tensor, to milpb.DataType) *milrun.Tensor {
	if t.DType == to {
		return t
	}
	switch to {
	case milpb.DataType_FLOAT16, milpb.DataType_FLOAT32:
		if t.F != nil {
			return milrun.NewFloat(to, t.Shape, append([]float32(nil), t.F...))
		}
		f := make([]float32, len(t.I))
		for i, v := range t.I {
			f[i] = float32(v)
		}
		return milrun.NewFloat(to, t.Shape, f)
	case milpb.DataType_INT32:
		if t.I != nil {
			return milrun.NewInt(to, t.Shape, t.I)
		}
	}
	return t
}
