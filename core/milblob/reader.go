package milblob

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Reader reads blobs from a weight file. Every offset and size read from the
// file is checked against the file size before it is used, so corrupt input
// yields errors, never panics or huge allocations.
type Reader struct {
	r     io.ReaderAt
	size  int64
	count uint32
}

// NewReader checks the header of a weight file of the given size.
func NewReader(r io.ReaderAt, size int64) (*Reader, error) {
	if size < HeaderSize {
		return nil, fmt.Errorf("milblob: weight file of %d bytes is shorter than the %d-byte header", size, HeaderSize)
	}
	var h [HeaderSize]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return nil, fmt.Errorf("milblob: reading header: %w", err)
	}
	count := binary.LittleEndian.Uint32(h[0:])
	if v := binary.LittleEndian.Uint32(h[4:]); v != Version {
		return nil, fmt.Errorf("milblob: header version %d, want %d", v, Version)
	}
	// Each blob needs at least its record, so count is bounded by the size.
	if int64(count) > (size-HeaderSize)/RecordSize {
		return nil, fmt.Errorf("milblob: header claims %d blobs, a %d-byte file holds at most %d", count, size, (size-HeaderSize)/RecordSize)
	}
	return &Reader{r: r, size: size, count: count}, nil
}

// Count is the number of blobs the header declares.
func (r *Reader) Count() int { return int(r.count) }

// Size is the weight file size given to NewReader.
func (r *Reader) Size() int64 { return r.size }

// Blob reads and validates the metadata record at offset meta (a
// BlobFileValue offset). N is derived from the size, dtype and padding.
func (r *Reader) Blob(meta uint64) (Entry, error) {
	if meta < HeaderSize || meta%Align != 0 {
		return Entry{}, fmt.Errorf("milblob: blob offset %d is not a 64-byte aligned record offset after the header", meta)
	}
	if meta > uint64(r.size) || uint64(r.size)-meta < RecordSize {
		return Entry{}, fmt.Errorf("milblob: blob record at %d runs past the end of the %d-byte file", meta, r.size)
	}
	var m [RecordSize]byte
	if _, err := r.r.ReadAt(m[:], int64(meta)); err != nil {
		return Entry{}, fmt.Errorf("milblob: reading blob record at %d: %w", meta, err)
	}
	if s := binary.LittleEndian.Uint32(m[0:]); s != Sentinel {
		return Entry{}, fmt.Errorf("milblob: blob record at %d: bad sentinel 0x%08X", meta, s)
	}
	dt := DType(binary.LittleEndian.Uint32(m[4:]))
	if !dt.Valid() {
		return Entry{}, fmt.Errorf("milblob: blob record at %d: unknown dtype code %d", meta, uint32(dt))
	}
	nbytes := binary.LittleEndian.Uint64(m[8:])
	data := binary.LittleEndian.Uint64(m[16:])
	pad := binary.LittleEndian.Uint64(m[24:])
	if data < meta+RecordSize || data%Align != 0 {
		return Entry{}, fmt.Errorf("milblob: blob record at %d: data offset %d is not an aligned offset after the record", meta, data)
	}
	if data > uint64(r.size) || nbytes > uint64(r.size)-data {
		return Entry{}, fmt.Errorf("milblob: blob record at %d: data [%d, +%d) runs past the end of the %d-byte file", meta, data, nbytes, r.size)
	}
	if pad >= 8 {
		return Entry{}, fmt.Errorf("milblob: blob record at %d: padding of %d bits (must be < 8)", meta, pad)
	}
	bits := uint64(dt.Bits())
	if nbytes == 0 {
		return Entry{}, fmt.Errorf("milblob: blob record at %d: empty blob", meta)
	}
	used := nbytes*8 - pad // nbytes <= file size, cannot overflow
	if used%bits != 0 || (bits%8 == 0 && pad != 0) {
		return Entry{}, fmt.Errorf("milblob: blob record at %d: %d bytes with %d padding bits is not a whole number of %v elements", meta, nbytes, pad, dt)
	}
	return Entry{DType: dt, N: int64(used / bits), Meta: meta, Data: data, Bytes: int64(nbytes), PaddingBits: pad}, nil
}

// Read returns the data bytes of e (as returned by Blob or Walk).
func (r *Reader) Read(e Entry) ([]byte, error) {
	if e.Bytes < 0 || e.Data > uint64(r.size) || uint64(e.Bytes) > uint64(r.size)-e.Data {
		return nil, fmt.Errorf("milblob: blob data [%d, +%d) outside the %d-byte file", e.Data, e.Bytes, r.size)
	}
	b := make([]byte, e.Bytes)
	if _, err := r.r.ReadAt(b, int64(e.Data)); err != nil {
		return nil, fmt.Errorf("milblob: reading blob data at %d: %w", e.Data, err)
	}
	return b, nil
}

// Section gives streaming access to the data of e without loading it.
func (r *Reader) Section(e Entry) (*io.SectionReader, error) {
	if e.Bytes < 0 || e.Data > uint64(r.size) || uint64(e.Bytes) > uint64(r.size)-e.Data {
		return nil, fmt.Errorf("milblob: blob data [%d, +%d) outside the %d-byte file", e.Data, e.Bytes, r.size)
	}
	return io.NewSectionReader(r.r, int64(e.Data), e.Bytes), nil
}

// Walk enumerates the blob chain the way Core ML's reader does: the first
// record follows the header, each next one sits at the 64-aligned end of the
// previous data, Count times.
func (r *Reader) Walk() ([]Entry, error) {
	var out []Entry
	off := uint64(HeaderSize)
	for i := uint32(0); i < r.count; i++ {
		e, err := r.Blob(off)
		if err != nil {
			return out, fmt.Errorf("milblob: blob #%d of %d: %s", i, r.count, strings.TrimPrefix(err.Error(), "milblob: "))
		}
		out = append(out, e)
		off = uint64(alignUp(int64(e.End())))
	}
	return out, nil
}
