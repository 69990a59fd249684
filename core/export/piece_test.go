package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lorapte/core/safetensors"
)

// pieceFS wraps an fs.FS so that its files convert pieces "elsewhere": each
// ConvertPiece reads the bytes itself and runs a Converter of its own (as
// a browser worker does), several at once.
type pieceFS struct {
	fs.FS
	pieces atomic.Int64
	pool   sync.Pool
	hold   bool         // files are PieceHolders
	held   atomic.Int64 // pieces held
	twins  atomic.Int64 // twin pieces held
	// refuseTwins leaves every twin unconverted (as a worker does when a
	// twin fails): the twin jobs are then converted as usual.
	refuseTwins bool
	// delay makes each HoldPiece take that long (a round trip to a
	// worker); outstanding and maxOutstanding count the calls under way.
	delay                       time.Duration
	outstanding, maxOutstanding atomic.Int64
}

type pieceFile struct {
	fs.File
	fsys *pieceFS
}

func (p *pieceFS) Open(name string) (fs.File, error) {
	f, err := p.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if p.hold {
		return &holdFile{pieceFile{File: f, fsys: p}}, nil
	}
	return &pieceFile{File: f, fsys: p}, nil
}

// holdFile is a pieceFile that also holds pieces (PieceHolder): the
// reference is the converted bytes themselves, which refBuffer appends.
type holdFile struct{ pieceFile }

func (f *holdFile) CanHold() bool { return true }

func (f *holdFile) HoldPiece(off int64, p Piece, scales []byte, twins []Twin) (any, error) {
	f.fsys.held.Add(1)
	n := f.fsys.outstanding.Add(1)
	defer f.fsys.outstanding.Add(-1)
	for m := f.fsys.maxOutstanding.Load(); n > m && !f.fsys.maxOutstanding.CompareAndSwap(m, n); m = f.fsys.maxOutstanding.Load() {
	}
	time.Sleep(f.fsys.delay)
	out := make([]byte, p.OutBytes())
	if err := f.ConvertPiece(off, p, out, scales); err != nil {
		return nil, err
	}
	// Twins from the same bytes: read here again (a browser worker converts
	// them from the bytes it has).
	for i := range twins {
		tw := &twins[i]
		tout := make([]byte, tw.Piece.OutBytes())
		if f.fsys.refuseTwins {
			continue
		}
		if err := f.ConvertPiece(off+int64(tw.Skip), tw.Piece, tout, tw.Scales); err == nil {
			tw.Ref = heldBytes(tout)
			f.fsys.twins.Add(1)
		}
	}
	return heldBytes(out), nil
}

type heldBytes []byte

// refBuffer is an output that takes references (RefWriter): held pieces.
// With failAt > 0 the failAt-th reference fails.
type refBuffer struct {
	bytes.Buffer
	refs   int
	failAt int
}

func (b *refBuffer) WriteRef(ref any, n int64) error {
	h, ok := ref.(heldBytes)
	if !ok || int64(len(h)) != n {
		return fmt.Errorf("bad reference %T of %d bytes for %d", ref, len(h), n)
	}
	if b.failAt > 0 && b.refs+1 == b.failAt {
		return errors.New("output: disk full")
	}
	b.refs++
	b.Write(h)
	return nil
}

func (f *pieceFile) ReadAt(b []byte, off int64) (int, error) {
	return f.File.(io.ReaderAt).ReadAt(b, off)
}

func (f *pieceFile) ConvertPiece(off int64, p Piece, out, scales []byte) error {
	f.fsys.pieces.Add(1)
	src := make([]byte, p.SourceBytes())
	if _, err := f.ReadAt(src, off); err != nil {
		return err
	}
	c, _ := f.fsys.pool.Get().(*Converter)
	if c == nil {
		c = new(Converter)
	}
	defer f.fsys.pool.Put(c)
	return c.Convert(p, src, out, scales)
}

// TestPiecesConvertedElsewhere: an export whose files convert their pieces
// through PieceConverter (with three conversions at once) gives the same
// bytes as the plain export, for quantized and float outputs in float16
// and float32, and a non-finite weight gives the same error.
func TestPiecesConvertedElsewhere(t *testing.T) {
	for _, tied := range []bool{false, true} {
		t.Run(fmt.Sprintf("tied=%t", tied), func(t *testing.T) { testPiecesConvertedElsewhere(t, tied) })
	}
}

func testPiecesConvertedElsewhere(t *testing.T, tied bool) {
	dir := t.TempDir()
	s := smallShape("pc", 1, 8192)
	s.Tied = tied
	genModel(t, dir, s, true)
	opts := func(edit func(o *Options)) Options {
		o := DefaultOptions()
		o.InputLen, o.MaxContextLen, o.Multifunction = 4, 16, true
		edit(&o)
		return o
	}
	for name, o := range map[string]Options{
		"default q8 embedding, c4w":  opts(func(o *Options) {}),
		"b4w groups":                 opts(func(o *Options) { o.EmbeddingQuantize, o.LinearQuantize = "4,32", "b4w" }),
		"fp32 quantized":             opts(func(o *Options) { o.DType = "fp32" }),
		"fp16 unquantized":           opts(func(o *Options) { o.EmbeddingQuantize, o.LinearQuantize = "none", "none" }),
		"fp32 unquantized, adapters": opts(func(o *Options) { o.DType, o.EmbeddingQuantize, o.LinearQuantize = "fp32", "none", "none" }),
	} {
		t.Run(name, func(t *testing.T) {
			plain := os.DirFS(dir)
			var want bytes.Buffer
			require.NoError(t, Export(context.Background(), Request{FS: plain, ModelDir: "model", Options: o,
				Adapters: []Adapter{{Name: "ad", FS: plain, Path: "ad"}}}, &want, nil))
			pfs := &pieceFS{FS: os.DirFS(dir)}
			var got bytes.Buffer
			require.NoError(t, Export(context.Background(), Request{FS: pfs, ModelDir: "model", Options: o, Workers: 3,
				Adapters: []Adapter{{Name: "ad", FS: pfs, Path: "ad"}}}, &got, nil))
			require.Greater(t, pfs.pieces.Load(), int64(10), "pieces converted through the files")
			require.True(t, bytes.Equal(want.Bytes(), got.Bytes()), "same bytes as the plain export")

			// Held pieces, written by reference into the output: same bytes.
			hfs := &pieceFS{FS: os.DirFS(dir), hold: true}
			var held refBuffer
			require.NoError(t, Export(context.Background(), Request{FS: hfs, ModelDir: "model", Options: o, Workers: 3,
				Adapters: []Adapter{{Name: "ad", FS: hfs, Path: "ad"}}}, &held, nil))
			require.Greater(t, hfs.held.Load(), int64(10), "pieces held by the files")
			require.EqualValues(t, hfs.held.Load()+hfs.twins.Load(), held.refs, "every held piece written by reference")
			if tied {
				// The head's rows come from the embedding's reads (8 splits of
				// 1024 rows over the 3 parts of the one embedding batch).
				require.GreaterOrEqual(t, hfs.twins.Load(), int64(8), "head pieces converted with the embedding's")
			} else {
				require.Zero(t, hfs.twins.Load())
			}
			require.True(t, bytes.Equal(want.Bytes(), held.Bytes()), "same bytes with held pieces")

			if tied {
				hfs = &pieceFS{FS: os.DirFS(dir), hold: true, refuseTwins: true}
				held = refBuffer{}
				require.NoError(t, Export(context.Background(), Request{FS: hfs, ModelDir: "model", Options: o, Workers: 3,
					Adapters: []Adapter{{Name: "ad", FS: hfs, Path: "ad"}}}, &held, nil))
				require.True(t, bytes.Equal(want.Bytes(), held.Bytes()), "same bytes when the twins fail")
			}

			// Saving the base needs its bytes: nothing is held then.
			hfs = &pieceFS{FS: os.DirFS(dir), hold: true}
			held = refBuffer{}
			require.NoError(t, Export(context.Background(), Request{FS: hfs, ModelDir: "model", Options: o, Workers: 3,
				SaveBase: &memCache{}}, &held, nil))
			require.Zero(t, hfs.held.Load(), "base pieces held while the base is saved")
		})
	}

	t.Run("non-finite weight", func(t *testing.T) {
		bad := t.TempDir()
		genModel(t, bad, s, false)
		// A NaN (bfloat16 0x7fc0) in the middle of the embedding.
		patchSafetensors(t, filepath.Join(bad, "model", "model.safetensors"), func(st *safetensors.File) int64 {
			info, ok := st.Info("model.embed_tokens.weight")
			require.True(t, ok)
			return info.Offset + info.Bytes/2
		}, func(b []byte) { b[0], b[1] = 0xc0, 0x7f })
		o := opts(func(o *Options) {})
		errPlain := Export(context.Background(), Request{FS: os.DirFS(bad), ModelDir: "model", Options: o}, io.Discard, nil)
		require.Error(t, errPlain)
		require.Contains(t, errPlain.Error(), "model.embed_tokens.weight")
		pfs := &pieceFS{FS: os.DirFS(bad)}
		errPieces := Export(context.Background(), Request{FS: pfs, ModelDir: "model", Options: o, Workers: 3}, io.Discard, nil)
		require.Error(t, errPieces)
		require.Equal(t, errPlain.Error(), errPieces.Error())
		hfs := &pieceFS{FS: os.DirFS(bad), hold: true}
		errHeld := Export(context.Background(), Request{FS: hfs, ModelDir: "model", Options: o, Workers: 3}, &refBuffer{}, nil)
		require.Error(t, errHeld)
		require.Equal(t, errPlain.Error(), errHeld.Error())
	})
}

// TestHeldBatchesOverlapJobs: held pieces of later jobs are converted
// while earlier ones settle, although every job here is one batch of one
// piece (one worker), and the output and errors stay those of the plain
// export: a NaN in a late layer, whose batch may start ahead, gives the
// plain export's error.
func TestHeldBatchesOverlapJobs(t *testing.T) {
	dir := t.TempDir()
	s := smallShape("ov", 2, 1024)
	genModel(t, dir, s, false)
	o := DefaultOptions()
	o.InputLen, o.MaxContextLen = 4, 16
	plain := os.DirFS(dir)
	var want bytes.Buffer
	require.NoError(t, Export(context.Background(), Request{FS: plain, ModelDir: "model", Options: o}, &want, nil))
	hfs := &pieceFS{FS: os.DirFS(dir), hold: true, delay: time.Millisecond}
	var held refBuffer
	require.NoError(t, Export(context.Background(), Request{FS: hfs, ModelDir: "model", Options: o, Workers: 1}, &held, nil))
	require.Greater(t, hfs.held.Load(), int64(2*7))
	require.EqualValues(t, remoteBatches, hfs.maxOutstanding.Load(), "pieces of several jobs in flight")
	require.True(t, bytes.Equal(want.Bytes(), held.Bytes()), "same bytes as the plain export")

	// The output fails while pieces of later jobs are in flight: the
	// export ends with that error once they are back.
	hfs = &pieceFS{FS: os.DirFS(dir), hold: true, delay: time.Millisecond}
	err := Export(context.Background(), Request{FS: hfs, ModelDir: "model", Options: o, Workers: 1}, &refBuffer{failAt: 5}, nil)
	require.ErrorContains(t, err, "disk full")
	require.Zero(t, hfs.outstanding.Load(), "no conversion left running")

	for _, tensor := range []string{"model.layers.1.mlp.down_proj.weight", "model.layers.0.self_attn.k_proj.weight"} {
		t.Run(tensor, func(t *testing.T) {
			bad := t.TempDir()
			genModel(t, bad, s, false)
			patchSafetensors(t, filepath.Join(bad, "model", "model.safetensors"), func(st *safetensors.File) int64 {
				info, ok := st.Info(tensor)
				require.True(t, ok)
				return info.Offset + info.Bytes - 2
			}, func(b []byte) { b[0], b[1] = 0xc0, 0x7f })
			errPlain := Export(context.Background(), Request{FS: os.DirFS(bad), ModelDir: "model", Options: o}, io.Discard, nil)
			require.ErrorContains(t, errPlain, tensor)
			hfs := &pieceFS{FS: os.DirFS(bad), hold: true, delay: time.Millisecond}
			errHeld := Export(context.Background(), Request{FS: hfs, ModelDir: "model", Options: o, Workers: 1}, &refBuffer{}, nil)
			require.Error(t, errHeld)
			require.Equal(t, errPlain.Error(), errHeld.Error())
			require.Zero(t, hfs.outstanding.Load(), "no conversion left running")
		})
	}
}

func TestConverterRefusesBadPieces(t *testing.T) {
	var c Converter
	for _, p := range []Piece{
		{DType: "I8", Rows: 1, Cols: 2},
		{DType: safetensors.BF16, Rows: 0, Cols: 2},
		{DType: safetensors.BF16, Rows: 2, Cols: 4, Quant: true, Bits: 3, Groups: 1},
		{DType: safetensors.BF16, Rows: 2, Cols: 4, Quant: true, Bits: 4, Groups: 3},
		{DType: safetensors.BF16, Rows: 1 << 20, Cols: 1 << 20},
	} {
		require.Error(t, c.Convert(p, nil, nil, nil), "%+v", p)
	}
	p := Piece{DType: safetensors.BF16, Rows: 2, Cols: 4}
	require.ErrorContains(t, c.Convert(p, make([]byte, 3), make([]byte, 16), nil), "source")
}
