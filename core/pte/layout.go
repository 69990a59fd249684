package pte

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// File format constants (pte.md §0, §1).
const (
	FileIdentifier   = "ET12"
	HeaderMagic      = "eh00"
	HeaderLength     = 32  // extended header bytes spliced in at offset 8
	SegmentAlignment = 128 // exporter's segment alignment
)

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// segmentOffsets places segments of the given sizes: the first at 0, each next
// one at the 128-aligned end of the previous (a zero-size segment lets the next
// one share its offset).
func segmentOffsets(sizes []int64) []int64 {
	rel := make([]int64, len(sizes))
	var end int64
	for i, s := range sizes {
		if i > 0 {
			rel[i] = alignUp(end, SegmentAlignment)
		}
		end = rel[i] + s
	}
	return rel
}

// Layout is a planned file: the FlatBuffer head and where each segment goes.
type Layout struct {
	head        []byte // header-spliced FlatBuffer + zero padding up to the segment base
	programSize int64
	base        int64
	rel         []int64
	sizes       []int64
	dataSize    int64
}

// Plan builds the FlatBuffer of p (deterministically: same Program, same
// bytes), splices in the extended header and places the segments. It checks
// only what the layout needs (non-negative sizes and indices); semantic
// problems are left to Verify, so defective files can still be produced on
// purpose for tests.
func Plan(p *Program) (*Layout, error) {
	for i, s := range p.Segments {
		if s < 0 {
			return nil, fmt.Errorf("pte: segment %d: negative size %d", i, s)
		}
	}
	if p.ConstantSegment < 0 || int64(p.ConstantSegment) > 0xFFFFFFFF {
		return nil, fmt.Errorf("pte: constant segment index %d out of range", p.ConstantSegment)
	}
	for _, nd := range p.NamedData {
		if nd.Segment < 0 || int64(nd.Segment) > 0xFFFFFFFF {
			return nil, fmt.Errorf("pte: named data %q: segment index %d out of range", nd.Key, nd.Segment)
		}
	}
	flat, err := buildFlatBuffer(p)
	if err != nil {
		return nil, err
	}
	if len(flat)+HeaderLength >= 1<<31 {
		return nil, errors.New("pte: FlatBuffer would exceed 2 GiB")
	}
	l := &Layout{
		programSize: int64(len(flat)) + HeaderLength,
		rel:         segmentOffsets(p.Segments),
		sizes:       append([]int64(nil), p.Segments...),
	}
	if n := len(p.Segments); n > 0 {
		l.base = alignUp(l.programSize, SegmentAlignment)
		l.dataSize = l.rel[n-1] + p.Segments[n-1]
	}

	// Splice (pte.md §1.2): root offset + 32, "ET12", header, rest of the buffer.
	// 32 is a multiple of every alignment inside, so nothing else moves out of line.
	head := make([]byte, 0, max(l.base, l.programSize))
	head = binary.LittleEndian.AppendUint32(head, binary.LittleEndian.Uint32(flat)+HeaderLength)
	head = append(head, flat[4:8]...)
	head = append(head, HeaderMagic...)
	head = binary.LittleEndian.AppendUint32(head, HeaderLength)
	head = binary.LittleEndian.AppendUint64(head, uint64(l.programSize))
	head = binary.LittleEndian.AppendUint64(head, uint64(l.base))
	head = binary.LittleEndian.AppendUint64(head, uint64(l.dataSize))
	head = append(head, flat[8:]...)
	for int64(len(head)) < l.base {
		head = append(head, 0)
	}
	l.head = head
	return l, nil
}

// Head is everything before the first segment: the header-spliced FlatBuffer
// and the zero padding up to the segment base offset.
func (l *Layout) Head() []byte { return l.head }

// ProgramSize is the FlatBuffer size including the extended header.
func (l *Layout) ProgramSize() int64 { return l.programSize }

// SegmentBaseOffset is the file offset of the segment region (0 without segments).
func (l *Layout) SegmentBaseOffset() int64 { return l.base }

// SegmentDataSize is the segment region's size, up to the last segment's end.
func (l *Layout) SegmentDataSize() int64 { return l.dataSize }

// NumSegments is the number of planned segments.
func (l *Layout) NumSegments() int { return len(l.sizes) }

// SegmentOffset is the absolute file offset of segment i.
func (l *Layout) SegmentOffset(i int) int64 { return l.base + l.rel[i] }

// SegmentSize is the planned size of segment i.
func (l *Layout) SegmentSize(i int) int64 { return l.sizes[i] }

// Size is the total file size.
func (l *Layout) Size() int64 {
	if len(l.sizes) == 0 {
		return int64(len(l.head))
	}
	return l.base + l.dataSize
}

// Writer streams a planned file: the head, then every segment in index order
// with zero padding in between. Only the head is held in memory.
type Writer struct {
	w         io.Writer
	l         *Layout
	pos       int64 // bytes written so far
	next      int   // next segment to start
	remaining int64 // bytes still expected for the current segment
	err       error
	closed    bool
}

// NewWriter returns a Writer for the file planned in l; nothing is written
// before the first WriteSegment, StreamSegment or Close.
func NewWriter(w io.Writer, l *Layout) *Writer { return &Writer{w: w, l: l} }

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *Writer) write(p []byte) error {
	n, err := w.w.Write(p)
	w.pos += int64(n)
	if err != nil {
		return w.fail(err)
	}
	return nil
}

func (w *Writer) pad(to int64) error {
	var zeros [SegmentAlignment]byte
	for w.pos < to {
		n := min(to-w.pos, int64(len(zeros)))
		if err := w.write(zeros[:n]); err != nil {
			return err
		}
	}
	return nil
}

// finishCurrent checks the current segment is complete and writes the head if
// nothing has been written yet.
func (w *Writer) finishCurrent() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return w.fail(errors.New("pte: writer is closed"))
	}
	if w.remaining != 0 {
		i := w.next - 1
		return w.fail(fmt.Errorf("pte: segment %d: %d of %d bytes missing", i, w.remaining, w.l.sizes[i]))
	}
	if w.pos == 0 {
		return w.write(w.l.head)
	}
	return nil
}

// skipTo moves past segments before i, which must all be empty.
func (w *Writer) skipTo(i int) error {
	for ; w.next < i; w.next++ {
		if w.l.sizes[w.next] != 0 {
			return w.fail(fmt.Errorf("pte: segment %d (%d bytes) not written", w.next, w.l.sizes[w.next]))
		}
	}
	return nil
}

// startSegment starts segment i and returns a writer that accepts at most its
// planned size.
func (w *Writer) startSegment(i int) (io.Writer, error) {
	if err := w.finishCurrent(); err != nil {
		return nil, err
	}
	if i < w.next || i >= len(w.l.sizes) {
		return nil, w.fail(fmt.Errorf("pte: segment %d written out of order (next is %d of %d)", i, w.next, len(w.l.sizes)))
	}
	if err := w.skipTo(i); err != nil {
		return nil, err
	}
	if err := w.pad(w.l.SegmentOffset(i)); err != nil {
		return nil, err
	}
	w.next = i + 1
	w.remaining = w.l.sizes[i]
	if _, ok := w.w.(RefWriter); ok {
		return refSegmentWriter{segmentWriter{w}}, nil
	}
	return segmentWriter{w}, nil
}

// WriteSegment writes segment i, whose planned size must be len(data).
// Segments are written in index order; zero-size segments may be skipped.
func (w *Writer) WriteSegment(i int, data []byte) error {
	return w.StreamSegment(i, func(sw io.Writer) error {
		_, err := sw.Write(data)
		return err
	})
}

// StreamSegment writes segment i by calling fn with a writer that accepts
// exactly the planned number of bytes (more is an error, and so is less once
// fn returns). Segments are written in index order; zero-size segments may be
// skipped.
func (w *Writer) StreamSegment(i int, fn func(io.Writer) error) error {
	sw, err := w.startSegment(i)
	if err != nil {
		return err
	}
	if err := fn(sw); err != nil {
		return w.fail(err)
	}
	return w.finishCurrent()
}

type segmentWriter struct{ w *Writer }

func (s segmentWriter) Write(p []byte) (int, error) {
	w := s.w
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.remaining {
		i := w.next - 1
		return 0, w.fail(fmt.Errorf("pte: segment %d: more than the planned %d bytes", i, w.l.sizes[i]))
	}
	before := w.pos
	err := w.write(p)
	w.remaining -= w.pos - before
	return int(w.pos - before), err
}

// RefWriter is an io.Writer that can also append bytes it holds elsewhere:
// WriteRef appends the n bytes an opaque reference stands for. When the
// Writer's destination is one, the segment writers StreamSegment hands out
// are too, with the same size checks.
type RefWriter interface {
	io.Writer
	WriteRef(ref any, n int64) error
}

type refSegmentWriter struct{ segmentWriter }

func (s refSegmentWriter) WriteRef(ref any, n int64) error {
	w := s.w
	if w.err != nil {
		return w.err
	}
	i := w.next - 1
	if n < 0 || n > w.remaining {
		return w.fail(fmt.Errorf("pte: segment %d: a reference of %d bytes does not fit the planned %d bytes (%d left)", i, n, w.l.sizes[i], w.remaining))
	}
	if n == 0 {
		return nil
	}
	// All or nothing: after a failed reference write the position is unknown.
	if err := w.w.(RefWriter).WriteRef(ref, n); err != nil {
		return w.fail(err)
	}
	w.pos += n
	w.remaining -= n
	return nil
}

// Close checks that every segment was written in full (writing the head if
// there are no segments). It does not close the underlying writer.
func (w *Writer) Close() error {
	if err := w.finishCurrent(); err != nil {
		return err
	}
	if err := w.skipTo(len(w.l.sizes)); err != nil {
		return err
	}
	if len(w.l.sizes) > 0 {
		// Trailing zero-size segments sit at the aligned end; the file ends at
		// the last segment's end, no padding after it.
		if w.pos > w.l.Size() {
			return w.fail(fmt.Errorf("pte: wrote %d bytes, planned %d", w.pos, w.l.Size()))
		}
		if err := w.pad(w.l.Size()); err != nil {
			return err
		}
	}
	w.closed = true
	return nil
}
