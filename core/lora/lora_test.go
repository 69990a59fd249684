package lora

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"lorapte/core/hf"
	"lorapte/core/safetensors"
)

// tinyConfig has the fixture's shapes: hidden 64, inter 128, 2 layers,
// 4 heads / 2 KV heads of 16.
func tinyConfig(t *testing.T) *hf.Config {
	cfg, err := hf.ParseConfig([]byte(`{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,
		"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":128,
		"rms_norm_eps":1e-5,"rope_theta":10000,"hidden_act":"silu"}`), "config.json")
	require.NoError(t, err)
	return cfg
}

type tensor struct {
	name  string
	dtype safetensors.DType
	shape []int64
}

func f32(n int64) []byte {
	b := make([]byte, 4*n)
	for i := int64(0); i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(0.01*float32(i%7+1)))
	}
	return b
}

// pairs returns PEFT A/B tensors for the modules of both layers.
func pairs(r int64, modules map[string][2]int64) []tensor {
	var out []tensor
	for _, l := range []string{"0", "1"} {
		for m, io := range modules {
			p := "base_model.model.model.layers." + l + "." + m
			out = append(out, tensor{p + ".lora_A.weight", "F32", []int64{r, io[0]}},
				tensor{p + ".lora_B.weight", "F32", []int64{io[1], r}})
		}
	}
	return out
}

var attn = map[string][2]int64{"self_attn.q_proj": {64, 64}, "self_attn.k_proj": {64, 32}, "self_attn.v_proj": {64, 32}, "self_attn.o_proj": {64, 64}}

func adapterFS(t *testing.T, config map[string]any, ts []tensor) fstest.MapFS {
	var st []safetensors.Tensor
	for _, x := range ts {
		n := int64(1)
		for _, d := range x.shape {
			n *= d
		}
		data := f32(n)
		if x.dtype != "F32" {
			data = make([]byte, n*int64(x.dtype.Size()))
		}
		st = append(st, safetensors.Tensor{Name: x.name, DType: x.dtype, Shape: x.shape, Data: data})
	}
	var buf bytes.Buffer
	require.NoError(t, safetensors.Write(&buf, st, nil))
	fsys := fstest.MapFS{"ad/" + WeightsFile: {Data: buf.Bytes()}}
	if config != nil {
		js, err := json.Marshal(config)
		require.NoError(t, err)
		fsys["ad/"+ConfigFile] = &fstest.MapFile{Data: js}
	}
	return fsys
}

func baseConfig() map[string]any {
	return map[string]any{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": []string{"q_proj", "k_proj", "v_proj", "o_proj"},
		"bias": "none", "lora_dropout": 0.05, "use_rslora": false, "use_dora": false, "fan_in_fan_out": false}
}

func with(k string, v any) map[string]any {
	c := baseConfig()
	if v == nil {
		delete(c, k)
	} else {
		c[k] = v
	}
	return c
}

func TestLoadGood(t *testing.T) {
	cfg := tinyConfig(t)
	ad, err := Load("chat", adapterFS(t, baseConfig(), pairs(4, attn)), "ad", cfg)
	require.NoError(t, err)
	require.Len(t, ad.Modules, 8)
	m := ad.Modules["model.layers.1.self_attn.k_proj"]
	require.Equal(t, Module{Name: "model.layers.1.self_attn.k_proj", A: "base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight",
		B: "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight", R: 4, In: 64, Out: 32, Alpha: 8, Scale: 2}, *m)

	// A path to the .safetensors file with the config beside it works too.
	_, err = Load("chat", adapterFS(t, baseConfig(), pairs(4, attn)), "ad/"+WeightsFile, cfg)
	require.NoError(t, err)
}

func TestScalesAndPatterns(t *testing.T) {
	cfg := tinyConfig(t)
	c := baseConfig()
	c["use_rslora"] = true
	c["lora_alpha"] = 16
	c["rank_pattern"] = json.RawMessage(`{"o_proj": 2, "q_proj": 8}`)
	c["alpha_pattern"] = json.RawMessage(`{"layers.1.self_attn.o_proj": 4, "o_proj": 6}`)
	ts := pairs(4, map[string][2]int64{"self_attn.k_proj": {64, 32}, "self_attn.v_proj": {64, 32}})
	ts = append(ts, pairs(2, map[string][2]int64{"self_attn.o_proj": {64, 64}})...)
	ts = append(ts, pairs(8, map[string][2]int64{"self_attn.q_proj": {64, 64}})...)
	ad, err := Load("rs", adapterFS(t, c, ts), "ad", cfg)
	require.NoError(t, err)
	check := func(module string, r int, alpha float64) {
		m := ad.Modules[module]
		require.Equal(t, r, m.R, module)
		require.Equal(t, alpha, m.Alpha, module)
		require.InDelta(t, alpha/math.Sqrt(float64(r)), m.Scale, 1e-12, module)
	}
	check("model.layers.0.self_attn.k_proj", 4, 16)
	check("model.layers.0.self_attn.q_proj", 8, 16)
	check("model.layers.0.self_attn.o_proj", 2, 6)
	check("model.layers.1.self_attn.o_proj", 2, 4) // first matching alpha key wins
}

func TestRegexTargetsAndAdapterNameInfix(t *testing.T) {
	cfg := tinyConfig(t)
	c := with("target_modules", `.*mlp\.(gate|up|down)_proj`)
	var ts []tensor
	for _, x := range pairs(2, map[string][2]int64{"mlp.gate_proj": {64, 128}, "mlp.up_proj": {64, 128}, "mlp.down_proj": {128, 64}}) {
		x.name = x.name[:len(x.name)-len(".weight")] + ".default.weight"
		ts = append(ts, x)
	}
	c["r"] = 2
	ad, err := Load("mlp", adapterFS(t, c, ts), "ad", cfg)
	require.NoError(t, err)
	require.Len(t, ad.Modules, 6)
}

// TestValidationErrors: each bad adapter gets one clear error naming the
// adapter, the file and the field or tensor.
func TestValidationErrors(t *testing.T) {
	cfg := tinyConfig(t)
	good := pairs(4, attn)
	cases := []struct {
		name    string
		fsys    fstest.MapFS
		path    string
		wantErr []string
	}{
		{"missing config", adapterFS(t, nil, good), "ad", []string{"adapter x", "ad/adapter_config.json", "not found"}},
		{"missing weights", fstest.MapFS{"ad/" + ConfigFile: {Data: []byte(`{"r":4,"lora_alpha":8,"target_modules":["q_proj"]}`)}}, "ad",
			[]string{"adapter x", "ad/adapter_model.safetensors", "not found"}},
		{"no r", adapterFS(t, with("r", nil), good), "ad", []string{"adapter_config.json", `"r"`}},
		{"bad r", adapterFS(t, with("r", -1), good), "ad", []string{`"r"`, "positive"}},
		{"no alpha", adapterFS(t, with("lora_alpha", nil), good), "ad", []string{`"lora_alpha"`}},
		{"no targets", adapterFS(t, with("target_modules", nil), good), "ad", []string{`"target_modules"`}},
		{"unknown target", adapterFS(t, with("target_modules", []string{"q_proj", "k_proj", "v_proj", "o_proj", "c_attn"}), good), "ad",
			[]string{`"target_modules"`, "c_attn"}},
		{"regex matches nothing", adapterFS(t, with("target_modules", `.*c_attn`), good), "ad", []string{`"target_modules"`, "matches no projection"}},
		{"dora", adapterFS(t, with("use_dora", true), good), "ad", []string{`"use_dora"`, "DoRA"}},
		{"bias", adapterFS(t, with("bias", "all"), good), "ad", []string{`"bias"`}},
		{"modules_to_save", adapterFS(t, with("modules_to_save", []string{"lm_head"}), good), "ad", []string{`"modules_to_save"`}},
		{"peft type", adapterFS(t, with("peft_type", "PREFIX_TUNING"), good), "ad", []string{`"peft_type"`}},
		{"bad regex", adapterFS(t, with("target_modules", "(q_proj"), good), "ad", []string{`"target_modules"`, "regular expression"}},
		{"untargeted module", adapterFS(t, with("target_modules", []string{"q_proj", "k_proj", "v_proj"}), good), "ad",
			[]string{"o_proj", "target_modules"}},
		{"missing B", adapterFS(t, baseConfig(), good[:len(good)-1]), "ad", []string{"adapter_model.safetensors", "lora_"}},
		{"rank mismatch", adapterFS(t, with("r", 8), good), "ad", []string{"shape", "rank 8"}},
		{"other base", adapterFS(t, baseConfig(), pairs(4, map[string][2]int64{"self_attn.q_proj": {96, 96}, "self_attn.k_proj": {64, 32},
			"self_attn.v_proj": {64, 32}, "self_attn.o_proj": {64, 64}})), "ad", []string{"q_proj", "another base"}},
		{"unsupported dtype", adapterFS(t, baseConfig(), append(pairs(4, map[string][2]int64{"self_attn.k_proj": {64, 32},
			"self_attn.v_proj": {64, 32}, "self_attn.o_proj": {64, 64}}),
			tensor{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "I32", []int64{4, 64}},
			tensor{"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", "F32", []int64{64, 4}})), "ad", []string{"dtype I32"}},
		{"dora magnitude", adapterFS(t, baseConfig(), append(good, tensor{"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", "F32", []int64{64}})),
			"ad", []string{"DoRA"}},
		{"lm_head lora", adapterFS(t, baseConfig(), append(good, tensor{"base_model.model.lm_head.lora_A.weight", "F32", []int64{4, 64}})),
			"ad", []string{"lm_head", "not supported"}},
		{"layer past the model", adapterFS(t, baseConfig(), append(good, tensor{"base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", "F32", []int64{4, 64}})),
			"ad", []string{"layers.7", "no projection"}},
		{"not json", fstest.MapFS{"ad/" + ConfigFile: {Data: []byte("{")}, "ad/" + WeightsFile: {Data: []byte("x")}}, "ad", []string{"adapter_config.json", "JSON"}},
		{"bad safetensors", fstest.MapFS{"ad/" + ConfigFile: {Data: []byte(`{"r":4,"lora_alpha":8,"target_modules":["q_proj"]}`)},
			"ad/" + WeightsFile: {Data: []byte("tiny")}}, "ad", []string{"adapter_model.safetensors"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load("x", c.fsys, c.path, cfg)
			require.Error(t, err)
			require.Contains(t, err.Error(), "adapter x")
			for _, w := range c.wantErr {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	js, _ := json.Marshal(baseConfig())
	f.Add(js)
	f.Add([]byte(`{"r":4,"lora_alpha":8,"target_modules":".*q_proj","rank_pattern":{"q":2},"alpha_pattern":{"(":1}}`))
	f.Add([]byte(`{"r":1e300,"lora_alpha":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "adapter_config.json")
		if err == nil {
			c.targets("model.layers.0.self_attn.q_proj")
			c.RankAlpha("model.layers.0.self_attn.q_proj")
		}
	})
}
