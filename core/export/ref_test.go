package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// refCache is a memCache that also hands out blobs by reference: the
// reference is the blob key, resolved by refOutput.
type refCache struct{ *memCache }

func (c refCache) OpenBlobRef(key string) (any, int64, error) {
	b, ok := c.blobs[key]
	if !ok {
		return nil, 0, fmt.Errorf("no blob %s", key)
	}
	return key, int64(b.Len()), nil
}

// refOutput is an output that resolves references from the cache, as the
// browser's Blob output joins cached Blobs.
type refOutput struct {
	bytes.Buffer
	cache   *memCache
	viaRefs int64
	refs    int
}

func (o *refOutput) WriteRef(ref any, n int64) error {
	b, ok := o.cache.blobs[ref.(string)]
	if !ok || int64(b.Len()) != n {
		return errors.New("bad reference")
	}
	o.viaRefs += n
	o.refs++
	o.Buffer.Write(b.Bytes())
	return nil
}

// TestCachedBaseByReference: a cached re-export whose blob source and
// output both take references passes every base blob by reference, and
// the file is byte-identical to a direct export.
func TestCachedBaseByReference(t *testing.T) {
	root := os.DirFS("../..")
	o := DefaultOptions()
	o.InputLen, o.MaxContextLen, o.Multifunction = 4, 12, true
	cache := &memCache{}
	p, err := NewPlan(Request{FS: root, ModelDir: "testdata/tiny-llama/model", Options: o, SaveBase: cache})
	require.NoError(t, err)
	require.NoError(t, p.Write(context.Background(), &bytes.Buffer{}, nil))
	man := p.BaseManifest()

	direct := exportBytes(t, "testdata/tiny-llama/model", fixtureAdapters(), o)
	req := Request{Base: man, BaseBlobs: refCache{cache}, Options: o, Adapters: fixtureAdapters()}
	out := &refOutput{cache: cache}
	var last int64
	require.NoError(t, Export(context.Background(), req, out, func(stage string, done, total int64) {
		if stage == "write" {
			require.GreaterOrEqual(t, done, last)
			last = done
		}
	}))
	require.True(t, bytes.Equal(direct, out.Bytes()), "export by reference differs from a direct export")
	require.Equal(t, man.Bytes, out.viaRefs, "every base blob byte comes by reference")
	require.Equal(t, len(man.Blobs), out.refs)
	require.EqualValues(t, len(direct), last, "progress counts referenced bytes")

	// A plain output with the same source copies, with the same bytes.
	var plain bytes.Buffer
	require.NoError(t, Export(context.Background(), req, &plain, nil))
	require.True(t, bytes.Equal(direct, plain.Bytes()))

	// A reference of the wrong size is an error naming the blob.
	bad := &memCache{blobs: map[string]*bytes.Buffer{}}
	for k, v := range cache.blobs {
		bad.blobs[k] = bytes.NewBuffer(append([]byte(nil), v.Bytes()...))
	}
	bad.blobs[man.Blobs[0].Key].WriteByte(0)
	req.BaseBlobs = refCache{bad}
	err = Export(context.Background(), req, &refOutput{cache: bad}, nil)
	require.ErrorContains(t, err, "cached base: blob")

	// Cancellation is honoured between references.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req.BaseBlobs = refCache{cache}
	require.ErrorIs(t, Export(ctx, req, &refOutput{cache: cache}, nil), context.Canceled)
}
