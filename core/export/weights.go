package export

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"lorapte/core/hf"
	"lorapte/core/lora"
	"lorapte/core/mil"
	"lorapte/core/milblob"
	"lorapte/core/quant"
	"lorapte/core/safetensors"
)

// encoding says how a source tensor becomes blob bytes.
type encoding int

const (
	encFloat encoding = iota // fp16 or fp32 copy
	encQuant                 // int4/int8 codes + scales (two consecutive blobs)
)

// job produces one or two planned blobs from rows of one source tensor.
type job struct {
	src        *safetensors.Source
	tensor     string // source tensor name
	row0, rows int
	cols       int // 1 for vectors
	enc        encoding
	scheme     quant.Scheme
	dataKey    string
	scaleKey   string // encQuant only
	label      string // for errors and progress
	sourceFile string
	vector     bool // 1-D source: rows are elements [row0, row0+rows)
}

// weightPlan implements llama.Weights for one partition: it reserves blobs
// in first-use order and hands every function the same offsets.
type weightPlan struct {
	cfg      *hf.Config
	base     *safetensors.Source
	adapters map[string]*lora.Adapter
	fp32     bool
	embQ     *quant.Scheme
	linQ     *quant.Scheme

	blobs *milblob.Plan
	meta  map[string]uint64 // blob key → metadata offset
	owner map[string]*job   // blob key → the job writing it
	jobs  []*job
	byKey map[string]*job
	index map[string]int // blob key → entry index, once needed
	vars  map[*mil.Function]map[string]*mil.Var
	err   error
}

func newWeightPlan(cfg *hf.Config, base *safetensors.Source, adapters map[string]*lora.Adapter, o *Options) *weightPlan {
	return &weightPlan{
		cfg: cfg, base: base, adapters: adapters, fp32: o.DType == "fp32",
		embQ: o.embScheme, linQ: o.linScheme,
		blobs: milblob.NewPlan(), meta: map[string]uint64{}, owner: map[string]*job{}, byKey: map[string]*job{}, vars: map[*mil.Function]map[string]*mil.Var{},
	}
}

func (w *weightPlan) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *weightPlan) floatBlob() milblob.DType {
	if w.fp32 {
		return milblob.FP32
	}
	return milblob.FP16
}

func (w *weightPlan) floatMIL() mil.DataType {
	if w.fp32 {
		return mil.FP32
	}
	return mil.FP16
}

// varName turns a tensor key into a MIL identifier: "w_" and the key
// without "model.", each run of characters other than [A-Za-z0-9_] as one
// "_", without leading or trailing "_". (A loop, not a regexp: every
// weight of every function is named.)
func varName(key string) string {
	key = strings.TrimPrefix(key, "model.")
	b := make([]byte, 0, len(key))
	sep := false // a run of other characters is pending
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '_' || ('0' <= c && c <= '9') || ('a' <= c|0x20 && c|0x20 <= 'z') {
			if sep {
				b = append(b, '_')
			}
			sep = false
			b = append(b, c)
		} else {
			sep = true
		}
	}
	return "w_" + strings.Trim(string(b), "_")
}

// cached returns the function's var for key, creating it with mk once.
func (w *weightPlan) cached(f *mil.Function, key string, mk func(name string) *mil.Var) *mil.Var {
	m := w.vars[f]
	if m == nil {
		m = map[string]*mil.Var{}
		w.vars[f] = m
	}
	if v, ok := m[key]; ok {
		return v
	}
	v := mk(varName(key))
	m[key] = v
	return v
}

// reserve plans the blobs of a job once per partition.
func (w *weightPlan) reserve(j *job) *job {
	if old, ok := w.byKey[j.dataKey]; ok {
		return old
	}
	n := int64(j.rows) * int64(j.cols)
	if j.enc == encFloat {
		w.meta[j.dataKey] = w.blobs.Add(j.dataKey, w.floatBlob(), n)
	} else {
		dt := milblob.INT8
		if j.scheme.Bits == 4 {
			dt = milblob.INT4
		}
		w.meta[j.dataKey] = w.blobs.Add(j.dataKey, dt, n)
		groups, err := j.scheme.ScaleCount(j.cols)
		if err != nil {
			w.fail(fmt.Errorf("%s: %w", j.label, err))
			groups = 1
		}
		w.meta[j.scaleKey] = w.blobs.Add(j.scaleKey, w.floatBlob(), int64(j.rows)*int64(groups))
	}
	w.byKey[j.dataKey] = j
	w.owner[j.dataKey] = j
	if j.scaleKey != "" {
		w.owner[j.scaleKey] = j
	}
	w.jobs = append(w.jobs, j)
	return j
}

func (w *weightPlan) offset(key string) uint64 {
	off, ok := w.meta[key]
	if !ok {
		w.fail(fmt.Errorf("internal: blob %q not planned", key))
	}
	return off
}

// matrix returns a var for rows [row0,row0+rows) of a 2-D source tensor,
// quantized with scheme s (nil = float).
func (w *weightPlan) matrix(f *mil.Function, src *safetensors.Source, tensor string, row0, rows int, s *quant.Scheme, label string) *mil.Var {
	info, ok := src.Info(tensor)
	if !ok || len(info.Shape) != 2 {
		w.fail(fmt.Errorf("tensor %s: missing or not 2-D", tensor))
		return w.dummy(f, tensor)
	}
	cols := int(info.Shape[1])
	key := tensor
	if row0 != 0 || int64(rows) != info.Shape[0] {
		key += "[" + strconv.Itoa(row0) + ":" + strconv.Itoa(row0+rows) + "]"
	}
	shape := []int64{int64(rows), int64(cols)}
	if s == nil {
		j := w.reserve(&job{src: src, tensor: tensor, row0: row0, rows: rows, cols: cols, enc: encFloat,
			dataKey: key, label: label, sourceFile: info.File})
		return w.cached(f, key, func(name string) *mil.Var {
			return f.Const(name, mil.Blob(w.floatMIL(), shape, w.offset(j.dataKey)))
		})
	}
	qkey := key + "@" + s.String()
	j := w.reserve(&job{src: src, tensor: tensor, row0: row0, rows: rows, cols: cols, enc: encQuant, scheme: *s,
		dataKey: qkey + ".data", scaleKey: qkey + ".scale", label: label, sourceFile: info.File})
	groups, _ := s.ScaleCount(cols)
	return w.cached(f, qkey, func(name string) *mil.Var {
		dt := mil.INT8
		if s.Bits == 4 {
			dt = mil.INT4
		}
		data := mil.Blob(dt, shape, w.offset(j.dataKey))
		scale := mil.Blob(w.floatMIL(), []int64{int64(rows), int64(groups)}, w.offset(j.scaleKey))
		return f.ConstexprBlockwiseShiftScale(name, data, scale)
	})
}

func (w *weightPlan) dummy(f *mil.Function, name string) *mil.Var {
	return w.cached(f, "missing:"+name, func(n string) *mil.Var {
		return f.Const(n, mil.ScalarF32(0))
	})
}

// Embedding implements llama.Weights.
func (w *weightPlan) Embedding(f *mil.Function) *mil.Var {
	const name = "model.embed_tokens.weight"
	return w.matrix(f, w.base, name, 0, w.cfg.Vocab, w.embQ, name)
}

// Linear implements llama.Weights. A tied model's LM head reads the
// embedding table.
func (w *weightPlan) Linear(f *mil.Function, name string, row0, rows int) *mil.Var {
	src := name
	if name == "lm_head.weight" && w.cfg.Tied {
		src = "model.embed_tokens.weight"
	}
	return w.matrix(f, w.base, src, row0, rows, w.linQ, name)
}

// Vector implements llama.Weights.
func (w *weightPlan) Vector(f *mil.Function, name string, i0, n int) *mil.Var {
	info, ok := w.base.Info(name)
	if !ok || len(info.Shape) != 1 {
		w.fail(fmt.Errorf("tensor %s: missing or not 1-D", name))
		return w.dummy(f, name)
	}
	key := name
	if i0 != 0 || int64(n) != info.Shape[0] {
		key += "[" + strconv.Itoa(i0) + ":" + strconv.Itoa(i0+n) + "]"
	}
	// A 1-D tensor is read as n rows of one column.
	j := w.reserve(&job{src: w.base, tensor: name, row0: i0, rows: n, cols: 1, enc: encFloat,
		dataKey: key, label: name, sourceFile: info.File, vector: true})
	return w.cached(f, key, func(vn string) *mil.Var {
		return f.Const(vn, mil.Blob(w.floatMIL(), []int64{int64(n)}, w.offset(j.dataKey)))
	})
}

// Has implements llama.Weights.
func (w *weightPlan) Has(name string) bool {
	_, ok := w.base.Info(name)
	return ok
}

// LoRA implements llama.Weights.
func (w *weightPlan) LoRA(f *mil.Function, adapter, module string) (a, b *mil.Var, scale float64, ok bool) {
	ad := w.adapters[adapter]
	if ad == nil {
		return nil, nil, 0, false
	}
	m := ad.Modules[module]
	if m == nil {
		return nil, nil, 0, false
	}
	prefix := "lora/" + adapter + "/"
	a = w.loraMatrix(f, ad, m.A, prefix+module+".lora_A", m.R, m.In)
	b = w.loraMatrix(f, ad, m.B, prefix+module+".lora_B", m.Out, m.R)
	return a, b, m.Scale, true
}

func (w *weightPlan) loraMatrix(f *mil.Function, ad *lora.Adapter, tensor, key string, rows, cols int) *mil.Var {
	info, _ := ad.Source.Info(tensor)
	j := w.reserve(&job{src: ad.Source, tensor: tensor, rows: rows, cols: cols, enc: encFloat,
		dataKey: key, label: ad.Name + ": " + tensor, sourceFile: info.File})
	return w.cached(f, key, func(string) *mil.Var {
		name := "lora_" + ad.Name + "_" + strings.TrimPrefix(varName(strings.TrimPrefix(key, "lora/"+ad.Name+"/")), "w_")
		return f.Const(name, mil.Blob(w.floatMIL(), []int64{int64(rows), int64(cols)}, w.offset(j.dataKey)))
	})
}

// chunkRows bounds the rows converted at once so memory stays small for
// any tensor size (an embedding table can be 1 GB as float32). Even row
// counts keep int4 nibble pairs inside one chunk.
func chunkRows(cols int) int {
	const budget = 1 << 20 // elements per chunk
	r := budget / cols
	if r < 2 {
		r = 2
	}
	return r &^ 1
}

// encoder streams a partition's weight.bin.
type encoder struct {
	fp32     bool
	part     int                 // partition index, for cache keys
	base     *safetensors.Source // jobs reading it are the cacheable base
	cacheIn  BlobSource          // copy base blobs from here instead of encoding
	cacheOut BlobSink            // tee encoded base blobs here
	buf      []float32
	codes    []int8
	out      []byte
	onRead   func(n int64) // progress: source bytes consumed

	// Parallel conversion (convert.go).
	workers   int  // 0: GOMAXPROCS
	reference bool // tests: use the single-goroutine reference loop
	scratch   []*scratch
	outBufs   [][]byte

	// Tied tables converted once for two jobs (twins.go).
	twinOf     map[*job][]*job   // job → later jobs reading rows it reads
	twinTarget map[*job]bool     // jobs in twinOf's lists
	twins      map[*job]*twinSet // twin job → its held parts
	twinMu     sync.Mutex

	// Held batches in flight across jobs (ahead.go), and announcements.
	jobs     []*job // the partition's jobs being encoded, in plan order
	cur      int    // index in jobs of the job being encoded
	canRef   bool   // the partition's output takes references
	runs     map[*job]*heldRun
	inFlight int
}

// encode writes every job of the plan to bw in plan order.
func (e *encoder) encode(w *weightPlan, bw *milblob.Writer) error {
	covered, err := e.copyCachedPrefix(w, bw)
	if err != nil {
		return err
	}
	jobs := w.jobs
	if covered > 0 {
		// The base jobs whose blobs the cached prefix holds are done.
		jobs = nil
		for _, j := range w.jobs {
			if w.index[j.dataKey] >= covered || (j.scaleKey != "" && w.index[j.scaleKey] >= covered) {
				jobs = append(jobs, j)
			}
		}
	}
	e.jobs, e.canRef = jobs, bw.CanWriteRef()
	defer func() { e.jobs = nil }()
	// Jobs are announced until announceAhead bytes past the current one
	// are: split linear layers make many small jobs, and announcing one
	// job ahead left the reads one piece ahead, one read per piece.
	ann := 0
	var ahead int64 // bytes announced for the jobs after the current one
	sizes := make([]int64, len(jobs))
	for k, j := range jobs {
		e.cur = k
		if k < ann {
			ahead -= sizes[k]
		}
		for ann < len(jobs) && (ann <= k || ahead < announceAhead) {
			sizes[ann] = e.announce(jobs[ann])
			if ann > k {
				ahead += sizes[ann]
			}
			ann++
		}
		if err := e.encodeJob(j, bw); err != nil {
			e.drainAhead()
			return err
		}
	}
	return nil
}

// announceAhead is how many source bytes past the current job encode
// announces: more than a browser file reads ahead (jsbridge's
// aheadBytes), so that the pieces not yet requested span enough of the
// file to be read together.
const announceAhead = 160 << 20

// basePrefix is how many blobs at the start of the weight file are base
// or inline blobs (0 when none is a base blob): the range a cached .pte
// of the same base can supply whole (BaseRegion).
func (w *weightPlan) basePrefix() int {
	k, base := 0, false
	for _, e := range w.blobs.Entries() {
		j := w.owner[e.Key]
		if j != nil && j.src != w.base {
			break
		}
		base = base || j != nil
		k++
	}
	if !base {
		return 0
	}
	return k
}

// copyCachedPrefix writes the start of the weight file by one reference
// when the cache keeps a .pte whose weight file starts with the same blobs
// (RegionRefSource); it returns how many blobs that covered.
func (e *encoder) copyCachedPrefix(w *weightPlan, bw *milblob.Writer) (int, error) {
	rs, ok := e.cacheIn.(RegionRefSource)
	if !ok || e.base == nil || !bw.CanWriteRef() {
		return 0, nil
	}
	k := w.basePrefix()
	if k == 0 {
		return 0, nil
	}
	ref, n, err := rs.OpenRegionRef(e.part, w.blobs.PrefixDigest(k))
	if err == nil && ref != nil {
		err = bw.WritePrefixRef(k, ref, n)
	}
	if err != nil {
		return 0, fmt.Errorf("cached base: partition %d: %w", e.part, err)
	}
	if ref == nil {
		return 0, nil
	}
	if w.index == nil {
		w.index = map[string]int{}
		for i, en := range w.blobs.Entries() {
			w.index[en.Key] = i
		}
	}
	return k, nil
}

func (e *encoder) grow(n int) {
	if cap(e.buf) < n {
		e.buf = make([]float32, n)
		e.codes = make([]int8, n)
		e.out = make([]byte, 4*n)
	}
}

// blobWriter writes one job's blobs, teeing base blobs to the cache sink.
type blobWriter struct {
	e   *encoder
	bw  *milblob.Writer
	tee bool
}

func (b blobWriter) write(key string, chunk []byte) error {
	if err := b.bw.Write(key, chunk); err != nil {
		return err
	}
	if b.tee {
		if err := b.e.cacheOut.WriteBlob(blobKey(b.e.part, key), chunk); err != nil {
			return fmt.Errorf("saving the converted base: %w", err)
		}
	}
	return nil
}

// copyCached streams a blob from the base cache, by reference when both
// the cache and the output can (ref.go).
func (e *encoder) copyCached(key string, bw *milblob.Writer) error {
	if rs, ok := e.cacheIn.(BlobRefSource); ok && bw.CanWriteRef() {
		ref, n, err := rs.OpenBlobRef(blobKey(e.part, key))
		if err == nil {
			err = bw.WriteRef(key, ref, n)
		}
		if err != nil {
			return fmt.Errorf("cached base: blob %s: %w", key, err)
		}
		return nil
	}
	r, err := e.cacheIn.OpenBlob(blobKey(e.part, key))
	if err != nil {
		return fmt.Errorf("cached base: blob %s: %w", key, err)
	}
	e.grow(1 << 18)
	buf := e.out[:1<<20]
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := bw.Write(key, buf[:n]); werr != nil {
				return fmt.Errorf("cached base: blob %s: %w", key, werr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cached base: blob %s: %w", key, err)
		}
	}
}

func (e *encoder) encodeJob(j *job, bw0 *milblob.Writer) error {
	isBase := e.base != nil && j.src == e.base
	if isBase && e.cacheIn != nil {
		if err := e.copyCached(j.dataKey, bw0); err != nil {
			return err
		}
		if j.scaleKey != "" {
			return e.copyCached(j.scaleKey, bw0)
		}
		return nil
	}
	bw := blobWriter{e: e, bw: bw0, tee: isBase && e.cacheOut != nil}
	var writeRef func(key string, ref any, n int64) error
	if e.takesRefs(j) {
		writeRef = bw0.WriteRef
	}
	return e.convert(j, bw.write, writeRef)
}

// takesRefs reports whether j's blobs may be written by reference: the
// partition's output takes references (canRef) and no base cache needs
// the bytes.
func (e *encoder) takesRefs(j *job) bool {
	return e.canRef && !(e.base != nil && j.src == e.base && e.cacheOut != nil)
}

// read fills vals with rows [r, r+n) of the job's slice of its source.
func (e *encoder) read(j *job, r, n int, vals []float32) error {
	if !j.vector {
		if err := j.src.ReadFloat32(j.tensor, int64(j.row0+r), int64(n), vals); err != nil {
			return fmt.Errorf("%s: %w", j.label, err)
		}
		return nil
	}
	// Vectors (norm weights, biases) are small: read whole, then slice.
	info, _ := j.src.Info(j.tensor)
	all := make([]float32, info.Numel())
	if err := j.src.ReadFloat32(j.tensor, 0, 1, all); err != nil {
		return fmt.Errorf("%s: %w", j.label, err)
	}
	copy(vals, all[j.row0+r:j.row0+r+n])
	return nil
}

func checkFinite(vals []float32, j *job, row int, what string) error {
	for i, v := range vals {
		if v-v != 0 { // NaN or ±Inf
			return fmt.Errorf("%s: tensor %s has %s at row %d", j.sourceFile, j.tensor, what, j.row0+row+i/j.cols)
		}
	}
	return nil
}
