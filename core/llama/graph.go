package llama

import (
	"fmt"
	"math"
	"strconv"

	"lorapte/core/mil"
)

// scalar returns a rank-0 const of the graph's float type. Equal values
// share one const op per function (the name of the first use), which keeps
// the program text small.
func (g *gen) scalar(name string, x float64) *mil.Var {
	key := strconv.FormatFloat(x, 'g', -1, 64)
	if v, ok := g.scalars[key]; ok {
		return v
	}
	var v *mil.Var
	if g.s.Opts.FP32 {
		v = g.f.Const(name, mil.ScalarF32(float32(x)))
	} else {
		v = g.f.Const(name, mil.ScalarF16(float32(x)))
	}
	g.scalars[key] = v
	return v
}

func (g *gen) embedding() *mil.Var {
	tokens := g.input("tokens")
	return g.f.Gather("embedding", g.w.Embedding(g.f), tokens, 0)
}

// rmsNorm normalises over the last axis and scales by the weight `wname`.
//
// In fp16 the square of an activation above 256 overflows, and Llama
// hidden states do reach such values. So the fp16 graph divides by a
// per-row scale m first and folds m back into eps:
// x/sqrt(mean(x²)+eps) = (x/m)/sqrt(mean((x/m)²)+eps/m²) for any m > 0.
// m = max(max|x|, 2⁻⁷) keeps x/m ≤ 1 and 1/m² ≤ 2¹⁴ finite in fp16.
func (g *gen) rmsNorm(name string, x *mil.Var, wname string, n int) *mil.Var {
	f := g.f
	w := g.w.Vector(f, wname, 0, n)
	eps := g.s.Cfg.RMSEps
	last := []int32{-1}
	if g.s.Opts.FP32 {
		ms := f.Reduce("reduce_mean", name+"_ms", f.Unary("square", name+"_sq", x), last, true)
		r := f.Rsqrt(name+"_rsqrt", f.Add(name+"_add_eps", ms, g.scalar(name+"_eps", eps)), 0)
		return f.Mul(name, f.Mul(name+"_norm", x, r), w)
	}
	m := f.Reduce("reduce_max", name+"_amax", f.Unary("abs", name+"_abs", x), last, true)
	m = f.Maximum(name+"_amax_floor", m, g.scalar(name+"_floor", 1.0/128))
	inv := f.RealDiv(name+"_inv", g.scalar(name+"_one", 1), m)
	xs := f.Mul(name+"_xs", x, inv)
	ms := f.Reduce("reduce_mean", name+"_ms", f.Unary("square", name+"_sq", xs), last, true)
	epsScaled := f.Mul(name+"_eps_scaled", f.Unary("square", name+"_inv_sq", inv), g.scalar(name+"_eps", eps))
	r := f.Rsqrt(name+"_rsqrt", f.Add(name+"_add_eps", ms, epsScaled), 0)
	return f.Mul(name, f.Mul(name+"_norm", xs, r), w)
}

// splits is the number of equal output pieces a linear with `out` rows is
// cut into (model.md §3.3).
func (s *Spec) splits(out int, name string) (int, error) {
	t, mx := s.Opts.TargetSplitSize, s.Opts.MaxSplits
	if t <= 0 || mx <= 1 {
		return 1, nil
	}
	k := out / t
	if k < 1 {
		k = 1
	}
	if k > mx {
		k = mx
	}
	if out%k != 0 {
		return 0, fmt.Errorf("%s: %d output features cannot be split into %d equal pieces (--target-split-size %d, --max-splits %d)", name, out, k, t, mx)
	}
	return k, nil
}

// linear applies the HF module `module` (weight [out, in], optional bias)
// split into equal row pieces, plus the method's LoRA delta if any.
func (g *gen) linear(name string, x *mil.Var, module string, out int) *mil.Var {
	f := g.f
	k, err := g.s.splits(out, module)
	if err != nil {
		k = 1 // Validate reports it before any graph is built
	}
	hasBias := g.w.Has(module + ".bias")
	n := out / k
	var ys []*mil.Var
	for j := 0; j < k; j++ {
		pname := name
		if k > 1 {
			pname = name + "_" + strconv.Itoa(j)
		}
		w := g.w.Linear(f, module+".weight", j*n, n)
		var b *mil.Var
		if hasBias {
			b = g.w.Vector(f, module+".bias", j*n, n)
		}
		ys = append(ys, f.Linear(pname, x, w, b))
	}
	y := ys[0]
	if k > 1 {
		y = f.Concat(name+"_cat", -1, ys...)
	}
	if g.m.Adapter == "" {
		return y
	}
	a, b, scale, ok := g.w.LoRA(f, g.m.Adapter, module)
	if !ok {
		return y
	}
	t := f.Linear(name+"_lora_a", x, a, nil)
	u := f.Linear(name+"_lora_b", t, b, nil)
	u = f.Mul(name+"_lora_scaled", u, g.scalar(name+"_lora_scale", scale))
	return f.Add(name+"_lora", y, u)
}

// heads turns [1, L, n*hd] into [1, n, L, hd].
func (g *gen) heads(name string, x *mil.Var, n int) *mil.Var {
	hd, L := int64(g.s.Cfg.HeadDim), int64(g.m.L)
	r := g.f.Reshape(name+"_heads", x, []int64{1, L, int64(n), hd})
	return g.f.Transpose(name+"_t", r, []int32{0, 2, 1, 3})
}

// rope rotates each head vector in rotate-half form with the [L, hd/2]
// freqs inputs: out[i] = x[i]cos − x[i+hd/2]sin, out[i+hd/2] = x[i+hd/2]cos + x[i]sin.
func (g *gen) rope(name string, x *mil.Var) *mil.Var {
	f := g.f
	s := x.Shape
	half := int32(g.s.Cfg.HeadDim / 2)
	d0, d1, d2 := int32(s[0]), int32(s[1]), int32(s[2])
	cos, sin := g.input("freqs_cos"), g.input("freqs_sin")
	x1 := f.SliceByIndex(name+"_x1", x, []int32{0, 0, 0, 0}, []int32{d0, d1, d2, half})
	x2 := f.SliceByIndex(name+"_x2", x, []int32{0, 0, 0, half}, []int32{d0, d1, d2, 2 * half})
	r1 := f.Sub(name+"_r1", f.Mul(name+"_x1c", x1, cos), f.Mul(name+"_x2s", x2, sin))
	r2 := f.Add(name+"_r2", f.Mul(name+"_x2c", x2, cos), f.Mul(name+"_x1s", x1, sin))
	return f.Concat(name, -1, r1, r2)
}

// layer is one pre-norm decoder block; it returns the new hidden state and
// the layer's k_new / v_new outputs.
func (g *gen) layer(i int, h *mil.Var) (hOut, kNew, vNew *mil.Var) {
	c, f := g.s.Cfg, g.f
	p := "l" + strconv.Itoa(i) + "_"
	hf := "model.layers." + strconv.Itoa(i) + "."
	H, KV, hd := c.Heads, c.KVHeads, c.HeadDim
	L, C := int64(g.m.L), int64(g.s.CacheLen())

	x := g.rmsNorm(p+"attn_norm", h, hf+"input_layernorm.weight", c.Hidden)
	q := g.heads(p+"q", g.linear(p+"q_proj", x, hf+"self_attn.q_proj", H*hd), H)
	k := g.heads(p+"k", g.linear(p+"k_proj", x, hf+"self_attn.k_proj", KV*hd), KV)
	v := g.heads(p+"v", g.linear(p+"v_proj", x, hf+"self_attn.v_proj", KV*hd), KV)
	if c.QKNorm {
		q = g.rmsNorm(p+"q_norm", q, hf+"self_attn.q_norm.weight", hd)
		k = g.rmsNorm(p+"k_norm", k, hf+"self_attn.k_norm.weight", hd)
	}
	q = g.rope(p+"q_rope", q)
	kNew = g.rope("k_new_l"+strconv.Itoa(i), k)
	vNew = f.Unary("identity", "v_new_l"+strconv.Itoa(i), v)

	K := f.Concat(p+"k_all", 2, g.input("k_cache_l"+strconv.Itoa(i)), kNew)
	V := f.Concat(p+"v_all", 2, g.input("v_cache_l"+strconv.Itoa(i)), vNew)

	// Scale q before the matmul rather than the scores after it: the same
	// value, and it keeps fp16 dot products small.
	q = f.Mul(p+"q_scaled", q, g.scalar(p+"attn_scale", 1/math.Sqrt(float64(hd))))
	rep := int64(H / KV)
	if rep > 1 {
		// Query heads of one KV group are adjacent, so a reshape groups them
		// without copying KV heads (grouped-query attention).
		q = f.Reshape(p+"q_grouped", q, []int64{1, int64(KV), rep * L, int64(hd)})
	}
	scores := f.Matmul(p+"scores", q, K, false, true)
	if rep > 1 {
		scores = f.Reshape(p+"scores_heads", scores, []int64{1, int64(H), L, C + L})
	}
	scores = f.Add(p+"scores_masked", scores, g.mask4())
	probs := f.Softmax(p+"probs", scores, -1)
	if rep > 1 {
		probs = f.Reshape(p+"probs_grouped", probs, []int64{1, int64(KV), rep * L, C + L})
	}
	y := f.Matmul(p+"attn", probs, V, false, false)
	if rep > 1 {
		y = f.Reshape(p+"attn_heads", y, []int64{1, int64(H), L, int64(hd)})
	}
	y = f.Transpose(p+"attn_t", y, []int32{0, 2, 1, 3})
	y = f.Reshape(p+"attn_merged", y, []int64{1, L, int64(H * hd)})
	h = f.Add(p+"attn_residual", h, g.linear(p+"o_proj", y, hf+"self_attn.o_proj", c.Hidden))

	x = g.rmsNorm(p+"ffn_norm", h, hf+"post_attention_layernorm.weight", c.Hidden)
	gate := f.Unary("silu", p+"gate_silu", g.linear(p+"gate_proj", x, hf+"mlp.gate_proj", c.Intermediate))
	up := g.linear(p+"up_proj", x, hf+"mlp.up_proj", c.Intermediate)
	down := g.linear(p+"down_proj", f.Mul(p+"gate_up", gate, up), hf+"mlp.down_proj", c.Hidden)
	return f.Add(p+"ffn_residual", h, down), kNew, vNew
}

// mask4 is the mask input broadcast over heads: [1, 1, L, C+L].
func (g *gen) mask4() *mil.Var {
	if v, ok := g.in["mask4"]; ok {
		return v
	}
	v := g.f.ExpandDims("mask_heads", g.input("mask"), []int32{1})
	g.in["mask4"] = v
	return v
}

// head is the optional last-token gather, the final norm and the LM head.
func (g *gen) head(h *mil.Var) *mil.Var {
	c := g.s.Cfg
	if g.m.LastToken {
		h = g.f.Gather("last_token", h, g.input("last_valid_token_pos"), 1)
	}
	h = g.rmsNorm("final_norm", h, "model.norm.weight", c.Hidden)
	logits := g.linear("lm_head", h, "lm_head", c.Vocab)
	return g.f.Unary("identity", "logits", logits)
}
