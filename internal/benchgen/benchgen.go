// Package benchgen generates random Hugging Face Llama-family checkpoints
// of real model shapes (config.json + model.safetensors) and PEFT LoRA
// adapters for them, for benchmarks. Nothing is committed: a 1B-shaped
// checkpoint is 2.5 GB, so files are streamed to disk header first and then
// tensor by tensor in bounded chunks; memory use is a few MB for any shape.
//
// Output is a pure function of the shape, dtype and names: element i of a
// tensor is a hash of (tensor seed, i) (splitmix64 used as a counter-based
// generator), so chunk size and write order never change the bytes.
// Weights are roughly N(0, 0.02) (bounded by ±0.07, safe for float16),
// norm weights roughly 1 ± 0.07.
package benchgen

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"lorapte/core/hf"
	"lorapte/core/quant"
	"lorapte/core/safetensors"
)

// Shape is a Llama-family model shape plus the config.json fields that go
// with it.
type Shape struct {
	Key  string // short name used on the command line, e.g. "1b"
	Name string // e.g. "Llama-3.2-1B"

	Hidden, Intermediate, Layers int
	Heads, KVHeads, HeadDim      int // HeadDim 0: Hidden/Heads
	Vocab                        int
	Tied                         bool
	RopeTheta                    float64
	RopeScaling                  *hf.RopeScaling // llama3 scaling or nil
	MaxPositions                 int
	RMSEps                       float64
}

// SmolLM2_135M is HuggingFaceTB/SmolLM2-135M's shape.
func SmolLM2_135M() Shape {
	return Shape{Key: "135m", Name: "SmolLM2-135M", Hidden: 576, Intermediate: 1536, Layers: 30, Heads: 9, KVHeads: 3,
		Vocab: 49152, Tied: true, RopeTheta: 100000, MaxPositions: 8192, RMSEps: 1e-5}
}

// SmolLM2_360M is HuggingFaceTB/SmolLM2-360M's shape.
func SmolLM2_360M() Shape {
	return Shape{Key: "360m", Name: "SmolLM2-360M", Hidden: 960, Intermediate: 2560, Layers: 32, Heads: 15, KVHeads: 5,
		Vocab: 49152, Tied: true, RopeTheta: 100000, MaxPositions: 8192, RMSEps: 1e-5}
}

// Llama32_1B is meta-llama/Llama-3.2-1B's shape.
func Llama32_1B() Shape {
	return Shape{Key: "1b", Name: "Llama-3.2-1B", Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8,
		HeadDim: 64, Vocab: 128256, Tied: true, RopeTheta: 500000, MaxPositions: 131072, RMSEps: 1e-5,
		RopeScaling: &hf.RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}}
}

// Tiny is a small shape for tests (not tied, llama3 RoPE scaling).
func Tiny() Shape {
	return Shape{Key: "tiny", Name: "tiny", Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2,
		Vocab: 96, RopeTheta: 500000, MaxPositions: 2048, RMSEps: 1e-5,
		RopeScaling: &hf.RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 64}}
}

// Presets lists the benchmark shapes, smallest first.
func Presets() []Shape { return []Shape{SmolLM2_135M(), SmolLM2_360M(), Llama32_1B()} }

// Preset finds a shape by key ("135m", "360m", "1b" or "tiny").
func Preset(key string) (Shape, error) {
	all := append(Presets(), Tiny())
	var keys []string
	for _, s := range all {
		if strings.EqualFold(s.Key, key) {
			return s, nil
		}
		keys = append(keys, s.Key)
	}
	return Shape{}, fmt.Errorf("unknown model size %q (known: %s)", key, strings.Join(keys, ", "))
}

func (s Shape) headDim() int {
	if s.HeadDim > 0 {
		return s.HeadDim
	}
	return s.Hidden / s.Heads
}

// torchDType is config.json's name for a safetensors float type.
func torchDType(dt safetensors.DType) (string, error) {
	switch dt {
	case safetensors.BF16:
		return "bfloat16", nil
	case safetensors.F16:
		return "float16", nil
	case safetensors.F32:
		return "float32", nil
	}
	return "", fmt.Errorf("benchgen: dtype %q is not a float type (BF16, F16 or F32)", dt)
}

// ConfigJSON is the model's config.json as transformers writes it for a
// LlamaForCausalLM (keys sorted).
func (s Shape) ConfigJSON(dt safetensors.DType) ([]byte, error) {
	td, err := torchDType(dt)
	if err != nil {
		return nil, err
	}
	c := map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"attention_bias":          false,
		"attention_dropout":       0.0,
		"bos_token_id":            1,
		"eos_token_id":            2,
		"head_dim":                s.headDim(),
		"hidden_act":              "silu",
		"hidden_size":             s.Hidden,
		"initializer_range":       0.02,
		"intermediate_size":       s.Intermediate,
		"max_position_embeddings": s.MaxPositions,
		"mlp_bias":                false,
		"model_type":              "llama",
		"num_attention_heads":     s.Heads,
		"num_hidden_layers":       s.Layers,
		"num_key_value_heads":     s.KVHeads,
		"pretraining_tp":          1,
		"rms_norm_eps":            s.RMSEps,
		"rope_scaling":            nil,
		"rope_theta":              s.RopeTheta,
		"tie_word_embeddings":     s.Tied,
		"torch_dtype":             td,
		"use_cache":               true,
		"vocab_size":              s.Vocab,
	}
	if r := s.RopeScaling; r != nil {
		c["rope_scaling"] = map[string]any{"factor": r.Factor, "high_freq_factor": r.HighFreqFactor,
			"low_freq_factor": r.LowFreqFactor, "original_max_position_embeddings": r.OriginalMaxPos, "rope_type": r.Type}
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Config parses ConfigJSON with the exporter's own parser, so the tensor
// list always matches what the exporter expects.
func (s Shape) Config(dt safetensors.DType) (*hf.Config, error) {
	data, err := s.ConfigJSON(dt)
	if err != nil {
		return nil, err
	}
	return hf.ParseConfig(data, s.Name+"/config.json")
}

// Params is the number of stored parameters.
func (s Shape) Params() (int64, error) {
	cfg, err := s.Config(safetensors.BF16)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range hf.ExpectedTensors(cfg) {
		n += numel(t.Shape)
	}
	return n, nil
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// kind selects a tensor's value distribution.
type kind int

const (
	kindWeight kind = iota // ≈N(0, 0.02)
	kindNorm               // 1 + ≈N(0, 0.02)
)

// tensor is one tensor to generate.
type tensor struct {
	name  string
	dtype safetensors.DType
	shape []int64
	kind  kind
	seed  uint64
}

func seedOf(label string) uint64 {
	h := fnv.New64a()
	io.WriteString(h, label)
	return h.Sum64()
}

// Sum of the four 16-bit lanes of a 64-bit hash: an Irwin-Hall(4) variable,
// bell-shaped with mean 4*65535/2 and standard deviation 65536/sqrt(3).
const (
	laneMean = 2 * 65535
	laneSD   = 65536 / 1.7320508075688772
	weightSD = 0.02
	unit     = float32(weightSD / laneSD)
)

// value is element i of a tensor seeded with seed: splitmix64's output for
// counter i, so any element can be computed independently.
func value(seed uint64, i int64, k kind) float32 {
	z := seed + uint64(i+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	sum := int32(z&0xffff) + int32(z>>16&0xffff) + int32(z>>32&0xffff) + int32(z>>48)
	v := float32(sum-laneMean) * unit
	if k == kindNorm {
		v++
	}
	return v
}

// fill encodes elements [i0, i0+len(dst)/size) of t into dst.
func (t *tensor) fill(dst []byte, i0 int64) {
	switch t.dtype {
	case safetensors.BF16:
		for j := 0; j < len(dst)/2; j++ {
			binary.LittleEndian.PutUint16(dst[2*j:], quant.F32ToBF16(value(t.seed, i0+int64(j), t.kind)))
		}
	case safetensors.F16:
		for j := 0; j < len(dst)/2; j++ {
			binary.LittleEndian.PutUint16(dst[2*j:], quant.F32ToF16(value(t.seed, i0+int64(j), t.kind)))
		}
	default:
		for j := 0; j < len(dst)/4; j++ {
			binary.LittleEndian.PutUint32(dst[4*j:], math.Float32bits(value(t.seed, i0+int64(j), t.kind)))
		}
	}
}

// defaultChunk is the number of bytes generated at a time.
const defaultChunk = 4 << 20

// writeSafetensors streams a safetensors file: header (tensors sorted by
// name, __metadata__ {"format":"pt"}, padded with spaces to 8 bytes), then
// the data in the same order, chunk bytes at a time.
func writeSafetensors(w io.Writer, ts []tensor, chunk int) (int64, error) {
	ts = append([]tensor(nil), ts...)
	sort.Slice(ts, func(a, b int) bool { return ts[a].name < ts[b].name })
	infos := make([]safetensors.Tensor, len(ts))
	var off int64
	for i, t := range ts {
		infos[i] = safetensors.Tensor{Name: t.name, DType: t.dtype, Shape: t.shape}
		off += infos[i].Bytes()
	}
	hdr, err := safetensors.EncodeHeader(infos, map[string]string{"format": "pt"})
	if err != nil {
		return 0, fmt.Errorf("benchgen: %w", err)
	}
	if _, err := w.Write(hdr); err != nil {
		return 0, err
	}
	chunk &^= 3 // whole elements of any size
	if chunk < 4 {
		chunk = 4
	}
	buf := make([]byte, chunk)
	for _, t := range ts {
		es := int64(t.dtype.Size())
		total := numel(t.shape) * es
		for done := int64(0); done < total; {
			n := min(int64(chunk), total-done)
			t.fill(buf[:n], done/es)
			if _, err := w.Write(buf[:n]); err != nil {
				return 0, err
			}
			done += n
		}
	}
	return int64(len(hdr)) + off, nil
}

// modelTensors lists the checkpoint's tensors, seeded by shape name and
// tensor name.
func modelTensors(s Shape, dt safetensors.DType) ([]tensor, error) {
	cfg, err := s.Config(dt)
	if err != nil {
		return nil, err
	}
	var ts []tensor
	for _, spec := range hf.ExpectedTensors(cfg) {
		k := kindWeight
		if strings.HasSuffix(spec.Name, "norm.weight") {
			k = kindNorm
		}
		ts = append(ts, tensor{name: spec.Name, dtype: dt, shape: spec.Shape, kind: k, seed: seedOf(s.Name + "/" + spec.Name)})
	}
	return ts, nil
}

// writeFile creates path and streams fn's output into it through a 1 MB
// buffer.
func writeFile(path string, fn func(io.Writer) (int64, error)) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	n, err := fn(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("benchgen: writing %s: %w", path, err)
	}
	return n, nil
}

// WriteModel writes dir/config.json and dir/model.safetensors (creating
// dir) and returns the bytes written.
func WriteModel(dir string, s Shape, dt safetensors.DType) (int64, error) {
	return writeModel(dir, s, dt, defaultChunk)
}

func writeModel(dir string, s Shape, dt safetensors.DType, chunk int) (int64, error) {
	cfg, err := s.ConfigJSON(dt)
	if err != nil {
		return 0, err
	}
	ts, err := modelTensors(s, dt)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		return 0, err
	}
	n, err := writeFile(filepath.Join(dir, safetensors.SingleFile), func(w io.Writer) (int64, error) {
		return writeSafetensors(w, ts, chunk)
	})
	return n + int64(len(cfg)), err
}
