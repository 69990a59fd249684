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
	parts js.Value // JS Array of Blob
	n     int64
	done  bool
}

// NewBlobWriter buffers partSize bytes per part (DefaultPartSize when <= 0).
func NewBlobWriter(partSize int) *BlobWriter {
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	return &BlobWriter{buf: make([]byte, 0, partSize), parts: js.Global().Get("Array").New()}
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("write after Blob()")
	}
	n := len(p)
	for len(p) > 0 {
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			w.flush()
		}
	}
	w.n += int64(n)
	return n, nil
}

func (w *BlobWriter) flush() {
	if len(w.buf) == 0 {
		return
	}
	w.parts.Call("push", js.Global().Get("Blob").New([]any{bytesToJS(w.buf)}))
	w.buf = w.buf[:0]
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
// FileSystemWritableFileStream of showSaveFilePicker), awaiting each write
// so a slow disk slows the export instead of filling memory.
type StreamWriter struct {
	w   js.Value // WritableStreamDefaultWriter
	buf []byte
	err error
}

// NewStreamWriter takes a WritableStream (or an already acquired writer).
func NewStreamWriter(stream js.Value, bufSize int) (*StreamWriter, error) {
	if bufSize <= 0 {
		bufSize = DefaultPartSize
	}
	w := stream
	if stream.Get("getWriter").Type() == js.TypeFunction {
		var err error
		if w, err = call(stream, "getWriter"); err != nil {
			return nil, fmt.Errorf("output stream: %w", err)
		}
	}
	if w.Get("write").Type() != js.TypeFunction {
		return nil, errors.New("output: want a WritableStream")
	}
	return &StreamWriter{w: w, buf: make([]byte, 0, bufSize)}, nil
}

func (s *StreamWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := len(p)
	for len(p) > 0 {
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
		if len(s.buf) == cap(s.buf) {
			if err := s.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (s *StreamWriter) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	p, err := call(s.w, "write", bytesToJS(s.buf))
	if err == nil {
		_, err = Await(p)
	}
	s.buf = s.buf[:0]
	if err != nil {
		s.err = fmt.Errorf("writing the output: %w", err)
	}
	return s.err
}

// Close flushes and closes the stream; the file appears only now.
func (s *StreamWriter) Close() error {
	if err := s.flush(); err != nil {
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
