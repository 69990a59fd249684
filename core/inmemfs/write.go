// Package inmemfs writes and reads the Core ML delegate's "flattened directory":
// a directory tree stored as one byte blob (pte.md §5.2). File contents come first,
// back to back in node order, then the tree's JSON description written byte-reversed,
// so the blob's last byte is the JSON's opening '{'.
//
// The writer plans everything up front (offsets, JSON, total size) so the file
// contents can be streamed without buffering. The reader follows the Core ML
// runtime's algorithm and validates every region against the blob size.
package inmemfs

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// File is one file of the tree to plan: a slash-separated path relative to the
// root (e.g. "model.mlpackage/Manifest.json") and its exact size in bytes.
type File struct {
	Path string
	Size int64
}

// Entry is a file placed in a blob: its byte range [Offset, Offset+Size).
type Entry struct {
	Path   string
	Offset int64
	Size   int64
}

// Layout is a planned blob: where each file goes and the metadata JSON.
type Layout struct {
	files []Entry
	json  []byte
	size  int64
}

// Files returns the files in the order their contents must be written, with
// their offsets inside the blob.
func (l *Layout) Files() []Entry { return append([]Entry(nil), l.files...) }

// Size is the total blob size: all file contents plus the JSON trailer.
func (l *Layout) Size() int64 { return l.size }

// JSON is the metadata JSON text in reading order (not reversed).
func (l *Layout) JSON() []byte { return append([]byte(nil), l.json...) }

// Trailer is the byte-reversed metadata JSON that ends the blob.
func (l *Layout) Trailer() []byte { return reversed(l.json) }

// DataSize is where the trailer starts: the end of the last file's content.
func (l *Layout) DataSize() int64 { return l.size - int64(len(l.json)) }

func reversed(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[len(b)-1-i] = c
	}
	return out
}

// dir is a directory while planning.
type dir struct {
	dirs  map[string]*dir
	files map[string]int64
}

func newDir() *dir { return &dir{dirs: map[string]*dir{}, files: map[string]int64{}} }

// checkName rejects names the format or the runtime's reader cannot carry
// safely. A backslash is refused because the runtime's brace matcher treats any
// `\"` as an escaped quote, so a name ending in `\` would break the trailer.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty path component")
	case name == "." || name == "..":
		return fmt.Errorf("path component %q not allowed", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("path component %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' || r == '/' {
			return fmt.Errorf("path component %q contains a forbidden character %q", name, r)
		}
	}
	return nil
}

// Plan lays out a blob holding files under a root directory named rootName.
// Nodes are in post-order with siblings sorted by name (byte order) and the root
// last; file contents follow each other without padding (alignment 1), as the
// exporter does for blobs up to 1 GiB. Every file must have Size > 0 (the
// exporter never writes empty files); duplicate paths and paths that are both a
// file and a directory are rejected.
func Plan(rootName string, files []File) (*Layout, error) {
	if err := checkName(rootName); err != nil {
		return nil, fmt.Errorf("inmemfs: root name: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("inmemfs: no files")
	}
	root := newDir()
	for _, f := range files {
		if f.Size <= 0 {
			return nil, fmt.Errorf("inmemfs: file %q: size %d, must be > 0", f.Path, f.Size)
		}
		parts := strings.Split(f.Path, "/")
		for _, p := range parts {
			if err := checkName(p); err != nil {
				return nil, fmt.Errorf("inmemfs: file %q: %w", f.Path, err)
			}
		}
		d := root
		for i, p := range parts[:len(parts)-1] {
			if _, isFile := d.files[p]; isFile {
				return nil, fmt.Errorf("inmemfs: file %q: %q is a file, not a directory", f.Path, strings.Join(parts[:i+1], "/"))
			}
			sub := d.dirs[p]
			if sub == nil {
				sub = newDir()
				d.dirs[p] = sub
			}
			d = sub
		}
		last := parts[len(parts)-1]
		if _, dup := d.files[last]; dup {
			return nil, fmt.Errorf("inmemfs: duplicate file %q", f.Path)
		}
		if _, isDir := d.dirs[last]; isDir {
			return nil, fmt.Errorf("inmemfs: file %q is also a directory", f.Path)
		}
		d.files[last] = f.Size
	}

	p := &planner{}
	p.json = append(p.json, `{"nodes":[`...)
	p.emitDir(rootName, "", root)
	p.json = append(p.json, "]}"...)
	return &Layout{files: p.entries, json: p.json, size: p.offset + int64(len(p.json))}, nil
}

type planner struct {
	json    []byte
	nodes   int
	offset  int64
	entries []Entry
}

// emitDir writes the subtree of d in post-order and returns d's node index.
func (p *planner) emitDir(name, path string, d *dir) int {
	names := make([]string, 0, len(d.dirs)+len(d.files))
	for n := range d.dirs {
		names = append(names, n)
	}
	for n := range d.files {
		names = append(names, n)
	}
	sort.Strings(names)
	idx := make([]int, len(names))
	for i, n := range names {
		childPath := n
		if path != "" {
			childPath = path + "/" + n
		}
		if sub, ok := d.dirs[n]; ok {
			idx[i] = p.emitDir(n, childPath, sub)
			continue
		}
		size := d.files[n]
		idx[i] = p.node(n, nil, nil, p.offset, size, 0)
		p.entries = append(p.entries, Entry{Path: childPath, Offset: p.offset, Size: size})
		p.offset += size
	}
	return p.node(name, names, idx, 0, 0, 1)
}

// node appends one node object; keys in alphabetical order like the exporter's
// JSON library writes them.
func (p *planner) node(name string, childNames []string, childIdx []int, off, size int64, kind int) int {
	b := p.json
	if p.nodes > 0 {
		b = append(b, ',')
	}
	b = append(b, `{"children":{`...)
	for i, n := range childNames {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, n)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(childIdx[i]), 10)
	}
	b = append(b, `},"dataRegion":{"offset":`...)
	b = strconv.AppendInt(b, off, 10)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, size, 10)
	b = append(b, `},"kind":`...)
	b = strconv.AppendInt(b, int64(kind), 10)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, name)
	b = append(b, '}')
	p.json = b
	p.nodes++
	return p.nodes - 1
}

// appendJSONString quotes s; names were checked, so only '"' needs escaping.
// UTF-8 passes through unescaped (the exporter's compact dump does the same).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// Writer streams a planned blob: each file's content in Layout.Files order,
// then the trailer on Close. Nothing is buffered.
type Writer struct {
	w         io.Writer
	l         *Layout
	next      int   // index of the next file to start
	remaining int64 // bytes still expected for the current file
	err       error
	closed    bool
}

// NewWriter returns a Writer that writes the blob planned in l to w.
func NewWriter(w io.Writer, l *Layout) *Writer { return &Writer{w: w, l: l} }

// start begins the next file, which must be path; the returned writer accepts
// at most the planned number of bytes.
func (w *Writer) start(path string) (io.Writer, error) {
	if err := w.finishCurrent(); err != nil {
		return nil, err
	}
	if w.next >= len(w.l.files) {
		return nil, w.fail(fmt.Errorf("inmemfs: file %q: all planned files already written", path))
	}
	e := w.l.files[w.next]
	if e.Path != path {
		return nil, w.fail(fmt.Errorf("inmemfs: file %q written out of order, expected %q", path, e.Path))
	}
	w.next++
	w.remaining = e.Size
	if _, ok := w.w.(RefWriter); ok {
		return refFileWriter{fileWriter{w}}, nil
	}
	return fileWriter{w}, nil
}

// WriteFile writes the next file, path, copying r, which must hold exactly the
// planned size.
func (w *Writer) WriteFile(path string, r io.Reader) error {
	return w.StreamFile(path, func(fw io.Writer) error {
		_, err := io.Copy(fw, r)
		return err
	})
}

// StreamFile writes the next file, path, by calling fn with a writer that
// accepts exactly the planned size (more is an error, and so is less once fn
// returns). Files must come in Layout.Files order.
func (w *Writer) StreamFile(path string, fn func(io.Writer) error) error {
	fw, err := w.start(path)
	if err != nil {
		return err
	}
	if err := fn(fw); err != nil {
		return w.fail(err)
	}
	return w.finishCurrent()
}

type fileWriter struct{ w *Writer }

func (f fileWriter) Write(p []byte) (int, error) {
	w := f.w
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.remaining {
		e := w.l.files[w.next-1]
		return 0, w.fail(fmt.Errorf("inmemfs: file %q: more than the planned %d bytes", e.Path, e.Size))
	}
	n, err := w.w.Write(p)
	w.remaining -= int64(n)
	if err != nil {
		return n, w.fail(err)
	}
	return n, nil
}

// RefWriter is an io.Writer that can also append bytes it holds elsewhere:
// WriteRef appends the n bytes an opaque reference stands for. When the
// Writer's destination is one, the file writers StreamFile hands out are
// too, with the same size checks.
type RefWriter interface {
	io.Writer
	WriteRef(ref any, n int64) error
}

type refFileWriter struct{ fileWriter }

func (f refFileWriter) WriteRef(ref any, n int64) error {
	w := f.w
	if w.err != nil {
		return w.err
	}
	if n < 0 || n > w.remaining {
		e := w.l.files[w.next-1]
		return w.fail(fmt.Errorf("inmemfs: file %q: a reference of %d bytes does not fit the planned %d bytes (%d left)", e.Path, n, e.Size, w.remaining))
	}
	if n == 0 {
		return nil
	}
	if err := w.w.(RefWriter).WriteRef(ref, n); err != nil {
		return w.fail(err)
	}
	w.remaining -= n
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *Writer) finishCurrent() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return w.fail(errors.New("inmemfs: writer is closed"))
	}
	if w.remaining != 0 {
		e := w.l.files[w.next-1]
		return w.fail(fmt.Errorf("inmemfs: file %q: %d of %d bytes missing", e.Path, w.remaining, e.Size))
	}
	return nil
}

// Close checks that every file was written in full and writes the trailer. It
// does not close the underlying writer.
func (w *Writer) Close() error {
	if err := w.finishCurrent(); err != nil {
		return err
	}
	if w.next != len(w.l.files) {
		return w.fail(fmt.Errorf("inmemfs: file %q not written", w.l.files[w.next].Path))
	}
	w.closed = true
	if _, err := w.w.Write(w.l.Trailer()); err != nil {
		return w.fail(err)
	}
	return nil
}
