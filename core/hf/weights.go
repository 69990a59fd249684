package hf

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"lorapte/core/safetensors"
)

// Hugging Face tensor names (model.md §1.2).
const (
	EmbedName  = "model.embed_tokens.weight"
	NormName   = "model.norm.weight"
	LMHeadName = "lm_head.weight"
)

// LayerName is the name of a tensor of decoder layer i, part being e.g.
// "self_attn.q_proj.weight".
func LayerName(i int, part string) string {
	return "model.layers." + strconv.Itoa(i) + "." + part
}

// TensorSpec is an expected checkpoint tensor and its shape.
type TensorSpec struct {
	Name  string
	Shape []int64
}

// ExpectedTensors lists the tensors the config calls for, in a fixed order:
// embedding, each layer's norms, projections (weights then biases), q/k
// norms and MLP, the final norm, and lm_head unless tied.
func ExpectedTensors(cfg *Config) []TensorSpec {
	d, f, v := int64(cfg.Hidden), int64(cfg.Intermediate), int64(cfg.Vocab)
	q, kv, hd := int64(cfg.Heads*cfg.HeadDim), int64(cfg.KVHeads*cfg.HeadDim), int64(cfg.HeadDim)
	out := []TensorSpec{{EmbedName, []int64{v, d}}}
	for i := 0; i < cfg.Layers; i++ {
		l := func(part string, shape ...int64) {
			out = append(out, TensorSpec{LayerName(i, part), shape})
		}
		l("input_layernorm.weight", d)
		l("self_attn.q_proj.weight", q, d)
		l("self_attn.k_proj.weight", kv, d)
		l("self_attn.v_proj.weight", kv, d)
		l("self_attn.o_proj.weight", d, q)
		if cfg.AttnBias {
			l("self_attn.q_proj.bias", q)
			l("self_attn.k_proj.bias", kv)
			l("self_attn.v_proj.bias", kv)
		}
		if cfg.OBias {
			l("self_attn.o_proj.bias", d)
		}
		if cfg.QKNorm {
			l("self_attn.q_norm.weight", hd)
			l("self_attn.k_norm.weight", hd)
		}
		l("post_attention_layernorm.weight", d)
		l("mlp.gate_proj.weight", f, d)
		l("mlp.up_proj.weight", f, d)
		l("mlp.down_proj.weight", d, f)
	}
	out = append(out, TensorSpec{NormName, []int64{d}})
	if !cfg.Tied {
		out = append(out, TensorSpec{LMHeadName, []int64{v, d}})
	}
	return out
}

// TensorNames lists the names of ExpectedTensors.
func TensorNames(cfg *Config) []string {
	specs := ExpectedTensors(cfg)
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}

// TensorInfoer is what CheckWeights needs from a checkpoint
// (*safetensors.Source implements it). If it also has Names() []string,
// tensors the config does not use are reported in the notes.
type TensorInfoer interface {
	Info(name string) (safetensors.Info, bool)
}

// LMHeadTensor is the tensor used as the output projection: the embedding
// when tie_word_embeddings is true (even if lm_head.weight is also stored,
// as transformers does), else lm_head.weight.
func LMHeadTensor(cfg *Config) string {
	if cfg.Tied {
		return EmbedName
	}
	return LMHeadName
}

// CheckWeights verifies that every tensor the config needs is present with
// the right shape and a float dtype (F32, F16 or BF16). The error lists up
// to 10 problems, each naming its tensor.
func CheckWeights(cfg *Config, src TensorInfoer) error {
	var problems []string
	for _, s := range ExpectedTensors(cfg) {
		info, ok := src.Info(s.Name)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("tensor %s is missing", s.Name))
		case !slices.Equal(info.Shape, s.Shape):
			problems = append(problems, fmt.Sprintf("tensor %s (%s) has shape %v, config.json implies %v", s.Name, info.File, info.Shape, s.Shape))
		case !info.DType.IsFloat():
			problems = append(problems, fmt.Sprintf("tensor %s (%s) has dtype %s, want F32, F16 or BF16", s.Name, info.File, info.DType))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	if n := len(problems); n > 10 {
		problems = append(problems[:10], fmt.Sprintf("and %d more", n-10))
	}
	return fmt.Errorf("checkpoint %sdoes not match config.json (%s): %s", checkpointName(src), cfg.Arch, strings.Join(problems, "; "))
}

// checkpointName names the checkpoint's file (or its shards' folder) for
// messages, when src can list its files; "" otherwise.
func checkpointName(src TensorInfoer) string {
	l, ok := src.(interface{ Files() []*safetensors.File })
	if !ok {
		return ""
	}
	files := l.Files()
	switch {
	case len(files) == 0:
		return ""
	case len(files) == 1:
		return files[0].Name() + " "
	}
	return fmt.Sprintf("%s (%d shards) ", path.Dir(files[0].Name()), len(files))
}

// WeightNotes returns non-fatal observations about a checkpoint for the
// user: a stored lm_head.weight that tying makes unused, and (if src has
// Names() []string) other tensors the config does not use, which are
// ignored as transformers ignores them.
func WeightNotes(cfg *Config, src TensorInfoer) []string {
	var notes []string
	known := map[string]bool{}
	for _, s := range ExpectedTensors(cfg) {
		known[s.Name] = true
	}
	if cfg.Tied {
		known[LMHeadName] = true
		if _, ok := src.Info(LMHeadName); ok {
			notes = append(notes, "lm_head.weight is present but tie_word_embeddings is true: using model.embed_tokens.weight, as transformers does")
		}
	}
	if lister, ok := src.(interface{ Names() []string }); ok {
		var unused []string
		for _, n := range lister.Names() {
			if !known[n] {
				unused = append(unused, n)
			}
		}
		if len(unused) > 0 {
			shown := unused[:min(len(unused), 5)]
			msg := fmt.Sprintf("%d checkpoint tensor(s) not used by %s with this config.json, ignored as transformers does: %s", len(unused), cfg.Arch, strings.Join(shown, ", "))
			if len(unused) > len(shown) {
				msg += ", ..."
			}
			notes = append(notes, msg)
		}
	}
	return notes
}
