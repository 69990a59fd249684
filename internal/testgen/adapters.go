package testgen

import (
	"encoding/json"
	"fmt"
	"path"

	"lorapte/core/safetensors"
)

// adapter is a PEFT LoRA adapter of a generated model.
type adapter struct {
	name    string // directory under adapters/
	r       int
	alpha   float64
	rslora  bool
	modules []string       // projections that get LoRA weights
	targets any            // adapter_config.json target_modules (list or regex string)
	rankPat map[string]int // rank_pattern
	alphPat map[string]any // alpha_pattern
	infix   string         // "" or ".default" between lora_A and .weight
}

func qwen2Adapters() []adapter {
	return []adapter{
		{
			name: "rs", r: 4, alpha: 8, rslora: true,
			modules: []string{"q_proj", "k_proj", "v_proj", "o_proj"},
			targets: []string{"k_proj", "o_proj", "q_proj", "v_proj"},
			rankPat: map[string]int{"o_proj": 2},
			alphPat: map[string]any{"o_proj": 4},
		},
		{
			name: "mlp", r: 2, alpha: 3,
			modules: []string{"gate_proj", "up_proj", "down_proj"},
			targets: ".*mlp.*(gate|up|down)_proj",
			rankPat: map[string]int{},
			alphPat: map[string]any{},
			infix:   ".default",
		},
	}
}

// config is adapter_config.json as PEFT writes it (sorted keys).
func (a adapter) config(m model) []byte {
	c := map[string]any{
		"alpha_pattern":           a.alphPat,
		"auto_mapping":            nil,
		"base_model_name_or_path": "lorapte/" + path.Base(m.dir),
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"layer_replication":       nil,
		"layers_pattern":          nil,
		"layers_to_transform":     nil,
		"loftq_config":            map[string]any{},
		"lora_alpha":              a.alpha,
		"lora_dropout":            0.05,
		"megatron_config":         nil,
		"megatron_core":           "megatron.core",
		"modules_to_save":         nil,
		"peft_type":               "LORA",
		"r":                       a.r,
		"rank_pattern":            a.rankPat,
		"revision":                nil,
		"target_modules":          a.targets,
		"task_type":               "CAUSAL_LM",
		"use_dora":                false,
		"use_rslora":              a.rslora,
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// dims gives (in, out) features of a projection of model m.
func dims(m model, module string) (in, out int64) {
	q, kvd := int64(heads*m.headDim), int64(kvHeads*m.headDim)
	switch module {
	case "q_proj":
		return hidden, q
	case "k_proj", "v_proj":
		return hidden, kvd
	case "o_proj":
		return q, hidden
	case "gate_proj", "up_proj":
		return hidden, intermediate
	case "down_proj":
		return intermediate, hidden
	}
	panic("unknown module " + module)
}

func (a adapter) files(m model) []File {
	dir := path.Join(m.dir, "adapters", a.name)
	var ts []safetensors.Tensor
	for i := 0; i < layers; i++ {
		for _, mod := range a.modules {
			r := a.r
			if pr, ok := a.rankPat[mod]; ok {
				r = pr
			}
			group := "self_attn"
			if mod == "gate_proj" || mod == "up_proj" || mod == "down_proj" {
				group = "mlp"
			}
			in, out := dims(m, mod)
			base := fmt.Sprintf("base_model.model.model.layers.%d.%s.%s", i, group, mod)
			aName := base + ".lora_A" + a.infix + ".weight"
			bName := base + ".lora_B" + a.infix + ".weight"
			av := values(dir+"/"+aName, int(int64(r)*in), kindLoraA)
			bv := values(dir+"/"+bName, int(out*int64(r)), kindLoraB)
			ts = append(ts,
				safetensors.Tensor{Name: aName, DType: safetensors.F32, Shape: []int64{int64(r), in}, Data: encode(av, safetensors.F32)},
				safetensors.Tensor{Name: bName, DType: safetensors.F32, Shape: []int64{out, int64(r)}, Data: encode(bv, safetensors.F32)},
			)
		}
	}
	return []File{
		{path.Join(dir, "adapter_config.json"), a.config(m)},
		{path.Join(dir, "adapter_model.safetensors"), writeST(ts)},
	}
}
