package hf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/safetensors"
)

// fakeSrc is an in-memory checkpoint description.
type fakeSrc map[string]safetensors.Info

func (f fakeSrc) Info(n string) (safetensors.Info, bool) { i, ok := f[n]; return i, ok }
func (f fakeSrc) Names() []string {
	var n []string
	for k := range f {
		n = append(n, k)
	}
	return n
}

func srcFor(cfg *Config, dt safetensors.DType) fakeSrc {
	f := fakeSrc{}
	for _, s := range ExpectedTensors(cfg) {
		f[s.Name] = safetensors.Info{Name: s.Name, File: "m.safetensors", DType: dt, Shape: s.Shape}
	}
	return f
}

func TestExpectedTensors(t *testing.T) {
	cfg := &Config{Arch: "Qwen3ForCausalLM", Hidden: 64, Intermediate: 128, Layers: 1, Heads: 4, KVHeads: 2, HeadDim: 32, Vocab: 100, QKNorm: true, AttnBias: true, OBias: true, Tied: true}
	require.Equal(t, []TensorSpec{
		{"model.embed_tokens.weight", []int64{100, 64}},
		{"model.layers.0.input_layernorm.weight", []int64{64}},
		{"model.layers.0.self_attn.q_proj.weight", []int64{128, 64}},
		{"model.layers.0.self_attn.k_proj.weight", []int64{64, 64}},
		{"model.layers.0.self_attn.v_proj.weight", []int64{64, 64}},
		{"model.layers.0.self_attn.o_proj.weight", []int64{64, 128}},
		{"model.layers.0.self_attn.q_proj.bias", []int64{128}},
		{"model.layers.0.self_attn.k_proj.bias", []int64{64}},
		{"model.layers.0.self_attn.v_proj.bias", []int64{64}},
		{"model.layers.0.self_attn.o_proj.bias", []int64{64}},
		{"model.layers.0.self_attn.q_norm.weight", []int64{32}},
		{"model.layers.0.self_attn.k_norm.weight", []int64{32}},
		{"model.layers.0.post_attention_layernorm.weight", []int64{64}},
		{"model.layers.0.mlp.gate_proj.weight", []int64{128, 64}},
		{"model.layers.0.mlp.up_proj.weight", []int64{128, 64}},
		{"model.layers.0.mlp.down_proj.weight", []int64{64, 128}},
		{"model.norm.weight", []int64{64}},
	}, ExpectedTensors(cfg))
	cfg.Tied = false
	names := TensorNames(cfg)
	require.Equal(t, "lm_head.weight", names[len(names)-1])
	require.Equal(t, "lm_head.weight", LMHeadTensor(cfg))
	cfg.Tied = true
	require.Equal(t, "model.embed_tokens.weight", LMHeadTensor(cfg))
}

func TestCheckWeightsTinyLlama(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "tiny-llama", "model")
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	cfg, err := ParseConfig(data, "config.json")
	require.NoError(t, err)
	src, err := safetensors.OpenFS(os.DirFS(dir), ".")
	require.NoError(t, err)
	defer src.Close()
	require.NoError(t, CheckWeights(cfg, src))
	require.Empty(t, WeightNotes(cfg, src))
	// The same checkpoint under a tied config: lm_head.weight becomes a note.
	tied := *cfg
	tied.Tied = true
	require.NoError(t, CheckWeights(&tied, src))
	notes := WeightNotes(&tied, src)
	require.Len(t, notes, 1)
	require.Contains(t, notes[0], "tie_word_embeddings")
}

func TestCheckWeightsErrors(t *testing.T) {
	cfg := &Config{Arch: "LlamaForCausalLM", Hidden: 8, Intermediate: 16, Layers: 2, Heads: 2, KVHeads: 1, HeadDim: 4, Vocab: 10}
	require.NoError(t, CheckWeights(cfg, srcFor(cfg, safetensors.BF16)))

	src := srcFor(cfg, safetensors.F16)
	delete(src, "model.layers.1.mlp.up_proj.weight")
	err := CheckWeights(cfg, src)
	require.ErrorContains(t, err, "tensor model.layers.1.mlp.up_proj.weight is missing")

	src = srcFor(cfg, safetensors.F32)
	i := src["model.layers.0.self_attn.k_proj.weight"]
	i.Shape = []int64{8, 8}
	src[i.Name] = i
	err = CheckWeights(cfg, src)
	require.ErrorContains(t, err, "model.layers.0.self_attn.k_proj.weight (m.safetensors) has shape [8 8], config.json implies [4 8]")

	src = srcFor(cfg, safetensors.F32)
	i = src["model.norm.weight"]
	i.DType = safetensors.I8
	src[i.Name] = i
	require.ErrorContains(t, CheckWeights(cfg, src), "model.norm.weight (m.safetensors) has dtype I8")

	// Many problems are summarised.
	err = CheckWeights(cfg, fakeSrc{})
	require.ErrorContains(t, err, "and ")
	require.Equal(t, 10, strings.Count(err.Error(), "is missing"))

	// Unused tensors are notes, not errors.
	src = srcFor(cfg, safetensors.F32)
	src["model.layers.0.self_attn.rotary_emb.inv_freq"] = safetensors.Info{DType: safetensors.F32, Shape: []int64{2}}
	src["model.layers.0.self_attn.q_proj.bias"] = safetensors.Info{DType: safetensors.F32, Shape: []int64{8}}
	require.NoError(t, CheckWeights(cfg, src))
	notes := WeightNotes(cfg, src)
	require.Len(t, notes, 1)
	require.Contains(t, notes[0], "2 checkpoint tensor(s)")
}
