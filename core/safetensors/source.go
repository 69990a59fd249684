package safetensors

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// File names of a Hugging Face model directory.
const (
	SingleFile = "model.safetensors"
	IndexFile  = "model.safetensors.index.json"
)

// maxIndexSize bounds the index JSON (real ones are well under 1 MB).
const maxIndexSize = 64 << 20

// Source is the set of tensors of one model, from a single file or shards.
type Source struct {
	files   []*File          // in the order given or sorted shard order
	where   map[string]*File // tensor name -> its file
	names   []string         // sorted
	closers []io.Closer
}

// OpenFiles builds a Source from opened files; a tensor name present in two
// files is an error.
func OpenFiles(files ...*File) (*Source, error) {
	s := &Source{where: map[string]*File{}}
	for _, f := range files {
		for _, n := range f.names {
			if other, dup := s.where[n]; dup {
				return nil, fmt.Errorf("tensor %q is in both %s and %s", n, other.name, f.name)
			}
			s.where[n] = f
		}
		s.files = append(s.files, f)
	}
	s.sortNames()
	return s, nil
}

// Files lists the files of the source in their order.
func (s *Source) Files() []*File { return append([]*File(nil), s.files...) }

func (s *Source) sortNames() {
	s.names = make([]string, 0, len(s.where))
	for n := range s.where {
		s.names = append(s.names, n)
	}
	sort.Strings(s.names)
}

// OpenFSFile opens one safetensors file of fsys (a single-file model, or
// an adapter's weights) as a Source. Close it when done.
func OpenFSFile(fsys fs.FS, name string) (*Source, error) {
	s := &Source{where: map[string]*File{}}
	f, err := s.openFile(fsys, name)
	if err != nil {
		s.Close()
		return nil, err
	}
	for _, n := range f.names {
		s.where[n] = f
	}
	s.sortNames()
	return s, nil
}

// OpenFS opens the weights of the model directory dir of fsys:
// model.safetensors if present, else the shards listed by
// model.safetensors.index.json. Files must implement io.ReaderAt (those of
// os.DirFS do). Close the Source when done.
func OpenFS(fsys fs.FS, dir string) (src *Source, err error) {
	s := &Source{where: map[string]*File{}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	single := path.Join(dir, SingleFile)
	if _, statErr := fs.Stat(fsys, single); statErr == nil {
		return OpenFSFile(fsys, single)
	}
	indexPath := path.Join(dir, IndexFile)
	data, err := readSmallFile(fsys, indexPath, maxIndexSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: neither %s nor %s found", dir, SingleFile, IndexFile)
	}
	if err != nil {
		return nil, err
	}
	weightMap, err := ParseIndex(data, indexPath)
	if err != nil {
		return nil, err
	}
	shards := map[string]*File{}
	var shardNames []string
	for _, shard := range weightMap {
		if _, ok := shards[shard]; !ok {
			shards[shard] = nil
			shardNames = append(shardNames, shard)
		}
	}
	sort.Strings(shardNames)
	for _, shard := range shardNames {
		f, err := s.openFile(fsys, path.Join(dir, shard))
		if err != nil {
			return nil, fmt.Errorf("%s references shard %s: %w", indexPath, shard, err)
		}
		shards[shard] = f
	}
	for tensor, shard := range weightMap {
		f := shards[shard]
		if _, ok := f.infos[tensor]; !ok {
			return nil, fmt.Errorf("%s: tensor %q is mapped to %s, which does not contain it", indexPath, tensor, shard)
		}
		s.where[tensor] = f
	}
	s.sortNames()
	return s, nil
}

// openFile opens a safetensors file of fsys and keeps it for Close.
func (s *Source) openFile(fsys fs.FS, name string) (*File, error) {
	fh, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, fh)
	ra, ok := fh.(io.ReaderAt)
	if !ok {
		return nil, fmt.Errorf("%s: file does not support random access (io.ReaderAt)", name)
	}
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	f, err := Open(name, ra, st.Size())
	if err != nil {
		return nil, err
	}
	s.files = append(s.files, f)
	return f, nil
}

// readSmallFile reads a whole file of at most limit bytes.
func readSmallFile(fsys fs.FS, name string, limit int64) ([]byte, error) {
	fh, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, limit)
	}
	return data, nil
}

// ParseIndex parses a model.safetensors.index.json (file names it in
// errors) and returns its weight_map: tensor name -> shard file name. Shard
// names must be plain file names in the same directory.
func ParseIndex(data []byte, file string) (map[string]string, error) {
	if err := uniqueKeys(data, ""); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var idx struct {
		WeightMap json.RawMessage `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(idx.WeightMap) == 0 || string(idx.WeightMap) == "null" {
		return nil, fmt.Errorf("%s: missing weight_map", file)
	}
	if err := uniqueKeys(idx.WeightMap, "weight_map: "); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var wm map[string]string
	if err := json.Unmarshal(idx.WeightMap, &wm); err != nil {
		return nil, fmt.Errorf("%s: weight_map: %w", file, err)
	}
	if len(wm) == 0 {
		return nil, fmt.Errorf("%s: weight_map is empty", file)
	}
	for tensor, shard := range wm {
		if tensor == "" {
			return nil, fmt.Errorf("%s: weight_map has an empty tensor name", file)
		}
		if shard == "" || shard == "." || shard == ".." || strings.ContainsAny(shard, "/\\\x00") {
			return nil, fmt.Errorf("%s: weight_map: tensor %q: invalid shard file name %q", file, tensor, shard)
		}
	}
	return wm, nil
}

// Close closes the files OpenFS opened (files given to OpenFiles are the
// caller's).
func (s *Source) Close() error {
	var first error
	for _, c := range s.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	s.closers = nil
	return first
}

// Names lists all tensor names, sorted.
func (s *Source) Names() []string { return append([]string(nil), s.names...) }

// Info describes the named tensor.
func (s *Source) Info(name string) (Info, bool) {
	f, ok := s.where[name]
	if !ok {
		return Info{}, false
	}
	return f.Info(name)
}

// Raw gives the bytes of the named tensor.
func (s *Source) Raw(name string) (*io.SectionReader, error) {
	f, ok := s.where[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	return f.Raw(name)
}

// ReadFloat32 reads rows [row0, row0+rows) of the named F32/F16/BF16 tensor
// as float32 (see File.ReadFloat32).
func (s *Source) ReadFloat32(name string, row0, rows int64, dst []float32) error {
	f, ok := s.where[name]
	if !ok {
		return fmt.Errorf("no tensor %q", name)
	}
	return f.ReadFloat32(name, row0, rows, dst)
}

// Digest hashes the tensor names, dtypes and shapes (not the data): a cheap
// identifier of the model's structure, hex encoded.
func (s *Source) Digest() string {
	h := sha256.New()
	var b [8]byte
	put := func(v int64) {
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	for _, n := range s.names {
		i, _ := s.Info(n)
		put(int64(len(n)))
		io.WriteString(h, n)
		put(int64(len(i.DType)))
		io.WriteString(h, string(i.DType))
		put(int64(len(i.Shape)))
		for _, d := range i.Shape {
			put(d)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
