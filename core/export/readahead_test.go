package export

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/safetensors"
	"lorapte/internal/benchgen"
)

// smallShape is a model large enough for several pieces per tensor (an
// 8192×256 embedding), small enough for fast tests.
func smallShape(key string, layers, vocab int) benchgen.Shape {
	return benchgen.Shape{Key: key, Name: key, Hidden: 256, Intermediate: 512, Layers: layers, Heads: 4, KVHeads: 2,
		Vocab: vocab, RopeTheta: 10000, MaxPositions: 2048, RMSEps: 1e-5}
}

// genModel writes a random bf16 model of shape s to dir/model and, with
// adapter, an adapter to dir/ad.
func genModel(t *testing.T, dir string, s benchgen.Shape, adapter bool) {
	t.Helper()
	_, err := benchgen.WriteModel(filepath.Join(dir, "model"), s, safetensors.BF16)
	require.NoError(t, err)
	if adapter {
		_, err = benchgen.WriteAdapter(filepath.Join(dir, "ad"), s, "ad", benchgen.DefaultAdapter())
		require.NoError(t, err)
	}
}

// patchSafetensors rewrites the 2 bytes at offset at(file) of a
// safetensors file with edit.
func patchSafetensors(t *testing.T, file string, at func(st *safetensors.File) int64, edit func(b []byte)) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	fi, err := f.Stat()
	require.NoError(t, err)
	st, err := safetensors.Open(file, f, fi.Size())
	require.NoError(t, err)
	off := at(st)
	b := make([]byte, 2)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	edit(b)
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

// aheadFS wraps an fs.FS so that its files take read-ahead announcements
// (as the browser's files do) and record them beside the reads.
type aheadFS struct {
	fs.FS
	mu     sync.Mutex
	pieces map[string][][2]int64 // file → announced pieces (offset, size), in order
	reads  map[string][][2]int64 // file → reads (offset, size), in order
	// maxAhead is the most announced pieces not yet read, seen at a read
	// of an announced piece.
	maxAhead int
}

type aheadFile struct {
	fs.File
	name string
	fsys *aheadFS
}

func (a *aheadFS) Open(name string) (fs.File, error) {
	f, err := a.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return &aheadFile{File: f, name: name, fsys: a}, nil
}

func (f *aheadFile) ReadAt(p []byte, off int64) (int, error) {
	f.fsys.mu.Lock()
	r := [2]int64{off, int64(len(p))}
	f.fsys.reads[f.name] = append(f.fsys.reads[f.name], r)
	if i := slices.Index(f.fsys.pieces[f.name], r); i >= 0 {
		f.fsys.maxAhead = max(f.fsys.maxAhead, len(f.fsys.pieces[f.name])-i)
	}
	f.fsys.mu.Unlock()
	return f.File.(io.ReaderAt).ReadAt(p, off)
}

func (f *aheadFile) ReadAhead(pieces [][2]int64) {
	f.fsys.mu.Lock()
	defer f.fsys.mu.Unlock()
	f.fsys.pieces[f.name] = append(f.fsys.pieces[f.name], pieces...)
}

// TestReadAheadAnnouncesTheReads: with one worker (the browser), every
// tensor the fast path converts is announced before it is read, in the
// order and in the pieces it is then read.
func TestReadAheadAnnouncesTheReads(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	dir := t.TempDir()
	s := smallShape("ra", 2, 8192) // the embedding: two pieces of 4096 rows
	genModel(t, dir, s, false)
	for _, o := range []Options{DefaultOptions(), func() Options {
		o := DefaultOptions()
		o.EmbeddingQuantize, o.LinearQuantize = "none", "none"
		return o
	}()} {
		o.InputLen, o.MaxContextLen = 4, 16
		fsys := &aheadFS{FS: os.DirFS(dir), pieces: map[string][][2]int64{}, reads: map[string][][2]int64{}}
		require.NoError(t, Export(context.Background(), Request{FS: fsys, ModelDir: "model", Options: o}, io.Discard, nil))
		file := "model/model.safetensors"
		pieces := fsys.pieces[file]
		require.NotEmpty(t, pieces)
		// Every announced piece is read, in order; other reads (header,
		// digest samples, vectors) may come between them.
		next := 0
		for _, r := range fsys.reads[file] {
			if next < len(pieces) && r == pieces[next] {
				next++
			}
		}
		require.Equal(t, len(pieces), next, "announced pieces read in order (%d of %d)", next, len(pieces))
		// Announcements run ahead by bytes, not by one job: this model is
		// smaller than announceAhead, so a partition's pieces are all
		// announced before its first is read.
		require.GreaterOrEqual(t, fsys.maxAhead, s.Layers*7, "pieces announced ahead of the reads")
		require.GreaterOrEqual(t, len(pieces), s.Layers*7+2, "every projection and the embedding announced")
	}
}

// TestDigestSeesTheWeights: adapters and the base are fingerprinted by
// samples, and a change to the weights there gives other Core ML
// identifiers (the device's compile-cache key), while the same files give
// the same ones.
func TestDigestSeesTheWeights(t *testing.T) {
	dir := t.TempDir()
	genModel(t, dir, smallShape("dg", 1, 1024), true)
	ids := func() []string {
		o := DefaultOptions()
		o.InputLen, o.MaxContextLen = 4, 16
		fsys := os.DirFS(dir)
		p, err := NewPlan(Request{FS: fsys, ModelDir: "model", Options: o, Adapters: []Adapter{{Name: "ad", FS: fsys, Path: "ad"}}})
		require.NoError(t, err)
		defer p.Close()
		var out []string
		for _, pp := range p.parts {
			out = append(out, pp.identifier)
		}
		return out
	}
	first := ids()
	require.Equal(t, first, ids())

	// Change one weight: the last element of one tensor's data.
	patchSafetensors(t, filepath.Join(dir, "ad", "adapter_model.safetensors"), func(st *safetensors.File) int64 {
		info, _ := st.Info(st.Names()[0])
		return info.Offset + info.Bytes - 2
	}, func(b []byte) { b[0] ^= 0x40 })
	changed := ids()
	require.NotEqual(t, first, changed, "identifiers change with the adapter's weights")

	// The base is sampled too: change the first weight of its data.
	patchSafetensors(t, filepath.Join(dir, "model", "model.safetensors"), func(st *safetensors.File) int64 {
		return st.Size() - st.Data().Size()
	}, func(b []byte) { b[0], b[1] = 0x7f, 0x3f }) // bfloat16 1.0
	require.NotEqual(t, changed, ids(), "identifiers change with the base's weights")
}
