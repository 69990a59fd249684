package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/export"
	"lorapte/core/inmemfs"
	"lorapte/core/mlpackage"
	"lorapte/core/pte"
	"lorapte/core/safetensors"
	"lorapte/internal/benchgen"
)

// badFixture is one catalogue case's working copy of the tiny fixture.
type badFixture struct {
	t   *testing.T
	dir string
}

func (f *badFixture) path(p string) string { return filepath.Join(f.dir, p) }

// model copies the tiny model into dir/model.
func (f *badFixture) model() string {
	copyDir(f.t, tiny+"/model", f.path("model"))
	return f.path("model")
}

// adapter copies a fixture adapter into dir/<name>.
func (f *badFixture) adapter(name string) string {
	copyDir(f.t, tiny+"/adapters/"+name, f.path(name))
	return f.path(name)
}

func copyDir(t *testing.T, from, to string) {
	require.NoError(t, os.MkdirAll(to, 0o755))
	entries, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, e := range entries {
		require.NoError(t, os.WriteFile(filepath.Join(to, e.Name()), readFile(t, filepath.Join(from, e.Name())), 0o644))
	}
}

// editJSON rewrites a JSON object file through fn.
func editJSON(t *testing.T, p string, fn func(m map[string]any)) {
	var m map[string]any
	require.NoError(t, json.Unmarshal(readFile(t, p), &m))
	fn(m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, b, 0o644))
}

// editHeader rewrites a safetensors header (keeping the data section), so
// offsets, shapes and dtypes can be made inconsistent with the data.
func editHeader(t *testing.T, p string, fn func(h map[string]map[string]any)) {
	data := readFile(t, p)
	n := binary.LittleEndian.Uint64(data)
	var h map[string]map[string]any
	require.NoError(t, json.Unmarshal(data[8:8+n], &h))
	fn(h)
	hdr, err := json.Marshal(h)
	require.NoError(t, err)
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	out = append(append(out, hdr...), data[8+n:]...)
	require.NoError(t, os.WriteFile(p, out, 0o644))
}

// setValue overwrites element i of an F32 tensor.
func setValue(t *testing.T, p, tensor string, i int64, v float32) {
	data := readFile(t, p)
	f, err := safetensors.Open(p, bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	info, ok := f.Info(tensor)
	require.True(t, ok, tensor)
	require.Equal(t, safetensors.F32, info.DType)
	binary.LittleEndian.PutUint32(data[info.Offset+4*i:], math.Float32bits(v))
	require.NoError(t, os.WriteFile(p, data, 0o644))
}

// rewriteTensors rewrites a safetensors file with fn applied to its tensors.
func rewriteTensors(t *testing.T, p string, fn func([]safetensors.Tensor) []safetensors.Tensor) {
	writeST(t, p, fn(loadAll(t, p)))
}

func without(ts []safetensors.Tensor, name string) []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, x := range ts {
		if x.Name != name {
			out = append(out, x)
		}
	}
	return out
}

func setRaw(t *testing.T, p string, b []byte) { require.NoError(t, os.WriteFile(p, b, 0o644)) }

const (
	q0     = "model.layers.0.self_attn.q_proj.weight"
	adQ0A  = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
	adQ0B  = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
	mlSafe = "model/model.safetensors"
	mlCfg  = "model/config.json"
)

// badCase is one hostile or broken input: setup corrupts a copy of the
// fixture and returns the export arguments beyond --output; want lists what
// the one error line must contain (the file, the field or tensor).
type badCase struct {
	name  string
	setup func(f *badFixture) []string
	want  []string
	// maxAlloc bounds the bytes allocated by the whole run for inputs that
	// claim absurd sizes: they must be refused before allocating.
	maxAlloc uint64
}

func modelArgs(f *badFixture) []string { return []string{"--model", f.model()} }

// loraCase builds a case that corrupts a copy of the attn adapter.
func loraCase(name string, corrupt func(f *badFixture, dir string), want ...string) badCase {
	return badCase{name: "lora: " + name, setup: func(f *badFixture) []string {
		ad := f.adapter("attn")
		corrupt(f, ad)
		return []string{"--model", tiny + "/model", "--adapter", "x=" + ad}
	}, want: append([]string{"adapter x"}, want...)}
}

func loraConfig(name string, edit func(m map[string]any), want ...string) badCase {
	return loraCase(name, func(f *badFixture, dir string) {
		editJSON(f.t, filepath.Join(dir, "adapter_config.json"), edit)
	}, append([]string{"attn/adapter_config.json"}, want...)...)
}

func loraTensors(name string, edit func([]safetensors.Tensor) []safetensors.Tensor, want ...string) badCase {
	return loraCase(name, func(f *badFixture, dir string) {
		rewriteTensors(f.t, filepath.Join(dir, "adapter_model.safetensors"), edit)
	}, append([]string{"attn/adapter_model.safetensors"}, want...)...)
}

func badCases() []badCase {
	hdr := func(edit func(h map[string]map[string]any)) func(f *badFixture) []string {
		return func(f *badFixture) []string {
			a := modelArgs(f)
			editHeader(f.t, f.path(mlSafe), edit)
			return a
		}
	}
	cfg := func(edit func(m map[string]any)) func(f *badFixture) []string {
		return func(f *badFixture) []string {
			a := modelArgs(f)
			editJSON(f.t, f.path(mlCfg), edit)
			return a
		}
	}
	value := func(tensor string, i int64, v float32) func(f *badFixture) []string {
		return func(f *badFixture) []string {
			a := modelArgs(f)
			setValue(f.t, f.path(mlSafe), tensor, i, v)
			return a
		}
	}
	offsets := func(name string, begin, end float64) func(h map[string]map[string]any) {
		return func(h map[string]map[string]any) { h[name]["data_offsets"] = []float64{begin, end} }
	}
	down1 := "model.layers.1.mlp.down_proj.weight"
	dataLen := func(f *badFixture) int64 {
		st, err := os.Stat(f.path(mlSafe))
		require.NoError(f.t, err)
		n := binary.LittleEndian.Uint64(readFile(f.t, f.path(mlSafe)))
		return st.Size() - 8 - int64(n)
	}
	return []badCase{
		// Truncated and inconsistent safetensors files.
		{name: "truncated model.safetensors", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			b := readFile(f.t, f.path(mlSafe))
			setRaw(f.t, f.path(mlSafe), b[:len(b)-1000])
			return a
		}, want: []string{mlSafe, `tensor "model.layers.1.self_attn.v_proj.weight"`, "past the end"}},
		{name: "truncated inside the length prefix", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			setRaw(f.t, f.path(mlSafe), readFile(f.t, f.path(mlSafe))[:5])
			return a
		}, want: []string{mlSafe, "too small"}},
		{name: "truncated inside the header", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			setRaw(f.t, f.path(mlSafe), readFile(f.t, f.path(mlSafe))[:300])
			return a
		}, want: []string{mlSafe, "header length", "past the end"}},
		{name: "header length beyond the file", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			b := readFile(f.t, f.path(mlSafe))
			binary.LittleEndian.PutUint64(b, uint64(len(b)))
			setRaw(f.t, f.path(mlSafe), b)
			return a
		}, want: []string{mlSafe, "header length", "past the end"}},
		{name: "header length 1 GB", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			b := readFile(f.t, f.path(mlSafe))
			binary.LittleEndian.PutUint64(b, 1<<30)
			setRaw(f.t, f.path(mlSafe), b)
			return a
		}, want: []string{mlSafe, "header length 1073741824", "limit"}, maxAlloc: 8 << 20},
		{name: "header length 1 GB in a sparse 1 GB file", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			b := readFile(f.t, f.path(mlSafe))
			binary.LittleEndian.PutUint64(b, 1<<30)
			setRaw(f.t, f.path(mlSafe), b)
			require.NoError(f.t, os.Truncate(f.path(mlSafe), 1<<30+16)) // sparse: costs no disk
			return a
		}, want: []string{mlSafe, "header length 1073741824", "limit"}, maxAlloc: 8 << 20},
		{name: "header not JSON", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			b := readFile(f.t, f.path(mlSafe))
			copy(b[8:], "[[[[")
			setRaw(f.t, f.path(mlSafe), b)
			return a
		}, want: []string{mlSafe, "header"}},
		{name: "deeply nested header JSON", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			h := `{"a":` + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + `}`
			setRaw(f.t, f.path(mlSafe), append(binary.LittleEndian.AppendUint64(nil, uint64(len(h))), h...))
			return a
		}, want: []string{mlSafe, "header"}, maxAlloc: 8 << 20},
		{name: "offsets overlap", setup: hdr(offsets(q0, 0, 16384)), want: []string{mlSafe, q0, "overlaps"}},
		{name: "offsets out of order", setup: hdr(offsets(q0, 16384, 0)), want: []string{mlSafe, q0, "begin after end"}},
		{name: "offsets past the end", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			n := float64(dataLen(f))
			editHeader(f.t, f.path(mlSafe), offsets(q0, n-8192, n+8192))
			return a
		}, want: []string{mlSafe, q0, "past the end"}},
		{name: "offsets hold fewer bytes than the shape", setup: hdr(func(h map[string]map[string]any) {
			o := h[q0]["data_offsets"].([]any)
			h[q0]["data_offsets"] = []any{o[0], o[1].(float64) - 4}
		}), want: []string{mlSafe, q0, "needs 16384"}},
		{name: "dtype changes the byte size", setup: hdr(func(h map[string]map[string]any) { h[q0]["dtype"] = "F16" }),
			want: []string{mlSafe, q0, "F16", "needs 8192"}},
		{name: "shape disagrees with config.json", setup: hdr(func(h map[string]map[string]any) { h[q0]["shape"] = []int{32, 128} }),
			want: []string{mlSafe, q0, "shape [32 128]", "config.json implies [64 64]"}},
		{name: "integer dtype", setup: hdr(func(h map[string]map[string]any) { h[q0]["dtype"] = "I32" }),
			want: []string{mlSafe, q0, "dtype I32"}},
		{name: "unsupported dtype", setup: hdr(func(h map[string]map[string]any) { h[q0]["dtype"] = "F8_E4M3" }),
			want: []string{mlSafe, "F8_E4M3"}},
		{name: "missing tensor", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			rewriteTensors(f.t, f.path(mlSafe), func(ts []safetensors.Tensor) []safetensors.Tensor { return without(ts, down1) })
			return a
		}, want: []string{mlSafe, down1, "missing"}},
		{name: "no weights file", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			require.NoError(f.t, os.Remove(f.path(mlSafe)))
			return a
		}, want: []string{"model: neither model.safetensors nor model.safetensors.index.json found"}},
		// Sharded checkpoints: the index and its shards.
		{name: "index names a missing shard", setup: func(f *badFixture) []string {
			m := shardedModel(f)
			require.NoError(f.t, os.Remove(filepath.Join(m, "model-00002-of-00002.safetensors")))
			return []string{"--model", m}
		}, want: []string{"model.safetensors.index.json references shard model-00002-of-00002.safetensors", "no such file"}},
		{name: "index maps a tensor to the wrong shard", setup: func(f *badFixture) []string {
			m := shardedModel(f)
			editIndex(f.t, m, func(wm map[string]any) { wm["lm_head.weight"] = "model-00001-of-00002.safetensors" })
			return []string{"--model", m}
		}, want: []string{"model.safetensors.index.json", `tensor "lm_head.weight"`, "model-00001-of-00002.safetensors", "does not contain it"}},
		{name: "index shard outside the folder", setup: func(f *badFixture) []string {
			m := shardedModel(f)
			editIndex(f.t, m, func(wm map[string]any) { wm["lm_head.weight"] = "../model-00002-of-00002.safetensors" })
			return []string{"--model", m}
		}, want: []string{"model.safetensors.index.json", "weight_map", `tensor "lm_head.weight"`, "invalid shard file name"}},
		{name: "index without weight_map", setup: func(f *badFixture) []string {
			m := shardedModel(f)
			setRaw(f.t, filepath.Join(m, "model.safetensors.index.json"), []byte(`{"metadata":{}}`))
			return []string{"--model", m}
		}, want: []string{"model.safetensors.index.json", "missing weight_map"}},
		// Values that cannot be converted.
		{name: "NaN in a weight", setup: value(down1, 77, float32(math.NaN())), want: []string{mlSafe, down1, "non-finite"}},
		{name: "+Inf in a weight", setup: value(q0, 3, float32(math.Inf(1))), want: []string{mlSafe, q0, "non-finite"}},
		{name: "-Inf in a norm weight", setup: value("model.norm.weight", 5, float32(math.Inf(-1))), want: []string{mlSafe, "model.norm.weight", "non-finite"}},
		{name: "value beyond float16", setup: value("lm_head.weight", 9, 1e6), want: []string{mlSafe, "lm_head.weight", "float16 range"}},
		{name: "NaN in an adapter weight", setup: func(f *badFixture) []string {
			ad := f.adapter("attn")
			setValue(f.t, filepath.Join(ad, "adapter_model.safetensors"), adQ0B, 7, float32(math.NaN()))
			return []string{"--model", tiny + "/model", "--adapter", "x=" + ad}
		}, want: []string{"attn/adapter_model.safetensors", adQ0B, "non-finite"}},
		// config.json.
		{name: "vocab_size 10^12", setup: cfg(func(m map[string]any) { m["vocab_size"] = 1e12 }),
			want: []string{mlCfg, "vocab_size", "too large"}, maxAlloc: 8 << 20},
		{name: "hidden_size 10^12", setup: cfg(func(m map[string]any) { m["hidden_size"] = 1e12 }),
			want: []string{mlCfg, "hidden_size", "too large"}, maxAlloc: 8 << 20},
		{name: "num_hidden_layers 10^9", setup: cfg(func(m map[string]any) { m["num_hidden_layers"] = 1e9 }),
			want: []string{mlCfg, "num_hidden_layers", "too large"}, maxAlloc: 8 << 20},
		{name: "deeply nested config.json", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			setRaw(f.t, f.path(mlCfg), []byte(`{"rope_scaling":`+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+`}`))
			return a
		}, want: []string{mlCfg, "rope_scaling"}, maxAlloc: 8 << 20},
		{name: "config.json of 2 MB", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			setRaw(f.t, f.path(mlCfg), []byte(`{"pad":"`+strings.Repeat("x", 2<<20)+`"}`))
			return a
		}, want: []string{mlCfg, "1 MiB"}, maxAlloc: 8 << 20},
		{name: "config.json not JSON", setup: func(f *badFixture) []string {
			a := modelArgs(f)
			setRaw(f.t, f.path(mlCfg), []byte(`{"hidden_size": 64,`))
			return a
		}, want: []string{mlCfg, "JSON"}},
		{name: "wrong architecture", setup: cfg(func(m map[string]any) { m["architectures"] = []string{"GPT2LMHeadModel"}; delete(m, "model_type") }),
			want: []string{mlCfg, "architectures", "GPT2LMHeadModel"}},
		{name: "model_type disagrees with the architecture", setup: cfg(func(m map[string]any) { m["model_type"] = "qwen2" }),
			want: []string{mlCfg, "model_type", "qwen2"}},
		{name: "missing hidden_size", setup: cfg(func(m map[string]any) { delete(m, "hidden_size") }),
			want: []string{mlCfg, "hidden_size", "missing"}},
		{name: "sliding window", setup: cfg(func(m map[string]any) { m["layer_types"] = []string{"full_attention", "sliding_attention"} }),
			want: []string{mlCfg, "layer_types", "sliding_attention"}},
		{name: "head_dim 2^20 (RoPE tables of 10 GiB)", setup: func(f *badFixture) []string {
			return []string{"--model", hugeHeadDim(f), "--max-context-len", "1024", "--input-len", "32", "-E", "8,0", "--linear-quantize", "c4w"}
		}, want: []string{"model/config.json", "head_dim 1048576", "--max-context-len 1024", "--max-memory"}, maxAlloc: 8 << 20},
		{name: "1024 layers × 8 methods", setup: func(f *badFixture) []string {
			return manyLayers(f)
		}, want: []string{"model/config.json", "num_hidden_layers 1024", "8 methods", "--max-memory"}, maxAlloc: 64 << 20},
		// Resource limits.
		{name: "output above --max-output-size", setup: func(f *badFixture) []string {
			return []string{"--model", tiny + "/model", "--max-output-size", "10KB"}
		}, want: []string{".pte would be", "9.8 KiB", "--max-output-size"}},
		{name: "memory above --max-memory", setup: func(f *badFixture) []string {
			return []string{"--model", tiny + "/model", "--max-memory", "1MiB"}
		}, want: []string{"estimated peak memory", "1.0 MiB", "--max-memory"}},
		{name: "embedding group size does not divide hidden_size", setup: func(f *badFixture) []string {
			return []string{"--model", tiny + "/model", "-E", "4,48"}
		}, want: []string{"--embedding-quantize 4,48", "model.embed_tokens.weight", "64 input features", "hidden_size in", "model/config.json"}},
		{name: "linear group size does not divide hidden_size", setup: func(f *badFixture) []string {
			m, _ := microModel(f.t, f.dir) // hidden_size 16
			return []string{"--model", m, "-E", "8,0"}
		}, want: []string{"--linear-quantize b4w", "q_proj.weight", "16 input features", "micro/config.json"}},
		// Adapters: the LoRA validation catalogue (core/lora TestValidationErrors) through the CLI.
		loraCase("missing config", func(f *badFixture, d string) {
			require.NoError(f.t, os.Remove(filepath.Join(d, "adapter_config.json")))
		},
			"attn/adapter_config.json", "not found"),
		loraCase("missing weights", func(f *badFixture, d string) {
			require.NoError(f.t, os.Remove(filepath.Join(d, "adapter_model.safetensors")))
		}, "attn/adapter_model.safetensors", "not found"),
		loraConfig("no r", func(m map[string]any) { delete(m, "r") }, `"r"`, "missing"),
		loraConfig("bad r", func(m map[string]any) { m["r"] = -1 }, `"r"`, "positive"),
		loraConfig("r 10^12", func(m map[string]any) { m["r"] = 1e12 }, `"r"`, "positive"),
		loraConfig("no lora_alpha", func(m map[string]any) { delete(m, "lora_alpha") }, `"lora_alpha"`),
		loraConfig("no target_modules", func(m map[string]any) { delete(m, "target_modules") }, `"target_modules"`),
		loraConfig("unknown target", func(m map[string]any) {
			m["target_modules"] = []string{"q_proj", "k_proj", "v_proj", "o_proj", "c_attn"}
		},
			`"target_modules"`, "c_attn"),
		loraConfig("regex matches nothing", func(m map[string]any) { m["target_modules"] = `.*c_attn` }, `"target_modules"`, "matches no projection"),
		loraConfig("bad regex", func(m map[string]any) { m["target_modules"] = `(q_proj` }, `"target_modules"`, "regular expression"),
		loraConfig("DoRA", func(m map[string]any) { m["use_dora"] = true }, `"use_dora"`, "DoRA"),
		loraConfig("trained biases", func(m map[string]any) { m["bias"] = "all" }, `"bias"`),
		loraConfig("modules_to_save", func(m map[string]any) { m["modules_to_save"] = []string{"lm_head"} }, `"modules_to_save"`),
		loraConfig("peft_type", func(m map[string]any) { m["peft_type"] = "PREFIX_TUNING" }, `"peft_type"`),
		loraCase("rank mismatch", func(f *badFixture, d string) {
			editJSON(f.t, filepath.Join(d, "adapter_config.json"), func(m map[string]any) { m["r"] = 8 })
		}, "attn/adapter_model.safetensors", "k_proj.lora_A.weight", "shape [4 64], want [8 64]", "rank 8"),
		loraCase("untargeted module", func(f *badFixture, d string) {
			editJSON(f.t, filepath.Join(d, "adapter_config.json"), func(m map[string]any) { m["target_modules"] = []string{"q_proj", "k_proj", "v_proj"} })
		}, "attn/adapter_model.safetensors", "o_proj", "target_modules"),
		loraCase("config not JSON", func(f *badFixture, d string) { setRaw(f.t, filepath.Join(d, "adapter_config.json"), []byte("{")) },
			"attn/adapter_config.json", "JSON"),
		loraCase("config of 2 MB", func(f *badFixture, d string) {
			setRaw(f.t, filepath.Join(d, "adapter_config.json"), []byte(`{"pad":"`+strings.Repeat("x", 2<<20)+`"}`))
		}, "attn/adapter_config.json", "too large"),
		loraCase("weights not safetensors", func(f *badFixture, d string) {
			setRaw(f.t, filepath.Join(d, "adapter_model.safetensors"), []byte("tiny"))
		},
			"attn/adapter_model.safetensors", "too small"),
		loraTensors("missing lora_B", func(ts []safetensors.Tensor) []safetensors.Tensor { return without(ts, adQ0B) }, adQ0B, "missing"),
		loraTensors("integer dtype", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == adQ0A {
					ts[i].DType = "I32"
				}
			}
			return ts
		}, adQ0A, "dtype I32"),
		loraTensors("DoRA magnitude vector", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", DType: "F32", Shape: []int64{64}, Data: make([]byte, 256)})
		}, "lora_magnitude_vector", "DoRA"),
		loraTensors("LoRA on lm_head", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "base_model.model.lm_head.lora_A.weight", DType: "F32", Shape: []int64{4, 64}, Data: make([]byte, 1024)})
		}, "lm_head.lora_A.weight", "not supported"),
		loraTensors("layer past the model", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", DType: "F32", Shape: []int64{4, 64}, Data: make([]byte, 1024)})
		}, "layers.7", "no projection"),
		loraTensors("not a LoRA tensor", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "base_model.model.model.layers.0.self_attn.q_proj.bias", DType: "F32", Shape: []int64{64}, Data: make([]byte, 256)})
		}, "q_proj.bias", "not a LoRA A/B weight"),
		{name: "lora: adapter for another base", setup: func(f *badFixture) []string {
			_, ad := microModel(f.t, f.dir)
			return []string{"--model", tiny + "/model", "--adapter", "x=" + ad}
		}, want: []string{"adapter x", "micro-mlpq/adapter_model.safetensors", "down_proj.lora_A.weight", "another base"}},
		{name: "lora: adapter name collides with a method", setup: func(f *badFixture) []string {
			return []string{"--model", tiny + "/model", "--adapter", "forward=" + tiny + "/adapters/attn"}
		}, want: []string{`adapter name "forward"`, "collides"}},
		{name: "lora: adapter name given twice", setup: func(f *badFixture) []string {
			return []string{"--model", tiny + "/model", "--adapter", "a=" + tiny + "/adapters/attn", "--adapter", "a=" + tiny + "/adapters/mlpq"}
		}, want: []string{`adapter name "a"`, "twice"}},
		// Output paths that cannot be written.
		{name: "output directory is a file", setup: func(f *badFixture) []string {
			setRaw(f.t, f.path("file"), []byte("x"))
			return []string{"--model", tiny + "/model", "--output", f.path("file/m.pte")}
		}, want: []string{"cannot write output", "file/m.pte"}},
		{name: "output directory missing", setup: func(f *badFixture) []string {
			return []string{"--model", tiny + "/model", "--output", f.path("nope/m.pte")}
		}, want: []string{"cannot write output", "nope/m.pte"}},
		{name: "output is a directory", setup: func(f *badFixture) []string {
			require.NoError(f.t, os.MkdirAll(f.path("out/m.pte"), 0o755))
			return []string{"--model", tiny + "/model"}
		}, want: []string{"cannot write output", "out/m.pte"}},
	}
}

// manyLayers writes a model of 1024 tiny layers (hidden 8) and three
// adapters: small files, but multifunction graphs for 8 methods × 1024
// layers would take gigabytes to build.
func manyLayers(f *badFixture) []string {
	s := benchgen.Shape{Key: "deep", Name: "deep", Hidden: 8, Intermediate: 8, Layers: 1024, Heads: 1, KVHeads: 1,
		HeadDim: 8, Vocab: 8, RopeTheta: 10000, MaxPositions: 2048, RMSEps: 1e-5}
	_, err := benchgen.WriteModel(f.path("model"), s, safetensors.F16)
	require.NoError(f.t, err)
	args := []string{"--model", f.path("model"), "--multifunction", "-E", "8,0", "--linear-quantize", "c4w"}
	for _, n := range []string{"a", "b", "c"} {
		_, err := benchgen.WriteAdapter(f.path(n), s, n, benchgen.AdapterSpec{R: 2, Alpha: 4, Modules: []string{"q_proj"}})
		require.NoError(f.t, err)
		args = append(args, "--adapter", n+"="+f.path(n))
	}
	return args
}

// shardedModel copies testdata/models/llama-sharded into dir/sharded.
func shardedModel(f *badFixture) string {
	d := f.path("sharded")
	copyDir(f.t, "../../testdata/models/llama-sharded", d)
	return d
}

// editIndex rewrites the weight_map of a sharded model's index.
func editIndex(t *testing.T, dir string, fn func(wm map[string]any)) {
	editJSON(t, filepath.Join(dir, "model.safetensors.index.json"), func(m map[string]any) { fn(m["weight_map"].(map[string]any)) })
}

// hugeHeadDim writes a model whose config asks for head_dim 2^20: its
// weights are only 8 MB (sparse on disk), but the RoPE tables for the
// default context would be 10 GB.
func hugeHeadDim(f *badFixture) string {
	dir := f.path("model")
	require.NoError(f.t, os.MkdirAll(dir, 0o755))
	cfg := `{"architectures":["LlamaForCausalLM"],"hidden_size":2,"intermediate_size":2,"num_hidden_layers":1,` +
		`"num_attention_heads":1,"num_key_value_heads":1,"head_dim":1048576,"vocab_size":2}`
	setRaw(f.t, filepath.Join(dir, "config.json"), []byte(cfg))
	const hd = 1 << 20
	shapes := map[string][]int64{
		"model.embed_tokens.weight": {2, 2}, "lm_head.weight": {2, 2}, "model.norm.weight": {2},
		"model.layers.0.input_layernorm.weight": {2}, "model.layers.0.post_attention_layernorm.weight": {2},
		"model.layers.0.self_attn.q_proj.weight": {hd, 2}, "model.layers.0.self_attn.k_proj.weight": {hd, 2},
		"model.layers.0.self_attn.v_proj.weight": {hd, 2}, "model.layers.0.self_attn.o_proj.weight": {2, hd},
		"model.layers.0.mlp.gate_proj.weight": {2, 2}, "model.layers.0.mlp.up_proj.weight": {2, 2},
		"model.layers.0.mlp.down_proj.weight": {2, 2},
	}
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	h := map[string]any{}
	var off int64
	for _, n := range names {
		b := int64(2)
		for _, d := range shapes[n] {
			b *= d
		}
		h[n] = map[string]any{"dtype": "F16", "shape": shapes[n], "data_offsets": []int64{off, off + b}}
		off += b
	}
	hdr, err := json.Marshal(h)
	require.NoError(f.t, err)
	p := filepath.Join(dir, "model.safetensors")
	setRaw(f.t, p, append(binary.LittleEndian.AppendUint64(nil, uint64(len(hdr))), hdr...))
	require.NoError(f.t, os.Truncate(p, 8+int64(len(hdr))+off))
	return dir
}

// TestBadInputCatalogue runs every bad input through the CLI: exit status
// 1, exactly one error line naming the file and the field or tensor, and
// no output or temporary file left behind.
func TestBadInputCatalogue(t *testing.T) {
	cases := badCases()
	require.GreaterOrEqual(t, len(cases), 30)
	seen := map[string]bool{}
	for _, c := range cases {
		require.False(t, seen[c.name], "duplicate case %q", c.name)
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			f := &badFixture{t: t, dir: t.TempDir()}
			require.NoError(t, os.MkdirAll(f.path("out"), 0o755))
			args := append([]string{"export", "--output", f.path("out/m.pte"), "--input-len", "4", "--max-context-len", "12",
				"-E", "4,32", "--linear-quantize", "b4w", "-q"}, c.setup(f)...)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			code, stdout, stderr := runCLI(t, args...)
			runtime.ReadMemStats(&after)
			require.Equal(t, 1, code, "stderr: %s", stderr)
			require.Empty(t, stdout)
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			require.Len(t, lines, 1, "want exactly one error line, got:\n%s", stderr)
			require.True(t, strings.HasPrefix(lines[0], "lorapte: "), lines[0])
			for _, w := range c.want {
				require.Contains(t, lines[0], w)
			}
			if c.maxAlloc > 0 {
				require.Less(t, after.TotalAlloc-before.TotalAlloc, c.maxAlloc, "allocated too much before refusing")
			}
			// Nothing written: no output, no temporary file.
			entries, err := os.ReadDir(f.path("out"))
			require.NoError(t, err)
			for _, e := range entries {
				require.True(t, e.IsDir() && e.Name() == "m.pte", "left behind: %s", e.Name())
			}
			tmp, _ := filepath.Glob(filepath.Join(f.dir, "*", ".*.tmp-*"))
			require.Empty(t, tmp)
		})
	}
}

// failAfter is a writer that fails like a full disk after n bytes.
type failAfter struct {
	w io.Writer
	n int64
}

var errDiskFull = syscall.ENOSPC

func (f *failAfter) Write(p []byte) (int, error) {
	if int64(len(p)) > f.n {
		k, _ := f.w.Write(p[:f.n])
		f.n = 0
		return k, errDiskFull
	}
	f.n -= int64(len(p))
	return f.w.Write(p)
}

// TestDiskFullRemovesTemporaryFile: a write error half way through the
// export surfaces as an error naming the output, and the temporary file is
// removed; so it is when the error hits the final flush.
func TestDiskFullRemovesTemporaryFile(t *testing.T) {
	o := export.DefaultOptions()
	o.InputLen, o.MaxContextLen = 4, 12
	plan, err := export.NewPlan(export.Request{FS: os.DirFS(tiny), ModelDir: "model", Options: o,
		Adapters: []export.Adapter{{Name: "attn", FS: os.DirFS(tiny), Path: "adapters/attn"}}})
	require.NoError(t, err)
	for _, limit := range []int64{0, 100, 5000, plan.Size() / 2, plan.Size() - 1} {
		dir := t.TempDir()
		out := filepath.Join(dir, "m.pte")
		err := writeAtomicVia(out, func(w io.Writer) io.Writer { return &failAfter{w: w, n: limit} },
			func(w io.Writer) error { return plan.Write(context.Background(), w, nil) })
		require.Error(t, err, "limit %d", limit)
		require.True(t, errors.Is(err, errDiskFull), "limit %d: %v", limit, err)
		require.Contains(t, err.Error(), "writing "+out)
		require.Contains(t, err.Error(), "no space left on device")
		entries, _ := os.ReadDir(dir)
		require.Empty(t, entries, "limit %d: files left behind", limit)
	}
	// The same plan writes fine without the fault.
	dir := t.TempDir()
	out := filepath.Join(dir, "m.pte")
	require.NoError(t, writeAtomic(out, func(w io.Writer) error { return plan.Write(context.Background(), w, nil) }))
	st, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, plan.Size(), st.Size())
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{"1": 1, "512B": 512, "10KB": 10000, "3GiB": 3 << 30, "8gb": 8e9, "64 GiB": 64 << 30, "2MiB": 2 << 20, "1TB": 1e12}
	for in, want := range good {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-1", "1.5GB", "GB", "12XB", "99999999999999999999", "9999999999TiB"} {
		_, err := parseSize(in)
		require.Error(t, err, in)
	}
	code, _, stderr := runCLI(t, "export", "--model", tiny+"/model", "--max-memory", "lots")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "max-memory")
}

// TestBadPteCatalogue: corrupt .pte files given to inspect --verify exit
// with status 1 and one error line naming the file; the report names the
// failed check.
func TestBadPteCatalogue(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pte")
	code, _, stderr := runCLI(t, "export", "--model", tiny+"/model", "--output", good, "--input-len", "4", "--max-context-len", "12", "-q")
	require.Equal(t, 0, code, stderr)
	data := readFile(t, good)
	f, err := pte.Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	seg := f.SegmentOffset(f.Program.NamedData[0].Segment)
	segSize := f.Program.Segments[f.Program.NamedData[0].Segment]
	blob := data[seg : seg+segSize]
	fsys, err := inmemfs.Open(bytes.NewReader(blob), int64(len(blob)))
	require.NoError(t, err)
	at := func(p string) int64 {
		e, ok := fsys.Stat(p)
		require.True(t, ok, p)
		return seg + e.Offset
	}
	patch := func(edit func(b []byte) []byte) []byte { return edit(append([]byte(nil), data...)) }
	cases := []struct {
		name  string
		data  []byte
		err   string // the error line; "" for "verification failed"
		check string // a failed check the report lists
	}{
		{"empty", nil, "[F1]", ""},
		{"truncated program", data[:2000], "[F4]", ""},
		{"random bytes", bytes.Repeat([]byte{0xA7, 0x13, 0x5C}, 300), "[F7]", ""},
		{"truncated segments", data[:len(data)-1000], "", "[S1]"},
		{"segment base past the end", patch(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[24:], 1<<40); return b }), "", "[F5]"},
		{"delegate blob trailer", patch(func(b []byte) []byte { b[seg+segSize-3] ^= 0x55; return b }), "", "[B1]"},
		{"model.mlmodel bytes", patch(func(b []byte) []byte {
			p := at("model.mlpackage/" + mlpackage.ModelPath)
			copy(b[p:], bytes.Repeat([]byte{0xFF}, 16))
			return b
		}), "", "[B1]"},
		{"weight.bin sentinel", patch(func(b []byte) []byte { b[at("model.mlpackage/"+mlpackage.WeightPath)+64] ^= 0xFF; return b }), "", "[BLOB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".pte")
			setRaw(t, p, c.data)
			code, stdout, stderr := runCLI(t, "inspect", p, "--verify")
			require.Equal(t, 1, code, stderr)
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			require.Len(t, lines, 1, stderr)
			require.Contains(t, lines[0], p)
			if c.err != "" {
				require.Contains(t, lines[0], c.err)
			} else {
				require.Contains(t, lines[0], "verification failed")
				require.Contains(t, stdout, "FAIL "+c.check)
			}
		})
	}
}
