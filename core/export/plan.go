package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"

	"lorapte/core/hf"
	"lorapte/core/inmemfs"
	"lorapte/core/llama"
	"lorapte/core/lora"
	"lorapte/core/mil"
	"lorapte/core/milblob"
	"lorapte/core/mlpackage"
	"lorapte/core/pte"
	"lorapte/core/safetensors"
)

// Paths inside each Core ML delegate blob (pte.md §5.3).
const (
	metadataPath = "metadata.json"
	pkgDir       = "model.mlpackage/"
	manifestPath = pkgDir + mlpackage.ManifestPath
	modelPath    = pkgDir + mlpackage.ModelPath
	weightPath   = pkgDir + mlpackage.WeightPath
)

// part is one planned Core ML partition.
type part struct {
	kind       llama.Part
	weights    *weightPlan
	fns        []llama.Function
	model      []byte // model.mlmodel
	identifier string // "executorch_<hex>"
	metadata   []byte
	manifest   []byte
	blob       *inmemfs.Layout
	segment    int // named-data segment index
}

// Plan is a fully planned export: every size and offset is known.
type Plan struct {
	cfg          *hf.Config
	spec         *llama.Spec
	opts         Options
	base         *safetensors.Source
	adapters     map[string]*lora.Adapter
	digest       []byte
	parts        []*part
	consts       []byte // constant segment
	constOffsets []uint64
	configJSON   []byte
	modelName    string
	baseDigest   []byte
	baseBlobs    BlobSource
	saveBase     BlobSink
	workers      int // conversion workers (Request.Workers)
	cmjr         [][]byte
	program      *pte.Program
	layout       *pte.Layout
	memory       MemoryEstimate
}

// NewPlan reads configs and safetensors headers (no tensor data besides
// the digest samples) and plans the whole file.
func NewPlan(req Request) (*Plan, error) {
	o := req.Options
	if err := o.parse(); err != nil {
		return nil, err
	}
	var (
		cfg        *hf.Config
		base       *safetensors.Source
		configJSON []byte
		baseDigest []byte
		name       = req.ModelDir
		err        error
	)
	if req.Base != nil {
		if req.BaseBlobs == nil {
			return nil, fmt.Errorf("cached base %s: no blob source", req.Base.Name)
		}
		cfg, base, err = loadCachedBase(req.Base)
		configJSON, baseDigest, name = req.Base.Config, req.Base.Digest, req.Base.Name
	} else {
		cfg, configJSON, base, err = loadModelConfig(req.FS, req.ModelDir)
	}
	if err != nil {
		return nil, err
	}
	adapters, names, err := loadAdapters(cfg, base, &req)
	if err != nil {
		return nil, err
	}
	spec := &llama.Spec{Cfg: cfg, Adapters: names, Opts: llama.Options{
		Multifunction: o.Multifunction, FP32: o.DType == "fp32", MaxContextLen: o.MaxContextLen,
		InputLen: o.InputLen, GraphBreaks: !o.NoGraphBreaks, TargetSplitSize: o.TargetSplitSize, MaxSplits: o.MaxSplits,
	}}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	// Refuse what cannot be built or would not fit before planning: the
	// RoPE tables alone can be huge for an absurd head_dim.
	maxOut, maxMem := o.limits()
	cfgFile := path.Join(name, "config.json")
	early := int64(cfg.Layers) * int64(len(spec.Methods())) * specBytesPerLayer
	if err := checkMemory(estimateMemory(cfg, &o, 0, 0, early), maxMem, cfgFile, cfg, &o, len(spec.Methods())); err != nil {
		return nil, err
	}
	if err := checkQuantShapes(cfg, &o, cfgFile); err != nil {
		return nil, err
	}
	p := &Plan{cfg: cfg, spec: spec, opts: o, base: base, adapters: adapters, configJSON: configJSON,
		modelName: name, baseBlobs: req.BaseBlobs, saveBase: req.SaveBase, workers: max(req.Workers, 0)}
	if req.Base != nil {
		if got := baseKey(baseDigest, &o); got != req.Base.Key {
			return nil, fmt.Errorf("cached base %s was converted with other options (dtype, quantization, splits or graph breaks); export it again from its files", name)
		}
		p.baseBlobs = req.BaseBlobs
	} else if baseDigest, err = baseContentDigest(base); err != nil {
		return nil, err
	}
	p.baseDigest = baseDigest
	if p.digest, err = digest(req, baseDigest, adapters, &o); err != nil {
		return nil, err
	}
	for i, kind := range spec.Parts() {
		pp, err := p.planPart(i, kind)
		if err != nil {
			return nil, err
		}
		p.parts = append(p.parts, pp)
	}
	if err := p.planProgram(); err != nil {
		return nil, err
	}
	files, headers := p.sourceStats()
	p.memory = estimateMemory(cfg, &o, files, headers, p.planBytes())
	if err := checkMemory(p.memory, maxMem, cfgFile, cfg, &o, len(spec.Methods())); err != nil {
		return nil, err
	}
	if err := checkOutput(p.Size(), maxOut); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Plan) planPart(index int, kind llama.Part) (*part, error) {
	w := newWeightPlan(p.cfg, p.base, p.adapters, &p.opts)
	prog, fns, err := p.spec.Build(kind, w)
	if err != nil {
		return nil, err
	}
	if w.err != nil {
		return nil, w.err
	}
	if err := w.blobs.Err(); err != nil {
		return nil, err
	}
	// The MIL graph is not needed once marshalled; dropping it keeps the
	// heap small, and in the browser every forced collection (jsbridge's
	// pins) scans what is left.
	w.vars = nil
	model, err := prog.Model(fns[0].Method)
	if err != nil {
		return nil, fmt.Errorf("partition %s: %w", kind, err)
	}
	modelBytes, err := mil.MarshalBuilt(model)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(p.digest)
	fmt.Fprintf(h, "\x00partition %d %s\x00", index, kind)
	h.Write(modelBytes)
	id := "executorch_" + hex.EncodeToString(h.Sum(nil))[:32]
	pp := &part{kind: kind, weights: w, fns: fns, model: modelBytes, identifier: id}
	pp.metadata = metadataJSON(id, fns)
	pp.manifest = mlpackage.Manifest([]byte(id))
	pp.blob, err = inmemfs.Plan("lorapte_partition_"+strconv.Itoa(index), []inmemfs.File{
		{Path: metadataPath, Size: int64(len(pp.metadata))},
		{Path: manifestPath, Size: int64(len(pp.manifest))},
		{Path: modelPath, Size: int64(len(modelBytes))},
		{Path: weightPath, Size: w.blobs.Size()},
	})
	if err != nil {
		return nil, err
	}
	return pp, nil
}

// metadataJSON is the delegate's metadata.json in its multifunction form
// (pte.md §5.4): each method's Core ML names in DelegateCall order.
func metadataJSON(id string, fns []llama.Function) []byte {
	var ms []pte.MethodIO
	for _, fn := range fns {
		m := pte.MethodIO{Method: fn.Method}
		for _, t := range fn.Inputs {
			m.InputNames = append(m.InputNames, t.Name)
		}
		for _, t := range fn.Outputs {
			m.OutputNames = append(m.OutputNames, t.Name)
		}
		ms = append(ms, m)
	}
	return pte.EncodeMetadata(id, ms)
}

// Close releases the model and adapter files the plan reads from.
func (p *Plan) Close() error {
	err := p.base.Close()
	for _, ad := range p.adapters {
		if e := ad.Source.Close(); err == nil {
			err = e
		}
	}
	return err
}

// Size is the size of the .pte in bytes.
func (p *Plan) Size() int64 { return p.layout.Size() }

// Methods lists the executable methods in program order.
func (p *Plan) Methods() []string {
	var out []string
	for _, m := range p.spec.Methods() {
		out = append(out, m.Name)
	}
	sort.Strings(out)
	return out
}

// Write streams the planned file to w. It reads every source tensor once
// per partition that stores it.
func (p *Plan) Write(ctx context.Context, w io.Writer, progress Progress) error {
	cw := &countingWriter{w: w, ctx: ctx, total: p.Size(), progress: progress}
	pw := pte.NewWriter(outputWriter(cw), p.layout)
	if err := pw.WriteSegment(0, p.consts); err != nil {
		return err
	}
	for i, c := range p.cmjr {
		if err := pw.WriteSegment(1+i, c); err != nil {
			return err
		}
	}
	enc := &encoder{fp32: p.opts.DType == "fp32", base: p.base, cacheIn: p.baseBlobs, cacheOut: p.saveBase, workers: p.workers}
	enc.findTwins(p.parts)
	for i, pp := range p.parts {
		enc.part = i
		err := pw.StreamSegment(pp.segment, func(sw io.Writer) error {
			return p.writeBlob(sw, pp, enc)
		})
		if err != nil {
			return err
		}
	}
	if err := pw.Close(); err != nil {
		return err
	}
	if progress != nil {
		progress("done", cw.n, cw.total)
	}
	return nil
}

// writeBlob streams one partition's flattened directory.
func (p *Plan) writeBlob(w io.Writer, pp *part, enc *encoder) error {
	bw := inmemfs.NewWriter(w, pp.blob)
	for _, f := range pp.blob.Files() {
		var err error
		switch f.Path {
		case metadataPath:
			err = bw.WriteFile(f.Path, bytes.NewReader(pp.metadata))
		case manifestPath:
			err = bw.WriteFile(f.Path, bytes.NewReader(pp.manifest))
		case modelPath:
			err = bw.WriteFile(f.Path, bytes.NewReader(pp.model))
		case weightPath:
			err = bw.StreamFile(f.Path, func(fw io.Writer) error {
				mw := milblob.NewWriter(fw, pp.weights.blobs)
				if err := enc.encode(pp.weights, mw); err != nil {
					return err
				}
				return mw.Close()
			})
		default:
			err = fmt.Errorf("internal: unplanned file %s", f.Path)
		}
		if err != nil {
			return err
		}
	}
	return bw.Close()
}

// countingWriter reports progress and honours cancellation between writes.
type countingWriter struct {
	w        io.Writer
	ctx      context.Context
	n, total int64
	last     int64
	progress Progress
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.w.Write(b)
	c.count(int64(n))
	return n, err
}
