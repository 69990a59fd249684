// Package reference is an independent, plain-Go float64 evaluation of one forward step of a
// Llama-family model as lorapte exports it (model.md §3 with Decisions (a)–(f)), plus the
// runner protocol that drives prefill and decode (model.md §5.2).
//
// It is the test oracle for lorapte's graph builder and shares no code with it: everything is
// written directly from the spec, in float64, with Hugging Face tensor names and layout. It is
// meant for tiny models; it favours obviousness over speed.
package reference

import (
	"fmt"
	"math"
)

// Config is the model shape, in Hugging Face terms.
type Config struct {
	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab int
	Eps                                                          float64 // rms_norm_eps
	QKNorm                                                       bool    // Qwen3-style q_norm/k_norm per head, before RoPE
}

// Weights looks up a Hugging Face tensor by name ("model.layers.0.self_attn.q_proj.weight",
// "...q_proj.bias", "model.norm.weight", "lm_head.weight", ...), returning its values in
// row-major order and its shape. ok=false means the tensor is absent; an absent bias means the
// projection has no bias. Tied embeddings are the caller's business: it must answer
// "lm_head.weight" itself.
type Weights func(name string) (data []float64, shape []int, ok bool)

// LoRA is one low-rank delta: y += Scale * (x A^T) B^T, with A [R, In] and B [Out, R] row-major.
type LoRA struct {
	A, B       []float64
	R, In, Out int
	Scale      float64
}

// Adapter maps a Hugging Face module name without ".weight" (for example
// "model.layers.1.self_attn.q_proj") to its LoRA delta.
type Adapter map[string]*LoRA

// StepIn is one call of an exported method (model.md §2), batch dimension dropped.
type StepIn struct {
	Tokens         []int32         // [L]
	Mask           [][]float64     // [L][C+L], 0 or -Inf (any finite additive value is accepted)
	Cos, Sin       [][]float64     // [L][HeadDim/2]
	KCache, VCache [][][][]float64 // [layer][kvhead][C][HeadDim]
	LastValid      int             // row whose logits are returned; -1 = full logits
}

// StepOut is what the method returns, batch dimension dropped.
type StepOut struct {
	Logits     [][]float64     // [L][Vocab], or [1][Vocab] when LastValid >= 0
	KNew, VNew [][][][]float64 // [layer][kvhead][L][HeadDim]; keys after RoPE
}

// linear is one projection y = x W^T (+ b) (+ LoRA delta).
type linear struct {
	name    string // HF module name, for errors
	w       []float64
	out, in int
	b       []float64 // nil = no bias
	lora    *LoRA
}

type layer struct {
	inNorm, postNorm           []float64
	q, k, v, o, gate, up, down *linear
	qNorm, kNorm               []float64 // nil unless Config.QKNorm
}

// Model is a loaded model (optionally with one adapter applied), ready for Step.
type Model struct {
	cfg    Config
	embed  []float64 // [Vocab, Hidden]
	layers []layer
	norm   []float64
	head   *linear
}

// New checks cfg, loads every weight the forward pass needs through w and attaches the LoRA
// deltas of ad (nil = base model). Every adapter entry must name one of the seven per-layer
// projections, with matching dimensions.
func New(cfg Config, w Weights, ad Adapter) (*Model, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, fmt.Errorf("reference: nil Weights")
	}
	m := &Model{cfg: cfg}
	D, F, hd := cfg.Hidden, cfg.Intermediate, cfg.HeadDim
	qOut, kvOut := cfg.Heads*hd, cfg.KVHeads*hd

	var err error
	if m.embed, err = tensor(w, "model.embed_tokens.weight", cfg.Vocab, D); err != nil {
		return nil, err
	}
	if m.norm, err = tensor(w, "model.norm.weight", D); err != nil {
		return nil, err
	}
	// lm_head has no "model." prefix and never takes LoRA (model.md §4).
	hw, err := tensor(w, "lm_head.weight", cfg.Vocab, D)
	if err != nil {
		return nil, err
	}
	m.head = &linear{name: "lm_head", w: hw, out: cfg.Vocab, in: D}

	used := map[string]bool{}
	proj := func(name string, out, in int) (*linear, error) {
		l := &linear{name: name, out: out, in: in}
		var err error
		if l.w, err = tensor(w, name+".weight", out, in); err != nil {
			return nil, err
		}
		if b, shape, ok := w(name + ".bias"); ok {
			if err := checkShape(name+".bias", b, shape, out); err != nil {
				return nil, err
			}
			l.b = b
		}
		if lo, ok := ad[name]; ok {
			used[name] = true
			if err := checkLoRA(name, lo, out, in); err != nil {
				return nil, err
			}
			l.lora = lo
		}
		return l, nil
	}

	m.layers = make([]layer, cfg.Layers)
	for i := range m.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ly := &m.layers[i]
		if ly.inNorm, err = tensor(w, p+"input_layernorm.weight", D); err != nil {
			return nil, err
		}
		if ly.postNorm, err = tensor(w, p+"post_attention_layernorm.weight", D); err != nil {
			return nil, err
		}
		for _, s := range []struct {
			dst     **linear
			name    string
			out, in int
		}{
			{&ly.q, "self_attn.q_proj", qOut, D},
			{&ly.k, "self_attn.k_proj", kvOut, D},
			{&ly.v, "self_attn.v_proj", kvOut, D},
			{&ly.o, "self_attn.o_proj", D, qOut},
			{&ly.gate, "mlp.gate_proj", F, D},
			{&ly.up, "mlp.up_proj", F, D},
			{&ly.down, "mlp.down_proj", D, F},
		} {
			if *s.dst, err = proj(p+s.name, s.out, s.in); err != nil {
				return nil, err
			}
		}
		if cfg.QKNorm {
			if ly.qNorm, err = tensor(w, p+"self_attn.q_norm.weight", hd); err != nil {
				return nil, err
			}
			if ly.kNorm, err = tensor(w, p+"self_attn.k_norm.weight", hd); err != nil {
				return nil, err
			}
		}
	}
	// An adapter entry that matched nothing would silently be dropped; refuse it instead.
	for name := range ad {
		if !used[name] {
			return nil, fmt.Errorf("reference: adapter module %q is not a projection of this model", name)
		}
	}
	return m, nil
}

func (c Config) validate() error {
	switch {
	case c.Hidden <= 0, c.Intermediate <= 0, c.Layers <= 0, c.Heads <= 0, c.KVHeads <= 0,
		c.HeadDim <= 0, c.Vocab <= 0:
		return fmt.Errorf("reference: config sizes must be positive: %+v", c)
	case c.HeadDim%2 != 0:
		return fmt.Errorf("reference: head_dim %d must be even for RoPE", c.HeadDim)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("reference: heads %d not a multiple of kv heads %d", c.Heads, c.KVHeads)
	case !(c.Eps >= 0) || math.IsInf(c.Eps, 0):
		return fmt.Errorf("reference: invalid rms_norm_eps %v", c.Eps)
	}
	return nil
}

// tensor fetches a required tensor and checks its shape.
func tensor(w Weights, name string, shape ...int) ([]float64, error) {
	data, got, ok := w(name)
	if !ok {
		return nil, fmt.Errorf("reference: missing tensor %q", name)
	}
	if err := checkShape(name, data, got, shape...); err != nil {
		return nil, err
	}
	return data, nil
}

func checkShape(name string, data []float64, got []int, want ...int) error {
	if !equalInts(got, want) {
		return fmt.Errorf("reference: tensor %q has shape %v, want %v", name, got, want)
	}
	n := 1
	for _, d := range want {
		n *= d
	}
	if len(data) != n {
		return fmt.Errorf("reference: tensor %q has %d values, shape %v needs %d", name, len(data), want, n)
	}
	return nil
}

func checkLoRA(name string, lo *LoRA, out, in int) error {
	switch {
	case lo == nil:
		return fmt.Errorf("reference: adapter module %q: nil LoRA", name)
	case lo.R <= 0:
		return fmt.Errorf("reference: adapter module %q: rank %d must be positive", name, lo.R)
	case lo.In != in || lo.Out != out:
		return fmt.Errorf("reference: adapter module %q: LoRA is %d->%d, projection is %d->%d", name, lo.In, lo.Out, in, out)
	case len(lo.A) != lo.R*in:
		return fmt.Errorf("reference: adapter module %q: A has %d values, want %d (r=%d x in=%d)", name, len(lo.A), lo.R*in, lo.R, in)
	case len(lo.B) != out*lo.R:
		return fmt.Errorf("reference: adapter module %q: B has %d values, want %d (out=%d x r=%d)", name, len(lo.B), out*lo.R, out, lo.R)
	}
	return nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Step evaluates one method call (model.md §3). The cache length C is taken from the caches.
func (m *Model) Step(in StepIn) (StepOut, error) {
	C, err := m.checkStep(in)
	if err != nil {
		return StepOut{}, err
	}
	cfg := m.cfg
	L, D, hd, half := len(in.Tokens), cfg.Hidden, cfg.HeadDim, cfg.HeadDim/2
	nRep := cfg.Heads / cfg.KVHeads
	scale := 1 / math.Sqrt(float64(hd))

	h := make([][]float64, L)
	for t, tok := range in.Tokens {
		h[t] = append([]float64(nil), m.embed[int(tok)*D:(int(tok)+1)*D]...)
	}

	out := StepOut{
		KNew: make([][][][]float64, cfg.Layers),
		VNew: make([][][][]float64, cfg.Layers),
	}
	scores := make([]float64, C+L)
	for li := range m.layers {
		ly := &m.layers[li]
		// q [H][L][hd], k/v [KV][L][hd]: per-head vectors after projection.
		q := newHeads(cfg.Heads, L, hd)
		k := newHeads(cfg.KVHeads, L, hd)
		v := newHeads(cfg.KVHeads, L, hd)
		for t := 0; t < L; t++ {
			x := rmsNorm(h[t], ly.inNorm, cfg.Eps)
			split(ly.q.apply(x), q, t)
			split(ly.k.apply(x), k, t)
			split(ly.v.apply(x), v, t)
			for hq := range q {
				if ly.qNorm != nil {
					q[hq][t] = rmsNorm(q[hq][t], ly.qNorm, cfg.Eps)
				}
				rope(q[hq][t], in.Cos[t], in.Sin[t], half)
			}
			for kh := range k {
				if ly.kNorm != nil {
					k[kh][t] = rmsNorm(k[kh][t], ly.kNorm, cfg.Eps)
				}
				rope(k[kh][t], in.Cos[t], in.Sin[t], half)
			}
		}
		out.KNew[li], out.VNew[li] = k, v

		// Attention over cache slots [0, C) then the chunk itself [C, C+L), cache first.
		y := make([][]float64, L)
		for t := range y {
			y[t] = make([]float64, cfg.Heads*hd)
		}
		for hq := 0; hq < cfg.Heads; hq++ {
			kh := hq / nRep
			for t := 0; t < L; t++ {
				qv := q[hq][t]
				for j := 0; j < C+L; j++ {
					scores[j] = dot(qv, m.key(in.KCache[li][kh], k[kh], C, j)) * scale
					scores[j] += in.Mask[t][j]
				}
				if err := softmax(scores); err != nil {
					return StepOut{}, fmt.Errorf("reference: layer %d head %d row %d: %w", li, hq, t, err)
				}
				dst := y[t][hq*hd : (hq+1)*hd]
				for j, p := range scores {
					vv := m.key(in.VCache[li][kh], v[kh], C, j)
					for d := range dst {
						dst[d] += p * vv[d]
					}
				}
			}
		}
		for t := 0; t < L; t++ {
			addTo(h[t], ly.o.apply(y[t]))
			x := rmsNorm(h[t], ly.postNorm, cfg.Eps)
			g, u := ly.gate.apply(x), ly.up.apply(x)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i] // silu(gate) * up
			}
			addTo(h[t], ly.down.apply(g))
		}
	}

	// Multifunction: pick the last valid row before the final norm (model.md §3 step 3).
	if in.LastValid >= 0 {
		h = h[in.LastValid : in.LastValid+1]
	}
	out.Logits = make([][]float64, len(h))
	for t := range h {
		out.Logits[t] = m.head.apply(rmsNorm(h[t], m.norm, m.cfg.Eps))
	}
	return out, nil
}

// key returns row j of cat(cache, chunk) along the sequence axis.
func (m *Model) key(cache, chunk [][]float64, C, j int) []float64 {
	if j < C {
		return cache[j]
	}
	return chunk[j-C]
}

// checkStep validates every shape and value of in against the model; it returns C.
func (m *Model) checkStep(in StepIn) (int, error) {
	cfg := m.cfg
	L := len(in.Tokens)
	if L == 0 {
		return 0, fmt.Errorf("reference: step has no tokens")
	}
	for t, tok := range in.Tokens {
		if tok < 0 || int(tok) >= cfg.Vocab {
			return 0, fmt.Errorf("reference: token %d at row %d outside vocabulary [0, %d)", tok, t, cfg.Vocab)
		}
	}
	if len(in.KCache) != cfg.Layers || len(in.KCache[0]) != cfg.KVHeads {
		return 0, fmt.Errorf("reference: k cache must be [%d layers][%d kv heads][C][%d]", cfg.Layers, cfg.KVHeads, cfg.HeadDim)
	}
	C := len(in.KCache[0][0])
	for _, c := range []struct {
		name string
		v    [][][][]float64
	}{{"k cache", in.KCache}, {"v cache", in.VCache}} {
		if err := check4(c.name, c.v, cfg.Layers, cfg.KVHeads, C, cfg.HeadDim); err != nil {
			return 0, err
		}
	}
	if err := check2("mask", in.Mask, L, C+L); err != nil {
		return 0, err
	}
	for t, row := range in.Mask {
		for j, x := range row {
			if math.IsNaN(x) || math.IsInf(x, 1) {
				return 0, fmt.Errorf("reference: mask[%d][%d] = %v (want 0 or -Inf)", t, j, x)
			}
		}
	}
	if err := check2("freqs cos", in.Cos, L, cfg.HeadDim/2); err != nil {
		return 0, err
	}
	if err := check2("freqs sin", in.Sin, L, cfg.HeadDim/2); err != nil {
		return 0, err
	}
	if in.LastValid < -1 || in.LastValid >= L {
		return 0, fmt.Errorf("reference: last valid token pos %d outside [0, %d) (or -1 for full logits)", in.LastValid, L)
	}
	return C, nil
}

func check2(name string, v [][]float64, rows, cols int) error {
	if len(v) != rows {
		return fmt.Errorf("reference: %s has %d rows, want %d", name, len(v), rows)
	}
	for i, r := range v {
		if len(r) != cols {
			return fmt.Errorf("reference: %s row %d has %d values, want %d", name, i, len(r), cols)
		}
	}
	return nil
}

func check4(name string, v [][][][]float64, a, b, c, d int) error {
	if len(v) != a {
		return fmt.Errorf("reference: %s has %d layers, want %d", name, len(v), a)
	}
	for i, x := range v {
		if len(x) != b {
			return fmt.Errorf("reference: %s layer %d has %d heads, want %d", name, i, len(x), b)
		}
		for j, y := range x {
			if err := check2(fmt.Sprintf("%s layer %d head %d", name, i, j), y, c, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// apply computes x W^T + b + Scale * (x A^T) B^T for one row x.
func (l *linear) apply(x []float64) []float64 {
	y := make([]float64, l.out)
	for o := range y {
		y[o] = dot(x, l.w[o*l.in:(o+1)*l.in])
		if l.b != nil {
			y[o] += l.b[o]
		}
	}
	if lo := l.lora; lo != nil {
		xa := make([]float64, lo.R)
		for r := range xa {
			xa[r] = dot(x, lo.A[r*lo.In:(r+1)*lo.In])
		}
		for o := range y {
			y[o] += lo.Scale * dot(xa, lo.B[o*lo.R:(o+1)*lo.R])
		}
	}
	return y
}

// rmsNorm returns x / sqrt(mean(x^2) + eps) * w.
func rmsNorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = v * inv * w[i]
	}
	return y
}

// rope rotates x in place, rotate-half form (Decision (a)): channel i pairs with i+half.
func rope(x, cos, sin []float64, half int) {
	for i := 0; i < half; i++ {
		a, b := x[i], x[i+half]
		x[i] = a*cos[i] - b*sin[i]
		x[i+half] = b*cos[i] + a*sin[i]
	}
}

// softmax replaces s with softmax(s). A row masked everywhere has no distribution.
func softmax(s []float64) error {
	mx := math.Inf(-1)
	for _, v := range s {
		mx = math.Max(mx, v)
	}
	if math.IsInf(mx, -1) {
		return fmt.Errorf("every attention column is masked")
	}
	var sum float64
	for i, v := range s {
		s[i] = math.Exp(v - mx)
		sum += s[i]
	}
	for i := range s {
		s[i] /= sum
	}
	return nil
}

func newHeads(n, L, hd int) [][][]float64 {
	v := make([][][]float64, n)
	for i := range v {
		v[i] = make([][]float64, L)
		for t := range v[i] {
			v[i][t] = make([]float64, hd)
		}
	}
	return v
}

// split copies projection row p (head-major, [heads*hd]) into dst[head][t].
func split(p []float64, dst [][][]float64, t int) {
	for h := range dst {
		copy(dst[h][t], p[h*len(dst[h][t]):])
	}
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func addTo(dst, src []float64) {
	for i := range dst {
		dst[i] += src[i]
	}
}
