package hf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// cfgJSON builds a config from a base map with overrides; a nil value
// deletes the key.
func cfgJSON(t *testing.T, base map[string]any, over map[string]any) []byte {
	t.Helper()
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range over {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

func llamaBase() map[string]any {
	return map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
	}
}

func TestParseTinyLlama(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "tiny-llama", "model", "config.json"))
	require.NoError(t, err)
	c, err := ParseConfig(data, "config.json")
	require.NoError(t, err)
	require.Equal(t, &Config{
		Arch: "LlamaForCausalLM", ModelType: "llama",
		Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, Vocab: 128,
		MaxPositions: 2048, RMSEps: 1e-5, RopeTheta: 10000, TorchDType: "float32",
	}, c)
}

func TestParseArchitectures(t *testing.T) {
	parse := func(over map[string]any) *Config {
		t.Helper()
		c, err := ParseConfig(cfgJSON(t, llamaBase(), over), "c.json")
		require.NoError(t, err)
		return c
	}
	// Defaults: kv heads = heads, head_dim = hidden/heads, eps 1e-6, theta 1e4, untied.
	c := parse(map[string]any{"num_key_value_heads": nil, "rms_norm_eps": nil, "rope_theta": nil, "hidden_act": nil})
	require.Equal(t, 4, c.KVHeads)
	require.Equal(t, 16, c.HeadDim)
	require.Equal(t, 1e-6, c.RMSEps)
	require.Equal(t, 10000.0, c.RopeTheta)
	require.False(t, c.Tied)
	require.Nil(t, c.RopeScaling)

	c = parse(map[string]any{"attention_bias": true, "tie_word_embeddings": true, "dtype": "bfloat16"})
	require.True(t, c.AttnBias)
	require.True(t, c.OBias)
	require.True(t, c.Tied)
	require.Equal(t, "bfloat16", c.TorchDType)

	c = parse(map[string]any{"architectures": []string{"MistralForCausalLM"}, "model_type": "mistral", "sliding_window": nil, "attention_bias": true})
	require.Equal(t, "mistral", c.ModelType)
	require.False(t, c.AttnBias) // MistralAttention has no biases whatever the config says

	c = parse(map[string]any{"architectures": []string{"Qwen2ForCausalLM"}, "model_type": "qwen2", "use_sliding_window": false, "sliding_window": 4096})
	require.True(t, c.AttnBias)
	require.False(t, c.OBias)
	require.False(t, c.QKNorm)

	c = parse(map[string]any{"architectures": []string{"Qwen3ForCausalLM"}, "model_type": "qwen3", "head_dim": 32})
	require.True(t, c.QKNorm)
	require.False(t, c.AttnBias)
	require.Equal(t, 32, c.HeadDim)
	c = parse(map[string]any{"architectures": []string{"Qwen3ForCausalLM"}, "model_type": "qwen3"})
	require.Equal(t, 128, c.HeadDim) // Qwen3Config default

	// model_type alone is enough.
	c = parse(map[string]any{"architectures": nil, "model_type": "qwen2"})
	require.Equal(t, "Qwen2ForCausalLM", c.Arch)
	// head_dim given although hidden is not a multiple of heads.
	c = parse(map[string]any{"hidden_size": 66, "head_dim": 16})
	require.Equal(t, 16, c.HeadDim)
}

func TestParseRope(t *testing.T) {
	llama3 := map[string]any{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
	want := &RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}
	for name, over := range map[string]map[string]any{
		"rope_scaling":             {"rope_scaling": llama3},
		"type key":                 {"rope_scaling": map[string]any{"type": "llama3", "factor": 32, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}},
		"rope_parameters":          {"rope_theta": nil, "rope_parameters": map[string]any{"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
		"both, agreeing":           {"rope_scaling": llama3, "rope_parameters": llama3},
		"rope_type wins over type": {"rope_scaling": map[string]any{"rope_type": "llama3", "type": "linear", "factor": 32, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}},
	} {
		c, err := ParseConfig(cfgJSON(t, llamaBase(), over), "c.json")
		require.NoError(t, err, name)
		require.Equal(t, want, c.RopeScaling, name)
	}
	c, err := ParseConfig(cfgJSON(t, llamaBase(), map[string]any{"rope_theta": nil, "rope_parameters": map[string]any{"rope_type": "default", "rope_theta": 500000.0}}), "c.json")
	require.NoError(t, err)
	require.Nil(t, c.RopeScaling)
	require.Equal(t, 500000.0, c.RopeTheta)
	c, err = ParseConfig(cfgJSON(t, llamaBase(), map[string]any{"rope_scaling": map[string]any{"type": "default"}}), "c.json")
	require.NoError(t, err)
	require.Nil(t, c.RopeScaling)
}

func TestParseRefusals(t *testing.T) {
	llama3 := func(k string, v any) map[string]any {
		m := map[string]any{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return map[string]any{"rope_scaling": m}
	}
	cases := []struct {
		over  map[string]any
		field string
		want  string
	}{
		{map[string]any{"architectures": []string{"GPT2LMHeadModel"}}, "architectures", "unsupported architecture"},
		{map[string]any{"architectures": []string{"LlamaForCausalLM", "X"}}, "architectures", "exactly one"},
		{map[string]any{"architectures": "LlamaForCausalLM"}, "architectures", "list of strings"},
		{map[string]any{"architectures": nil, "model_type": "gemma"}, "model_type", "unsupported model type"},
		{map[string]any{"architectures": nil, "model_type": nil}, "architectures", "missing"},
		{map[string]any{"model_type": "qwen2"}, "model_type", "does not match"},
		{map[string]any{"num_local_experts": 8}, "num_local_experts", "mixture-of-experts"},
		{map[string]any{"num_experts": 4}, "num_experts", "mixture-of-experts"},
		{map[string]any{"hidden_act": "gelu"}, "hidden_act", "gelu"},
		{map[string]any{"mlp_bias": true}, "mlp_bias", "not supported"},
		{map[string]any{"partial_rotary_factor": 0.5}, "partial_rotary_factor", "not supported"},
		{map[string]any{"num_key_value_heads": 3}, "num_key_value_heads", "does not divide"},
		{map[string]any{"head_dim": 15}, "head_dim", "odd"},
		{map[string]any{"hidden_size": 66}, "num_attention_heads", "does not divide"},
		{map[string]any{"hidden_size": 1 << 21}, "hidden_size", "too large"},
		{map[string]any{"intermediate_size": 1 << 30}, "intermediate_size", "too large"},
		{map[string]any{"vocab_size": 1<<22 + 1}, "vocab_size", "too large"},
		{map[string]any{"num_hidden_layers": 1025}, "num_hidden_layers", "too large"},
		{map[string]any{"head_dim": 1 << 20}, "head_dim", "too large"},
		{map[string]any{"num_attention_heads": 0}, "num_attention_heads", "positive"},
		{map[string]any{"hidden_size": nil}, "hidden_size", "missing"},
		{map[string]any{"vocab_size": nil}, "vocab_size", "missing"},
		{map[string]any{"num_hidden_layers": 2.5}, "num_hidden_layers", "integer"},
		{map[string]any{"hidden_size": "64"}, "hidden_size", "number"},
		{map[string]any{"rms_norm_eps": -1}, "rms_norm_eps", "out of range"},
		{map[string]any{"rope_theta": 0}, "rope_theta", "out of range"},
		{map[string]any{"tie_word_embeddings": "yes"}, "tie_word_embeddings", "true or false"},
		{map[string]any{"rope_scaling": map[string]any{"rope_type": "linear", "factor": 2.0}}, "rope_scaling.rope_type", "linear"},
		{map[string]any{"rope_scaling": map[string]any{"type": "dynamic", "factor": 2.0}}, "rope_scaling.type", "dynamic"},
		{map[string]any{"rope_scaling": map[string]any{"rope_type": "yarn", "factor": 4.0}}, "rope_scaling.rope_type", "yarn"},
		{map[string]any{"rope_parameters": map[string]any{"rope_type": "longrope"}}, "rope_parameters.rope_type", "longrope"},
		{map[string]any{"rope_scaling": map[string]any{"factor": 2.0}}, "rope_scaling.rope_type", "missing"},
		{map[string]any{"rope_parameters": map[string]any{"full_attention": map[string]any{"rope_type": "default"}}}, "rope_parameters.rope_type", "missing"},
		{map[string]any{"rope_scaling": "llama3"}, "rope_scaling", "object"},
		{llama3("factor", nil), "rope_scaling.factor", "missing"},
		{llama3("low_freq_factor", nil), "rope_scaling.low_freq_factor", "missing"},
		{llama3("high_freq_factor", 0.5), "rope_scaling.high_freq_factor", "greater than"},
		{llama3("original_max_position_embeddings", nil), "rope_scaling.original_max_position_embeddings", "missing"},
		{llama3("factor", -2.0), "rope_scaling.factor", "out of range"},
		{map[string]any{"rope_parameters": map[string]any{"rope_type": "default", "rope_theta": 5.0}}, "rope_parameters.rope_theta", "differs"},
		{map[string]any{"rope_scaling": llama3("factor", 8.0)["rope_scaling"], "rope_parameters": map[string]any{"rope_type": "default"}}, "rope_parameters.rope_type", "disagree"},
		{map[string]any{"architectures": []string{"MistralForCausalLM"}, "model_type": "mistral", "sliding_window": 4096}, "sliding_window", "sliding-window"},
		{map[string]any{"architectures": []string{"Qwen2ForCausalLM"}, "model_type": "qwen2", "use_sliding_window": true}, "use_sliding_window", "sliding-window"},
		{map[string]any{"architectures": []string{"Qwen3ForCausalLM"}, "model_type": "qwen3", "use_sliding_window": true}, "use_sliding_window", "sliding-window"},
		{map[string]any{"layer_types": []string{"full_attention", "sliding_attention"}}, "layer_types", "layer 1"},
	}
	for _, c := range cases {
		_, err := ParseConfig(cfgJSON(t, llamaBase(), c.over), "model/config.json")
		require.Error(t, err, c.field)
		require.Contains(t, err.Error(), "model/config.json: "+c.field+":", c.field)
		require.Contains(t, err.Error(), c.want, c.field)
	}
	for _, bad := range []string{"", "null", "[]", "{", `{"a":1}`} {
		_, err := ParseConfig([]byte(bad), "c.json")
		require.Error(t, err, bad)
		require.True(t, strings.HasPrefix(err.Error(), "c.json: "), err.Error())
	}
}

func FuzzParseConfig(f *testing.F) {
	seed, _ := json.Marshal(llamaBase())
	f.Add(seed)
	f.Add([]byte(`{"model_type":"qwen3","hidden_size":64,"intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":4,"head_dim":32,"rope_parameters":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64}}`))
	f.Add([]byte(`{"model_type":"llama","hidden_size":1e300}`))
	f.Add([]byte(`{"architectures":["MistralForCausalLM"],"sliding_window":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "fuzz.json")
		if err != nil {
			return
		}
		if c.Hidden <= 0 || c.Hidden > MaxDim || c.Vocab > MaxVocab || c.Layers > MaxLayers ||
			c.HeadDim%2 != 0 || c.KVHeads <= 0 || c.Heads%c.KVHeads != 0 {
			t.Fatalf("accepted invalid config %+v", c)
		}
		if c.HeadDim <= 1<<12 {
			inv := InvFreq(c)
			if len(inv) != c.HeadDim/2 {
				t.Fatal("inv_freq length")
			}
		}
	})
}
