package inmemfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Limits of the reader. MaxJSON is the runtime's own limit; the path limits
// keep a hostile tree (deep chains of directories) from costing quadratic memory.
const (
	MaxJSON       = 10 << 20
	maxDepth      = 256
	maxPathBytes  = 4096
	maxTotalPaths = 16 << 20
)

// FS is a parsed flattened directory.
type FS struct {
	r        io.ReaderAt
	size     int64
	jsonAt   int64
	files    []Entry
	byPath   map[string]Entry
	dirs     map[string]bool
	rootName string
}

type jsonNode struct {
	Children   map[string]int64 `json:"children"`
	DataRegion struct {
		Offset uint64 `json:"offset"`
		Size   uint64 `json:"size"`
	} `json:"dataRegion"`
	Kind int    `json:"kind"`
	Name string `json:"name"`
}

func isSpace(c byte) bool {
	return c == 0 || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// backReader yields the bytes of r from the end towards the start in chunks.
type backReader struct {
	r   io.ReaderAt
	pos int64 // file offset of buf[0]
	buf []byte
	i   int // next byte is buf[i-1]
}

func (b *backReader) next() (byte, int64, error) {
	if b.i == 0 {
		if b.pos == 0 {
			return 0, 0, io.EOF
		}
		n := int64(64 << 10)
		if n > b.pos {
			n = b.pos
		}
		if b.buf == nil || int64(cap(b.buf)) < n {
			b.buf = make([]byte, n)
		}
		b.buf = b.buf[:n]
		b.pos -= n
		// ReaderAt may report io.EOF together with a full read at the end.
		if k, err := b.r.ReadAt(b.buf, b.pos); k < len(b.buf) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, err
		}
		b.i = int(n)
	}
	b.i--
	return b.buf[b.i], b.pos + int64(b.i), nil
}

// readTrailer finds the reversed JSON at the end of the blob like the runtime:
// skip trailing NUL/whitespace, require '{', then collect bytes backwards,
// counting braces outside strings, until they balance.
func readTrailer(r io.ReaderAt, size int64) ([]byte, int64, error) {
	br := &backReader{r: r, pos: size}
	var c byte
	var at int64
	var err error
	for {
		c, at, err = br.next()
		if err == io.EOF {
			return nil, 0, errors.New("inmemfs: blob holds no metadata JSON (only NUL/whitespace)")
		}
		if err != nil {
			return nil, 0, fmt.Errorf("inmemfs: reading blob: %w", err)
		}
		if !isSpace(c) {
			break
		}
	}
	if c != '{' {
		return nil, 0, fmt.Errorf("inmemfs: last byte 0x%02x at offset %d is not '{' (no reversed metadata JSON)", c, at)
	}
	out := []byte{c}
	depth, inStr := 1, false
	for depth > 0 {
		c, at, err = br.next()
		if err == io.EOF {
			return nil, 0, errors.New("inmemfs: metadata JSON braces never balance")
		}
		if err != nil {
			return nil, 0, fmt.Errorf("inmemfs: reading blob: %w", err)
		}
		if len(out) >= MaxJSON {
			return nil, 0, fmt.Errorf("inmemfs: metadata JSON longer than %d bytes", MaxJSON)
		}
		out = append(out, c)
		switch {
		case c == '"':
			// Same rule as the runtime: a quote right after a backslash inside a
			// string does not end it.
			if !(inStr && out[len(out)-2] == '\\') {
				inStr = !inStr
			}
		case inStr:
		case c == '{':
			depth++
		case c == '}':
			depth--
		}
	}
	return out, at, nil
}

// Open parses the flattened directory stored in the size bytes of r. It rejects
// blobs whose trailer is missing or malformed, whose file regions leave the
// blob, or whose directories refer to later (or repeated) nodes.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	if size < 0 {
		return nil, errors.New("inmemfs: negative blob size")
	}
	text, at, err := readTrailer(r, size)
	if err != nil {
		return nil, err
	}
	var meta struct {
		Nodes []jsonNode `json:"nodes"`
	}
	if err := json.Unmarshal(text, &meta); err != nil {
		return nil, fmt.Errorf("inmemfs: metadata JSON: %w", err)
	}
	nodes := meta.Nodes
	if len(nodes) == 0 {
		return nil, errors.New("inmemfs: metadata JSON has no nodes")
	}
	parent := make([]int, len(nodes))
	for i := range parent {
		parent[i] = -1
	}
	for i, n := range nodes {
		switch n.Kind {
		case 0:
			off, sz := n.DataRegion.Offset, n.DataRegion.Size
			if off > uint64(size) || sz > uint64(size)-off {
				return nil, fmt.Errorf("inmemfs: file node %d %q: region [%d,+%d) outside the %d-byte blob", i, n.Name, off, sz, size)
			}
		case 1:
			for name, c := range n.Children {
				if c < 0 || c >= int64(i) {
					return nil, fmt.Errorf("inmemfs: directory node %d %q: child %q index %d is not an earlier node", i, n.Name, name, c)
				}
				if parent[c] >= 0 {
					return nil, fmt.Errorf("inmemfs: node %d is a child of both node %d and node %d", c, parent[c], i)
				}
				parent[c] = i
				if nodes[c].Name != name {
					return nil, fmt.Errorf("inmemfs: directory node %d %q lists %q but node %d is named %q", i, n.Name, name, c, nodes[c].Name)
				}
			}
		default:
			return nil, fmt.Errorf("inmemfs: node %d %q: kind %d, want 0 (file) or 1 (directory)", i, n.Name, n.Kind)
		}
	}
	root := len(nodes) - 1
	if nodes[root].Kind != 1 {
		return nil, errors.New("inmemfs: last node (the root) is not a directory")
	}

	fs := &FS{r: r, size: size, jsonAt: at, byPath: map[string]Entry{}, dirs: map[string]bool{"": true}, rootName: nodes[root].Name}
	type item struct {
		node  int
		path  string
		depth int
	}
	stack := []item{{node: root}}
	total := 0
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for name, c := range nodes[it.node].Children {
			p := name
			if it.path != "" {
				p = it.path + "/" + name
			}
			total += len(p)
			switch {
			case name == "" || strings.Contains(name, "/"):
				return nil, fmt.Errorf("inmemfs: invalid entry name %q under %q", name, it.path)
			case len(p) > maxPathBytes || it.depth+1 > maxDepth:
				return nil, fmt.Errorf("inmemfs: path %.64q... too long or too deep", p)
			case total > maxTotalPaths:
				return nil, errors.New("inmemfs: directory tree too large")
			}
			if nodes[c].Kind == 1 {
				fs.dirs[p] = true
				stack = append(stack, item{node: int(c), path: p, depth: it.depth + 1})
				continue
			}
			e := Entry{Path: p, Offset: int64(nodes[c].DataRegion.Offset), Size: int64(nodes[c].DataRegion.Size)}
			fs.files = append(fs.files, e)
			fs.byPath[p] = e
		}
	}
	sort.Slice(fs.files, func(i, j int) bool { return fs.files[i].Path < fs.files[j].Path })
	return fs, nil
}

// Files lists every file reachable from the root, sorted by path.
func (fs *FS) Files() []Entry { return append([]Entry(nil), fs.files...) }

// RootName is the root node's name (the exporter's temporary folder name; unused).
func (fs *FS) RootName() string { return fs.rootName }

// MetadataOffset is the blob offset where the reversed JSON trailer starts.
func (fs *FS) MetadataOffset() int64 { return fs.jsonAt }

// Stat returns the file at path (slash separated, relative to the root).
func (fs *FS) Stat(path string) (Entry, bool) {
	e, ok := fs.byPath[path]
	return e, ok
}

// IsDir reports whether path names a directory ("" is the root).
func (fs *FS) IsDir(path string) bool { return fs.dirs[strings.Trim(path, "/")] }

// Open returns a reader over the content of the file at path.
func (fs *FS) Open(path string) (*io.SectionReader, error) {
	e, ok := fs.byPath[path]
	if !ok {
		return nil, fmt.Errorf("inmemfs: no file %q", path)
	}
	return io.NewSectionReader(fs.r, e.Offset, e.Size), nil
}
