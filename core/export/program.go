package export

import (
	"encoding/binary"
	"math"
	"sort"

	"lorapte/core/hf"
	"lorapte/core/llama"
	"lorapte/core/mil"
	"lorapte/core/pte"
	"lorapte/core/quant"
)

// etType is the ExecuTorch dtype of a method-level tensor. Core ML takes
// int32 where ExecuTorch passes int64; the delegate converts.
func etType(t llama.Tensor) pte.ScalarType {
	switch {
	case t.Name == "last_valid_token_pos":
		return pte.Long
	case t.DType == mil.INT32:
		return pte.Int
	case t.DType == mil.FP32:
		return pte.Float
	}
	return pte.Half
}

func nbytes(t llama.Tensor, st pte.ScalarType) int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	switch st {
	case pte.Long:
		return 8 * n
	case pte.Int, pte.Float:
		return 4 * n
	}
	return 2 * n
}

func sizes(shape []int64) []int32 {
	out := make([]int32, len(shape))
	for i, d := range shape {
		out[i] = int32(d)
	}
	return out
}

// compileSpecs are those of export_static_llm_coreml.py, in its order.
func (p *Plan) compileSpecs() []pte.CompileSpec {
	prec := "float16"
	if p.opts.DType == "fp32" {
		prec = "float32"
	}
	cs := []pte.CompileSpec{
		{Key: "compute_units", Value: []byte("cpu_and_ne")},
		{Key: "min_deployment_target", Value: []byte("9")}, // iOS 18
		{Key: "model_compute_precision", Value: []byte(prec)},
		{Key: "model_type", Value: []byte("model")},
	}
	if len(p.spec.Methods()) > 1 {
		cs = append(cs, pte.CompileSpec{Key: "multimethod_weight_sharing_strategy", Value: []byte("positional")})
	}
	return cs
}

// planProgram lays out the segments and builds the ExecuTorch program:
// segment 0 constants, then one CMJR reference per (method, partition) in
// method then partition order, then one blob per partition.
func (p *Plan) planProgram() error {
	methods := p.spec.Methods()
	sort.Slice(methods, func(i, j int) bool { return methods[i].Name < methods[j].Name })

	consts, cmethods := p.constantMethods()
	p.consts = consts
	prog := &pte.Program{ConstantSegment: 0}
	prog.Segments = append(prog.Segments, int64(len(consts)))
	prog.ConstantOffsets = p.constOffsets

	cmjrIndex := map[[2]int]int{}
	for mi, m := range methods {
		for pi, pp := range p.parts {
			ref := pte.EncodeCMJR("coreml_"+pp.identifier, m.Name)
			cmjrIndex[[2]int{mi, pi}] = len(prog.Segments)
			prog.Segments = append(prog.Segments, int64(len(ref)))
			p.cmjr = append(p.cmjr, ref)
		}
	}
	for _, pp := range p.parts {
		pp.segment = len(prog.Segments)
		prog.Segments = append(prog.Segments, pp.blob.Size())
		prog.NamedData = append(prog.NamedData, pte.NamedData{Key: "coreml_" + pp.identifier, Segment: pp.segment})
	}

	specs := p.compileSpecs()
	for mi, m := range methods {
		prog.Methods = append(prog.Methods, p.method(m, mi, cmjrIndex, specs))
	}
	prog.Methods = append(prog.Methods, cmethods...)
	p.program = prog
	layout, err := pte.Plan(prog)
	if err != nil {
		return err
	}
	p.layout = layout
	return nil
}

// method wires one executable method: graph inputs and outputs are left
// unplanned (the runner binds its own buffers, as the Python exporter
// does); values passed between partitions are memory planned in arena 1.
func (p *Plan) method(m llama.Method, mi int, cmjr map[[2]int]int, specs []pte.CompileSpec) pte.Method {
	ins, outs := p.spec.Inputs(m), p.spec.Outputs(m)
	pm := pte.Method{Name: m.Name}
	index := map[string]int32{}
	add := func(t llama.Tensor, alloc *pte.Alloc) int32 {
		i := int32(len(pm.Values))
		st := etType(t)
		pm.Values = append(pm.Values, pte.EValue{Kind: pte.KindTensor, Tensor: &pte.Tensor{Type: st, Sizes: sizes(t.Shape), Alloc: alloc}})
		index[t.Name] = i
		return i
	}
	for _, t := range ins {
		pm.Inputs = append(pm.Inputs, add(t, nil))
	}
	for _, t := range outs {
		pm.Outputs = append(pm.Outputs, add(t, nil))
	}
	var arena int64
	for pi, pp := range p.parts {
		fn := pp.fns[indexOf(pp.fns, m.Name)]
		var args []int32
		for _, t := range append(append([]llama.Tensor(nil), fn.Inputs...), fn.Outputs...) {
			i, ok := index[t.Name]
			if !ok { // an intermediate produced by this partition
				i = add(t, &pte.Alloc{MemoryID: 1, Offset: uint64(arena)})
				arena += (nbytes(t, etType(t)) + 15) &^ 15
			}
			args = append(args, i)
		}
		pm.Delegates = append(pm.Delegates, pte.Delegate{ID: "CoreMLBackend", Segment: cmjr[[2]int{mi, pi}], CompileSpecs: specs})
		pm.Calls = append(pm.Calls, pte.DelegateCall{Delegate: pi, Args: args})
	}
	pm.NonConstBufferSizes = []int64{0, arena}
	pm.InputSpec = pte.TreeSpecInputs(len(ins))
	pm.OutputSpec = pte.TreeSpecOutputs(len(outs))
	return pm
}

func indexOf(fns []llama.Function, name string) int {
	for i, f := range fns {
		if f.Method == name {
			return i
		}
	}
	return 0
}

// constantMethodNames lists the constant methods in the order the Python
// exporter writes them (with LoRA ones when withLoRA).
func constantMethodNames(withLoRA, multifunction bool) []string {
	names := []string{"vocab_size", "head_dim", "n_heads_per_cache", "freqs_cos", "freqs_sin"}
	per := func(lenName, prefix string) {
		names = append(names, lenName, prefix+"freqs_cos_input_index", prefix+"freqs_sin_input_index",
			prefix+"mask_specs", prefix+"kv_cache_specs")
	}
	if multifunction {
		per("decode_input_len", "decode_")
		per("prefill_input_len", "prefill_")
	} else {
		// Single-method mode prefixes only the input length (model.md §5.1).
		per("forward_input_len", "")
	}
	if withLoRA {
		names = append(names, "has_lora", "lora_methods")
	}
	return names
}

// constantMethods builds the constant segment and the constant methods of
// model.md §5.1 (plus lorapte's lora_methods).
func (p *Plan) constantMethods() ([]byte, []pte.Method) {
	c := p.cfg
	cb := pte.NewConstantSegmentBuilder()
	i64 := func(shape []int32, v ...int64) pte.EValue {
		b := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
		}
		return pte.EValue{Kind: pte.KindTensor, Tensor: &pte.Tensor{Type: pte.Long, Sizes: shape, DataBufferIdx: cb.Add(b)}}
	}
	intv := func(v int64) pte.EValue { return pte.EValue{Kind: pte.KindInt, Int: v} }

	n, C := c.Layers, int64(p.spec.CacheLen())
	cos, sin := hf.RopeTables(c, p.opts.MaxContextLen)
	table := func(rows [][]float32) pte.EValue {
		half := c.HeadDim / 2
		st := pte.Half
		var b []byte
		if p.opts.DType == "fp32" {
			st = pte.Float
			b = make([]byte, 0, 4*len(rows)*half)
			for _, r := range rows {
				for _, v := range r {
					b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
				}
			}
		} else {
			b = make([]byte, 0, 2*len(rows)*half)
			for _, r := range rows {
				for _, v := range r {
					b = binary.LittleEndian.AppendUint16(b, quant.F32ToF16(v))
				}
			}
		}
		return pte.EValue{Kind: pte.KindTensor, Tensor: &pte.Tensor{Type: st, Sizes: []int32{int32(len(rows)), int32(half)}, DataBufferIdx: cb.Add(b)}}
	}
	kvSpecs := func() pte.EValue {
		var v []int64
		for i := 0; i < n; i++ {
			v = append(v, int64(4+i), int64(1+i), int64(4+n+i), int64(1+n+i), C)
		}
		return i64([]int32{int32(n), 5}, v...)
	}
	var out []pte.Method
	add := func(name string, leaves ...pte.EValue) { out = append(out, pte.ConstantMethod(name, leaves...)) }
	add("vocab_size", intv(int64(c.Vocab)))
	add("head_dim", intv(int64(c.HeadDim)))
	add("n_heads_per_cache", intv(int64(c.KVHeads)))
	add("freqs_cos", table(cos))
	add("freqs_sin", table(sin))
	per := func(lenName, prefix string, L int) {
		add(lenName, intv(int64(L)))
		add(prefix+"freqs_cos_input_index", i64([]int32{1}, 2))
		add(prefix+"freqs_sin_input_index", i64([]int32{1}, 3))
		add(prefix+"mask_specs", i64([]int32{1, 2}, 1, C))
		add(prefix+"kv_cache_specs", kvSpecs())
	}
	if p.opts.Multifunction {
		per("decode_input_len", "decode_", 1)
		per("prefill_input_len", "prefill_", p.opts.InputLen)
	} else {
		per("forward_input_len", "", p.opts.InputLen)
	}
	if names := p.spec.AdapterMethods(); len(names) > 0 {
		add("has_lora", pte.EValue{Kind: pte.KindBool, Bool: true})
		var leaves []pte.EValue
		for _, nm := range names {
			leaves = append(leaves, pte.EValue{Kind: pte.KindString, Str: nm})
		}
		out = append(out, pte.ConstantListMethod("lora_methods", leaves...))
	}
	data, offsets := cb.Finish()
	p.constOffsets = offsets
	return data, out
}
