// Package export turns a Hugging Face model folder and LoRA adapters into an
// ExecuTorch .pte delegated to Core ML. It is the one API both front ends
// (the CLI and the browser) call.
//
// Data flows one way: read headers and configs → plan every method, Core ML
// program, weight blob and file offset → stream tensor data into the sink.
// Nothing holds a whole checkpoint or the whole output in memory.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"

	"lorapte/core/hf"
	"lorapte/core/lora"
	"lorapte/core/quant"
	"lorapte/core/safetensors"
)

// ToolVersion goes into content identifiers so a new lorapte release never
// reuses a device's compiled-model cache entry from an older one.
const ToolVersion = "lorapte 0.1.0"

// Options mirror the flags of ExecuTorch's export_static_llm_coreml.py.
type Options struct {
	Multifunction     bool
	DType             string // "fp16" (default) or "fp32"
	MaxContextLen     int
	InputLen          int
	EmbeddingQuantize string // "8,0", "4,32" or "none"
	LinearQuantize    string // "c4w", "b4w" or "none"
	TargetSplitSize   int
	MaxSplits         int
	NoGraphBreaks     bool

	// Limits checked before any tensor data is converted (0 = default:
	// DefaultMaxOutputBytes, DefaultMaxMemoryBytes).
	MaxOutputBytes int64
	MaxMemoryBytes int64

	embScheme, linScheme *quant.Scheme
}

// DefaultOptions are the Python script's defaults.
func DefaultOptions() Options {
	return Options{DType: "fp16", MaxContextLen: 1024, InputLen: 32, EmbeddingQuantize: "8,0",
		LinearQuantize: "c4w", TargetSplitSize: 1024, MaxSplits: 8}
}

func (o *Options) parse() error {
	if o.DType != "fp16" && o.DType != "fp32" {
		return fmt.Errorf("--dtype %q: want fp16 or fp32", o.DType)
	}
	var err error
	if o.embScheme, err = quant.ParseEmbedding(o.EmbeddingQuantize); err != nil {
		return fmt.Errorf("--embedding-quantize: %w", err)
	}
	if o.linScheme, err = quant.ParseLinear(o.LinearQuantize); err != nil {
		return fmt.Errorf("--linear-quantize: %w", err)
	}
	return nil
}

// Adapter names one LoRA adapter: Path is a folder holding
// adapter_config.json and adapter_model.safetensors, or the .safetensors
// file itself with adapter_config.json beside it.
type Adapter struct {
	Name string
	FS   fs.FS
	Path string
}

// Request is one export job. Model files are read through FS, whose files
// must implement io.ReaderAt (os.DirFS and the browser's File bridge do).
type Request struct {
	FS       fs.FS
	ModelDir string
	Adapters []Adapter
	Options  Options

	// Base, when set, replaces FS/ModelDir: the base comes from a cache
	// entry and its converted blobs from BaseBlobs.
	Base      *BaseManifest
	BaseBlobs BlobSource
	// SaveBase, when set, receives the converted base blobs during Write.
	SaveBase BlobSink

	// Workers is how many pieces of a tensor are converted at once: 0 means
	// GOMAXPROCS. The browser, whose wasm has one thread, passes the size
	// of its worker pool (its files convert pieces there, PieceConverter).
	// The output does not depend on it.
	Workers int
}

// Progress reports a stage and how far it is (bytes for "write").
type Progress func(stage string, done, total int64)

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidateAdapterName checks an adapter name against the method names it
// would create; the page uses the same rules for live validation.
func ValidateAdapterName(name string, multifunction bool, others []string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("adapter name %q: must match [A-Za-z_][A-Za-z0-9_]*", name)
	}
	taken := map[string]string{}
	for _, c := range constantMethodNames(true, multifunction) {
		taken[c] = "a constant method"
	}
	taken["forward"], taken["prefill"] = "the base model's method", "the base model's method"
	if name == "forward" || name == "prefill" {
		return fmt.Errorf("adapter name %q collides with the base model's %s method", name, name)
	}
	if what, ok := taken[name]; ok {
		return fmt.Errorf("adapter name %q collides with %s", name, what)
	}
	mine := []string{name}
	if multifunction {
		mine = []string{name + "_forward", name + "_prefill"}
	}
	for _, o := range others {
		if o == name {
			return fmt.Errorf("adapter name %q is given twice", name)
		}
		if multifunction {
			taken[o+"_forward"], taken[o+"_prefill"] = "adapter "+o+"'s method", "adapter "+o+"'s method"
		} else {
			taken[o] = "adapter " + o + "'s method"
		}
	}
	for _, m := range mine {
		if what, ok := taken[m]; ok {
			return fmt.Errorf("adapter name %q: method %q collides with %s", name, m, what)
		}
	}
	return nil
}

// Export plans and writes the .pte to w.
func Export(ctx context.Context, req Request, w io.Writer, progress Progress) error {
	p, err := NewPlan(req)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Write(ctx, w, progress)
}

func loadModelConfig(fsys fs.FS, dir string) (*hf.Config, []byte, *safetensors.Source, error) {
	cfgPath := path.Join(dir, "config.json")
	f, err := fsys.Open(cfgPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil, fmt.Errorf("%s: not found (a Hugging Face model folder needs config.json)", cfgPath)
		}
		return nil, nil, nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	// Bound the read before allocating: a config is a few KB.
	data, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	f.Close()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	if len(data) > 1<<20 {
		return nil, nil, nil, fmt.Errorf("%s: larger than 1 MiB, too large for a model config", cfgPath)
	}
	cfg, err := hf.ParseConfig(data, cfgPath)
	if err != nil {
		return nil, nil, nil, err
	}
	src, err := safetensors.OpenFS(fsys, dir)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := hf.CheckWeights(cfg, src); err != nil {
		return nil, nil, nil, err
	}
	return cfg, data, src, nil
}

// loadAdapters validates names and reads every adapter's config and headers.
func loadAdapters(cfg *hf.Config, base *safetensors.Source, req *Request) (map[string]*lora.Adapter, []string, error) {
	out := map[string]*lora.Adapter{}
	var names []string
	for _, a := range req.Adapters {
		if err := ValidateAdapterName(a.Name, req.Options.Multifunction, names); err != nil {
			return nil, nil, err
		}
		ad, err := lora.Load(a.Name, a.FS, a.Path, cfg)
		if err != nil {
			return nil, nil, err
		}
		out[a.Name] = ad
		names = append(names, a.Name)
	}
	return out, names, nil
}
