// Package testgen generates lorapte's synthetic test models: tiny Hugging
// Face checkpoints (config.json + safetensors) covering the architectures
// and storage variants lorapte supports, plus PEFT LoRA adapters. Output is
// a pure function of the code: a fixed-seed PRNG per tensor, values on a
// 1/256 grid so they are exact in float16 and bfloat16.
//
// The files are committed under testdata/models; cmd/gentestdata rewrites
// them and a test checks that they are up to date.
package testgen

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"

	"lorapte/core/quant"
	"lorapte/core/safetensors"
)

// File is one generated file; Path is slash-separated, relative to the
// testdata directory.
type File struct {
	Path string
	Data []byte
}

// Shared tiny dimensions (the spec's tiny-llama sizes).
const (
	hidden       = 64
	intermediate = 128
	layers       = 2
	heads        = 4
	kvHeads      = 2
	vocab        = 128
)

// rng is splitmix64: tiny, fast and fully specified.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// step returns an integer uniform in [-n, n].
func (r *rng) step(n int) int { return int(r.next()%uint64(2*n+1)) - n }

// newRng seeds a generator from a label, so each tensor's values depend
// only on its model and name, not on generation order.
func newRng(label string) *rng {
	h := fnv.New64a()
	h.Write([]byte(label))
	return &rng{s: h.Sum64()}
}

// kind selects the value distribution of a tensor.
type kind int

const (
	kindWeight kind = iota // k/256, |k| <= 40: about ±0.16
	kindEmbed              // k/256, |k| <= 51: about ±0.2
	kindBias               // k/256, |k| <= 26, never 0
	kindNorm               // 1 + k/128, |k| <= 16 (exact in bf16 too)
	kindLoraA              // k/256, |k| <= 26
	kindLoraB              // k/256, |k| <= 13, never 0
)

func values(label string, n int, k kind) []float32 {
	r := newRng(label)
	v := make([]float32, n)
	for i := range v {
		switch k {
		case kindWeight:
			v[i] = float32(r.step(40)) / 256
		case kindEmbed:
			v[i] = float32(r.step(51)) / 256
		case kindBias, kindLoraB:
			lim := 26
			if k == kindLoraB {
				lim = 13
			}
			s := r.step(lim - 1)
			if s >= 0 {
				s++ // skip 0 so every element is non-zero
			}
			v[i] = float32(s) / 256
		case kindNorm:
			v[i] = 1 + float32(r.step(16))/128
		case kindLoraA:
			v[i] = float32(r.step(26)) / 256
		}
	}
	return v
}

func encode(v []float32, dt safetensors.DType) []byte {
	switch dt {
	case safetensors.F16, safetensors.BF16:
		b := make([]byte, 2*len(v))
		for i, x := range v {
			h := quant.F32ToF16(x)
			if dt == safetensors.BF16 {
				h = quant.F32ToBF16(x)
			}
			binary.LittleEndian.PutUint16(b[2*i:], h)
		}
		return b
	}
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// model describes one generated checkpoint.
type model struct {
	dir      string
	arch     string
	mtype    string
	dtype    safetensors.DType
	torchDT  string
	headDim  int
	tied     bool
	qkvBias  bool
	qkNorm   bool
	theta    float64
	eps      float64
	extra    []kv // more config.json fields, after the common ones
	shardAt  int  // > 0: tensors of layers >= shardAt (and the head) go to shard 2
	adapters []adapter
}

type kv struct {
	k string
	v any
}

func models() []model {
	return []model{
		{
			dir: "models/llama-tied-bf16", arch: "LlamaForCausalLM", mtype: "llama",
			dtype: safetensors.BF16, torchDT: "bfloat16", headDim: 16, tied: true, theta: 500000, eps: 1e-5,
			// orig 64 with theta 5e5 and hd 16: inv_freq 0 unchanged, 1 smoothed, 2..7 divided.
			extra: []kv{
				{"attention_bias", false}, {"mlp_bias", false},
				{"rope_scaling", map[string]any{"factor": pyFloat(32), "high_freq_factor": pyFloat(4), "low_freq_factor": pyFloat(1), "original_max_position_embeddings": 64, "rope_type": "llama3"}},
			},
		},
		{
			dir: "models/qwen2-bias", arch: "Qwen2ForCausalLM", mtype: "qwen2",
			dtype: safetensors.F16, torchDT: "float16", headDim: 16, qkvBias: true, theta: 1000000, eps: 1e-6,
			extra:    []kv{{"max_window_layers", 2}, {"rope_scaling", nil}, {"sliding_window", 4096}, {"use_sliding_window", false}},
			adapters: qwen2Adapters(),
		},
		{
			dir: "models/qwen3-qknorm", arch: "Qwen3ForCausalLM", mtype: "qwen3",
			dtype: safetensors.F32, torchDT: "float32", headDim: 32, tied: true, qkNorm: true, theta: 1000000, eps: 1e-6,
			extra: []kv{{"attention_bias", false}, {"rope_scaling", nil}, {"use_sliding_window", false}},
		},
		{
			dir: "models/llama-sharded", arch: "LlamaForCausalLM", mtype: "llama",
			dtype: safetensors.F32, torchDT: "float32", headDim: 16, theta: 10000, eps: 1e-5, shardAt: 1,
			extra: []kv{{"attention_bias", false}, {"mlp_bias", false}, {"rope_scaling", nil}},
		},
	}
}

// configJSON writes config.json with keys in a fixed, readable order.
func (m model) configJSON() []byte {
	fields := []kv{
		{"architectures", []string{m.arch}},
		{"model_type", m.mtype},
		{"hidden_size", hidden},
		{"intermediate_size", intermediate},
		{"num_hidden_layers", layers},
		{"num_attention_heads", heads},
		{"num_key_value_heads", kvHeads},
		{"head_dim", m.headDim},
		{"vocab_size", vocab},
		{"max_position_embeddings", 2048},
		{"rms_norm_eps", pyFloat(m.eps)},
		{"rope_theta", pyFloat(m.theta)},
		{"hidden_act", "silu"},
		{"tie_word_embeddings", m.tied},
		{"torch_dtype", m.torchDT},
		{"bos_token_id", 1},
		{"eos_token_id", 2},
	}
	return orderedJSON(append(fields, m.extra...))
}

// pyFloat formats a float as Python's json module does (32.0, 1e-05), as
// real config.json files have it.
func pyFloat(f float64) json.Number {
	if f == math.Trunc(f) && math.Abs(f) < 1e16 {
		return json.Number(strconv.FormatFloat(f, 'f', 1, 64))
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
}

func orderedJSON(fields []kv) []byte {
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, f := range fields {
		v, err := json.MarshalIndent(f.v, "  ", "  ")
		if err != nil {
			panic(err) // only fixed Go values are marshalled
		}
		k, _ := json.Marshal(f.k)
		fmt.Fprintf(&b, "  %s: %s", k, v)
		if i < len(fields)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// tensors lists the checkpoint tensors (HF names) with their layer (-1 for
// embedding, -2 for final norm and head).
type genTensor struct {
	layer int
	t     safetensors.Tensor
}

func (m model) tensors() []genTensor {
	var out []genTensor
	add := func(layer int, name string, k kind, shape ...int64) {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := values(m.dir+"/"+name, int(n), k)
		out = append(out, genTensor{layer, safetensors.Tensor{Name: name, DType: m.dtype, Shape: shape, Data: encode(v, m.dtype)}})
	}
	q, kvd := int64(heads*m.headDim), int64(kvHeads*m.headDim)
	add(-1, "model.embed_tokens.weight", kindEmbed, vocab, hidden)
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(i, p+"input_layernorm.weight", kindNorm, hidden)
		add(i, p+"self_attn.q_proj.weight", kindWeight, q, hidden)
		add(i, p+"self_attn.k_proj.weight", kindWeight, kvd, hidden)
		add(i, p+"self_attn.v_proj.weight", kindWeight, kvd, hidden)
		add(i, p+"self_attn.o_proj.weight", kindWeight, hidden, q)
		if m.qkvBias {
			add(i, p+"self_attn.q_proj.bias", kindBias, q)
			add(i, p+"self_attn.k_proj.bias", kindBias, kvd)
			add(i, p+"self_attn.v_proj.bias", kindBias, kvd)
		}
		if m.qkNorm {
			add(i, p+"self_attn.q_norm.weight", kindNorm, int64(m.headDim))
			add(i, p+"self_attn.k_norm.weight", kindNorm, int64(m.headDim))
		}
		add(i, p+"post_attention_layernorm.weight", kindNorm, hidden)
		add(i, p+"mlp.gate_proj.weight", kindWeight, intermediate, hidden)
		add(i, p+"mlp.up_proj.weight", kindWeight, intermediate, hidden)
		add(i, p+"mlp.down_proj.weight", kindWeight, hidden, intermediate)
	}
	add(-2, "model.norm.weight", kindNorm, hidden)
	if !m.tied {
		add(-2, "lm_head.weight", kindEmbed, vocab, hidden)
	}
	return out
}

func writeST(ts []safetensors.Tensor) []byte {
	var b bytes.Buffer
	if err := safetensors.Write(&b, ts, map[string]string{"format": "pt"}); err != nil {
		panic(err) // generated tensors are consistent by construction
	}
	return b.Bytes()
}

func (m model) files() []File {
	out := []File{{path.Join(m.dir, "config.json"), m.configJSON()}}
	all := m.tensors()
	if m.shardAt <= 0 {
		ts := make([]safetensors.Tensor, len(all))
		for i, g := range all {
			ts[i] = g.t
		}
		out = append(out, File{path.Join(m.dir, safetensors.SingleFile), writeST(ts)})
	} else {
		names := [2]string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
		var shards [2][]safetensors.Tensor
		weightMap := map[string]string{}
		var total int64
		for _, g := range all {
			s := 0
			if g.layer >= m.shardAt || g.layer == -2 {
				s = 1
			}
			shards[s] = append(shards[s], g.t)
			weightMap[g.t.Name] = names[s]
			total += int64(len(g.t.Data))
		}
		for s := range shards {
			out = append(out, File{path.Join(m.dir, names[s]), writeST(shards[s])})
		}
		idx := orderedJSON([]kv{{"metadata", map[string]any{"total_size": total}}, {"weight_map", weightMap}})
		out = append(out, File{path.Join(m.dir, safetensors.IndexFile), idx})
	}
	for _, a := range m.adapters {
		out = append(out, a.files(m)...)
	}
	return out
}

// Files returns every generated file, sorted by path.
func Files() []File {
	out := []File{{"models/README.md", []byte(readme)}}
	for _, m := range models() {
		out = append(out, m.files()...)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Path < out[b].Path })
	return out
}

// WriteAll writes every file under root (the testdata directory).
func WriteAll(root string) error {
	for _, f := range Files() {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
