package export

// The conversion hot path: source rows → float16/float32 values → codes
// and scales → blob bytes. Natively it runs on every core: each batch of
// rows is split between workers that read (ReadAt is safe for parallel
// use), convert and pack their rows into their part of one output buffer,
// while a writer goroutine writes the previous batch. Batch boundaries,
// per-row results and write order do not depend on the number of workers,
// so the output bytes do not either. With one worker (GOMAXPROCS 1, the
// browser) everything runs in the calling goroutine.
//
// The kernels (decoding, the float16-exact and bfloat16 quantizers and
// their code tables) live in package quant beside the reference quantizer
// they reproduce exactly; each worker's scratch keeps its own code tables.
// Tests check the whole weight blob against the plain reference loop
// (convertReference), for 1..4 workers.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"

	"lorapte/core/milblob"
	"lorapte/core/quant"
	"lorapte/core/safetensors"
)

// minParallel is the smallest job (in elements) worth splitting.
const minParallel = 1 << 16

// chunksPerBatch reference-loop chunks (1M elements each) are converted at
// once.
const chunksPerBatch = 4

// ErrSlowPath marks a piece the fast path will not handle (a value that
// is not finite or not a float16 after rounding); the reference loop then
// produces the exact error.
var ErrSlowPath = errors.New("export: slow path")

// Piece is a run of rows of one tensor for the fast path, described fully
// enough for another wasm instance (a browser worker) to convert it
// exactly as this one would.
type Piece struct {
	DType  safetensors.DType `json:"dtype"` // of the source bytes
	Rows   int               `json:"rows"`
	Cols   int               `json:"cols"`
	Quant  bool              `json:"quant"`  // codes + scales, else float16/float32 values
	Bits   int               `json:"bits"`   // 4 or 8 (Quant)
	Groups int               `json:"groups"` // scale groups per row (Quant)
	FP32   bool              `json:"fp32"`   // float32 model: values and scales are float32
}

// SourceBytes is the size of the piece's source bytes.
func (p Piece) SourceBytes() int { return p.Rows * p.Cols * p.DType.Size() }

// OutBytes is the size of the converted piece.
func (p Piece) OutBytes() int {
	n := p.Rows * p.Cols
	switch {
	case p.Quant && p.Bits == 4:
		return (n + 1) / 2
	case p.Quant:
		return n
	case p.FP32:
		return 4 * n
	}
	return 2 * n
}

// ScaleBytes is the size of the piece's scales (little-endian float16, or
// float32 with FP32; row by row).
func (p Piece) ScaleBytes() int {
	if !p.Quant {
		return 0
	}
	if p.FP32 {
		return 4 * p.Rows * p.Groups
	}
	return 2 * p.Rows * p.Groups
}

// Valid bounds what a piece from another instance may ask for; check it
// before sizing buffers from the piece.
func (p Piece) Valid() error {
	ok := p.DType.IsFloat() && p.Rows > 0 && p.Cols > 0 && p.Rows <= 1<<28/p.Cols
	if p.Quant {
		ok = ok && (p.Bits == 4 || p.Bits == 8) && p.Groups > 0 && p.Cols%p.Groups == 0 &&
			(p.Bits == 8 || p.Rows*p.Cols%2 == 0)
	}
	if !ok {
		return fmt.Errorf("export: invalid piece %+v", p)
	}
	return nil
}

// PieceConverter is a source file that has pieces of itself converted
// elsewhere: the browser's files hand them to a pool of workers, so the
// conversion runs on every core although each wasm instance has one
// thread. ConvertPiece converts the piece whose source bytes start at off
// into out and scales (Piece.OutBytes, Piece.ScaleBytes); ErrSlowPath
// means the fast path declined.
type PieceConverter interface {
	ConvertPiece(off int64, p Piece, out, scales []byte) error
}

// PieceHolder is a PieceConverter that can keep a converted piece where it
// was converted: HoldPiece converts like ConvertPiece but returns a
// reference to the p.OutBytes() output bytes instead of them, and the
// output (a RefWriter that knows such references) writes them in their
// place. In the browser the workers then send the pieces straight to the
// output file; the page never handles the converted bytes. The encoder
// holds pieces only when the output takes references and nothing else
// (the base cache) needs the bytes.
// CanHold says whether pieces may be held now.
//
// twins are further pieces converted from the same source bytes, each a
// run of the piece's rows in another encoding (a tied model's LM head is
// its embedding table quantized another way): the source is read once
// for both. HoldPiece sets each twin's Ref (nil when that twin could not
// be converted) and fills its Scales.
type PieceHolder interface {
	PieceConverter
	CanHold() bool
	HoldPiece(off int64, p Piece, scales []byte, twins []Twin) (ref any, err error)
}

// Twin is a piece converted from part of another piece's source bytes
// (PieceHolder): Skip source bytes in, p.SourceBytes() long.
type Twin struct {
	Piece  Piece
	Skip   int
	Scales []byte // Piece.ScaleBytes, filled by HoldPiece
	Ref    any    // the held output, set by HoldPiece
}

// Converter converts pieces: what a worker runs for a PieceConverter. It
// keeps its buffers and code tables between pieces.
type Converter struct{ s scratch }

// Convert converts src (p.SourceBytes) into out (p.OutBytes) and scales
// (p.ScaleBytes).
func (c *Converter) Convert(p Piece, src, out, scales []byte) error {
	if err := p.Valid(); err != nil {
		return err
	}
	if len(src) != p.SourceBytes() || len(out) != p.OutBytes() || len(scales) != p.ScaleBytes() {
		return fmt.Errorf("export: piece %+v: got %d source, %d output and %d scale bytes", p, len(src), len(out), len(scales))
	}
	var sc16 []uint16
	var sc32 []float32
	if p.Quant && p.FP32 {
		sc32 = make([]float32, p.Rows*p.Groups)
	} else if p.Quant {
		sc16 = make([]uint16, p.Rows*p.Groups)
	}
	if err := c.s.convert(p, src, out, sc16, sc32); err != nil {
		return err
	}
	packScales(scales, sc16, sc32)
	return nil
}

// packScales writes scales as little-endian float16 (sc16) or float32
// (sc32) into dst: a piece's scale bytes, or a scale blob.
func packScales(dst []byte, sc16 []uint16, sc32 []float32) {
	for i, v := range sc16 {
		binary.LittleEndian.PutUint16(dst[2*i:], v)
	}
	for i, v := range sc32 {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// unpackScales stores a piece's scale bytes at index at of sc16 or sc32.
func unpackScales(b []byte, sc16 []uint16, sc32 []float32, at int, fp32 bool) {
	if fp32 {
		for i := 0; i+4 <= len(b); i += 4 {
			sc32[at+i/4] = math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))
		}
		return
	}
	for i := 0; i+2 <= len(b); i += 2 {
		sc16[at+i/2] = binary.LittleEndian.Uint16(b[i:])
	}
}

// scratch is one worker's reusable buffers.
type scratch struct {
	raw    []byte
	vals   []float32
	codes  []int8
	tables quant.CodeTables
}

func (s *scratch) growRaw(n int) {
	if cap(s.raw) < n {
		s.raw = make([]byte, n)
	}
}

// growVals sizes the float and code buffers, which the bfloat16 fast path
// does not need.
func (s *scratch) growVals(n int) {
	if cap(s.vals) < n {
		s.vals = make([]float32, n)
		s.codes = make([]int8, n)
	}
}

// outBytes is the size of n elements in the job's blob encoding.
func (e *encoder) outBytes(j *job, n int) int {
	return Piece{Rows: 1, Cols: n, Quant: j.enc == encQuant, Bits: j.scheme.Bits, FP32: e.fp32}.OutBytes()
}

func (e *encoder) workerCount() int {
	if e.workers > 0 {
		return e.workers
	}
	return runtime.GOMAXPROCS(0)
}

// convert writes job j's data blob (and scale blob) through write; with
// writeRef (nil when the output cannot take references) the pieces a
// PieceHolder converts are written by reference.
func (e *encoder) convert(j *job, write func(key string, b []byte) error, writeRef func(key string, ref any, n int64) error) error {
	info, ok := j.src.Info(j.tensor)
	if e.reference || !ok || !info.DType.IsFloat() {
		return e.convertReference(j, write)
	}
	raw, err := j.src.Raw(j.tensor)
	if err != nil {
		return fmt.Errorf("%s: %w", j.label, err)
	}
	if done, err := e.writeTwins(j, write, writeRef); done || err != nil {
		return err
	}
	if e.twinTarget[j] && e.holdsPieces(j) {
		// A twin job its twins did not cover after all: announce it now
		// (announce skipped it).
		delete(e.twinTarget, j)
		e.announce(j)
	}
	if hs, ok := e.heldSource(j); ok && writeRef != nil {
		run := e.runs[j]
		if run != nil {
			delete(e.runs, j) // started ahead
		} else if run, err = e.newRun(j, hs); err != nil {
			return err
		}
		return e.convertHeld(run, write, writeRef)
	}
	src := jobSource{raw: raw, dt: info.DType}
	if f, base, _ := raw.Outer(); f != nil {
		src.remote, _ = f.(PieceConverter)
		src.base = base
	}
	groups := 1
	if j.enc == encQuant {
		if groups, err = j.scheme.ScaleCount(j.cols); err != nil {
			return fmt.Errorf("%s: %w", j.label, err)
		}
	}
	var sc16 []uint16
	var sc32 []float32
	if j.enc == encQuant {
		if e.fp32 {
			sc32 = make([]float32, j.rows*groups)
		} else {
			sc16 = make([]uint16, j.rows*groups)
		}
	}
	// Chunks are whole multiples of the reference loop's, so errors can be
	// reproduced chunk by chunk; larger ones mean fewer hand-offs between
	// goroutines.
	step := batchRows(j)
	workers := e.jobWorkers(j)
	// Batches converted elsewhere (PieceConverter) overlap: while one is
	// converted the next ones are on their way, so the workers never wait
	// for a round trip to the page. Here one batch at a time keeps all
	// cores busy already.
	depth := 1
	if src.remote != nil {
		depth = remoteBatches
	}
	for len(e.scratch) < depth*workers {
		e.scratch = append(e.scratch, &scratch{})
	}
	es := info.DType.Size()

	// One batch's rows [r, r+n) split into parts, each converted into its
	// slice of out; slot picks the batch's scratch buffers.
	convertChunk := func(slot, r, n int, out []byte) error {
		parts := splitRows(n, workers)
		errs := make([]error, len(parts))
		var wg sync.WaitGroup
		for w, ab := range parts {
			a, b := ab[0], ab[1]
			s := e.scratch[slot*workers+w]
			if depth == 1 {
				s.growRaw((b - a) * j.cols * es)
			}
			part := out[e.outBytes(j, a*j.cols):e.outBytes(j, b*j.cols)]
			run := func() { errs[w] = e.convertRows(j, src, s, r+a, b-a, part, nil, groups, sc16, sc32) }
			if w == len(parts)-1 {
				run() // the last part runs here
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); run() }()
		}
		wg.Wait()
		return errors.Join(errs...)
	}

	// Finished batches go to a writer goroutine; buffers take turns.
	bufBytes := e.outBytes(j, step*j.cols)
	for len(e.outBufs) < depth+1 {
		e.outBufs = append(e.outBufs, nil)
	}
	bufs := e.outBufs[:max(2, depth+1)]
	for i := range bufs {
		if cap(bufs[i]) < bufBytes {
			bufs[i] = make([]byte, bufBytes)
		}
	}
	var wr *chunkWriter
	if workers > 1 || depth > 1 {
		wr = startChunkWriter(write, bufs)
	}
	finish := func(err error) error {
		if wr != nil {
			if werr := wr.close(); err == nil {
				err = werr
			}
		}
		return err
	}
	type batch struct {
		r, n int
		out  []byte
		done chan error
	}
	var flight []*batch
	// settle hands the oldest batch in flight to the writer.
	settle := func() error {
		b := flight[0]
		flight = flight[1:]
		if err := <-b.done; err != nil {
			for _, o := range flight { // let the others finish with their buffers
				<-o.done
			}
			flight = nil
			if errors.Is(err, ErrSlowPath) {
				err = e.referenceError(j, b.r, b.n)
			}
			return err
		}
		if e.onRead != nil {
			e.onRead(int64(b.n*j.cols) * 2)
		}
		if wr != nil {
			wr.send(j.dataKey, b.out)
			return nil
		}
		return write(j.dataKey, b.out)
	}
	next, slot := 0, 0
	for r := 0; r < j.rows; r += step {
		n := min(step, j.rows-r)
		b := &batch{r: r, n: n, done: make(chan error, 1)}
		if wr != nil {
			if b.out = wr.buffer(); b.out == nil {
				for len(flight) > 0 {
					settle() //nolint:errcheck // the writer's error is the one reported
				}
				return finish(nil) // the writer failed; close reports it
			}
		} else {
			b.out = bufs[next]
			next ^= 1
		}
		b.out = b.out[:e.outBytes(j, n*j.cols)]
		flight = append(flight, b)
		if depth == 1 {
			b.done <- convertChunk(0, r, n, b.out)
		} else {
			go func(slot int) { b.done <- convertChunk(slot, b.r, b.n, b.out) }(slot)
			slot = (slot + 1) % depth
		}
		if len(flight) >= depth {
			if err := settle(); err != nil {
				return finish(err)
			}
		}
	}
	for len(flight) > 0 {
		if err := settle(); err != nil {
			return finish(err)
		}
	}
	if err := finish(nil); err != nil {
		return err
	}
	if j.enc == encQuant {
		return write(j.scaleKey, scaleBytes(sc16, sc32))
	}
	return nil
}

// remoteBatches is how many batches are in flight when pieces are
// converted elsewhere (a browser worker pool).
const remoteBatches = 3

// batchRows is how many rows of j the fast path converts at once.
func batchRows(j *job) int { return min(chunkRows(j.cols)*chunksPerBatch, j.rows) }

// jobWorkers is how many parts each batch of j is split into.
func (e *encoder) jobWorkers(j *job) int {
	if j.rows*j.cols < minParallel {
		return 1
	}
	return e.workerCount()
}

// splitRows splits a batch of n rows into parts [a, b) for the workers:
// even row counts, so int4 nibble pairs never straddle parts.
func splitRows(n, workers int) [][2]int {
	if workers == 1 || n < 4 {
		return [][2]int{{0, n}}
	}
	per := (n/workers + 1) &^ 1
	var parts [][2]int
	for w := 0; w < workers; w++ {
		a, b := min(w*per, n), min((w+1)*per, n)
		if w == workers-1 {
			b = n
		}
		if a < b {
			parts = append(parts, [2]int{a, b})
		}
	}
	return parts
}

// readAheader is a file that can fetch the pieces of upcoming reads early
// (the browser's files: each read is a round trip to the page). pieces are
// (offset, size) in the order they will be read, batch by batch.
type readAheader interface{ ReadAhead(pieces [][2]int64) }

// announce tells j's file which bytes the fast path will read for j and in
// which pieces, so that a browser file can request them before they are
// needed; it returns how many bytes it announced. Jobs are announced ahead
// (see encode), so the next tensors' pieces are on their way while the
// current one is converted. A twin job that its twins will cover is not
// announced, unless they turn out not to (convert).
func (e *encoder) announce(j *job) int64 {
	if e.reference || (e.cacheIn != nil && e.base != nil && j.src == e.base) {
		return 0 // not read through the fast path
	}
	info, ok := j.src.Info(j.tensor)
	if !ok || !info.DType.IsFloat() || j.vector {
		return 0
	}
	if e.twinTarget[j] && e.holdsPieces(j) {
		return 0
	}
	raw, err := j.src.Raw(j.tensor)
	if err != nil {
		return 0
	}
	ra, off, _ := raw.Outer()
	h, ok := ra.(readAheader)
	if !ok {
		return 0
	}
	row := int64(j.cols) * int64(info.DType.Size())
	base := off + int64(j.row0)*row
	step, workers := batchRows(j), e.jobWorkers(j)
	var pieces [][2]int64
	for r := 0; r < j.rows; r += step {
		for _, ab := range splitRows(min(step, j.rows-r), workers) {
			pieces = append(pieces, [2]int64{base + int64(r+ab[0])*row, int64(ab[1]-ab[0]) * row})
		}
	}
	h.ReadAhead(pieces)
	return int64(j.rows) * row
}

// scaleBytes encodes a job's scales as their blob's bytes.
func scaleBytes(sc16 []uint16, sc32 []float32) []byte {
	b := make([]byte, 2*len(sc16)+4*len(sc32))
	packScales(b, sc16, sc32)
	return b
}

// jobSource is where a job's tensor bytes come from: its section of the
// file, and the file's PieceConverter (with the section's offset in the
// file) when the file converts pieces elsewhere.
type jobSource struct {
	raw    *io.SectionReader
	dt     safetensors.DType
	remote PieceConverter
	hold   PieceHolder // remote, when its pieces are written by reference
	base   int64
}

// heldPart is a part of a batch that stays where it was converted: its
// reference and size (PieceHolder).
type heldPart struct {
	ref any
	n   int64
}

// convertRows converts rows [r, r+n) of j into out (exactly their bytes)
// and their scales: in another wasm instance when the source file offers
// that (a browser worker, see PieceConverter), else here.
// With h (and a PieceHolder source) the converted bytes stay with the
// holder and h gets their reference.
func (e *encoder) convertRows(j *job, from jobSource, s *scratch, r, n int, out []byte, h *heldPart, groups int, sc16 []uint16, sc32 []float32) error {
	cnt := n * j.cols
	es := from.dt.Size()
	p := Piece{DType: from.dt, Rows: n, Cols: j.cols, Quant: j.enc == encQuant, Bits: j.scheme.Bits, Groups: groups, FP32: e.fp32}
	if !p.Quant {
		p.Bits, p.Groups = 0, 0
	}
	off := int64(j.row0+r) * int64(j.cols) * int64(es)
	if from.remote != nil {
		scales := make([]byte, p.ScaleBytes())
		var err error
		if h != nil {
			twins, tjobs := e.twinPieces(j, p, r, n)
			h.ref, err = from.hold.HoldPiece(from.base+off, p, scales, twins)
			if err == nil {
				e.keepTwins(j.row0+r, p.SourceBytes()/p.Rows, twins, tjobs)
			}
		} else {
			err = from.remote.ConvertPiece(from.base+off, p, out, scales)
		}
		if err == nil {
			unpackScales(scales, sc16, sc32, r*groups, p.FP32)
			return nil
		}
		if errors.Is(err, ErrSlowPath) {
			return ErrSlowPath
		}
		return fmt.Errorf("%s: %s: converting tensor %s: %w", j.label, j.sourceFile, j.tensor, err)
	}
	src := s.raw[:cnt*es]
	// A full read may come with io.EOF at the end of the data.
	if got, err := from.raw.ReadAt(src, off); got < len(src) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s: %s: reading tensor %s: %w", j.label, j.sourceFile, j.tensor, err)
	}
	var s16 []uint16
	var s32 []float32
	if p.Quant && p.FP32 {
		s32 = sc32[r*groups : (r+n)*groups]
	} else if p.Quant {
		s16 = sc16[r*groups : (r+n)*groups]
	}
	err := s.convert(p, src, out, s16, s32)
	if err != nil && !errors.Is(err, ErrSlowPath) {
		return fmt.Errorf("%s: %w", j.label, err)
	}
	return err
}

// convert runs the fast path on one piece's source bytes.
func (s *scratch) convert(p Piece, src, out []byte, sc16 []uint16, sc32 []float32) error {
	n, cnt := p.Rows, p.Rows*p.Cols
	if p.DType == safetensors.BF16 && !p.FP32 && p.Quant {
		g := p.Cols / p.Groups
		if (p.Bits == 8 || g%2 == 0) && quant.QuantizeBF16(src, n, p.Cols, g, p.Bits, out, sc16, &s.tables) {
			return nil
		}
	}
	if !p.Quant && !p.FP32 {
		// Float16 output (LoRA A/B, unquantized weights): one pass.
		if !quant.EncodeF16(out, src, sourceFormat(p.DType)) {
			return ErrSlowPath
		}
		return nil
	}
	s.growVals(cnt)
	vals := s.vals[:cnt]
	if !quant.DecodeFloats(vals, src, sourceFormat(p.DType), p.FP32) {
		return ErrSlowPath
	}
	switch {
	case !p.Quant:
		quant.PutF32(out, vals)
	default:
		codes := s.codes[:cnt]
		if p.FP32 {
			if err := quant.QuantizeRowsF32(vals, n, p.Cols, quant.Scheme{Bits: p.Bits, Group: p.Cols / p.Groups}, codes, sc32); err != nil {
				return err
			}
		} else {
			quant.QuantizeF16Exact(vals, n, p.Cols, p.Cols/p.Groups, p.Bits, codes, sc16)
		}
		if p.Bits == 4 {
			milblob.PackInt4Into(out, codes)
		} else {
			for i, c := range codes {
				out[i] = byte(c)
			}
		}
	}
	return nil
}

// sourceFormat is quant's name for a float source dtype (the fast path
// only sees F32, F16 and BF16).
func sourceFormat(dt safetensors.DType) quant.Format {
	switch dt {
	case safetensors.BF16:
		return quant.FormatBF16
	case safetensors.F16:
		return quant.FormatF16
	}
	return quant.FormatF32
}

// chunkWriter writes finished chunks in order on its own goroutine.
type chunkWriter struct {
	write func(key string, b []byte) error
	todo  chan pendingChunk
	free  chan []byte
	done  chan struct{}
	err   error // set by the goroutine; read after done
}

type pendingChunk struct {
	key string
	b   []byte
}

func startChunkWriter(write func(string, []byte) error, bufs [][]byte) *chunkWriter {
	w := &chunkWriter{write: write, todo: make(chan pendingChunk, len(bufs)), free: make(chan []byte, len(bufs)), done: make(chan struct{})}
	for _, b := range bufs {
		w.free <- b[:cap(b)]
	}
	go func() {
		defer close(w.done)
		for c := range w.todo {
			if w.err == nil {
				w.err = w.write(c.key, c.b)
			}
			if w.err != nil {
				close(w.free) // wake the producer: no more buffers
				for range w.todo {
				}
				return
			}
			w.free <- c.b[:cap(c.b)]
		}
	}()
	return w
}

// buffer returns a free buffer, or nil once the writer has failed.
func (w *chunkWriter) buffer() []byte {
	b, ok := <-w.free
	if !ok {
		return nil
	}
	return b
}

func (w *chunkWriter) send(key string, b []byte) { w.todo <- pendingChunk{key, b} }

// close waits for every chunk to be written and returns the first error.
func (w *chunkWriter) close() error {
	close(w.todo)
	<-w.done
	return w.err
}

// convertReference is the straightforward single-goroutine conversion: the
// reference the fast path is tested against, and the path for unusual
// sources.
func (e *encoder) convertReference(j *job, write func(key string, b []byte) error) error {
	step := min(chunkRows(j.cols), j.rows)
	e.grow(step * j.cols)
	var scales16 []uint16
	var scales32 []float32
	groups := 1
	if j.enc == encQuant {
		var err error
		if groups, err = j.scheme.ScaleCount(j.cols); err != nil {
			return fmt.Errorf("%s: %w", j.label, err)
		}
		if e.fp32 {
			scales32 = make([]float32, j.rows*groups)
		} else {
			scales16 = make([]uint16, j.rows*groups)
		}
	}
	for r := 0; r < j.rows; r += step {
		n := min(step, j.rows-r)
		vals := e.buf[:n*j.cols]
		if err := e.referenceRead(j, r, n, vals); err != nil {
			return err
		}
		if e.onRead != nil {
			e.onRead(int64(len(vals)) * 2)
		}
		var chunk []byte
		switch {
		case j.enc == encFloat && e.fp32:
			chunk = quant.PutF32(e.out, vals)
		case j.enc == encFloat:
			chunk = quant.PutF16(e.out, vals)
		default:
			codes := e.codes[:len(vals)]
			var err error
			if e.fp32 {
				err = quant.QuantizeRowsF32(vals, n, j.cols, j.scheme, codes, scales32[r*groups:(r+n)*groups])
			} else {
				err = quant.QuantizeRowsF16(vals, n, j.cols, j.scheme, codes, scales16[r*groups:(r+n)*groups])
			}
			if err != nil {
				return fmt.Errorf("%s: %w", j.label, err)
			}
			if j.scheme.Bits == 4 {
				chunk = milblob.PackInt4(codes)
			} else {
				chunk = e.out[:len(codes)]
				for i, c := range codes {
					chunk[i] = byte(c)
				}
			}
		}
		if err := write(j.dataKey, chunk); err != nil {
			return err
		}
	}
	if j.enc == encQuant {
		return write(j.scaleKey, scaleBytes(scales16, scales32))
	}
	return nil
}

// referenceRead reads rows [r, r+n) as float32, checks them and (float16
// mode) rounds them to float16.
func (e *encoder) referenceRead(j *job, r, n int, vals []float32) error {
	if err := e.read(j, r, n, vals); err != nil {
		return err
	}
	if err := checkFinite(vals, j, r, "a non-finite value"); err != nil {
		return err
	}
	if !e.fp32 {
		// The model is cast to the float dtype before quantization.
		for i, v := range vals {
			vals[i] = quant.RoundF16(v)
		}
		if err := checkFinite(vals, j, r, "a value outside the float16 range"); err != nil {
			return err
		}
	}
	return nil
}

// referenceError is the reference loop's error for rows [r, r+n), found
// chunk by chunk as the reference loop reads them.
func (e *encoder) referenceError(j *job, r, n int) error {
	step := chunkRows(j.cols)
	e.grow(step * j.cols)
	for r1 := r; r1 < r+n; r1 += step {
		m := min(step, r+n-r1)
		if err := e.referenceRead(j, r1, m, e.buf[:m*j.cols]); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: internal: fast conversion refused rows %d..%d", j.label, j.row0+r, j.row0+r+n)
}
