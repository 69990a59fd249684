//go:build js && wasm

package jsbridge

import (
	"errors"
	"fmt"
	"syscall/js"
)

// DefaultPartSize is how much output is gathered in the wasm heap before it
// moves to JavaScript as one piece.
const DefaultPartSize = 8 << 20

// BlobWriter collects the output as ordered Blob parts. Each full buffer
// becomes its own small Blob right away, so the bytes leave the wasm heap
// and the browser may keep them on disk; Blob joins them without a copy.
type BlobWriter struct {
	buf   []byte
	js    js.Value // Uint8Array staging buf for the Blob constructor (which copies)
	parts js.Value // JS Array of Blob
	n     int64
	done  bool
	pins  pins
}

// NewBlobWriter buffers partSize bytes per part (DefaultPartSize when <= 0).
func NewBlobWriter(partSize int) *BlobWriter {
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	return &BlobWriter{buf: make([]byte, 0, partSize), js: js.Undefined(), parts: js.Global().Get("Array").New()}
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("write after Blob()")
	}
	n, err := buffered(&w.buf, p, w.flushed)
	w.n += int64(n)
	return n, err
}

// buffered appends p to *buf, handing the buffer on (flush) each time it
// is full: the Write of the output writers.
func buffered(buf *[]byte, p []byte, flush func() error) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := copy((*buf)[len(*buf):cap(*buf)], p)
		*buf = (*buf)[:len(*buf)+k]
		p = p[k:]
		if len(*buf) == cap(*buf) {
			if err := flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *BlobWriter) flushed() error { w.flush(); return nil }

// smallPart is the size below which buffered bytes join the parts as a
// Uint8Array, not a Blob of their own: between the referenced blobs of a
// cached re-export come hundreds of small pieces (blob headers, padding),
// and each Blob costs a round trip to the browser.
const smallPart = 64 << 10

func (w *BlobWriter) flush() {
	if len(w.buf) == 0 {
		return
	}
	if len(w.buf) < smallPart {
		w.parts.Call("push", bytesToJS(w.buf))
		w.buf = w.buf[:0]
		return
	}
	if w.js.IsUndefined() {
		w.js = js.Global().Get("Uint8Array").New(cap(w.buf))
	}
	part := w.js
	if len(w.buf) < cap(w.buf) {
		part = w.js.Call("subarray", 0, len(w.buf))
	}
	js.CopyBytesToJS(part, w.buf)
	w.parts.Call("push", js.Global().Get("Blob").New([]any{part}))
	w.pins.add(len(w.buf))
	w.buf = w.buf[:0]
}

// WriteRef appends a Blob by reference (export.RefWriter): a cached base's
// blob joins the output as a part of its own, its bytes never entering
// the wasm heap.
func (w *BlobWriter) WriteRef(ref any, n int64) error {
	if w.done {
		return errors.New("write after Blob()")
	}
	blob, err := refBlob(ref, n)
	if err != nil {
		return err
	}
	w.flush()
	w.parts.Call("push", blob)
	w.n += n
	return nil
}

// refBlob checks that a reference is a Blob of n bytes.
func refBlob(ref any, n int64) (js.Value, error) {
	v, ok := ref.(js.Value)
	if !ok || v.Type() != js.TypeObject || !v.InstanceOf(js.Global().Get("Blob")) {
		return js.Value{}, fmt.Errorf("internal: output reference is %T, not a Blob", ref)
	}
	if size := int64(v.Get("size").Float()); size != n {
		return js.Value{}, fmt.Errorf("internal: Blob of %d bytes given as %d", size, n)
	}
	return v, nil
}

// Parts is the number of parts so far (for tests).
func (w *BlobWriter) Parts() int { return w.parts.Length() }

// Blob ends the output and joins the parts into one Blob of the given
// MIME type.
func (w *BlobWriter) Blob(mimeType string) js.Value {
	w.flush()
	w.done = true
	w.buf = nil
	return js.Global().Get("Blob").New(w.parts, map[string]any{"type": mimeType})
}

func bytesToJS(b []byte) js.Value {
	u8 := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u8, b)
	return u8
}

// StreamWriter writes the output into a WritableStream (for example the
// FileSystemWritableFileStream of showSaveFilePicker). One write is in
// flight while the exporter fills the next buffer, so the disk and the
// conversion overlap; a slow disk still slows the export instead of
// filling memory.
type StreamWriter struct {
	stream  js.Value // the WritableStream; undefined when given a writer
	w       js.Value // WritableStreamDefaultWriter
	blobs   bool     // the sink takes Blob chunks (a FileSystemWritableFileStream)
	buf     []byte
	pending []js.Value // Promises of the writes in flight, oldest first
	err     error
	pins    pins

	// When the sink takes Blobs, a referenced Blob and the bytes after it
	// are gathered as Blob parts and written gatherBytes at a time: a
	// cached re-export references hundreds of blobs, many small, and one
	// write each would be one round trip to the browser each.
	stage  js.Value // Uint8Array for the Blob constructor (which copies)
	parts  js.Value // Array of Blobs not yet written
	partsN int64
	turns  [streamInFlight + 1]js.Value // Uint8Arrays for direct writes, taking turns
	turn   int
}

// streamInFlight bounds the writes handed to the stream and not yet done:
// with one, the exporter waited for the browser's file writes.
const streamInFlight = 3

// gatherBytes is how much output a file stream's write carries at least.
const gatherBytes = 32 << 20

// NewStreamWriter takes a WritableStream (or an already acquired writer).
func NewStreamWriter(stream js.Value, bufSize int) (*StreamWriter, error) {
	if bufSize <= 0 {
		bufSize = DefaultPartSize
	}
	w, s := stream, js.Undefined()
	if stream.Get("getWriter").Type() == js.TypeFunction {
		var err error
		if w, err = call(stream, "getWriter"); err != nil {
			return nil, fmt.Errorf("output stream: %w", err)
		}
		s = stream
	}
	if w.Get("write").Type() != js.TypeFunction {
		return nil, errors.New("output: want a WritableStream")
	}
	fsw := js.Global().Get("FileSystemWritableFileStream")
	blobs := fsw.Type() == js.TypeFunction && stream.InstanceOf(fsw)
	// turns starts as undefined values (js.Value's zero value).
	return &StreamWriter{stream: s, w: w, blobs: blobs, buf: make([]byte, 0, bufSize),
		stage: js.Undefined(), parts: js.Global().Get("Array").New()}, nil
}

// WriteRef appends a Blob by reference (export.RefWriter) without copying
// it through the wasm heap: a file on disk takes the Blob itself (joined
// with its neighbours), any other stream gets the Blob's own byte stream
// piped into it.
func (s *StreamWriter) WriteRef(ref any, n int64) error {
	if s.err != nil {
		return s.err
	}
	blob, err := refBlob(ref, n)
	if err != nil {
		s.err = err
		return err
	}
	if err := s.flush(); err != nil {
		return err
	}
	if s.blobs {
		return s.gather(blob, n)
	}
	if err := s.wait(); err != nil {
		return err
	}
	switch {
	case !s.stream.IsUndefined():
		err = s.pipe(blob)
	default:
		err = s.copyChunks(blob)
	}
	if err != nil {
		s.err = fmt.Errorf("writing the output: %w", err)
	}
	return s.err
}

func (s *StreamWriter) await(p js.Value, err error) error {
	if err == nil {
		_, err = Await(p)
	}
	return err
}

// pipe lets the browser move blob into the stream: pipeTo needs the
// stream unlocked, so the writer is released and taken again.
func (s *StreamWriter) pipe(blob js.Value) error {
	if _, err := call(s.w, "releaseLock"); err != nil {
		return err
	}
	src, err := call(blob, "stream")
	if err == nil {
		opts := map[string]any{"preventClose": true, "preventAbort": true, "preventCancel": true}
		err = s.await(call(src, "pipeTo", s.stream, opts))
	}
	w, werr := call(s.stream, "getWriter")
	if werr != nil {
		return errors.Join(err, werr)
	}
	s.w = w
	return err
}

// copyChunks forwards the Blob's stream chunk by chunk (the caller gave
// an already acquired writer, so the stream itself cannot be piped to).
func (s *StreamWriter) copyChunks(blob js.Value) error {
	src, err := call(blob, "stream")
	if err != nil {
		return err
	}
	r, err := call(src, "getReader")
	if err != nil {
		return err
	}
	for {
		p, err := call(r, "read")
		if err != nil {
			return err
		}
		res, err := Await(p)
		if err != nil {
			return err
		}
		if res.Get("done").Truthy() {
			return nil
		}
		if err := s.await(call(s.w, "write", res.Get("value"))); err != nil {
			call(r, "cancel") //nolint:errcheck // the write error is the one to report
			return err
		}
	}
}

func (s *StreamWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	return buffered(&s.buf, p, s.flush)
}

// flush hands the buffer on: to the gathered parts of a file stream, else
// as a write of its own once the previous write is done.
func (s *StreamWriter) flush() error {
	if len(s.buf) == 0 || s.err != nil {
		return s.err
	}
	n := len(s.buf)
	if s.blobs && s.partsN > 0 {
		// Bytes between referenced Blobs join the parts.
		if s.stage.IsUndefined() {
			s.stage = js.Global().Get("Uint8Array").New(cap(s.buf))
		}
		chunk := s.stage.Call("subarray", 0, n)
		js.CopyBytesToJS(chunk, s.buf)
		s.buf = s.buf[:0]
		s.pins.add(n)
		return s.gather(js.Global().Get("Blob").New([]any{chunk}), int64(n))
	}
	// A file stream has taken the bytes once its write resolves, so the
	// arrays take turns (one more than writes in flight); other sinks may
	// keep their chunks.
	var chunk js.Value
	if s.blobs {
		if s.turns[s.turn].IsUndefined() {
			s.turns[s.turn] = js.Global().Get("Uint8Array").New(cap(s.buf))
		}
		chunk = s.turns[s.turn].Call("subarray", 0, n)
		s.turn = (s.turn + 1) % len(s.turns)
	} else {
		chunk = js.Global().Get("Uint8Array").New(n)
	}
	js.CopyBytesToJS(chunk, s.buf)
	s.pins.add(n)
	s.buf = s.buf[:0]
	if err := s.waitBelow(streamInFlight); err != nil {
		return err
	}
	p, err := call(s.w, "write", chunk)
	if err != nil {
		s.err = fmt.Errorf("writing the output: %w", err)
		return s.err
	}
	s.pending = append(s.pending, p)
	return nil
}

// gather adds a Blob part and writes the parts once they hold gatherBytes.
func (s *StreamWriter) gather(part js.Value, n int64) error {
	s.parts.Call("push", part)
	s.partsN += n
	if s.partsN >= gatherBytes {
		return s.writeParts()
	}
	return nil
}

// writeParts starts writing the gathered parts as one Blob once the
// previous write is done.
func (s *StreamWriter) writeParts() error {
	if s.partsN == 0 {
		return s.err
	}
	blob := js.Global().Get("Blob").New(s.parts)
	s.parts = js.Global().Get("Array").New()
	s.partsN = 0
	if err := s.waitBelow(streamInFlight); err != nil {
		return err
	}
	p, err := call(s.w, "write", blob)
	if err != nil {
		s.err = fmt.Errorf("writing the output: %w", err)
		return s.err
	}
	s.pending = append(s.pending, p)
	return nil
}

// wait awaits every write in flight.
func (s *StreamWriter) wait() error { return s.waitBelow(1) }

// waitBelow awaits the oldest writes until fewer than n are in flight.
func (s *StreamWriter) waitBelow(n int) error {
	for len(s.pending) >= n && len(s.pending) > 0 {
		p := s.pending[0]
		s.pending = s.pending[1:]
		if _, err := Await(p); err != nil && s.err == nil {
			s.err = fmt.Errorf("writing the output: %w", err)
		}
	}
	return s.err
}

// Close flushes and closes the stream; the file appears only now.
func (s *StreamWriter) Close() error {
	if err := s.flush(); err != nil {
		return err
	}
	if err := s.writeParts(); err != nil {
		return err
	}
	if err := s.wait(); err != nil {
		return err
	}
	p, err := call(s.w, "close")
	if err == nil {
		_, err = Await(p)
	}
	if err != nil {
		return fmt.Errorf("closing the output: %w", err)
	}
	return nil
}

// Abort discards what was written (a FileSystemWritableFileStream keeps
// the previous file contents).
func (s *StreamWriter) Abort(reason error) {
	if p, err := call(s.w, "abort", reason.Error()); err == nil {
		Await(p) //nolint:errcheck // nothing more to do if aborting fails
	}
}
