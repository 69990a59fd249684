package export

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// memCache is an in-memory BlobSink/BlobSource.
type memCache struct {
	order []string
	blobs map[string]*bytes.Buffer
}

func (m *memCache) WriteBlob(key string, chunk []byte) error {
	if m.blobs == nil {
		m.blobs = map[string]*bytes.Buffer{}
	}
	b, ok := m.blobs[key]
	if !ok {
		b = &bytes.Buffer{}
		m.blobs[key] = b
		m.order = append(m.order, key)
	}
	b.Write(chunk)
	return nil
}

func (m *memCache) OpenBlob(key string) (io.Reader, error) {
	b, ok := m.blobs[key]
	if !ok {
		return nil, fmt.Errorf("no blob %s", key)
	}
	return bytes.NewReader(b.Bytes()), nil
}

// TestCachedBaseIsByteIdentical exports once from files while saving the
// converted base, then again from the cache with a different adapter set:
// the result must equal a direct export with those adapters, and the cache
// must hold exactly the manifest's blobs.
func TestCachedBaseIsByteIdentical(t *testing.T) {
	root := os.DirFS("../..")
	o := DefaultOptions()
	o.InputLen, o.MaxContextLen, o.Multifunction = 4, 12, true

	cache := &memCache{}
	first := Request{FS: root, ModelDir: "testdata/tiny-llama/model", Options: o, SaveBase: cache,
		Adapters: fixtureAdapters()[:1]}
	p, err := NewPlan(first)
	require.NoError(t, err)
	var out1 bytes.Buffer
	require.NoError(t, p.Write(context.Background(), &out1, nil))
	man := p.BaseManifest()
	require.NotEmpty(t, man.Blobs)
	var total int64
	for _, b := range man.Blobs {
		require.Contains(t, cache.blobs, b.Key)
		require.Equal(t, b.Bytes, int64(cache.blobs[b.Key].Len()), b.Key)
		// The blob also sits at its offset in the written file.
		require.LessOrEqual(t, b.Offset+b.Bytes, int64(out1.Len()), b.Key)
		require.True(t, bytes.Equal(cache.blobs[b.Key].Bytes(), out1.Bytes()[b.Offset:b.Offset+b.Bytes]), "blob %s not at offset %d", b.Key, b.Offset)
		total += b.Bytes
	}
	require.Equal(t, len(man.Blobs), len(cache.blobs), "only base blobs are cached (no LoRA)")
	require.Equal(t, total, man.Bytes)

	// The manifest survives a JSON round trip (that is how the page stores it).
	js, err := json.Marshal(man)
	require.NoError(t, err)
	var back BaseManifest
	require.NoError(t, json.Unmarshal(js, &back))

	direct := exportBytes(t, "testdata/tiny-llama/model", fixtureAdapters(), o)
	cached := Request{Base: &back, BaseBlobs: cache, Options: o, Adapters: fixtureAdapters()}
	var out2 bytes.Buffer
	require.NoError(t, Export(context.Background(), cached, &out2, nil))
	require.True(t, bytes.Equal(direct, out2.Bytes()), "cached-base export differs from a direct export")

	// Options that change the stored blobs must not reuse the entry.
	o2 := o
	o2.LinearQuantize = "b4w"
	_, err = NewPlan(Request{Base: &back, BaseBlobs: cache, Options: o2})
	require.ErrorContains(t, err, "other options")
	// A missing blob is a clear error, not a corrupt file.
	delete(cache.blobs, man.Blobs[0].Key)
	err = Export(context.Background(), cached, io.Discard, nil)
	require.ErrorContains(t, err, "cached base")
}
