package export

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/milblob"
	"lorapte/core/quant"
	"lorapte/core/safetensors"
	"lorapte/internal/benchgen"
)

// lcg is a tiny deterministic generator for test inputs.
type lcg uint64

func (l *lcg) next() uint64 {
	*l = *l*6364136223846793005 + 1442695040888963407
	return uint64(*l >> 11)
}

// f16Values gives float16-exact values of several kinds: normal weights,
// wide magnitudes, exact zeros and float16 subnormals.
func f16Values(n int, seed lcg) []float32 {
	v := make([]float32, n)
	for i := range v {
		x := seed.next()
		switch x % 7 {
		case 0:
			v[i] = 0
		case 1:
			v[i] = quant.F16ToF32(uint16(x>>8) & 0x83ff) // subnormal or ±0
		case 2:
			h := uint16(x >> 8)
			if h&0x7c00 == 0x7c00 {
				h &^= 0x4000 // no Inf/NaN
			}
			v[i] = quant.F16ToF32(h) // anything finite
		default:
			v[i] = quant.RoundF16(float32(int64(x>>20)-(1<<31)) / (1 << 31) * 0.1)
		}
	}
	return v
}

func TestQuantizeF16ExactMatchesQuant(t *testing.T) {
	seed := lcg(1)
	for _, tc := range []struct{ rows, cols, group, bits int }{
		{7, 96, 0, 4}, {7, 96, 32, 4}, {5, 333, 0, 4}, {9, 64, 0, 8}, {4, 64, 32, 8}, {3, 1, 0, 4},
	} {
		for round := 0; round < 20; round++ {
			w := f16Values(tc.rows*tc.cols, lcg(seed.next()))
			switch round {
			case 0: // all zero rows: scale is eps
				clear(w)
			case 1: // one tiny block
				for i := range w {
					w[i] = quant.F16ToF32(uint16(i%3) + 1)
				}
			}
			s := quant.Scheme{Bits: tc.bits, Group: tc.group}
			per, err := s.ScaleCount(tc.cols)
			require.NoError(t, err)
			wantC, gotC := make([]int8, len(w)), make([]int8, len(w))
			wantS, gotS := make([]uint16, tc.rows*per), make([]uint16, tc.rows*per)
			require.NoError(t, quant.QuantizeRowsF16(w, tc.rows, tc.cols, s, wantC, wantS))
			quantizeF16Exact(w, tc.rows, tc.cols, tc.cols/per, tc.bits, gotC, gotS)
			require.Equal(t, wantS, gotS, "%+v round %d", tc, round)
			require.Equal(t, wantC, gotC, "%+v round %d", tc, round)
		}
	}
}

// bf16Bytes encodes values (already bfloat16-exact or not) as bfloat16.
func bf16Bytes(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], quant.F32ToBF16(x))
	}
	return b
}

// The bfloat16 kernel (direct and table paths, int4 and int8) equals
// quant.QuantizeRowsF16 on the decoded values, and refuses blocks that
// overflow float16.
func TestQuantizeBF16MatchesQuant(t *testing.T) {
	seed := lcg(3)
	tc := &tableCache{}
	refused := 0
	for _, c := range []struct{ rows, cols, group, bits int }{
		{6, 576, 0, 4}, {6, 576, 0, 8}, {3, 2048, 0, 4}, {3, 70, 0, 4}, {3, 70, 0, 8}, {5, 64, 32, 4}, {5, 64, 32, 8}, {4, 1024, 512, 8},
	} {
		for round := 0; round < 30; round++ {
			n := c.rows * c.cols
			w := make([]float32, n)
			for i := range w {
				x := seed.next()
				switch x % 9 {
				case 0:
					w[i] = 0
				case 1:
					w[i] = math.Float32frombits(uint32(x>>8) & 0x387fffff) // below float16's normal range
				case 2:
					w[i] = float32(int64(x>>20)-(1<<31)) / (1 << 31) * float32(1+round*3000) // wide; overflows float16 in late rounds
				default:
					w[i] = float32(int64(x>>20)-(1<<31)) / (1 << 31) * 0.08
				}
			}
			if round == 1 {
				clear(w[:c.cols]) // a zero row
			}
			src := bf16Bytes(w)
			vals := make([]float32, n)
			quant.DecodeBF16LE(vals, src)
			s := quant.Scheme{Bits: c.bits, Group: c.group}
			per, err := s.ScaleCount(c.cols)
			require.NoError(t, err)
			wantC, wantS := make([]int8, n), make([]uint16, c.rows*per)
			wantErr := quant.QuantizeRowsF16(vals, c.rows, c.cols, s, wantC, wantS)
			got, gotS := make([]byte, n), make([]uint16, c.rows*per)
			ok := quantizeBF16(src, c.rows, c.cols, c.cols/per, c.bits, got, gotS, tc)
			if wantErr != nil {
				require.False(t, ok, "%+v round %d: %v", c, round, wantErr)
				refused++
				continue
			}
			require.True(t, ok, "%+v round %d", c, round)
			require.Equal(t, wantS, gotS, "%+v round %d", c, round)
			want := make([]byte, n)
			if c.bits == 4 {
				want = milblob.PackInt4(wantC)
				got = got[:len(want)]
			} else {
				for i, v := range wantC {
					want[i] = byte(v)
				}
			}
			require.Equal(t, want, got, "%+v round %d", c, round)
		}
	}
	require.NotEmpty(t, tc.m, "the table path ran")
	require.NotZero(t, refused, "some blocks overflowed")
}

// A code table holds code(x·inv) for every bfloat16 that fits float16.
func TestCodeTableExhaustive(t *testing.T) {
	for _, bits := range []int{4, 8} {
		_, _, div := codeRange(bits)
		for _, amax := range []float32{0, 1e-6, 0.0012, 0.07, 0.5, 3.5, 1000, 65280} {
			_, inv := quant.ScaleF16(amax, div)
			qmin, qmax, _ := codeRange(bits)
			tbl := newCodeTable(nil, bits, inv)
			for h := 0; h < 1<<16; h++ {
				if h&0x7fff > bf16Top {
					continue
				}
				want := code(math.Float32frombits(uint32(h)<<16)*inv, qmin, qmax)
				require.Equal(t, int8(want), tbl[h], "bits %d amax %v h %#04x", bits, amax, h)
			}
		}
	}
}

func TestDecodeMatchesReference(t *testing.T) {
	seed := lcg(7)
	const n = 4096
	specials := []uint32{0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x477fe000, 0x477ff000, 0x47800000, 0x38800000, 0x33800000, 0x00000001}
	for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32} {
		for _, fp32 := range []bool{false, true} {
			for round := 0; round < 50; round++ {
				raw := make([]byte, n*dt.Size())
				for i := 0; i < n; i++ {
					x := seed.next()
					bits := uint32(x)
					if x>>40%5 == 0 {
						bits = specials[int(x>>48)%len(specials)]
					} else if x>>40%5 == 1 {
						bits = math.Float32bits(float32(int64(x>>20)-(1<<31)) / (1 << 31) * 0.1)
					}
					switch dt {
					case safetensors.F32:
						binary.LittleEndian.PutUint32(raw[4*i:], bits)
					case safetensors.BF16:
						binary.LittleEndian.PutUint16(raw[2*i:], uint16(bits>>16))
					default:
						binary.LittleEndian.PutUint16(raw[2*i:], quant.F32ToF16(math.Float32frombits(bits)))
					}
				}
				// Reference: exact float32, then the reference loop's checks
				// and rounding.
				want := make([]float32, n)
				switch dt {
				case safetensors.F32:
					quant.DecodeF32LE(want, raw)
				case safetensors.BF16:
					quant.DecodeBF16LE(want, raw)
				default:
					quant.DecodeF16LE(want, raw)
				}
				wantOK := true
				for i, v := range want {
					if v-v != 0 {
						wantOK = false
					}
					if !fp32 {
						want[i] = quant.RoundF16(v)
						if want[i]-want[i] != 0 {
							wantOK = false
						}
					}
				}
				got := make([]float32, n)
				ok := decode(got, raw, dt, fp32)
				require.Equal(t, wantOK, ok, "%s fp32=%t round %d", dt, fp32, round)
				if ok {
					for i := range want {
						require.Equal(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "%s fp32=%t element %d", dt, fp32, i)
					}
				}
			}
		}
	}
}

// benchShapes are small models whose tensors are large enough for the
// parallel path (and, for the embedding, several chunks), with odd row
// and column counts so int4 pairs straddle rows.
func convertShapes() []benchgen.Shape {
	odd := benchgen.Tiny()
	odd.Name, odd.Hidden, odd.Intermediate, odd.Heads, odd.KVHeads, odd.Vocab, odd.Tied = "odd", 130, 555, 5, 5, 8191, true
	even := benchgen.Tiny()
	even.Name, even.Hidden, even.Intermediate, even.Heads, even.KVHeads, even.Vocab = "even", 256, 512, 4, 2, 3006
	return []benchgen.Shape{odd, even}
}

type convertCase struct {
	name     string
	shape    benchgen.Shape
	dtype    safetensors.DType
	opts     Options
	adapters bool
}

func convertCases() []convertCase {
	sh := convertShapes()
	def := DefaultOptions()
	// The odd shape's 8191-row head (prime) cannot be split.
	mod := func(f func(o *Options)) Options { o := DefaultOptions(); o.TargetSplitSize = 8192; f(&o); return o }
	return []convertCase{
		{"odd-bf16-default", sh[0], safetensors.BF16, mod(func(o *Options) { o.Multifunction = true }), true},
		{"odd-f16-int4emb", sh[0], safetensors.F16, mod(func(o *Options) { o.EmbeddingQuantize = "4,0" }), false},
		{"odd-f32-fp32", sh[0], safetensors.F32, mod(func(o *Options) { o.DType = "fp32" }), true},
		{"odd-bf16-none", sh[0], safetensors.BF16, mod(func(o *Options) { o.EmbeddingQuantize, o.LinearQuantize = "none", "none" }), false},
		{"even-bf16-b4w", sh[1], safetensors.BF16, mod(func(o *Options) { o.EmbeddingQuantize, o.LinearQuantize, o.TargetSplitSize = "4,32", "b4w", 1024 }), true},
		{"even-f32-b4w-fp32", sh[1], safetensors.F32, mod(func(o *Options) { o.EmbeddingQuantize, o.LinearQuantize, o.DType = "4,32", "b4w", "fp32" }), false},
		{"even-f16-default", sh[1], safetensors.F16, def, false},
	}
}

func writeConvertModel(t *testing.T, c convertCase) Request {
	t.Helper()
	dir := t.TempDir()
	_, err := benchgen.WriteModel(filepath.Join(dir, "model"), c.shape, c.dtype)
	require.NoError(t, err)
	req := Request{FS: os.DirFS(dir), ModelDir: "model", Options: c.opts}
	o := c.opts
	req.Options.InputLen, req.Options.MaxContextLen = min(o.InputLen, 4), min(o.MaxContextLen, 16)
	if c.adapters {
		for _, name := range []string{"a1", "a2"} {
			_, err := benchgen.WriteAdapter(filepath.Join(dir, name), c.shape, name, benchgen.DefaultAdapter())
			require.NoError(t, err)
			req.Adapters = append(req.Adapters, Adapter{Name: name, FS: req.FS, Path: name})
		}
	}
	return req
}

// Every partition's weight.bin is the same from the reference loop, one
// worker, and several workers.
func TestConvertMatchesReference(t *testing.T) {
	for _, c := range convertCases() {
		t.Run(c.name, func(t *testing.T) {
			p, err := NewPlan(writeConvertModel(t, c))
			require.NoError(t, err)
			for i, pp := range p.parts {
				var want []byte
				for _, enc := range []*encoder{
					{fp32: p.opts.DType == "fp32", reference: true},
					{fp32: p.opts.DType == "fp32", workers: 1},
					{fp32: p.opts.DType == "fp32", workers: 3},
					{fp32: p.opts.DType == "fp32", workers: 4},
				} {
					var buf bytes.Buffer
					mw := milblob.NewWriter(&buf, pp.weights.blobs)
					require.NoError(t, enc.encode(pp.weights, mw))
					require.NoError(t, mw.Close())
					if want == nil {
						want = buf.Bytes()
						continue
					}
					require.True(t, bytes.Equal(want, buf.Bytes()), "partition %d: workers=%d differs from the reference", i, enc.workers)
				}
			}
		})
	}
}

// The whole .pte is byte-identical under GOMAXPROCS 1 and 4.
func TestExportSameBytesAnyGOMAXPROCS(t *testing.T) {
	c := convertCases()[0]
	req := writeConvertModel(t, c)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var outs [][]byte
	for _, procs := range []int{1, 4} {
		runtime.GOMAXPROCS(procs)
		var buf bytes.Buffer
		require.NoError(t, Export(context.Background(), req, &buf, nil))
		outs = append(outs, buf.Bytes())
	}
	require.True(t, bytes.Equal(outs[0], outs[1]), "GOMAXPROCS 1 and 4 give different files")
}

// A non-finite or float16-overflowing weight gives the reference loop's
// error from the fast path too, for any worker count, including when the
// fast path's batch spans several reference chunks (the embedding: 8191
// rows, 8066 per reference chunk).
func TestConvertErrorsMatchReference(t *testing.T) {
	c := convertCases()[0]
	dir := t.TempDir()
	_, err := benchgen.WriteModel(dir, c.shape, safetensors.F32)
	require.NoError(t, err)
	path := filepath.Join(dir, safetensors.SingleFile)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := safetensors.Open(path, bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	type poke struct {
		row, col int
		v        float32
	}
	for _, tc := range []struct {
		tensor string
		pokes  []poke
		want   string
	}{
		{"model.layers.1.mlp.down_proj.weight", []poke{{77, 3, float32(math.Inf(-1))}, {100, 9, 1e6}}, "non-finite value at row 77"},
		{"model.layers.1.mlp.down_proj.weight", []poke{{77, 3, float32(math.NaN())}}, "non-finite value at row 77"},
		{"model.layers.1.mlp.down_proj.weight", []poke{{100, 9, 70000}, {101, 0, -1e6}}, "outside the float16 range at row 100"},
		{"model.embed_tokens.weight", []poke{{100, 1, 1e6}, {8100, 2, float32(math.NaN())}}, "outside the float16 range at row 100"},
		{"model.embed_tokens.weight", []poke{{8100, 2, float32(math.NaN())}, {8190, 129, 1e6}}, "non-finite value at row 8100"},
	} {
		info, _ := f.Info(tc.tensor)
		cols := int(info.Shape[1])
		mutated := append([]byte(nil), data...)
		for _, p := range tc.pokes {
			binary.LittleEndian.PutUint32(mutated[info.Offset+int64(4*(p.row*cols+p.col)):], math.Float32bits(p.v))
		}
		require.NoError(t, os.WriteFile(path, mutated, 0o644))
		o := DefaultOptions()
		o.TargetSplitSize = 8192
		p, err := NewPlan(Request{FS: os.DirFS(dir), ModelDir: ".", Options: o})
		require.NoError(t, err)
		var msgs []string
		for _, enc := range []*encoder{{reference: true}, {workers: 1}, {workers: 2}, {workers: 3}} {
			var err error
			for _, pp := range p.parts {
				if err = enc.encode(pp.weights, milblob.NewWriter(&bytes.Buffer{}, pp.weights.blobs)); err != nil {
					break
				}
			}
			require.Error(t, err)
			msgs = append(msgs, err.Error())
		}
		require.Contains(t, msgs[0], tc.tensor)
		require.Contains(t, msgs[0], tc.want)
		for _, m := range msgs[1:] {
			require.Equal(t, msgs[0], m)
		}
	}
}

// A failing sink stops the export with its error.
func TestConvertWriteError(t *testing.T) {
	c := convertCases()[1]
	p, err := NewPlan(writeConvertModel(t, c))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err = p.Write(ctx, writerFunc(func(b []byte) (int, error) {
		if n += len(b); n > 200000 {
			cancel()
		}
		return len(b), nil
	}), nil)
	require.ErrorIs(t, err, context.Canceled)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
