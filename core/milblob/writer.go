package milblob

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Writer streams a planned weight file to an io.Writer without seeking.
//
// Protocol: call Write(key, chunk) for the Add entries in plan order; a blob
// may be delivered in several consecutive chunks, it is complete when the
// chunks total Entry.Bytes. AddBytes entries are emitted automatically when
// the writer reaches them. Close checks that everything was written. The
// first error is sticky: later calls return it.
type Writer struct {
	w       io.Writer
	entries []Entry
	inline  map[int][]byte
	size    int64

	pos     int64 // bytes written so far
	cur     int   // index of the entry being written
	begun   bool  // record of entries[cur] already written
	done    int64 // data bytes of entries[cur] written
	started bool  // header written
	err     error
}

// NewWriter prepares a writer for plan p. The plan must not change afterwards.
// A plan with a recorded error yields a writer that only returns that error.
func NewWriter(w io.Writer, p *Plan) *Writer {
	wr := &Writer{w: w, entries: p.Entries(), inline: p.inline, size: p.Size(), err: p.Err()}
	return wr
}

// Header returns the 64-byte file header for count blobs.
func Header(count uint32) []byte {
	h := make([]byte, HeaderSize)
	binary.LittleEndian.PutUint32(h[0:], count)
	binary.LittleEndian.PutUint32(h[4:], Version)
	return h
}

// Record returns the 64-byte metadata record of e.
func Record(e Entry) []byte {
	r := make([]byte, RecordSize)
	binary.LittleEndian.PutUint32(r[0:], Sentinel)
	binary.LittleEndian.PutUint32(r[4:], uint32(e.DType))
	binary.LittleEndian.PutUint64(r[8:], uint64(e.Bytes))
	binary.LittleEndian.PutUint64(r[16:], e.Data)
	binary.LittleEndian.PutUint64(r[24:], e.PaddingBits)
	return r
}

func (w *Writer) emit(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(b)
	w.pos += int64(n)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("milblob: write at offset %d: %w", w.pos, err)
	}
}

var zeros [Align]byte

// beginEntry writes the zero gap and the metadata record of entries[cur].
func (w *Writer) beginEntry() {
	e := w.entries[w.cur]
	gap := int64(e.Meta) - w.pos
	if gap < 0 || gap >= Align {
		w.err = fmt.Errorf("milblob: internal: blob %q at %d but file is at %d", e.Key, e.Meta, w.pos)
		return
	}
	w.emit(zeros[:gap])
	w.emit(Record(e))
	w.begun = true
	w.done = 0
}

// advance writes the header if needed and every inline entry at the cursor.
func (w *Writer) advance() {
	if !w.started {
		w.started = true
		w.emit(Header(uint32(len(w.entries))))
	}
	for w.err == nil && w.cur < len(w.entries) {
		data, ok := w.inline[w.cur]
		if !ok {
			return
		}
		w.beginEntry()
		w.emit(data)
		w.cur++
		w.begun = false
	}
}

// Write appends the next chunk of blob key's data. Blobs must come in plan
// order and each must receive exactly Entry.Bytes bytes in total.
func (w *Writer) Write(key string, data []byte) error {
	return w.put(key, int64(len(data)), func() { w.emit(data) })
}

// RefWriter is an io.Writer that can also append bytes it holds elsewhere:
// WriteRef appends the n bytes an opaque reference stands for (in the
// browser, a cached Blob joins the output without passing through wasm).
type RefWriter interface {
	io.Writer
	WriteRef(ref any, n int64) error
}

// CanWriteRef reports whether WriteRef may be used: the underlying writer
// is a RefWriter.
func (w *Writer) CanWriteRef() bool {
	_, ok := w.w.(RefWriter)
	return ok
}

// WriteRef is Write for n bytes of blob key given by reference; the
// underlying writer (a RefWriter, see CanWriteRef) resolves ref. The byte
// accounting is that of Write, so the file is the same.
func (w *Writer) WriteRef(key string, ref any, n int64) error {
	if n < 0 {
		return w.fail(fmt.Errorf("milblob: blob %q: negative reference size %d", key, n))
	}
	return w.put(key, n, func() { w.emitRef(ref, n) })
}

// WritePrefixRef starts the file: the header, then entries [0, k) by
// reference, ref standing for the n bytes from HeaderSize to the end of
// entry k-1 (those of another file with the same Plan.PrefixDigest(k)).
// Nothing may have been written yet; writing goes on with entry k.
func (w *Writer) WritePrefixRef(k int, ref any, n int64) error {
	if w.err != nil {
		return w.err
	}
	if w.started || k < 1 || k > len(w.entries) {
		return w.fail(fmt.Errorf("milblob: prefix of %d blobs by reference: only at the start of a file of %d blobs", k, len(w.entries)))
	}
	if want := int64(w.entries[k-1].End()) - HeaderSize; n != want {
		return w.fail(fmt.Errorf("milblob: prefix of %d blobs by reference has %d bytes, the plan says %d", k, n, want))
	}
	w.started = true
	w.emit(Header(uint32(len(w.entries))))
	w.emitRef(ref, n)
	w.cur = k
	w.advance()
	return w.err
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// put checks that n more bytes of blob key fit the plan at the cursor and
// calls emit to write them.
func (w *Writer) put(key string, n int64, emit func()) error {
	w.advance()
	if w.err != nil {
		return w.err
	}
	if w.cur >= len(w.entries) {
		w.err = fmt.Errorf("milblob: blob %q written but all planned blobs are complete", key)
		return w.err
	}
	e := w.entries[w.cur]
	if e.Key != key {
		w.err = fmt.Errorf("milblob: blob %q written out of plan order, expected %q", key, e.Key)
		return w.err
	}
	if !w.begun {
		w.beginEntry()
	}
	if w.done+n > e.Bytes {
		w.err = fmt.Errorf("milblob: blob %q: %d bytes given, planned size is %d", key, w.done+n, e.Bytes)
		return w.err
	}
	emit()
	w.done += n
	if w.done == e.Bytes {
		w.cur++
		w.begun = false
		w.advance()
	}
	return w.err
}

// emitRef writes n bytes by reference; a failed reference write leaves an
// unknown number of bytes behind, so like any write error it is sticky.
func (w *Writer) emitRef(ref any, n int64) {
	if w.err != nil || n == 0 {
		return
	}
	rw, ok := w.w.(RefWriter)
	if !ok {
		w.err = fmt.Errorf("milblob: write by reference at offset %d: the output cannot take references", w.pos)
		return
	}
	if err := rw.WriteRef(ref, n); err != nil {
		w.err = fmt.Errorf("milblob: write at offset %d: %w", w.pos, err)
		return
	}
	w.pos += n
}

// Close finishes the file (trailing inline blobs) and checks that every
// planned blob was written completely. It does not close the underlying writer.
func (w *Writer) Close() error {
	w.advance()
	if w.err != nil {
		return w.err
	}
	if w.cur < len(w.entries) {
		e := w.entries[w.cur]
		w.err = fmt.Errorf("milblob: blob %q incomplete: %d of %d bytes written", e.Key, w.done, e.Bytes)
		return w.err
	}
	if w.pos != w.size {
		w.err = fmt.Errorf("milblob: internal: wrote %d bytes, plan size is %d", w.pos, w.size)
	}
	return w.err
}
