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

// fileCache is a base cache that keeps the .pte the base was written with
// (as the browser does): blobs and regions are references to ranges of
// that file (byteRefs), counted.
type fileCache struct {
	file         []byte
	man          *BaseManifest
	blobs, areas int
}

type byteRef []byte

func (c *fileCache) OpenBlob(key string) (io.Reader, error) {
	ref, _, err := c.OpenBlobRef(key)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(ref.(byteRef)), nil
}

func (c *fileCache) OpenBlobRef(key string) (any, int64, error) {
	for _, b := range c.man.Blobs {
		if b.Key == key {
			c.blobs++
			return byteRef(c.file[b.Offset : b.Offset+b.Bytes]), b.Bytes, nil
		}
	}
	return nil, 0, fmt.Errorf("no blob %s", key)
}

func (c *fileCache) OpenRegionRef(part int, digest string) (any, int64, error) {
	for _, r := range c.man.Regions {
		if r.Part == part && r.Digest == digest {
			c.areas++
			return byteRef(c.file[r.Offset : r.Offset+r.Bytes]), r.Bytes, nil
		}
	}
	return nil, 0, nil
}

// byteRefBuffer is an output that takes byteRefs (RefWriter).
type byteRefBuffer struct{ bytes.Buffer }

func (b *byteRefBuffer) WriteRef(ref any, n int64) error {
	r, ok := ref.(byteRef)
	if !ok || int64(len(r)) != n {
		return fmt.Errorf("bad reference %T of %d bytes for %d", ref, len(r), n)
	}
	b.Write(r)
	return nil
}

// TestCachedRegionsAreByteIdentical: a re-export from a cache that keeps
// the first export's .pte takes each partition's leading base blobs by one
// reference (BaseRegion) and equals a direct export, also with another
// context length; when the planned layout differs from the file's (the
// region digests do not match), it falls back to one reference per blob,
// still byte-identical.
func TestCachedRegionsAreByteIdentical(t *testing.T) {
	o := DefaultOptions()
	o.InputLen, o.MaxContextLen, o.Multifunction = 4, 12, true
	p, err := NewPlan(Request{FS: os.DirFS("../.."), ModelDir: "testdata/tiny-llama/model", Options: o, Adapters: fixtureAdapters()[:1]})
	require.NoError(t, err)
	var first bytes.Buffer
	require.NoError(t, p.Write(context.Background(), &first, nil))
	man := p.BaseManifest()
	require.Len(t, man.Regions, 3, "one region per partition (graph breaks)")

	other := *man
	other.Regions = append([]BaseRegion(nil), man.Regions...)
	for i := range other.Regions {
		other.Regions[i].Digest = "another layout"
	}
	for name, c := range map[string]struct {
		edit func(o *Options)
		man  *BaseManifest
	}{
		"same layout":          {func(o *Options) {}, man},
		"other context length": {func(o *Options) { o.MaxContextLen = 16 }, man},
		"other layout":         {func(o *Options) {}, &other},
	} {
		t.Run(name, func(t *testing.T) {
			o2 := o
			c.edit(&o2)
			cache := &fileCache{file: first.Bytes(), man: c.man}
			var got byteRefBuffer
			require.NoError(t, Export(context.Background(), Request{Base: man, BaseBlobs: cache, Options: o2, Adapters: fixtureAdapters()[1:]}, &got, nil))
			want := exportBytes(t, "testdata/tiny-llama/model", fixtureAdapters()[1:], o2)
			require.True(t, bytes.Equal(want, got.Bytes()), "re-export from the cached file differs from a direct export")
			if c.man == man {
				require.Equal(t, 3, cache.areas, "every partition's base blobs by one reference")
				require.Zero(t, cache.blobs)
			} else {
				require.Zero(t, cache.areas)
				require.Equal(t, len(man.Blobs), cache.blobs, "blob by blob")
			}
		})
	}
}
