//go:build js && wasm

package jsbridge

import (
	"errors"
	"fmt"
	"syscall/js"
	"time"
)

// FileSink writes the output into a file of the origin private file
// system through the pool's writer worker (only workers may open such a
// file for synchronous writes). It is a RefWriter: a held piece
// (*heldPiece) is written by the converter that holds it, straight to the
// writer at the offset the sink has reached, so converted tensor data
// never passes through the page; the page's own bytes (headers, specs,
// adapters) go in parts. The writes land out of order; the file is
// complete once the writer has written every byte (Close).
//
// The browser keeps the file: it is the export's result (a disk-backed
// File) and the base's cache (BaseBlob.Offset), written once.
type FileSink struct {
	pool *Pool
	name string
	buf  []byte
	pos  int64 // bytes handed on so far (buffered ones not included)
	err  error
	pins pins

	// beat, when set, runs at least every beatEvery while writing: the
	// cache session's heartbeat, so that no other tab's start-up cleanup
	// takes a long export for a crashed one.
	beat     func()
	lastBeat time.Time
}

const beatEvery = time.Minute

// sinkQueued bounds the bytes handed to the writer and not yet written:
// a slow disk slows the export down instead of filling the workers' memory.
const sinkQueued = 256 << 20

// NewFileSink opens (emptying) the output file name.
func NewFileSink(pool *Pool, name string, partSize int) (*FileSink, error) {
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	if _, err := awaitCall(pool.v, "openOutput", pool.tag, name); err != nil {
		return nil, fmt.Errorf("output file: %w", err)
	}
	return &FileSink{pool: pool, name: name, buf: make([]byte, 0, partSize), lastBeat: time.Now()}, nil
}

func (s *FileSink) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	return buffered(&s.buf, p, s.flush)
}

// WriteRef implements export.RefWriter for held pieces.
func (s *FileSink) WriteRef(ref any, n int64) error {
	if s.err != nil {
		return s.err
	}
	h, ok := ref.(*heldPiece)
	if !ok || h.n != n {
		return fmt.Errorf("internal: output reference is %T, not a held piece of %d bytes", ref, n)
	}
	if err := s.flush(); err != nil {
		return err
	}
	if _, err := call(s.pool.v, "emit", h.handle, float64(s.pos), float64(n)); err != nil {
		return s.fail(err)
	}
	s.pos += n
	return s.throttle()
}

// flush hands the buffered bytes to the writer.
func (s *FileSink) flush() error {
	if len(s.buf) == 0 {
		return s.err
	}
	u8 := bytesToJS(s.buf) // transferred to the writer: a fresh array
	s.pins.add(len(s.buf))
	if _, err := call(s.pool.v, "writeOutput", s.pool.tag, float64(s.pos), u8); err != nil {
		return s.fail(err)
	}
	s.pos += int64(len(s.buf))
	s.buf = s.buf[:0]
	return s.throttle()
}

// throttle waits while too much waits to be written, and picks up the
// writer's first error.
func (s *FileSink) throttle() error {
	if s.beat != nil && time.Since(s.lastBeat) >= beatEvery {
		s.lastBeat = time.Now()
		s.beat()
	}
	if _, err := awaitCall(s.pool.v, "outputBelow", s.pool.tag, float64(sinkQueued)); err != nil {
		return s.fail(err)
	}
	if e := s.pool.v.Call("outputError", s.pool.tag); e.Type() == js.TypeString {
		return s.fail(errors.New(e.String()))
	}
	return nil
}

func (s *FileSink) fail(err error) error {
	if s.err == nil {
		s.err = fmt.Errorf("writing the output file: %w", err)
	}
	return s.err
}

// Close waits until the writer has written every byte and closed the
// file; the file is then complete.
func (s *FileSink) Close() error {
	if err := s.flush(); err != nil {
		return err
	}
	if _, err := awaitCall(s.pool.v, "closeOutput", s.pool.tag, float64(s.pos)); err != nil {
		return s.fail(err)
	}
	return nil
}

// Abort closes and removes the file.
func (s *FileSink) Abort() {
	awaitCall(s.pool.v, "abortOutput", s.pool.tag) //nolint:errcheck // start-up cleanup removes what is left
}
