package export

import "io"

// Zero-copy cached blobs. In the browser a cached base's blobs live in
// IndexedDB as Blobs; reading them into wasm only to copy them out again
// into the output Blob would be most of the work of a cached re-export.
// When the blob source can hand out a reference to a blob and the output
// can append one, the reference travels down the writer chain (.pte
// segment → flattened directory file → weight file) in place of the bytes.
// Each layer keeps its exact byte accounting and padding, so the file is
// the same. Natively nothing implements these and bytes are copied.

// BlobRefSource is an optional capability of a BlobSource: the whole blob
// key as an opaque reference (for example a JS Blob) and its size in bytes.
type BlobRefSource interface {
	BlobSource
	OpenBlobRef(key string) (ref any, size int64, err error)
}

// RefWriter is an optional capability of the output io.Writer: WriteRef
// appends the n bytes ref stands for, ref being what the request's
// BlobRefSource returned. It is all or nothing: an error fails the export.
type RefWriter interface {
	io.Writer
	WriteRef(ref any, n int64) error
}

// refCountingWriter is a countingWriter over a RefWriter; the streaming
// layers below see the capability only when the output has it.
type refCountingWriter struct{ *countingWriter }

func (c refCountingWriter) WriteRef(ref any, n int64) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if err := c.w.(RefWriter).WriteRef(ref, n); err != nil {
		return err
	}
	c.count(n)
	return nil
}

// count records n written bytes and reports progress every MiB.
func (c *countingWriter) count(n int64) {
	c.n += n
	if c.progress != nil && (c.n-c.last >= 1<<20 || c.n == c.total) {
		c.last = c.n
		c.progress("write", c.n, c.total)
	}
}

// outputWriter wraps w for progress and cancellation, keeping its
// reference capability.
func outputWriter(c *countingWriter) io.Writer {
	if _, ok := c.w.(RefWriter); ok {
		return refCountingWriter{c}
	}
	return c
}
