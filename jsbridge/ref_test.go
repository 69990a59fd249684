//go:build js && wasm

package jsbridge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"syscall/js"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/export"
)

func streamedBytes(chunks js.Value) []byte {
	var out []byte
	for i := 0; i < chunks.Length(); i++ {
		c := chunks.Index(i)
		b := make([]byte, c.Length())
		js.CopyBytesToGo(b, c)
		out = append(out, b...)
	}
	return out
}

func TestBlobWriterRef(t *testing.T) {
	data := randomBytes(5000, 11)
	w := NewBlobWriter(1000)
	_, err := w.Write(data[:1500])
	require.NoError(t, err)
	require.NoError(t, w.WriteRef(jsBlob(data[1500:4000]), 2500))
	require.Equal(t, 3, w.Parts(), "the pending bytes become a part before the referenced Blob")
	_, err = w.Write(data[4000:])
	require.NoError(t, err)
	require.ErrorContains(t, w.WriteRef(jsBlob(data[:10]), 11), "Blob of 10 bytes given as 11")
	require.ErrorContains(t, w.WriteRef("not a blob", 10), "not a Blob")
	require.Equal(t, data, blobBytes(t, w.Blob("")))
	require.Error(t, w.WriteRef(jsBlob(nil), 0), "after Blob()")
}

func TestStreamWriterRef(t *testing.T) {
	data := randomBytes(300_000, 12)
	for _, acquired := range []bool{false, true} {
		t.Run(fmt.Sprintf("acquired writer %t", acquired), func(t *testing.T) {
			stream, chunks := collectingStream()
			target := stream
			if acquired {
				target = stream.Call("getWriter")
			}
			sw, err := NewStreamWriter(target, 1000)
			require.NoError(t, err)
			_, err = sw.Write(data[:1500])
			require.NoError(t, err)
			require.NoError(t, sw.WriteRef(jsBlob(data[1500:200_000]), 198_500))
			_, err = sw.Write(data[200_000:200_010])
			require.NoError(t, err)
			require.NoError(t, sw.WriteRef(jsBlob(data[200_010:]), int64(len(data)-200_010)))
			require.NoError(t, sw.Close())
			require.Equal(t, data, streamedBytes(chunks))
		})
	}
	stream, _ := collectingStream()
	sw, err := NewStreamWriter(stream, 1000)
	require.NoError(t, err)
	require.ErrorContains(t, sw.WriteRef(jsBlob(data[:5]), 6), "given as 6")
	_, err = sw.Write([]byte{1})
	require.Error(t, err, "sticky")
}

// memBlobs keeps converted base blobs in Go and hands them out as JS
// Blobs by reference, like the IndexedDB cache.
type memBlobs struct {
	blobs map[string][]byte
	refs  int
}

func (m *memBlobs) WriteBlob(key string, chunk []byte) error {
	if m.blobs == nil {
		m.blobs = map[string][]byte{}
	}
	m.blobs[key] = append(m.blobs[key], chunk...)
	return nil
}

func (m *memBlobs) OpenBlob(key string) (io.Reader, error) {
	return bytes.NewReader(m.blobs[key]), nil
}

func (m *memBlobs) OpenBlobRef(key string) (any, int64, error) {
	b, ok := m.blobs[key]
	if !ok {
		return nil, 0, fmt.Errorf("no blob %s", key)
	}
	m.refs++
	return jsBlob(b), int64(len(b)), nil
}

// TestExportByReference: a cached-base export into a Blob and into a
// stream takes the base blobs by reference and equals the native export.
func TestExportByReference(t *testing.T) {
	o := export.DefaultOptions()
	o.Multifunction, o.InputLen, o.MaxContextLen = true, 4, 12
	want := nativeExport(t, o, "attn", "mlpq")
	cache := &memBlobs{}
	p, err := export.NewPlan(export.Request{FS: os.DirFS(tiny), ModelDir: "model", Options: o, SaveBase: cache})
	require.NoError(t, err)
	require.NoError(t, p.Write(context.Background(), io.Discard, nil))
	man := p.BaseManifest()

	req := export.Request{Base: man, BaseBlobs: cache, Options: o}
	for _, a := range []string{"attn", "mlpq"} {
		req.Adapters = append(req.Adapters, export.Adapter{Name: a, FS: os.DirFS(tiny), Path: "adapters/" + a})
	}
	bw := NewBlobWriter(4096)
	require.NoError(t, export.Export(context.Background(), req, bw, nil))
	require.True(t, bytes.Equal(want, blobBytes(t, bw.Blob(""))), "Blob output with referenced blobs differs")
	require.Equal(t, len(man.Blobs), cache.refs)

	stream, chunks := collectingStream()
	sw, err := NewStreamWriter(stream, 4096)
	require.NoError(t, err)
	require.NoError(t, export.Export(context.Background(), req, sw, nil))
	require.NoError(t, sw.Close())
	require.True(t, bytes.Equal(want, streamedBytes(chunks)), "stream output with referenced blobs differs")
	require.Equal(t, 2*len(man.Blobs), cache.refs)
}

func TestMemStats(t *testing.T) {
	obj := js.Global().Get("Object").New()
	NewCore().Register(obj, "core")
	m := obj.Get("core").Get("memStats").Invoke()
	require.Greater(t, m.Get("sys").Float(), 0.0)
	require.GreaterOrEqual(t, m.Get("sys").Float(), m.Get("heapSys").Float())
	require.GreaterOrEqual(t, m.Get("heapSys").Float(), m.Get("heapInuse").Float())
}

// TestBlobReaderPrefetch: streaming reads are served by reads started one
// window ahead; leaving the stream drops the read ahead and stays correct.
func TestBlobReaderPrefetch(t *testing.T) {
	data := randomBytes(8*64<<10+123, 13)
	r := NewBlobReader(jsBlob(data), 64<<10)
	buf := make([]byte, 10_000)
	read := func(off int64) {
		t.Helper()
		n, err := r.ReadAt(buf, off)
		if err != io.EOF {
			require.NoError(t, err)
		}
		require.Equal(t, data[off:off+int64(n)], buf[:n])
	}
	for off := int64(0); off+int64(len(buf)) <= 3*64<<10; off += int64(len(buf)) {
		read(off)
	}
	require.Equal(t, 4, r.Calls(), "windows 1-3, and window 4 asked for ahead")
	read(5) // back to the start: the read ahead is dropped
	for off := int64(5 + len(buf)); off < int64(len(data)); off += int64(len(buf)) {
		read(off)
	}
	require.LessOrEqual(t, r.Calls(), 4+1+10)
}

// TestSmallFilesReadWhole: an FS file up to wholeFile bytes costs one read
// however it is accessed.
func TestSmallFilesReadWhole(t *testing.T) {
	data := randomBytes(3<<20, 14)
	fsys, err := NewFS([]FileEntry{{Path: "a/adapter_model.safetensors", Blob: jsBlob(data)}}, 64<<10)
	require.NoError(t, err)
	f, err := fsys.Open("a/adapter_model.safetensors")
	require.NoError(t, err)
	ra := f.(io.ReaderAt)
	buf := make([]byte, 1000)
	for _, off := range []int64{2 << 20, 5, 3<<20 - 1000, 1 << 20, 77} {
		_, err := ra.ReadAt(buf, off)
		require.NoError(t, err)
		require.Equal(t, data[off:off+1000], buf)
	}
	require.Equal(t, 1, f.(*file).r.Calls())
}

// TestStreamWriterGathers: a sink that takes Blobs (a file) gets the
// output in few large Blob writes, buffers and references alike.
func TestStreamWriterGathers(t *testing.T) {
	var writes []js.Value
	write := js.FuncOf(func(_ js.Value, args []js.Value) any {
		c := args[0]
		if c.InstanceOf(js.Global().Get("Uint8Array")) {
			c = js.Global().Get("Uint8Array").New(c) // a file takes the bytes; the writer reuses its arrays
		}
		writes = append(writes, c)
		return nil
	})
	defer write.Release()
	stream := js.Global().Get("WritableStream").New(map[string]any{"write": write})
	sw, err := NewStreamWriter(stream, 1<<20)
	require.NoError(t, err)
	sw.blobs = true // as for a FileSystemWritableFileStream
	data := randomBytes(70<<20+5, 15)
	var want []byte
	for off := 0; off < len(data); {
		n := min(len(data)-off, 3<<20+17)
		if (off/n)%2 == 0 {
			_, err = sw.Write(data[off : off+n])
		} else {
			err = sw.WriteRef(jsBlob(data[off:off+n]), int64(n))
		}
		require.NoError(t, err)
		want = append(want, data[off:off+n]...)
		off += n
	}
	require.NoError(t, sw.Close())
	// Buffers go out as they fill until a reference comes; from there on
	// the output is gathered into Blobs of at least 32 MiB.
	parts := make([]any, len(writes))
	var big int
	for i, w := range writes {
		if w.InstanceOf(js.Global().Get("Blob")) && w.Get("size").Int() >= 32<<20 {
			big++
		}
		parts[i] = w
	}
	require.Positive(t, big)
	require.Less(t, len(writes), 12, "23 pieces, 35 MiB of buffers")
	require.True(t, bytes.Equal(want, blobBytes(t, js.Global().Get("Blob").New(parts))))
}
