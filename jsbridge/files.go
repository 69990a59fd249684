//go:build js && wasm

package jsbridge

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall/js"
	"time"

	"lorapte/core/export"
)

// Reading a File costs a round trip to the browser per read, so:
//   - the converter's large reads are announced ahead (ReadAhead) and
//     requested while earlier ones are converted (or, for files the worker
//     pool converts, fetched by the workers);
//   - other sequential reads are served from one window per file, so
//     row-by-row reads cost one JS call per window;
//   - scattered small reads (the base digest's samples) fetch only minRead
//     bytes, so sampling never reads the whole checkpoint;
//   - small files (adapters, up to wholeFile) are read whole on first use.
const (
	DefaultWindow = 4 << 20
	minRead       = 32 << 10
	maxDirectRead = 64 << 20 // bounds one JS ArrayBuffer for huge reads
)

// wholeFile is the size up to which FS files are read whole (see
// BlobReader.whole) and converted here rather than by the worker pool; a
// variable so tests can send small files to a pool.
var wholeFile int64 = 64 << 20

// BlobReader reads a JS Blob (or File) as an io.ReaderAt through
// Blob.slice(a, b).arrayBuffer().
type BlobReader struct {
	blob   js.Value
	size   int64
	window int

	mu      sync.Mutex
	buf     []byte // window contents: bytes [bufOff, bufOff+len(buf))
	bufOff  int64
	lastEnd int64 // end of the previous request, to detect sequential reads (files are read from the start)
	calls   int   // JS reads made, for tests
	pins    pins

	whole  int64    // files up to this size are read whole on first use (0: never)
	pre    js.Value // read ahead: Promise of the window at preOff, preLen bytes; undefined when none
	preOff int64
	preLen int

	// The converter announces the pieces it will read next (ReadAhead);
	// the reader requests them while the current ones are converted.
	pieces []aheadPiece // announced, not yet requested, in read order
	ahead  []aheadPiece // requested before they were asked for, in read order
	// fetch requests an announced piece; nil: read it here (request).
	// Pooled files have a worker fetch it (Pool.fetch); fetchSpan
	// requests pieces that follow each other in the file by one read
	// (Pool.fetchSpan), nil when the pool cannot.
	fetch     func(off int64, n int) (js.Value, error)
	fetchSpan func(off int64, sizes []int) ([]js.Value, error)
}

// aheadPiece is an announced read: its Promise once requested.
type aheadPiece struct {
	off int64
	n   int
	p   js.Value
}

// Announced reads are requested up to aheadBytes ahead of the reader (one
// read of the browser at a time does not keep up with the converter).
// Pooled files read announced pieces that follow each other in the file
// (a split layer's jobs, a tensor's batches) by one read of up to maxSpan
// bytes: each read of a File costs the browser a round trip per chunk of
// its data pipe plus a fixed part, and 4 MB reads took ~1.5× the CPU of
// 32 MB ones (probe, Chromium 156).
const (
	maxSpan    = 32 << 20
	aheadBytes = 64 << 20
)

// maxPieces bounds the announced pieces kept (the converter announces one
// tensor ahead; a 128256×2048 embedding is ~130 pieces).
const maxPieces = 4096

// ReadAhead announces reads (offset, size) that will follow the ones
// announced before, in this order, so the reader may request them early.
// It never reads ahead beyond what was announced: the converter reads
// tensors in plan order, not file order.
func (r *BlobReader) ReadAhead(pieces [][2]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.size <= r.whole {
		return // read whole anyway
	}
	for _, p := range pieces {
		if p[0] < 0 || p[1] < minRead || p[0]+p[1] > r.size || p[1] > maxDirectRead {
			continue // small reads gain nothing
		}
		if len(r.pieces) >= maxPieces {
			return
		}
		r.pieces = append(r.pieces, aheadPiece{off: p[0], n: int(p[1])})
	}
}

// takeAhead returns the request of an announced read of n bytes at off,
// requesting it now if it was not yet, and requests the next announced
// ones; ok is false if the read was not announced. r.mu is held.
func (r *BlobReader) takeAhead(off int64, n int) (p js.Value, ok bool, err error) {
	for i, a := range r.ahead {
		if a.off == off && a.n == n {
			r.ahead = append(r.ahead[:i], r.ahead[i+1:]...)
			p, ok = a.p, true
			break
		}
	}
	if !ok {
		for i, a := range r.pieces {
			if a.off == off && a.n == n {
				// Announced but not yet requested: the ones before it are
				// skipped (the converter moved on).
				r.pieces = r.pieces[i+1:]
				if p, err = r.fetchPiece(off, n); err != nil {
					return js.Value{}, false, err
				}
				ok = true
				break
			}
		}
	}
	if !ok {
		return js.Value{}, false, nil
	}
	r.requestAhead()
	return p, true, nil
}

// requestAhead requests announced pieces up to aheadBytes ahead; with
// fetchSpan, those that follow each other in the file by one read. r.mu
// is held.
func (r *BlobReader) requestAhead() {
	queued := 0
	for _, a := range r.ahead {
		queued += a.n
	}
	for queued < aheadBytes && len(r.pieces) > 0 {
		k, span := 1, r.pieces[0].n
		for r.fetchSpan != nil && k < len(r.pieces) && r.pieces[k].off == r.pieces[k-1].off+int64(r.pieces[k-1].n) && span+r.pieces[k].n <= maxSpan {
			span += r.pieces[k].n
			k++
		}
		run := r.pieces[:k]
		if k == 1 {
			var err error
			if run[0].p, err = r.fetchPiece(run[0].off, run[0].n); err != nil {
				return // read in line when needed
			}
		} else {
			sizes := make([]int, k)
			for i, a := range run {
				sizes[i] = a.n
			}
			r.calls++
			ps, err := r.fetchSpan(run[0].off, sizes)
			if err != nil || len(ps) != k {
				return // read in line when needed
			}
			for i := range run {
				run[i].p = ps[i]
			}
		}
		r.ahead = append(r.ahead, run...)
		r.pieces = r.pieces[k:]
		queued += span
	}
}

// takeAheadHere is takeAhead for reads into this instance's memory.
func (r *BlobReader) takeAheadHere(off int64, n int) (js.Value, bool, error) {
	if r.fetch != nil {
		return js.Value{}, false, nil
	}
	return r.takeAhead(off, n)
}

func (r *BlobReader) fetchPiece(off int64, n int) (js.Value, error) {
	if r.fetch != nil {
		r.calls++
		return r.fetch(off, n)
	}
	return r.request(off, n)
}

// NewBlobReader reads blob with a read-ahead window of the given size
// (DefaultWindow when window <= 0).
func NewBlobReader(blob js.Value, window int) *BlobReader {
	if window <= 0 {
		window = DefaultWindow
	}
	return &BlobReader{blob: blob, size: int64(blob.Get("size").Float()), window: window, pre: js.Undefined()}
}

// Size is the blob's size in bytes.
func (r *BlobReader) Size() int64 { return r.size }

// Calls reports how many reads went to JavaScript.
func (r *BlobReader) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// ReadAt implements io.ReaderAt.
func (r *BlobReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= r.size {
		if len(p) == 0 && off == r.size {
			return 0, nil
		}
		return 0, io.EOF
	}
	r.mu.Lock()
	want := p
	short := false
	if rest := r.size - off; int64(len(p)) > rest {
		want, short = p[:rest], true
	}
	// Announced pieces are read here unless workers fetch them (r.fetch).
	if pr, ok, err := r.takeAheadHere(off, len(want)); ok || err != nil {
		// Announced: the read is (or now is) on its way, whatever its size.
		r.lastEnd = off + int64(len(want))
		return r.awaitUnlocked(want, off, short, pr, err)
	}
	inWindow := off >= r.bufOff && off+int64(len(want)) <= r.bufOff+int64(len(r.buf))
	sequential := off == r.lastEnd || (off >= r.bufOff && off < r.bufOff+int64(len(r.buf)))
	r.lastEnd = off + int64(len(want))
	if !inWindow && !sequential && r.size > r.whole && len(want) < r.window {
		// A scattered small read (digest samples, norm weights) goes
		// straight to the browser.
		pr, err := r.request(off, len(want))
		return r.awaitUnlocked(want, off, short, pr, err)
	}
	defer r.mu.Unlock()
	n := 0
	for n < len(want) {
		o := off + int64(n)
		if o >= r.bufOff && o < r.bufOff+int64(len(r.buf)) {
			n += copy(want[n:], r.buf[o-r.bufOff:])
			continue
		}
		rest := len(want) - n
		if r.size <= r.whole {
			// Small files (adapters) are read whole: their tensors are read
			// in plan order, not file order, and each scattered read would
			// be a round trip to the browser.
			o, rest = 0, int(r.size)
		} else if rest >= r.window {
			// Large reads skip the window: no copy, no eviction.
			k := min(rest, maxDirectRead)
			if err := r.readJS(want[n:n+k], o); err != nil {
				return n, err
			}
			n += k
			continue
		}
		fill := r.window
		if !sequential || r.size <= r.whole {
			fill = max(rest, minRead)
		}
		fill = int(min(int64(fill), r.size-o))
		// Streaming: this window follows the previous one.
		streaming := sequential && len(r.buf) > 0 && o == r.bufOff+int64(len(r.buf))
		if cap(r.buf) < fill {
			r.buf = make([]byte, fill, max(fill, min(r.window, int(r.size))))
		}
		r.buf = r.buf[:fill]
		r.bufOff = o
		if err := r.fill(o); err != nil {
			r.buf = r.buf[:0]
			return n, err
		}
		if next := o + int64(fill); streaming && fill == r.window && next < r.size {
			r.prefetch(next, int(min(int64(r.window), r.size-next)))
		}
	}
	if short {
		return n, io.EOF
	}
	return n, nil
}

// awaitUnlocked finishes a read requested with r.mu held (pr, or err from
// requesting it): it waits without the lock, so concurrent reads overlap
// instead of queueing behind each other.
func (r *BlobReader) awaitUnlocked(want []byte, off int64, short bool, pr js.Value, err error) (int, error) {
	r.mu.Unlock()
	if err == nil {
		err = awaitInto(want, pr, off)
	}
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	r.pins.add(len(want))
	r.mu.Unlock()
	if short {
		return len(want), io.EOF
	}
	return len(want), nil
}

// fill loads the window at off, from the prefetched read when it is that one.
func (r *BlobReader) fill(off int64) error {
	pre := r.pre
	r.pre = js.Undefined()
	if !pre.IsUndefined() && r.preOff == off && r.preLen == len(r.buf) {
		if err := r.await(r.buf, pre, off); err == nil {
			return nil
		}
		// A failed read ahead is retried once, in line.
	}
	return r.readJS(r.buf, off)
}

// prefetch starts reading the window at off, n bytes, so that the browser
// reads the file while the exporter converts the current window (wasm runs
// on one thread, but the file is read by the browser's).
func (r *BlobReader) prefetch(off int64, n int) {
	p, err := r.request(off, n)
	if err != nil {
		return // read in line when needed
	}
	r.pre, r.preOff, r.preLen = p, off, n
}

// request starts reading n bytes at off: a Promise of an ArrayBuffer.
func (r *BlobReader) request(off int64, n int) (js.Value, error) {
	r.calls++
	return readBlob(r.blob, off, int64(n))
}

// readBlob starts reading n bytes at off of blob: a Promise of an
// ArrayBuffer.
func readBlob(blob js.Value, off, n int64) (js.Value, error) {
	slice, err := call(blob, "slice", float64(off), float64(off+n))
	if err != nil {
		return js.Value{}, err
	}
	return call(slice, "arrayBuffer")
}

// readJS fills dst with the blob's bytes at off.
func (r *BlobReader) readJS(dst []byte, off int64) error {
	p, err := r.request(off, len(dst))
	if err != nil {
		return err
	}
	return r.await(dst, p, off)
}

// await copies the result of request into dst (r.mu held).
func (r *BlobReader) await(dst []byte, p js.Value, off int64) error {
	if err := awaitInto(dst, p, off); err != nil {
		return err
	}
	r.pins.add(len(dst))
	return nil
}

// awaitInto waits for a read started by request and copies it into dst.
func awaitInto(dst []byte, p js.Value, off int64) error {
	ab, err := Await(p)
	if err != nil {
		return err
	}
	u8 := js.Global().Get("Uint8Array").New(ab)
	if got := u8.Length(); got != len(dst) {
		return fmt.Errorf("read %d bytes at offset %d, want %d (did the file change on disk?)", got, off, len(dst))
	}
	js.CopyBytesToGo(dst, u8)
	return nil
}

// FileEntry is a dropped file and the path it has in the FS.
type FileEntry struct {
	Path string
	Blob js.Value // a File or Blob
}

// FS is a read-only fs.FS over dropped files. Directories are implied by
// the file paths. Its files implement io.ReaderAt.
type FS struct {
	files  map[string]js.Value
	dirs   map[string][]string // dir -> sorted child names
	window int
	pool   *Pool               // converts pieces of the files in workers; nil: here
	pre    map[string]js.Value // whole reads started by Prefetch, for Open
}

// Prefetch starts reading every file of up to wholeFile bytes (configs,
// adapters), all at once, so that the browser reads them while the export
// opens the others: Open hands each read to its file. Read one after the
// other, two 45 MB adapters took ~0.3 s before planning could start.
func (f *FS) Prefetch() {
	for p, b := range f.files {
		size := int64(b.Get("size").Float())
		if size <= 0 || size > wholeFile {
			continue
		}
		pr, err := readBlob(b, 0, size)
		if err != nil {
			continue
		}
		if f.pre == nil {
			f.pre = map[string]js.Value{}
		}
		f.pre[p] = pr
	}
}

// SetPool has the files' pieces converted by the page's workers.
func (f *FS) SetPool(p *Pool) { f.pool = p }

// NewFS builds the file system. Paths are slash-separated and relative
// (a leading "/" as in FileSystemEntry.fullPath is dropped).
func NewFS(entries []FileEntry, window int) (*FS, error) {
	f := &FS{files: map[string]js.Value{}, dirs: map[string][]string{".": nil}, window: window}
	children := map[string]map[string]bool{}
	for _, e := range entries {
		p := strings.TrimPrefix(e.Path, "/")
		if !fs.ValidPath(p) || p == "." {
			return nil, fmt.Errorf("file path %q: not a valid relative path", e.Path)
		}
		if _, dup := f.files[p]; dup {
			return nil, fmt.Errorf("file %s is given twice", p)
		}
		if _, isDir := children[p]; isDir {
			return nil, fmt.Errorf("%s is both a file and a folder", p)
		}
		f.files[p] = e.Blob
		for child := p; child != "."; {
			dir := path.Dir(child)
			if _, isFile := f.files[dir]; isFile {
				return nil, fmt.Errorf("%s is both a file and a folder", dir)
			}
			if children[dir] == nil {
				children[dir] = map[string]bool{}
			}
			children[dir][path.Base(child)] = true
			child = dir
		}
	}
	for dir, names := range children {
		list := make([]string, 0, len(names))
		for n := range names {
			list = append(list, n)
		}
		sort.Strings(list)
		f.dirs[dir] = list
	}
	return f, nil
}

// Open implements fs.FS.
func (f *FS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if b, ok := f.files[name]; ok {
		r := NewBlobReader(b, f.window)
		r.whole = wholeFile
		if pr, ok := f.pre[name]; ok {
			delete(f.pre, name) // a second Open reads again
			r.pre, r.preOff, r.preLen = pr, 0, int(r.size)
		}
		fl := &file{name: name, r: r, blob: b}
		if f.pool != nil && r.Size() > r.whole {
			// Small files (adapters) are read whole here anyway, and
			// their many small tensors would cost a round trip each.
			pool := f.pool
			r.fetch = func(off int64, n int) (js.Value, error) { return pool.fetch(b, off, n) }
			if pool.spans {
				r.fetchSpan = func(off int64, sizes []int) ([]js.Value, error) { return pool.fetchSpan(b, off, sizes) }
			}
			return &pooledFile{fl, pool}, nil
		}
		return fl, nil
	}
	if _, ok := f.dirs[name]; ok {
		return &dir{fsys: f, name: name}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (f *FS) info(name string) fs.FileInfo {
	if b, ok := f.files[name]; ok {
		fi := fileInfo{name: path.Base(name), size: int64(b.Get("size").Float())}
		if lm := b.Get("lastModified"); lm.Type() == js.TypeNumber {
			fi.mod = time.UnixMilli(int64(lm.Float()))
		}
		return fi
	}
	return fileInfo{name: path.Base(name), dir: true}
}

// file is an open dropped file: sequential Read on top of ReadAt.
type file struct {
	name string
	blob js.Value
	r    *BlobReader
	off  int64
}

func (f *file) Stat() (fs.FileInfo, error) {
	fi := fileInfo{name: path.Base(f.name), size: f.r.Size()}
	if lm := f.blob.Get("lastModified"); lm.Type() == js.TypeNumber {
		fi.mod = time.UnixMilli(int64(lm.Float()))
	}
	return fi, nil
}

func (f *file) Read(p []byte) (int, error) {
	n, err := f.r.ReadAt(p, f.off)
	f.off += int64(n)
	if err != nil && err != io.EOF {
		err = &fs.PathError{Op: "read", Path: f.name, Err: err}
	}
	return n, err
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.r.ReadAt(p, off)
	if err != nil && err != io.EOF {
		err = &fs.PathError{Op: "read", Path: f.name, Err: err}
	}
	return n, err
}

// pooledFile is a file whose pieces the worker pool converts
// (export.PieceConverter).
type pooledFile struct {
	*file
	pool *Pool
}

// ConvertPiece has a worker convert the piece: the worker that fetched it
// ahead (announced pieces are on their way already), else one that
// fetches it now.
func (f *pooledFile) ConvertPiece(off int64, p export.Piece, out, scales []byte) error {
	_, err := f.piece(off, p, func(src js.Value) (any, error) { return nil, f.pool.convert(src, p, out, scales) })
	return err
}

// CanHold implements export.PieceHolder: pieces stay in the workers when
// the export's output is a file they write (filesink.go).
func (f *pooledFile) CanHold() bool { return f.pool.holding }

// HoldPiece implements export.PieceHolder: the worker converts the piece
// and keeps it; the reference is a *heldPiece for the file sink.
func (f *pooledFile) HoldPiece(off int64, p export.Piece, scales []byte, twins []export.Twin) (any, error) {
	return f.piece(off, p, func(src js.Value) (any, error) { return f.pool.hold(src, p, scales, twins) })
}

// piece hands piece p at off to do with the handle of its fetched bytes.
func (f *pooledFile) piece(off int64, p export.Piece, do func(src js.Value) (any, error)) (any, error) {
	n := p.SourceBytes()
	if off < 0 || off+int64(n) > f.r.Size() {
		return nil, &fs.PathError{Op: "read", Path: f.name, Err: io.ErrUnexpectedEOF}
	}
	f.r.mu.Lock()
	src, ok, err := f.r.takeAhead(off, n)
	if err == nil && !ok {
		src, err = f.r.fetchPiece(off, n)
	}
	f.r.mu.Unlock()
	var res any
	if err == nil {
		res, err = do(src)
	}
	if err != nil {
		if errors.Is(err, export.ErrSlowPath) {
			return nil, err
		}
		return nil, &fs.PathError{Op: "convert", Path: f.name, Err: err}
	}
	return res, nil
}

// ReadAhead passes the converter's hint on (see BlobReader.ReadAhead).
func (f *file) ReadAhead(pieces [][2]int64) { f.r.ReadAhead(pieces) }

func (f *file) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.r.Size()
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrInvalid}
	}
	f.off = offset
	return offset, nil
}

func (f *file) Close() error { return nil }

// dir is an open directory.
type dir struct {
	fsys *FS
	name string
	pos  int
}

func (d *dir) Stat() (fs.FileInfo, error) { return fileInfo{name: path.Base(d.name), dir: true}, nil }
func (d *dir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: errors.New("is a directory")}
}
func (d *dir) Close() error { return nil }

func (d *dir) ReadDir(n int) ([]fs.DirEntry, error) {
	names := d.fsys.dirs[d.name][d.pos:]
	if n > 0 && len(names) > n {
		names = names[:n]
	}
	if n > 0 && len(names) == 0 {
		return nil, io.EOF
	}
	d.pos += len(names)
	out := make([]fs.DirEntry, len(names))
	for i, c := range names {
		out[i] = fs.FileInfoToDirEntry(d.fsys.info(path.Join(d.name, c)))
	}
	return out, nil
}

type fileInfo struct {
	name string
	size int64
	dir  bool
	mod  time.Time
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return fi.size }
func (fi fileInfo) ModTime() time.Time { return fi.mod }
func (fi fileInfo) IsDir() bool        { return fi.dir }
func (fi fileInfo) Sys() any           { return nil }
func (fi fileInfo) Mode() fs.FileMode {
	if fi.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
