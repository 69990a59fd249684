// Package hf reads a Hugging Face config.json into the model description
// lorapte needs, computes the RoPE tables exactly as transformers does, and
// checks a checkpoint's tensor names, shapes and dtypes against the config.
//
// Supported: LlamaForCausalLM, MistralForCausalLM (no sliding window),
// Qwen2ForCausalLM (q/k/v biases) and Qwen3ForCausalLM (q/k norm); see
// model.md "Decisions for lorapte" and §1. Anything whose numbers lorapte
// cannot reproduce exactly is refused with an error naming the field.
package hf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// Size limits, checked before anything is allocated from them.
const (
	MaxDim    = 1 << 20
	MaxVocab  = 1 << 22
	MaxLayers = 1024
)

// RopeScaling holds the llama3 RoPE scaling parameters (the only scaling
// lorapte implements).
type RopeScaling struct {
	Type           string // "llama3"
	Factor         float64
	LowFreqFactor  float64
	HighFreqFactor float64
	OriginalMaxPos int
}

// Config is the part of config.json that defines the computation.
type Config struct {
	Arch      string // e.g. "LlamaForCausalLM"
	ModelType string // e.g. "llama"

	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab int
	MaxPositions                                                 int // max_position_embeddings, 0 if absent

	RMSEps      float64
	RopeTheta   float64
	RopeScaling *RopeScaling // nil: no scaling

	Tied     bool // lm_head shares model.embed_tokens.weight
	AttnBias bool // q_proj, k_proj, v_proj have biases
	OBias    bool // o_proj has a bias
	QKNorm   bool // per-head RMSNorm of q and k before RoPE (Qwen3)

	TorchDType string // "torch_dtype" (or newer "dtype"), informative
}

// archDefaults are the transformers config-class defaults lorapte relies on.
type archDefaults struct {
	modelType string
	headDim   int // 0: hidden/heads
}

func lookupArch(arch string) (archDefaults, bool) {
	switch arch {
	case "LlamaForCausalLM":
		return archDefaults{modelType: "llama"}, true
	case "MistralForCausalLM":
		return archDefaults{modelType: "mistral"}, true
	case "Qwen2ForCausalLM":
		return archDefaults{modelType: "qwen2"}, true
	case "Qwen3ForCausalLM":
		return archDefaults{modelType: "qwen3", headDim: 128}, true
	}
	return archDefaults{}, false
}

func archForModelType(mt string) string {
	for _, a := range []string{"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"} {
		if d, _ := lookupArch(a); d.modelType == mt {
			return a
		}
	}
	return ""
}

// fields gives typed access to a JSON object's members; JSON null counts as
// absent, as in transformers where null means "use the default".
type fields struct {
	file, prefix string
	m            map[string]json.RawMessage
}

func (f fields) errf(key, format string, a ...any) error {
	return fmt.Errorf("%s: %s%s: %s", f.file, f.prefix, key, fmt.Sprintf(format, a...))
}

func (f fields) raw(key string) (json.RawMessage, bool) {
	v, ok := f.m[key]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		return nil, false
	}
	return v, true
}

func (f fields) has(key string) bool { _, ok := f.raw(key); return ok }

func (f fields) number(key string) (float64, bool, error) {
	v, ok := f.raw(key)
	if !ok {
		return 0, false, nil
	}
	var x float64
	if err := json.Unmarshal(v, &x); err != nil {
		return 0, true, f.errf(key, "want a number, got %s", short(v))
	}
	return x, true, nil
}

func (f fields) integer(key string) (int64, bool, error) {
	x, ok, err := f.number(key)
	if !ok || err != nil {
		return 0, ok, err
	}
	if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
		return 0, true, f.errf(key, "want an integer, got %s", short(f.m[key]))
	}
	return int64(x), true, nil
}

func (f fields) boolean(key string, def bool) (bool, error) {
	v, ok := f.raw(key)
	if !ok {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, f.errf(key, "want true or false, got %s", short(v))
	}
	return b, nil
}

func (f fields) str(key string) (string, bool, error) {
	v, ok := f.raw(key)
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", true, f.errf(key, "want a string, got %s", short(v))
	}
	return s, true, nil
}

func (f fields) object(key string) (fields, bool, error) {
	v, ok := f.raw(key)
	if !ok {
		return fields{}, false, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		return fields{}, true, f.errf(key, "want an object, got %s", short(v))
	}
	return fields{file: f.file, prefix: f.prefix + key + ".", m: m}, true, nil
}

// size reads a positive integer no larger than limit; def < 0 means the
// field is required.
func (f fields) size(key string, def int64, limit int64) (int, error) {
	v, ok, err := f.integer(key)
	if err != nil {
		return 0, err
	}
	if !ok {
		if def < 0 {
			return 0, f.errf(key, "missing")
		}
		v = def
	}
	if v <= 0 {
		return 0, f.errf(key, "must be positive, got %d", v)
	}
	if v > limit {
		return 0, f.errf(key, "%d is too large (limit %d)", v, limit)
	}
	return int(v), nil
}

func short(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// DecodeObject splits a JSON object into its members (a repeated key keeps
// its last value, as encoding/json does). When a member's value is
// malformed, key names it, which json.Unmarshal's byte offsets would not.
func DecodeObject(data []byte) (m map[string]json.RawMessage, key string, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	bad := func(err error) error {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return errors.New("not JSON: unexpected end of input")
		}
		return fmt.Errorf("not JSON: %w", err)
	}
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, "", errors.New("empty, want a JSON object")
	}
	if err != nil {
		return nil, "", bad(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, "", errors.New("want a JSON object")
	}
	m = map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, "", bad(err)
		}
		key, _ = tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, key, bad(err)
		}
		m[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, "", bad(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "", errors.New("not JSON: data after the object")
	}
	return m, "", nil
}

// ParseConfig parses config.json (file names it in errors).
func ParseConfig(data []byte, file string) (*Config, error) {
	m, key, err := DecodeObject(data)
	if err != nil {
		if key != "" {
			return nil, fmt.Errorf("%s: %s: %w", file, key, err)
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	f := fields{file: file, m: m}
	c := &Config{}

	// Architecture and model_type must agree; either alone is enough.
	mt, hasMT, err := f.str("model_type")
	if err != nil {
		return nil, err
	}
	if v, ok := f.raw("architectures"); ok {
		var archs []string
		if err := json.Unmarshal(v, &archs); err != nil {
			return nil, f.errf("architectures", "want a list of strings, got %s", short(v))
		}
		if len(archs) != 1 {
			return nil, f.errf("architectures", "want exactly one architecture, got %d", len(archs))
		}
		c.Arch = archs[0]
	} else if hasMT {
		c.Arch = archForModelType(mt)
		if c.Arch == "" {
			return nil, f.errf("model_type", "unsupported model type %q (supported: llama, mistral, qwen2, qwen3)", mt)
		}
	} else {
		return nil, f.errf("architectures", "missing (and no model_type)")
	}
	def, ok := lookupArch(c.Arch)
	if !ok {
		return nil, f.errf("architectures", "unsupported architecture %q (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)", c.Arch)
	}
	if hasMT && mt != def.modelType {
		return nil, f.errf("model_type", "%q does not match architecture %s (want %q)", mt, c.Arch, def.modelType)
	}
	c.ModelType = def.modelType

	// Features lorapte does not implement.
	for _, k := range []string{"num_experts", "num_local_experts", "n_routed_experts"} {
		n, _, err := f.integer(k)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, f.errf(k, "mixture-of-experts models are not supported")
		}
	}
	if act, ok, err := f.str("hidden_act"); err != nil {
		return nil, err
	} else if ok && act != "silu" {
		return nil, f.errf("hidden_act", "%q is not supported (only silu)", act)
	}
	if mlpBias, err := f.boolean("mlp_bias", false); err != nil {
		return nil, err
	} else if mlpBias {
		return nil, f.errf("mlp_bias", "MLP biases are not supported")
	}
	if p, ok, err := f.number("partial_rotary_factor"); err != nil {
		return nil, err
	} else if ok && p != 1 {
		return nil, f.errf("partial_rotary_factor", "%v is not supported (only 1)", p)
	}
	if err := checkSliding(f, c.ModelType); err != nil {
		return nil, err
	}

	// Sizes.
	if c.Hidden, err = f.size("hidden_size", -1, MaxDim); err != nil {
		return nil, err
	}
	if c.Intermediate, err = f.size("intermediate_size", -1, MaxDim); err != nil {
		return nil, err
	}
	if c.Layers, err = f.size("num_hidden_layers", -1, MaxLayers); err != nil {
		return nil, err
	}
	if c.Heads, err = f.size("num_attention_heads", -1, MaxDim); err != nil {
		return nil, err
	}
	if c.KVHeads, err = f.size("num_key_value_heads", int64(c.Heads), MaxDim); err != nil {
		return nil, err
	}
	if c.Vocab, err = f.size("vocab_size", -1, MaxVocab); err != nil {
		return nil, err
	}
	hdDefault := int64(def.headDim)
	if hdDefault == 0 {
		if c.Hidden%c.Heads != 0 && !f.has("head_dim") {
			return nil, f.errf("num_attention_heads", "%d does not divide hidden_size %d and head_dim is not given", c.Heads, c.Hidden)
		}
		hdDefault = int64(c.Hidden / c.Heads)
	}
	if c.HeadDim, err = f.size("head_dim", hdDefault, MaxDim); err != nil {
		return nil, err
	}
	if c.HeadDim%2 != 0 {
		return nil, f.errf("head_dim", "%d is odd; RoPE needs an even head dimension", c.HeadDim)
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, f.errf("num_key_value_heads", "%d does not divide num_attention_heads %d", c.KVHeads, c.Heads)
	}
	if int64(c.Heads)*int64(c.HeadDim) > MaxDim {
		return nil, f.errf("head_dim", "num_attention_heads*head_dim = %d is too large", int64(c.Heads)*int64(c.HeadDim))
	}
	if mp, ok, err := f.integer("max_position_embeddings"); err != nil {
		return nil, err
	} else if ok && mp > 0 && mp <= math.MaxInt32 {
		c.MaxPositions = int(mp)
	}

	// Norm, RoPE.
	c.RMSEps = 1e-6 // all four config classes
	if v, ok, err := f.number("rms_norm_eps"); err != nil {
		return nil, err
	} else if ok {
		c.RMSEps = v
	}
	if !(c.RMSEps > 0 && c.RMSEps < 1) {
		return nil, f.errf("rms_norm_eps", "%v is out of range", c.RMSEps)
	}
	if err := parseRope(f, c); err != nil {
		return nil, err
	}

	// Biases, norms, tying.
	switch c.ModelType {
	case "qwen2":
		c.AttnBias = true // Qwen2Attention: q/k/v always biased, o never
	case "llama", "qwen3":
		b, err := f.boolean("attention_bias", false)
		if err != nil {
			return nil, err
		}
		c.AttnBias, c.OBias = b, b
	}
	c.QKNorm = c.ModelType == "qwen3"
	if c.Tied, err = f.boolean("tie_word_embeddings", false); err != nil {
		return nil, err
	}
	if s, ok, err := f.str("torch_dtype"); err != nil {
		return nil, err
	} else if ok {
		c.TorchDType = s
	} else if s, ok, err := f.str("dtype"); err != nil {
		return nil, err
	} else if ok {
		c.TorchDType = s
	}
	return c, nil
}

// checkSliding refuses sliding-window attention, which lorapte's full
// causal mask would not reproduce.
func checkSliding(f fields, modelType string) error {
	switch modelType {
	case "mistral":
		if f.has("sliding_window") {
			return f.errf("sliding_window", "sliding-window attention is not supported (must be null)")
		}
	case "qwen2", "qwen3":
		use, err := f.boolean("use_sliding_window", false)
		if err != nil {
			return err
		}
		if use {
			return f.errf("use_sliding_window", "sliding-window attention is not supported")
		}
	}
	if v, ok := f.raw("layer_types"); ok {
		var types []string
		if err := json.Unmarshal(v, &types); err != nil {
			return f.errf("layer_types", "want a list of strings, got %s", short(v))
		}
		for i, t := range types {
			if t != "full_attention" {
				return f.errf("layer_types", "layer %d is %q; only full_attention is supported", i, t)
			}
		}
	}
	return nil
}

// parseRope reads rope_theta and the scaling from rope_scaling or (newer
// transformers) rope_parameters, which may also carry rope_theta.
func parseRope(f fields, c *Config) error {
	theta, hasTheta, err := f.number("rope_theta")
	if err != nil {
		return err
	}
	if !hasTheta {
		theta = 10000 // default of all four config classes
	}
	var scaling []fields
	for _, key := range []string{"rope_scaling", "rope_parameters"} {
		obj, ok, err := f.object(key)
		if err != nil {
			return err
		}
		if ok {
			scaling = append(scaling, obj)
		}
	}
	for _, s := range scaling {
		if t, ok, err := s.number("rope_theta"); err != nil {
			return err
		} else if ok {
			if hasTheta && t != theta {
				return s.errf("rope_theta", "%v differs from rope_theta %v", t, theta)
			}
			theta, hasTheta = t, true
		}
	}
	if !(theta > 1 && theta < 1e300) {
		return f.errf("rope_theta", "%v is out of range", theta)
	}
	c.RopeTheta = theta
	for k, s := range scaling {
		rs, err := parseScaling(s)
		if err != nil {
			return err
		}
		if k > 0 && !sameScaling(rs, c.RopeScaling) {
			return s.errf("rope_type", "rope_scaling and rope_parameters disagree")
		}
		c.RopeScaling = rs
	}
	return nil
}

func sameScaling(a, b *RopeScaling) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func parseScaling(s fields) (*RopeScaling, error) {
	// transformers: "rope_type", else the older "type", else "default".
	key := "rope_type"
	typ, ok, err := s.str(key)
	if err != nil {
		return nil, err
	}
	if !ok {
		key = "type"
		if typ, ok, err = s.str(key); err != nil {
			return nil, err
		}
	}
	if !ok {
		// A nested per-layer-type object ({"full_attention": {...}}) or an
		// object with scaling keys but no type cannot be interpreted.
		keys := make([]string, 0, len(s.m))
		for k := range s.m {
			if k != "rope_theta" {
				keys = append(keys, k)
			}
		}
		if len(keys) > 0 {
			sort.Strings(keys)
			return nil, s.errf("rope_type", "missing, with other keys present (%s)", strings.Join(keys, ", "))
		}
		typ = "default"
	}
	switch typ {
	case "default":
		return nil, nil
	case "llama3":
	default:
		return nil, s.errf(key, "RoPE type %q is not supported (only default and llama3)", typ)
	}
	rs := &RopeScaling{Type: typ}
	for _, p := range []struct {
		key string
		dst *float64
	}{{"factor", &rs.Factor}, {"low_freq_factor", &rs.LowFreqFactor}, {"high_freq_factor", &rs.HighFreqFactor}} {
		v, ok, err := s.number(p.key)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, s.errf(p.key, "missing (required for llama3)")
		}
		if !(v > 0 && v < 1e30) {
			return nil, s.errf(p.key, "%v is out of range", v)
		}
		*p.dst = v
	}
	if rs.HighFreqFactor <= rs.LowFreqFactor {
		return nil, s.errf("high_freq_factor", "%v must be greater than low_freq_factor %v", rs.HighFreqFactor, rs.LowFreqFactor)
	}
	orig, ok, err := s.integer("original_max_position_embeddings")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, s.errf("original_max_position_embeddings", "missing (required for llama3)")
	}
	if orig <= 0 || orig > math.MaxInt32 {
		return nil, s.errf("original_max_position_embeddings", "%d is out of range", orig)
	}
	rs.OriginalMaxPos = int(orig)
	return rs, nil
}
