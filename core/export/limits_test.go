package export

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lorapte/core/safetensors"
	"lorapte/internal/benchgen"
)

func tinyRequest(o func(*Options)) Request {
	fsys := os.DirFS("../../testdata/tiny-llama")
	opts := DefaultOptions()
	opts.InputLen, opts.MaxContextLen = 4, 12
	if o != nil {
		o(&opts)
	}
	return Request{FS: fsys, ModelDir: "model", Options: opts,
		Adapters: []Adapter{{Name: "attn", FS: fsys, Path: "adapters/attn"}}}
}

var errFull = errors.New("no space left on device")

// fullAfter accepts n bytes, then fails every write.
type fullAfter struct{ n int64 }

func (f *fullAfter) Write(p []byte) (int, error) {
	if int64(len(p)) > f.n {
		k := int(f.n)
		f.n = 0
		return k, errFull
	}
	f.n -= int64(len(p))
	return len(p), nil
}

// TestWriterErrorSurfaces: a sink that fails part way (a full disk) makes
// Export return that error, wherever in the file it happens.
func TestWriterErrorSurfaces(t *testing.T) {
	req := tinyRequest(nil)
	p, err := NewPlan(req)
	require.NoError(t, err)
	for _, n := range []int64{0, 1, 4096, p.Size() / 3, p.Size() - 1} {
		err := Export(context.Background(), req, &fullAfter{n: n}, nil)
		require.ErrorIs(t, err, errFull, "failing after %d bytes", n)
	}
	require.NoError(t, Export(context.Background(), req, &fullAfter{n: p.Size()}, nil))
}

// TestLimits: options below what the job needs are refused by NewPlan,
// naming the option's flag; the defaults accept the fixture.
func TestLimits(t *testing.T) {
	p, err := NewPlan(tinyRequest(nil))
	require.NoError(t, err)
	m := p.Memory()
	require.Positive(t, m.Chunks)
	require.Positive(t, m.Scales)
	require.Positive(t, m.Constants)
	require.Positive(t, m.Specs)
	require.Positive(t, m.Headers)
	require.Equal(t, 2*int64(readAheadPerFile)+outputBuffer, m.ReadAhead) // model + one adapter file
	require.Equal(t, 2*m.Live(), m.Total())
	require.Less(t, m.Total(), int64(DefaultMaxMemoryBytes))

	_, err = NewPlan(tinyRequest(func(o *Options) { o.MaxOutputBytes = p.Size() - 1 }))
	require.ErrorContains(t, err, "--max-output-size")
	_, err = NewPlan(tinyRequest(func(o *Options) { o.MaxOutputBytes = p.Size() }))
	require.NoError(t, err)

	// Refused after planning, when the estimate is exact...
	_, err = NewPlan(tinyRequest(func(o *Options) { o.MaxMemoryBytes = m.Total() - 1 }))
	require.ErrorContains(t, err, "--max-memory")
	_, err = NewPlan(tinyRequest(func(o *Options) { o.MaxMemoryBytes = m.Total() + 4<<20 }))
	require.NoError(t, err)
	// ...or before, from the config alone.
	_, err = NewPlan(tinyRequest(func(o *Options) { o.MaxMemoryBytes = 1 << 20 }))
	require.ErrorContains(t, err, "--max-memory")

	// A long context makes the RoPE tables the largest part.
	_, err = NewPlan(tinyRequest(func(o *Options) { o.MaxContextLen, o.MaxMemoryBytes = 1<<20, 64<<20 }))
	require.ErrorContains(t, err, "RoPE tables")
	require.ErrorContains(t, err, "--max-context-len 1048576")
	require.ErrorContains(t, err, "model/config.json")
}

// TestMemoryEstimateBoundsHeap: the estimate is above the heap actually
// used while exporting a model whose tensors take several chunks on
// several workers (sampled, so this is a sanity check, not a proof).
func TestMemoryEstimateBoundsHeap(t *testing.T) {
	dir := t.TempDir()
	s := benchgen.Shape{Key: "mem", Name: "mem", Hidden: 256, Intermediate: 1024, Layers: 2, Heads: 4, KVHeads: 2,
		Vocab: 16384, RopeTheta: 10000, MaxPositions: 2048, RMSEps: 1e-5}
	_, err := benchgen.WriteModel(filepath.Join(dir, "model"), s, safetensors.F32)
	require.NoError(t, err)
	o := DefaultOptions()
	o.Multifunction, o.EmbeddingQuantize, o.LinearQuantize = true, "4,32", "b4w"
	req := Request{FS: os.DirFS(dir), ModelDir: "model", Options: o}

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop, peak := make(chan struct{}), make(chan uint64)
	go func() {
		var ms runtime.MemStats
		var top uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			top = max(top, ms.HeapInuse)
			select {
			case <-stop:
				peak <- top
				return
			case <-tick.C:
			}
		}
	}()
	p, err := NewPlan(req)
	require.NoError(t, err)
	require.NoError(t, p.Write(context.Background(), io.Discard, nil))
	close(stop)
	used := int64(<-peak) - int64(base.HeapInuse)
	est := p.Memory()
	t.Logf("estimate %s (live %s: %+v), measured peak heap growth %s", HumanBytes(est.Total()), HumanBytes(est.Live()), est, HumanBytes(used))
	require.Less(t, used, est.Total())
}
