package export

import (
	"fmt"
	"sort"
	"strings"

	"lorapte/core/hf"
	"lorapte/core/quant"
)

// Resource limits. NewPlan refuses a job whose output or peak memory would
// exceed them before any tensor data is converted, so a hostile or simply
// too large input fails with a clear message instead of exhausting memory
// or disk half way. The memory default is the browser's budget (a wasm
// heap cannot grow much past 4 GiB).
const (
	DefaultMaxOutputBytes = 64 << 30
	DefaultMaxMemoryBytes = 3 << 30
)

// Buffering of the front ends that is not visible to the plan: the
// browser's read-ahead window per open file and its output part buffer
// (the CLI buffers 1 MiB of output and reads without a window).
const (
	readAheadPerFile = 4 << 20
	outputBuffer     = 8 << 20
)

// specOverhead relates the serialized Core ML specs to the memory the plan
// keeps for them (the MIL graphs stay reachable from the weight plans):
// measured at about 20× on the tiny fixture, where fixed costs dominate.
const specOverhead = 24

// specBytesPerLayer is the serialized Core ML spec per decoder layer and
// method (measured 22 KB, 29 KB with LoRA): the estimate before planning,
// so that a config with many layers and methods is refused before its
// graphs are built.
const specBytesPerLayer = 24 << 10

// gcHeadroom: Go's collector lets the heap grow to about twice the live
// data (GOGC=100) before it runs, and the encoder produces garbage per chunk.
const gcHeadroom = 2

// MemoryEstimate is the peak memory of an export by component, in bytes of
// live data; Total adds the collector's headroom.
type MemoryEstimate struct {
	Chunks    int64 // the encoder's buffers for the largest chunk of rows it converts
	Scales    int64 // the largest quantization scale buffer (held for a whole tensor)
	Constants int64 // the RoPE tables (freqs_cos/freqs_sin) while the constant segment is built
	Specs     int64 // model specs, metadata, program and constant segment held by the plan
	Headers   int64 // safetensors headers and their parsed index
	ReadAhead int64 // read-ahead windows and the output buffer of the front ends
}

// Live is the sum of the components.
func (m MemoryEstimate) Live() int64 {
	return m.Chunks + m.Scales + m.Constants + m.Specs + m.Headers + m.ReadAhead
}

// Total is the estimated peak heap: live data plus the collector's headroom.
func (m MemoryEstimate) Total() int64 { return gcHeadroom * m.Live() }

// largest names the biggest component, for error messages.
func (m MemoryEstimate) largest() (string, int64) {
	parts := []struct {
		name string
		n    int64
	}{{"encoder chunk buffers", m.Chunks}, {"quantization scales", m.Scales}, {"RoPE tables", m.Constants},
		{"Core ML specs and program", m.Specs}, {"safetensors headers", m.Headers}, {"read-ahead and output buffers", m.ReadAhead}}
	sort.SliceStable(parts, func(i, j int) bool { return parts[i].n > parts[j].n })
	return parts[0].name, parts[0].n
}

// limits returns the effective limits (0 = default).
func (o *Options) limits() (output, memory int64) {
	output, memory = o.MaxOutputBytes, o.MaxMemoryBytes
	if output <= 0 {
		output = DefaultMaxOutputBytes
	}
	if memory <= 0 {
		memory = DefaultMaxMemoryBytes
	}
	return output, memory
}

// matrixShape is one 2-D weight as the encoder converts it; inField is
// the config.json field that sets its input features.
type matrixShape struct {
	name       string
	rows, cols int64
	scheme     *quant.Scheme
	inField    string
}

// matrices lists the shapes the encoder converts for cfg (one layer is
// enough: all layers are alike), each with the scheme it gets.
func matrices(cfg *hf.Config, o *Options) []matrixShape {
	d, f, v := int64(cfg.Hidden), int64(cfg.Intermediate), int64(cfg.Vocab)
	q, kv := int64(cfg.Heads*cfg.HeadDim), int64(cfg.KVHeads*cfg.HeadDim)
	l := func(part string) string { return hf.LayerName(0, part) }
	const hid, heads, inter = "hidden_size", "num_attention_heads × head_dim", "intermediate_size"
	return []matrixShape{
		{hf.EmbedName, v, d, o.embScheme, hid},
		{l("self_attn.q_proj.weight"), q, d, o.linScheme, hid},
		{l("self_attn.k_proj.weight"), kv, d, o.linScheme, hid},
		{l("self_attn.v_proj.weight"), kv, d, o.linScheme, hid},
		{l("self_attn.o_proj.weight"), d, q, o.linScheme, heads},
		{l("mlp.gate_proj.weight"), f, d, o.linScheme, hid},
		{l("mlp.up_proj.weight"), f, d, o.linScheme, hid},
		{l("mlp.down_proj.weight"), d, f, o.linScheme, inter},
		{hf.LMHeadName, v, d, o.linScheme, hid},
	}
}

// checkQuantShapes refuses a quantization whose group size does not divide
// a weight's input features; the graph could not be built otherwise.
func checkQuantShapes(cfg *hf.Config, o *Options, cfgFile string) error {
	for _, m := range matrices(cfg, o) {
		if m.scheme == nil {
			continue
		}
		if _, err := m.scheme.ScaleCount(int(m.cols)); err != nil {
			flag := "--linear-quantize " + o.LinearQuantize
			if m.name == hf.EmbedName {
				flag = "--embedding-quantize " + o.EmbeddingQuantize
			}
			return fmt.Errorf("%s: tensor %s has %d input features (%s in %s): %v", flag, m.name, m.cols, m.inField, cfgFile,
				strings.TrimPrefix(err.Error(), "quant: "))
		}
	}
	return nil
}

// estimateMemory estimates peak memory from the config and options alone;
// specBytes (0 before planning) and headerBytes add what the plan holds.
func estimateMemory(cfg *hf.Config, o *Options, files int, headerBytes, specBytes int64) MemoryEstimate {
	var m MemoryEstimate
	fes := int64(2) // bytes per float element in the output
	if o.DType == "fp32" {
		fes = 4
	}
	for _, x := range matrices(cfg, o) {
		// Mirrors the encoder (convert.go): a chunk of n values, split
		// between the workers, costs the source bytes (up to 4n), float32
		// values (4n) and int8 codes (n), plus two alternating output
		// buffers of up to 4n each: 17n at most, which also covers the
		// single-goroutine reference loop.
		rows := int64(chunkRows(int(x.cols)))
		if rows > x.rows {
			rows = x.rows
		}
		if c := 17 * rows * x.cols; c > m.Chunks {
			m.Chunks = c
		}
		if x.scheme != nil {
			groups, _ := x.scheme.ScaleCount(int(x.cols))
			// The scales of the whole tensor, then their encoded copy.
			if s := 2 * x.rows * int64(groups) * fes; s > m.Scales {
				m.Scales = s
			}
		}
	}
	// Vectors (norms, biases) are read whole as float32.
	if v := 4 * int64(max(cfg.Hidden, cfg.Intermediate, cfg.Heads*cfg.HeadDim)); v > m.Chunks {
		m.Chunks = v
	}
	// hf.RopeTables: two float32 tables, then their encoded form three times
	// (encoded, added to the segment builder, concatenated by Finish).
	n := int64(o.MaxContextLen) * int64(cfg.HeadDim/2)
	m.Constants = 2 * n * (4 + 3*fes)
	m.Specs = specOverhead * specBytes
	m.Headers = 4 * headerBytes
	m.ReadAhead = int64(files)*readAheadPerFile + outputBuffer
	return m
}

// checkMemory refuses an estimate above the limit, naming its largest part
// and the flag that raises the limit.
func checkMemory(m MemoryEstimate, limit int64, cfgFile string, cfg *hf.Config, o *Options, methods int) error {
	if m.Total() <= limit {
		return nil
	}
	what, n := m.largest()
	detail := ""
	if what == "RoPE tables" {
		detail = fmt.Sprintf(", from head_dim %d in %s × --max-context-len %d", cfg.HeadDim, cfgFile, o.MaxContextLen)
	} else if what == "quantization scales" || what == "encoder chunk buffers" {
		detail = fmt.Sprintf(", from the weight shapes in %s (hidden_size %d, intermediate_size %d, vocab_size %d)",
			cfgFile, cfg.Hidden, cfg.Intermediate, cfg.Vocab)
	} else if what == "Core ML specs and program" {
		detail = fmt.Sprintf(", from num_hidden_layers %d in %s × %d methods", cfg.Layers, cfgFile, methods)
	}
	return fmt.Errorf("estimated peak memory %s is above the %s limit (largest part: %s, %s%s); raise the limit with --max-memory",
		HumanBytes(m.Total()), HumanBytes(limit), what, HumanBytes(n), detail)
}

// checkOutput refuses an output above the limit.
func checkOutput(size, limit int64) error {
	if size <= limit {
		return nil
	}
	return fmt.Errorf("the .pte would be %s, above the %s output limit; raise the limit with --max-output-size", HumanBytes(size), HumanBytes(limit))
}

// Memory estimates the peak memory of Write (see MemoryEstimate).
func (p *Plan) Memory() MemoryEstimate { return p.memory }

// planBytes sums what the plan keeps in memory besides the MIL graphs'
// own structures.
func (p *Plan) planBytes() int64 {
	n := int64(len(p.consts)) + int64(len(p.configJSON))
	for _, c := range p.cmjr {
		n += int64(len(c))
	}
	for _, pp := range p.parts {
		n += int64(len(pp.model) + len(pp.metadata) + len(pp.manifest))
	}
	return n
}

// sourceStats counts the open files and header bytes of the base and
// adapters.
func (p *Plan) sourceStats() (files int, headers int64) {
	if p.base != nil {
		for _, f := range p.base.Files() {
			files++
			headers += int64(len(f.Header()))
		}
	}
	for _, ad := range p.adapters {
		for _, f := range ad.Source.Files() {
			files++
			headers += int64(len(f.Header()))
		}
	}
	return files, headers
}

// HumanBytes formats a byte count for messages (KiB/MiB/GiB).
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
