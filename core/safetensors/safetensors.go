// Package safetensors reads tensors from safetensors files without loading
// them: headers are parsed (with github.com/nlpodyssey/safetensors) and then
// validated against the real file size, and tensor data is read on demand
// through io.ReaderAt. A Source groups the tensors of a model that may be
// split into shards. A small deterministic writer serves tests and the test
// data generator.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	st "github.com/nlpodyssey/safetensors"

	"lorapte/core/quant"
)

// MaxHeaderSize bounds the JSON header, as the reference implementation does.
const MaxHeaderSize = 100 << 20

// DType is a safetensors element type name, e.g. "F32", "BF16", "I8".
type DType string

// Element types lorapte knows the size of.
const (
	BOOL DType = "BOOL"
	U8   DType = "U8"
	I8   DType = "I8"
	I16  DType = "I16"
	U16  DType = "U16"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I32  DType = "I32"
	U32  DType = "U32"
	F32  DType = "F32"
	F64  DType = "F64"
	I64  DType = "I64"
	U64  DType = "U64"
)

// Size is the element size in bytes, 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// IsFloat reports whether d is one of the float types lorapte converts
// (F32, F16, BF16).
func (d DType) IsFloat() bool { return d == F32 || d == F16 || d == BF16 }

// Info describes one tensor of a file.
type Info struct {
	Name   string
	File   string // the name given to Open
	DType  DType
	Shape  []int64
	Offset int64 // absolute offset of the data in the file
	Bytes  int64
}

// Numel is the number of elements (1 for a scalar).
func (i Info) Numel() int64 {
	n := int64(1)
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// rowsCols views the tensor as a matrix: [shape0, rest] for rank >= 2, one
// row for rank 0 and 1.
func (i Info) rowsCols() (rows, cols int64) {
	if len(i.Shape) < 2 {
		return 1, i.Numel()
	}
	if i.Shape[0] == 0 {
		return 0, 0
	}
	return i.Shape[0], i.Numel() / i.Shape[0]
}

// File is an opened safetensors file.
type File struct {
	name   string
	r      io.ReaderAt
	size   int64
	header []byte // raw header JSON, kept for caches that rebuild the file's index
	infos  map[string]Info
	names  []string
	meta   map[string]string
}

// Open reads and validates the header of the safetensors file r of size
// bytes; name is used in errors and Info.File.
func Open(name string, r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, fmt.Errorf("%s: %d bytes, too small for a safetensors file", name, size)
	}
	var lenBuf [8]byte
	if err := readFull(r, lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading header length: %w", name, err)
	}
	hlen := binary.LittleEndian.Uint64(lenBuf[:])
	if hlen > MaxHeaderSize {
		return nil, fmt.Errorf("%s: header length %d exceeds the %d byte limit", name, hlen, MaxHeaderSize)
	}
	if hlen > uint64(size-8) {
		return nil, fmt.Errorf("%s: header length %d runs past the end of the %d byte file", name, hlen, size)
	}
	header := make([]byte, hlen)
	if err := readFull(r, header, 8); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", name, err)
	}
	if err := uniqueKeys(header, ""); err != nil {
		return nil, fmt.Errorf("%s: header: %w", name, err)
	}
	var md st.Metadata
	if err := md.UnmarshalJSON(header); err != nil {
		return nil, fmt.Errorf("%s: header: %w", name, err)
	}
	dataStart := 8 + int64(hlen)
	dataLen := size - dataStart
	f := &File{name: name, r: r, size: size, header: header, infos: map[string]Info{}, meta: map[string]string{}}
	for k, v := range md.Metadata() {
		f.meta[k] = v
	}
	tensors := md.Tensors()
	for tn := range tensors {
		f.names = append(f.names, tn)
	}
	sort.Strings(f.names) // check in name order so errors are deterministic
	for _, tn := range f.names {
		info, err := checkTensor(tn, tensors[tn], dataLen)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", name, tn, err)
		}
		info.File = name
		info.Offset += dataStart
		f.infos[tn] = info
	}
	if err := f.checkOverlaps(); err != nil {
		return nil, err
	}
	return f, nil
}

// readFull reads len(p) bytes at off; io.ReaderAt may report io.EOF along
// with a complete read at the end of the file, which is fine.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// checkTensor validates one header entry against the data section size and
// returns it with an offset relative to the data section.
func checkTensor(name string, ti *st.TensorInfo, dataLen int64) (Info, error) {
	if name == "" {
		return Info{}, errors.New("empty tensor name")
	}
	dt := DType(ti.DType.String())
	if dt.Size() == 0 {
		return Info{}, fmt.Errorf("unsupported dtype %q", dt)
	}
	shape := make([]int64, len(ti.Shape))
	numel := uint64(1)
	for i, d := range ti.Shape {
		if d > math.MaxInt64 {
			return Info{}, fmt.Errorf("dimension %d too large", d)
		}
		shape[i] = int64(d)
		if d != 0 && numel > math.MaxInt64/d {
			return Info{}, fmt.Errorf("shape %v overflows", ti.Shape)
		}
		numel *= d
	}
	if numel > math.MaxInt64/uint64(dt.Size()) {
		return Info{}, fmt.Errorf("shape %v overflows", ti.Shape)
	}
	nbytes := numel * uint64(dt.Size())
	begin, end := ti.DataOffsets[0], ti.DataOffsets[1]
	switch {
	case begin > end:
		return Info{}, fmt.Errorf("data_offsets [%d, %d]: begin after end", begin, end)
	case end > uint64(dataLen):
		return Info{}, fmt.Errorf("data_offsets [%d, %d] past the end of the %d byte data section", begin, end, dataLen)
	case end-begin != nbytes:
		return Info{}, fmt.Errorf("data_offsets [%d, %d] hold %d bytes, but %s %v needs %d", begin, end, end-begin, dt, ti.Shape, nbytes)
	}
	return Info{Name: name, DType: dt, Shape: shape, Offset: int64(begin), Bytes: int64(nbytes)}, nil
}

// checkOverlaps rejects tensors whose (non-empty) byte ranges intersect.
func (f *File) checkOverlaps() error {
	type span struct {
		name       string
		begin, end int64
	}
	spans := make([]span, 0, len(f.infos))
	for _, n := range f.names {
		if i := f.infos[n]; i.Bytes > 0 {
			spans = append(spans, span{n, i.Offset, i.Offset + i.Bytes})
		}
	}
	sort.Slice(spans, func(a, b int) bool {
		if spans[a].begin != spans[b].begin {
			return spans[a].begin < spans[b].begin
		}
		return spans[a].name < spans[b].name
	})
	for k := 1; k < len(spans); k++ {
		if spans[k].begin < spans[k-1].end {
			return fmt.Errorf("%s: tensor %q overlaps tensor %q", f.name, spans[k].name, spans[k-1].name)
		}
	}
	return nil
}

// uniqueKeys checks that the top-level JSON object in data has no duplicate
// keys (encoding/json would silently keep the last one) and that nothing
// but whitespace follows it. what names the object in errors.
func uniqueKeys(data []byte, what string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%sexpected a JSON object", what)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("%sduplicate key %q", what, key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // closing brace
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%sunexpected data after the JSON object", what)
	}
	return nil
}

// Name is the name the file was opened with.
func (f *File) Name() string { return f.name }

// Names lists the tensor names, sorted.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Info describes the named tensor.
func (f *File) Info(name string) (Info, bool) {
	i, ok := f.infos[name]
	if ok {
		i.Shape = append([]int64(nil), i.Shape...)
	}
	return i, ok
}

// Metadata returns a copy of the header's __metadata__ strings.
func (f *File) Metadata() map[string]string {
	m := make(map[string]string, len(f.meta))
	for k, v := range f.meta {
		m[k] = v
	}
	return m
}

// Raw gives the bytes of the named tensor.
func (f *File) Raw(name string) (*io.SectionReader, error) {
	i, ok := f.infos[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.name, name)
	}
	return io.NewSectionReader(f.r, i.Offset, i.Bytes), nil
}

// ReadFloat32 reads rows [row0, row0+rows) of the named tensor, converted
// from F32, F16 or BF16 to float32, into dst[:rows*cols]. A tensor of rank
// >= 2 is viewed as [shape[0], rest]; rank 0 or 1 is a single row. It does
// one ReadAt of exactly the bytes needed.
func (f *File) ReadFloat32(name string, row0, rows int64, dst []float32) error {
	i, ok := f.infos[name]
	if !ok {
		return fmt.Errorf("%s: no tensor %q", f.name, name)
	}
	return f.readFloat32(i, row0, rows, dst)
}

func (f *File) readFloat32(i Info, row0, rows int64, dst []float32) error {
	if !i.DType.IsFloat() {
		return fmt.Errorf("%s: tensor %q has dtype %s, want F32, F16 or BF16", f.name, i.Name, i.DType)
	}
	nrows, cols := i.rowsCols()
	if row0 < 0 || rows < 0 || row0 > nrows || rows > nrows-row0 {
		return fmt.Errorf("%s: tensor %q: rows [%d, %d) outside [0, %d)", f.name, i.Name, row0, row0+rows, nrows)
	}
	n := rows * cols
	if int64(len(dst)) < n {
		return fmt.Errorf("%s: tensor %q: destination holds %d values, need %d", f.name, i.Name, len(dst), n)
	}
	es := int64(i.DType.Size())
	buf := make([]byte, n*es)
	if err := readFull(f.r, buf, i.Offset+row0*cols*es); err != nil {
		return fmt.Errorf("%s: reading tensor %q: %w", f.name, i.Name, err)
	}
	switch i.DType {
	case F32:
		quant.DecodeF32LE(dst, buf)
	case F16:
		quant.DecodeF16LE(dst, buf)
	case BF16:
		quant.DecodeBF16LE(dst, buf)
	}
	return nil
}

// Size is the file's size in bytes.
// Data is the file's data section (the bytes after the header).
func (f *File) Data() *io.SectionReader {
	start := 8 + int64(len(f.header))
	return io.NewSectionReader(f.r, start, f.size-start)
}

func (f *File) Size() int64 { return f.size }

// Header returns the raw header JSON (without the 8-byte length prefix).
func (f *File) Header() []byte { return append([]byte(nil), f.header...) }

// OpenHeader rebuilds a File from a header saved with Header and the file's
// size, without its tensor data: Info works, reading data fails. The
// browser uses it to plan exports against a cached, already converted base.
func OpenHeader(name string, header []byte, size int64) (*File, error) {
	return Open(name, headerOnly(header), size)
}

// headerOnly is an io.ReaderAt holding just the length prefix and header.
type headerOnly []byte

func (h headerOnly) ReadAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if off < 0 || end > 8+int64(len(h)) {
		return 0, errors.New("tensor data is not available (header-only file)")
	}
	full := make([]byte, 8+len(h))
	binary.LittleEndian.PutUint64(full, uint64(len(h)))
	copy(full[8:], h)
	return copy(p, full[off:end]), nil
}
