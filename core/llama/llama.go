// Package llama builds the static-attention Llama decoder as MIL functions:
// one function per ExecuTorch method, one Core ML program per partition.
//
// The graph follows the I/O contract of ExecuTorch's static-LLM Core ML
// export (spec model.md §2–3) with lorapte's decisions: Hugging Face weight
// layout, rotate-half RoPE fed by [L, head_dim/2] freqs inputs, Qwen2 biases
// and Qwen3 q/k norm. Weights are not read here: a Weights implementation
// hands out variables that point into the planned weight file, so building a
// graph is cheap and deterministic.
package llama

import (
	"fmt"
	"strconv"

	"lorapte/core/hf"
	"lorapte/core/mil"
)

// Options are the export options that shape the graph.
type Options struct {
	Multifunction   bool // forward (L=1) + prefill (L=InputLen), last-token logits
	FP32            bool // --dtype fp32; fp16 otherwise
	MaxContextLen   int
	InputLen        int
	GraphBreaks     bool // 3 partitions: embedding | layers | norm+head
	TargetSplitSize int  // 0 disables linear splitting
	MaxSplits       int
}

// Method is one executable ExecuTorch method (= one MIL function per partition).
type Method struct {
	Name      string
	L         int    // input length
	LastToken bool   // last_valid_token_pos input, [1,1,V] logits
	Adapter   string // "" for the base model
}

// Spec is everything the graph depends on.
type Spec struct {
	Cfg      *hf.Config
	Opts     Options
	Adapters []string // adapter names in the order given by the user
}

// Validate checks option values against the model.
func (s *Spec) Validate() error {
	o := s.Opts
	if o.InputLen < 1 {
		return fmt.Errorf("--input-len must be at least 1, got %d", o.InputLen)
	}
	if o.MaxContextLen <= o.InputLen {
		return fmt.Errorf("--max-context-len (%d) must be larger than --input-len (%d)", o.MaxContextLen, o.InputLen)
	}
	if o.MaxContextLen > 1<<20 {
		return fmt.Errorf("--max-context-len %d is too large", o.MaxContextLen)
	}
	if o.TargetSplitSize < 0 || o.MaxSplits < 0 {
		return fmt.Errorf("--target-split-size and --max-splits must not be negative")
	}
	for _, n := range s.splitChecks() {
		if _, err := s.splits(n.out, n.name); err != nil {
			return err
		}
	}
	return nil
}

type splitCheck struct {
	name string
	out  int
}

func (s *Spec) splitChecks() []splitCheck {
	c := s.Cfg
	return []splitCheck{
		{"q_proj", c.Heads * c.HeadDim}, {"k_proj", c.KVHeads * c.HeadDim}, {"v_proj", c.KVHeads * c.HeadDim},
		{"o_proj", c.Hidden}, {"gate_proj", c.Intermediate}, {"up_proj", c.Intermediate},
		{"down_proj", c.Hidden}, {"lm_head", c.Vocab},
	}
}

// CacheLen is the KV cache length C shared by every method.
func (s *Spec) CacheLen() int {
	if s.Opts.Multifunction {
		return s.Opts.MaxContextLen - 1
	}
	return s.Opts.MaxContextLen - s.Opts.InputLen
}

// Methods lists the executable methods in Core ML function order: the base
// methods first (forward is the default function), then each adapter's.
func (s *Spec) Methods() []Method {
	var out []Method
	add := func(prefix, adapter string) {
		if s.Opts.Multifunction {
			out = append(out,
				Method{Name: prefix + "forward", L: 1, LastToken: true, Adapter: adapter},
				Method{Name: prefix + "prefill", L: s.Opts.InputLen, LastToken: true, Adapter: adapter})
			return
		}
		name := "forward"
		if adapter != "" {
			name = adapter
		}
		out = append(out, Method{Name: name, L: s.Opts.InputLen, Adapter: adapter})
	}
	add("", "")
	for _, a := range s.Adapters {
		if s.Opts.Multifunction {
			add(a+"_", a)
		} else {
			add("", a)
		}
	}
	return out
}

// AdapterMethods lists the adapter method names in program order.
func (s *Spec) AdapterMethods() []string {
	var out []string
	for _, m := range s.Methods() {
		if m.Adapter != "" {
			out = append(out, m.Name)
		}
	}
	return out
}

// Part is a partition of the graph (one Core ML model each).
type Part int

const (
	PartAll Part = iota
	PartEmbedding
	PartLayers
	PartHead
)

func (p Part) String() string {
	return [...]string{"all", "embedding", "layers", "head"}[p]
}

// Parts lists the partitions in call order.
func (s *Spec) Parts() []Part {
	if s.Opts.GraphBreaks {
		return []Part{PartEmbedding, PartLayers, PartHead}
	}
	return []Part{PartAll}
}

// Names of the values passed between partitions.
const (
	EmbeddingsName = "embeddings"
	HiddenName     = "hidden_states"
)

// Tensor describes one named method-level tensor.
type Tensor struct {
	Name  string
	DType mil.DataType // Core ML dtype
	Shape []int64
}

// FloatType is the graph's float dtype.
func (s *Spec) FloatType() mil.DataType {
	if s.Opts.FP32 {
		return mil.FP32
	}
	return mil.FP16
}

// Inputs is a method's flat input list (model.md §2).
func (s *Spec) Inputs(m Method) []Tensor {
	c, ft := s.Cfg, s.FloatType()
	L, C := int64(m.L), int64(s.CacheLen())
	kv := []int64{1, int64(c.KVHeads), C, int64(c.HeadDim)}
	in := []Tensor{
		{"tokens", mil.INT32, []int64{1, L}},
		{"mask", ft, []int64{1, L, C + L}},
		{"freqs_cos", ft, []int64{L, int64(c.HeadDim / 2)}},
		{"freqs_sin", ft, []int64{L, int64(c.HeadDim / 2)}},
	}
	for i := 0; i < c.Layers; i++ {
		in = append(in, Tensor{"k_cache_l" + strconv.Itoa(i), ft, kv})
	}
	for i := 0; i < c.Layers; i++ {
		in = append(in, Tensor{"v_cache_l" + strconv.Itoa(i), ft, kv})
	}
	if m.LastToken {
		in = append(in, Tensor{"last_valid_token_pos", mil.INT32, []int64{1}})
	}
	return in
}

// Outputs is a method's flat output list (model.md §2).
func (s *Spec) Outputs(m Method) []Tensor {
	c, ft := s.Cfg, s.FloatType()
	L := int64(m.L)
	logitsL := L
	if m.LastToken {
		logitsL = 1
	}
	kv := []int64{1, int64(c.KVHeads), L, int64(c.HeadDim)}
	out := []Tensor{{"logits", ft, []int64{1, logitsL, int64(c.Vocab)}}}
	for i := 0; i < c.Layers; i++ {
		out = append(out, Tensor{"k_new_l" + strconv.Itoa(i), ft, kv})
	}
	for i := 0; i < c.Layers; i++ {
		out = append(out, Tensor{"v_new_l" + strconv.Itoa(i), ft, kv})
	}
	return out
}

// Weights hands out MIL variables for stored tensors. Implementations plan
// the weight file: the first request for a tensor reserves its blob, later
// requests (from other functions) reuse the same offset, so every function
// of a partition shares one copy.
type Weights interface {
	// Embedding returns the [V, D] embedding table in the float dtype.
	Embedding(f *mil.Function) *mil.Var
	// Linear returns rows [row0, row0+rows) of the HF linear weight `name`
	// ([out, in]) as a `linear` weight.
	Linear(f *mil.Function, name string, row0, rows int) *mil.Var
	// Vector returns elements [i0, i0+n) of a 1-D HF tensor (norm weights, biases).
	Vector(f *mil.Function, name string, i0, n int) *mil.Var
	// Has reports whether the checkpoint holds the tensor (optional biases).
	Has(name string) bool
	// LoRA returns the adapter's A [r, in] and B [out, r] for an HF module
	// (e.g. "model.layers.0.self_attn.q_proj") and its scale, ok=false when
	// the adapter does not target it.
	LoRA(f *mil.Function, adapter, module string) (a, b *mil.Var, scale float64, ok bool)
}

// Function is the Core ML interface of one method in one partition: its
// input and output names in DelegateCall order.
type Function struct {
	Method  string
	Inputs  []Tensor
	Outputs []Tensor
}

// Build returns the MIL program of partition p with one function per method.
func (s *Spec) Build(p Part, w Weights) (*mil.Program, []Function, error) {
	if err := s.Validate(); err != nil {
		return nil, nil, err
	}
	prog := mil.NewProgram()
	var fns []Function
	for _, m := range s.Methods() {
		f := prog.Func(m.Name)
		g := &gen{s: s, w: w, f: f, m: m, scalars: map[string]*mil.Var{}}
		fn, err := g.build(p)
		if err != nil {
			return nil, nil, fmt.Errorf("building %s/%s: %w", p, m.Name, err)
		}
		fns = append(fns, fn)
	}
	return prog, fns, nil
}

// gen builds one function.
type gen struct {
	s   *Spec
	w   Weights
	f   *mil.Function
	m   Method
	ins []Tensor
	in  map[string]*mil.Var
	all []Tensor // s.Inputs(m), listed once

	scalars map[string]*mil.Var // shared scalar consts by value
}

func (g *gen) input(name string) *mil.Var {
	if v, ok := g.in[name]; ok {
		return v
	}
	if g.all == nil {
		g.all = g.s.Inputs(g.m)
	}
	for _, t := range g.all {
		if t.Name == name {
			v := g.f.Input(t.Name, t.DType, t.Shape...)
			g.in[name] = v
			g.ins = append(g.ins, t)
			return v
		}
	}
	panic("llama: unknown input " + name)
}

func (g *gen) intermediate(name string) *mil.Var {
	c := g.s.Cfg
	t := Tensor{name, g.s.FloatType(), []int64{1, int64(g.m.L), int64(c.Hidden)}}
	v := g.f.Input(t.Name, t.DType, t.Shape...)
	g.ins = append(g.ins, t)
	return v
}

func (g *gen) build(p Part) (Function, error) {
	g.in = map[string]*mil.Var{}
	c := g.s.Cfg
	var h *mil.Var
	switch p {
	case PartAll, PartEmbedding:
		h = g.embedding()
	case PartLayers:
		h = g.intermediate(EmbeddingsName)
	case PartHead:
		h = g.intermediate(HiddenName)
	}
	var outs, ks, vs []*mil.Var
	if p == PartEmbedding {
		outs = append(outs, g.f.Unary("identity", EmbeddingsName, h))
	}
	if p == PartAll || p == PartLayers {
		// Declare the inputs in the method's flat order before the layers
		// use them, so function inputs follow the ExecuTorch signature.
		g.input("mask")
		g.input("freqs_cos")
		g.input("freqs_sin")
		for _, pre := range []string{"k_cache_l", "v_cache_l"} {
			for i := 0; i < c.Layers; i++ {
				g.input(pre + strconv.Itoa(i))
			}
		}
		for i := 0; i < c.Layers; i++ {
			var k, v *mil.Var
			h, k, v = g.layer(i, h)
			ks, vs = append(ks, k), append(vs, v)
		}
		if p == PartLayers {
			outs = append(outs, g.f.Unary("identity", HiddenName, h))
		}
	}
	if p == PartAll || p == PartHead {
		outs = append(outs, g.head(h))
	}
	outs = append(append(outs, ks...), vs...)
	g.f.SetOutputs(outs...)
	return g.function(outs), nil
}

func (g *gen) function(outs []*mil.Var) Function {
	fn := Function{Method: g.m.Name, Inputs: g.ins}
	for _, v := range outs {
		fn.Outputs = append(fn.Outputs, Tensor{v.Name, v.DType, v.Shape})
	}
	return fn
}
