package benchgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"lorapte/core/safetensors"
)

// allModules are the seven projections a LoRA adapter can target.
var allModules = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// AdapterSpec describes a PEFT LoRA adapter to generate.
type AdapterSpec struct {
	R       int
	Alpha   float64
	Modules []string // projection names; nil means all seven
}

// DefaultAdapter is r=16, alpha=32 on q, k, v, o, gate, up and down.
func DefaultAdapter() AdapterSpec { return AdapterSpec{R: 16, Alpha: 32} }

func (a AdapterSpec) modules() []string {
	if len(a.Modules) == 0 {
		return allModules
	}
	m := append([]string(nil), a.Modules...)
	sort.Strings(m)
	return m
}

// projDims gives (in, out) features of a projection.
func projDims(s Shape, module string) (in, out int64, err error) {
	q, kv := int64(s.Heads*s.headDim()), int64(s.KVHeads*s.headDim())
	d, f := int64(s.Hidden), int64(s.Intermediate)
	switch module {
	case "q_proj":
		return d, q, nil
	case "k_proj", "v_proj":
		return d, kv, nil
	case "o_proj":
		return q, d, nil
	case "gate_proj", "up_proj":
		return d, f, nil
	case "down_proj":
		return f, d, nil
	}
	return 0, 0, fmt.Errorf("benchgen: unknown projection %q", module)
}

// adapterConfigJSON is adapter_config.json as PEFT writes it (sorted keys).
func adapterConfigJSON(s Shape, a AdapterSpec) ([]byte, error) {
	c := map[string]any{
		"alpha_pattern":           map[string]any{},
		"base_model_name_or_path": "benchgen/" + s.Name,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"layers_pattern":          nil,
		"layers_to_transform":     nil,
		"lora_alpha":              a.Alpha,
		"lora_dropout":            0.05,
		"modules_to_save":         nil,
		"peft_type":               "LORA",
		"r":                       a.R,
		"rank_pattern":            map[string]any{},
		"revision":                nil,
		"target_modules":          a.modules(),
		"task_type":               "CAUSAL_LM",
		"use_dora":                false,
		"use_rslora":              false,
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// adapterTensors lists the F32 lora_A [r, in] and lora_B [out, r] tensors
// of every targeted projection of every layer, seeded by adapter name.
func adapterTensors(s Shape, name string, a AdapterSpec) ([]tensor, error) {
	if a.R <= 0 {
		return nil, fmt.Errorf("benchgen: adapter %s: rank %d must be positive", name, a.R)
	}
	var ts []tensor
	for l := 0; l < s.Layers; l++ {
		for _, m := range a.modules() {
			in, out, err := projDims(s, m)
			if err != nil {
				return nil, err
			}
			group := "self_attn"
			if m == "gate_proj" || m == "up_proj" || m == "down_proj" {
				group = "mlp"
			}
			base := fmt.Sprintf("base_model.model.model.layers.%d.%s.%s", l, group, m)
			for _, ab := range []struct {
				suffix string
				shape  []int64
			}{{".lora_A.weight", []int64{int64(a.R), in}}, {".lora_B.weight", []int64{out, int64(a.R)}}} {
				n := base + ab.suffix
				ts = append(ts, tensor{name: n, dtype: safetensors.F32, shape: ab.shape, kind: kindWeight,
					seed: seedOf(s.Name + "/adapter/" + name + "/" + n)})
			}
		}
	}
	return ts, nil
}

// WriteAdapter writes dir/adapter_config.json and
// dir/adapter_model.safetensors (float32, as PEFT saves them; creating dir)
// and returns the bytes written. name seeds the values, so two adapters of
// one model differ.
func WriteAdapter(dir string, s Shape, name string, a AdapterSpec) (int64, error) {
	cfg, err := adapterConfigJSON(s, a)
	if err != nil {
		return 0, err
	}
	ts, err := adapterTensors(s, name, a)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), cfg, 0o644); err != nil {
		return 0, err
	}
	n, err := writeFile(filepath.Join(dir, "adapter_model.safetensors"), func(w io.Writer) (int64, error) {
		return writeSafetensors(w, ts, defaultChunk)
	})
	return n + int64(len(cfg)), err
}
