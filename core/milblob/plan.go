package milblob

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Layout constants of format version 2 (coreml.md §3.1–3.2).
const (
	HeaderSize = 64         // file header: count, version, 56 zero bytes
	RecordSize = 64         // metadata record preceding each blob's data
	Align      = 64         // every metadata record starts on this boundary
	Version    = 2          // the only version readers accept
	Sentinel   = 0xDEADBEEF // first u32 of every metadata record
)

// maxElements keeps n*bits far away from int64 overflow; no real tensor comes close.
const maxElements = int64(1) << 56

// Entry describes one blob: where its record and data sit and how big it is.
type Entry struct {
	Key         string // caller's identity for Add entries; "sha256:<hex>" for AddBytes; empty when read back
	DType       DType
	N           int64  // number of elements
	Meta        uint64 // offset of the 64-byte metadata record = BlobFileValue.offset
	Data        uint64 // offset of the first data byte (Meta + 64)
	Bytes       int64  // data size in bytes, ceil(N*bits/8)
	PaddingBits uint64 // unused bits in the last data byte (sub-byte types)
}

// End is the offset just past the blob's data.
func (e Entry) End() uint64 { return e.Data + uint64(e.Bytes) }

// Plan assigns offsets to blobs before any data is written. The zero value is
// an empty plan ready to use. Errors are recorded (first one wins, see Err) so a
// graph builder can call Add freely and check once.
type Plan struct {
	entries []Entry
	byKey   map[string]int   // Add key -> entry index
	byHash  map[[32]byte]int // AddBytes content hash -> entry index
	inline  map[int][]byte   // entry index -> data of AddBytes entries
	end     int64            // current file end; 0 means "only the header"
	err     error
}

// NewPlan returns an empty plan (a file holding only the header).
func NewPlan() *Plan { return &Plan{} }

func (p *Plan) lazyInit() {
	if p.byKey == nil {
		p.byKey = map[string]int{}
		p.byHash = map[[32]byte]int{}
		p.inline = map[int][]byte{}
		p.end = HeaderSize
	}
}

func (p *Plan) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// Add reserves a blob of n elements of dt identified by key and returns its
// metadata offset. Adding the same key again returns the same offset without
// storing the blob twice; dt and n must then match.
func (p *Plan) Add(key string, dt DType, n int64) uint64 {
	p.lazyInit()
	if i, ok := p.byKey[key]; ok {
		e := p.entries[i]
		if e.DType != dt || e.N != n {
			p.fail(fmt.Errorf("milblob: blob %q added again as %v[%d], first added as %v[%d]", key, dt, n, e.DType, e.N))
		}
		return e.Meta
	}
	i, err := p.reserve(key, dt, n)
	if err != nil {
		p.fail(err)
		return 0
	}
	p.byKey[key] = i
	return p.entries[i].Meta
}

// AddBytes reserves a blob whose (small) content is known now. Blobs with the
// same dtype, count and bytes are stored once; the Writer emits the data
// itself when it reaches the entry.
func (p *Plan) AddBytes(dt DType, n int64, data []byte) uint64 {
	p.lazyInit()
	h := sha256.New()
	var hdr [12]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(dt))
	binary.LittleEndian.PutUint64(hdr[4:], uint64(n))
	h.Write(hdr[:])
	h.Write(data)
	var sum [32]byte
	h.Sum(sum[:0])
	key := "sha256:" + hex.EncodeToString(sum[:])
	if i, ok := p.byHash[sum]; ok {
		return p.entries[i].Meta
	}
	if dt.Valid() && n > 0 && n <= maxElements {
		if want, _ := dt.ByteSize(n); int64(len(data)) != want {
			p.fail(fmt.Errorf("milblob: inline %v[%d] blob needs %d bytes, got %d", dt, n, want, len(data)))
			return 0
		}
	}
	i, err := p.reserve(key, dt, n)
	if err != nil {
		p.fail(err)
		return 0
	}
	p.byHash[sum] = i
	p.inline[i] = append([]byte(nil), data...)
	return p.entries[i].Meta
}

func (p *Plan) reserve(key string, dt DType, n int64) (int, error) {
	if !dt.Valid() {
		return 0, fmt.Errorf("milblob: blob %q: unknown dtype code %d", key, uint32(dt))
	}
	if n <= 0 || n > maxElements {
		return 0, fmt.Errorf("milblob: blob %q: element count %d out of range", key, n)
	}
	bytes, pad := dt.ByteSize(n)
	meta := alignUp(p.end)
	e := Entry{Key: key, DType: dt, N: n, Meta: uint64(meta), Data: uint64(meta + RecordSize), Bytes: bytes, PaddingBits: pad}
	p.entries = append(p.entries, e)
	p.end = int64(e.End())
	return len(p.entries) - 1, nil
}

// Entries lists the planned blobs in file order.
func (p *Plan) Entries() []Entry { return append([]Entry(nil), p.entries...) }

// PrefixDigest fingerprints the layout of the first k entries: keys,
// types, sizes and offsets, and the bytes of the inline ones. Two plans
// with the same prefix digest write the same bytes from HeaderSize to the
// end of entry k-1 when their Add entries get the same data, so a file
// written from one plan can stand in for that range of the other
// (Writer.WritePrefixRef).
func (p *Plan) PrefixDigest(k int) string {
	h := sha256.New()
	for i, e := range p.entries[:min(max(k, 0), len(p.entries))] {
		fmt.Fprintf(h, "%d %q %d %d %d %d %d %d\n", i, e.Key, e.DType, e.N, e.Meta, e.Data, e.Bytes, e.PaddingBits)
		if data, ok := p.inline[i]; ok {
			h.Write(data)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Size is the byte size of the finished file.
func (p *Plan) Size() int64 {
	if p.end == 0 {
		return HeaderSize
	}
	return p.end
}

// Err is the first error recorded by Add or AddBytes.
func (p *Plan) Err() error { return p.err }

func alignUp(v int64) int64 { return (v + Align - 1) &^ (Align - 1) }
