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
