package testgen

// readme documents the generated models; it is written as
// testdata/models/README.md.
const readme = `# Synthetic test models (generated — do not edit)

Written by ` + "`go run ./cmd/gentestdata`" + ` (package ` + "`internal/testgen`" + `); a test checks
that these files are byte-identical to the generator's output.

All models: hidden 64, intermediate 128, 2 layers, 4 heads / 2 KV heads, vocab 128,
silu MLP. Weights come from a fixed-seed splitmix64 per tensor and lie on a 1/256 grid
(norm weights 1 + k/128), so every value is exact in float16 and bfloat16; biases and
LoRA B are never zero.

| folder | architecture | dtype | head_dim | particulars |
|---|---|---|---|---|
| llama-tied-bf16 | LlamaForCausalLM | BF16 | 16 | tied embeddings (no lm_head.weight); rope_theta 5e5 with llama3 rope_scaling (factor 32, low 1, high 4, original 64): inv_freq 0 unchanged, 1 smoothed, 2..7 divided |
| qwen2-bias | Qwen2ForCausalLM | F16 | 16 | q/k/v biases, untied, rope_theta 1e6, use_sliding_window false |
| qwen3-qknorm | Qwen3ForCausalLM | F32 | 32 (≠ 64/4) | q_norm/k_norm weights, tied, rope_theta 1e6 |
| llama-sharded | LlamaForCausalLM | F32 | 16 | untied; two shards + model.safetensors.index.json (layer 0 and embedding in shard 1) |

PEFT adapters of qwen2-bias (F32, keys base_model.model.model.layers.N.<module>.lora_{A,B}[.default].weight):

| folder | r | lora_alpha | use_rslora | target_modules | particulars |
|---|---|---|---|---|---|
| adapters/rs | 4 | 8 | true | ["k_proj","o_proj","q_proj","v_proj"] | rank_pattern {"o_proj": 2}, alpha_pattern {"o_proj": 4} |
| adapters/mlp | 2 | 3 | false | ".*mlp.*(gate\|up\|down)_proj" (regex string) | keys with the ".default" infix |
`
