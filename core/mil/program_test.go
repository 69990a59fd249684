package mil_test

import (
	"bytes"
	"encoding/binary"
	"lorapte/core/quant"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"lorapte/core/coremlspec/coremlpb"
	"lorapte/core/coremlspec/milpb"
	"lorapte/core/mil"
	"lorapte/core/milblob"
	"lorapte/core/mlpackage"
)

// Tiny decoder-like shapes.
const (
	vocab = 16
	dim   = 8
	heads = 2
	hd    = 4
	cache = 6
)

// fill returns n deterministic pseudo-random bytes.
func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// fp16 returns n fp16 values in [0.5, 1.5) as little-endian bytes.
func fp16(n int, seed byte) []byte {
	r := fill(n, seed)
	b := make([]byte, 2*n)
	for i := range r {
		binary.LittleEndian.PutUint16(b[2*i:], quant.F32ToF16(0.5+float32(r[i])/256))
	}
	return b
}

type testModel struct {
	prog    *mil.Program
	plan    *milblob.Plan
	data    map[string][]byte // blob key -> bytes
	model   []byte
	weights []byte
}

// buildTestModel builds decode (S=1, "forward") and prefill (S=4) functions
// sharing the embedding, norm and int4 projection blobs; each function also
// has its own fp16 projection blob.
func buildTestModel(t *testing.T) *testModel {
	t.Helper()
	m := &testModel{prog: mil.NewProgram(), plan: milblob.NewPlan(), data: map[string][]byte{}}
	add := func(key string, dt milblob.DType, n int64, data []byte) uint64 {
		m.data[key] = data
		return m.plan.Add(key, dt, n)
	}
	codes := make([]int8, dim*dim)
	for i := range codes {
		codes[i] = int8(i%16) - 8
	}
	embData := add("emb.data", milblob.INT8, vocab*dim, fill(vocab*dim, 1))
	embScale := add("emb.scale", milblob.FP16, vocab, fp16(vocab, 2))
	gamma := add("norm.weight", milblob.FP16, dim, fp16(dim, 3))
	wqData := add("wq.data", milblob.INT4, dim*dim, milblob.PackInt4(codes))
	wqScale := add("wq.scale", milblob.FP16, dim*2, fp16(dim*2, 4))

	build := func(fname string, S int64, seed byte) {
		wk := add("wk."+fname, milblob.FP16, dim*dim, fp16(dim*dim, seed))
		f := m.prog.Func(fname)
		tokens := f.Input("tokens", mil.INT32, 1, S)
		kCache := f.Input("k_cache", mil.FP16, 1, heads, cache, hd)
		mask := f.Input("mask", mil.FP16, 1, 1, S, cache+S)

		E := f.ConstexprBlockwiseShiftScale("emb", mil.Blob(mil.INT8, []int64{vocab, dim}, embData), mil.Blob(mil.FP16, []int64{vocab, 1}, embScale))
		h := f.Gather("h", E, tokens, 0)
		sq := f.Mul("sq", h, h)
		ms := f.Reduce("reduce_mean", "ms", sq, []int32{-1}, true)
		r := f.Rsqrt("r", ms, 1e-5)
		hn := f.Mul("hn", h, r)
		g := f.Const("gamma", mil.Blob(mil.FP16, []int64{dim}, gamma))
		hn2 := f.Mul("hn2", hn, g)

		Wq := f.ConstexprBlockwiseShiftScale("wq", mil.Blob(mil.INT4, []int64{dim, dim}, wqData), mil.Blob(mil.FP16, []int64{dim, 2}, wqScale))
		q := f.Linear("q", hn2, Wq, nil)
		qh := f.Transpose("qh", f.Reshape("q4", q, []int64{1, -1, heads, hd}), []int32{0, 2, 1, 3})
		Wk := f.Const("wk", mil.Blob(mil.FP16, []int64{dim, dim}, wk))
		k := f.Linear("k", hn2, Wk, nil)
		kh := f.Transpose("kh", f.Reshape("k4", k, []int64{1, S, heads, hd}), []int32{0, 2, 1, -1})
		K := f.Concat("K", 2, kCache, kh)
		scores := f.Matmul("scores", qh, K, false, true)
		scaled := f.Mul("scaled", scores, f.Const("inv_sqrt_hd", mil.ScalarF16(0.5)))
		masked := f.Add("masked", scaled, mask)
		p := f.Softmax("p", masked, -1)
		att := f.Matmul("att", p, K, false, false)
		merged := f.Reshape("merged", f.Transpose("att_t", att, []int32{0, 2, 1, 3}), []int64{1, S, dim})
		act := f.Unary("silu", "act", merged)
		last := f.SliceByIndex("last", act, []int32{0, -1, 0}, []int32{1, int32(S), dim})
		logits := f.Linear("logits", last, E, nil)
		f.SetOutputs(logits, kh)
	}
	build("forward", 1, 10)
	build("prefill", 4, 11)
	require.NoError(t, m.prog.Err())
	require.NoError(t, m.plan.Err())

	model, err := m.prog.Model("forward")
	require.NoError(t, err)
	m.model, err = mil.Marshal(model)
	require.NoError(t, err)

	var wbuf bytes.Buffer
	w := milblob.NewWriter(&wbuf, m.plan)
	for _, e := range m.plan.Entries() {
		d := m.data[e.Key]
		// stream in two chunks to exercise the chunked protocol
		require.NoError(t, w.Write(e.Key, d[:len(d)/2]))
		require.NoError(t, w.Write(e.Key, d[len(d)/2:]))
	}
	require.NoError(t, w.Close())
	m.weights = wbuf.Bytes()
	return m
}

// writePackage writes the test model as a .mlpackage directory. With
// LORAPTE_H2PKG set it is written there too, for the external checker.
func writePackage(t *testing.T, m *testModel) string {
	t.Helper()
	man := mlpackage.Manifest([]byte("h2 test"))
	dir := filepath.Join(t.TempDir(), "h2.mlpackage")
	require.NoError(t, mlpackage.WriteDir(dir, man, m.model, bytes.NewReader(m.weights)))
	if out := os.Getenv("LORAPTE_H2PKG"); out != "" {
		require.NoError(t, os.RemoveAll(out))
		require.NoError(t, mlpackage.WriteDir(out, man, m.model, bytes.NewReader(m.weights)))
	}
	return dir
}

func TestTwoFunctionPackage(t *testing.T) {
	m := buildTestModel(t)
	fns := m.prog.Functions()
	require.Len(t, fns, 2)
	dec, pre := fns[0], fns[1]
	require.Equal(t, "forward", dec.Name())
	require.Equal(t, []int64{1, 1, vocab}, dec.Outputs()[0].Shape)
	require.Equal(t, []int64{1, 1, vocab}, pre.Outputs()[0].Shape)
	require.Equal(t, []int64{1, heads, 4, hd}, pre.Outputs()[1].Shape)
	require.Equal(t, mil.FP16, pre.Outputs()[0].DType)
	require.Equal(t, 1, dec.Counts()["gather"])
	require.Equal(t, 2, dec.Counts()["constexpr_blockwise_shift_scale"])

	// Protobuf round trip.
	var back coremlpb.Model
	require.NoError(t, proto.Unmarshal(m.model, &back))
	want, err := m.prog.Model("forward")
	require.NoError(t, err)
	require.True(t, proto.Equal(want, &back))
	require.EqualValues(t, 9, back.GetSpecificationVersion())

	// Deterministic: a second build gives the same bytes.
	m2 := buildTestModel(t)
	require.Equal(t, m.model, m2.model)
	require.Equal(t, m.weights, m2.weights)

	// Description.
	d := back.GetDescription()
	require.Equal(t, "forward", d.GetDefaultFunctionName())
	require.Empty(t, d.GetInput())
	require.Empty(t, d.GetOutput())
	require.Len(t, d.GetFunctions(), 2)
	require.Equal(t, "prefill", d.GetFunctions()[1].GetName())
	in := d.GetFunctions()[1].GetInput()
	require.Equal(t, "mask", in[2].GetName())
	require.Equal(t, []int64{1, 1, 4, 10}, in[2].GetType().GetMultiArrayType().GetShape())
	require.Equal(t, coremlpb.ArrayFeatureType_INT32, in[0].GetType().GetMultiArrayType().GetDataType())
	out := d.GetFunctions()[0].GetOutput()
	require.Equal(t, "logits", out[0].GetName())
	require.Equal(t, coremlpb.ArrayFeatureType_FLOAT16, out[0].GetType().GetMultiArrayType().GetDataType())

	// MIL structure.
	prog := back.GetMlProgram()
	require.EqualValues(t, 1, prog.GetVersion())
	fn := prog.GetFunctions()["prefill"]
	require.Equal(t, "CoreML8", fn.GetOpset())
	blk := fn.GetBlockSpecializations()["CoreML8"]
	require.Equal(t, []string{"logits", "kh"}, blk.GetOutputs())
	ops := blk.GetOperations()
	require.Equal(t, "constexpr_blockwise_shift_scale", ops[0].GetType())
	require.Equal(t, "emb", ops[0].GetAttributes()["name"].GetImmediateValue().GetTensor().GetStrings().GetValues()[0])
	require.NotNil(t, ops[0].GetInputs()["data"].GetArguments()[0].GetValue().GetBlobFileValue(), "cbss params are value bindings")
	// gather's axis is a const op named <op>_<param>, bound by name
	gi := 0
	for i, op := range ops {
		if op.GetType() == "gather" {
			gi = i
		}
	}
	require.Equal(t, "h_axis", ops[gi].GetInputs()["axis"].GetArguments()[0].GetName())
	require.Equal(t, "const", ops[gi-3].GetType())
	require.Equal(t, "h_axis", ops[gi-3].GetOutputs()[0].GetName())
	require.Equal(t, mil.OpCounts(fn)["linear"], 3)

	// Package: checker finds nothing, 5 blobs shared, 2 per-function blobs.
	dir := writePackage(t, m)
	rep, err := mlpackage.CheckDir(dir)
	require.NoError(t, err)
	require.Empty(t, rep.Findings, rep.Summary())
	shared, _ := rep.Shared()
	require.Equal(t, 5, shared)
	require.Len(t, rep.Blobs, 7)
	for _, b := range rep.Blobs {
		if b.Offset == m.plan.Add("wq.data", milblob.INT4, dim*dim) {
			require.Equal(t, []string{"forward", "prefill"}, b.Functions)
			require.Equal(t, milblob.INT4, b.DType)
			require.Equal(t, 2, b.Refs)
		}
	}
}

// blobOffsets collects every BlobFileValue offset of a function.
func blobOffsets(fn *milpb.Function) map[uint64]bool {
	out := map[uint64]bool{}
	for _, op := range fn.GetBlockSpecializations()["CoreML8"].GetOperations() {
		for _, a := range op.GetInputs() {
			for _, b := range a.GetArguments() {
				if bf := b.GetValue().GetBlobFileValue(); bf != nil {
					out[bf.GetOffset()] = true
				}
			}
		}
		if bf := op.GetAttributes()["val"].GetBlobFileValue(); bf != nil {
			out[bf.GetOffset()] = true
		}
	}
	return out
}

func TestSharedOffsets(t *testing.T) {
	m := buildTestModel(t)
	p, err := m.prog.Proto()
	require.NoError(t, err)
	a, b := blobOffsets(p.GetFunctions()["forward"]), blobOffsets(p.GetFunctions()["prefill"])
	require.Len(t, a, 6)
	require.Len(t, b, 6)
	common := 0
	for o := range a {
		if b[o] {
			common++
		}
	}
	require.Equal(t, 5, common)
	wq := m.plan.Add("wq.data", milblob.INT4, dim*dim)
	require.True(t, a[wq] && b[wq])
}

// identRE is the identifier rule as a regular expression, the reference
// for ValidName.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func TestValidNameMatchesTheRule(t *testing.T) {
	for _, s := range []string{"", "a", "_", "Z9", "9a", "a-b", "a b", "é", "x@1", "layers_0_q", "[", "`", "{", "@", "a\x00"} {
		require.Equal(t, identRE.MatchString(s), mil.ValidName(s), "%q", s)
	}
	// Every one- and two-byte string.
	for a := 0; a < 256; a++ {
		require.Equal(t, identRE.MatchString(string([]byte{byte(a)})), mil.ValidName(string([]byte{byte(a)})), "%#x", a)
		for b := 0; b < 256; b++ {
			s := string([]byte{byte(a), byte(b)})
			require.Equal(t, identRE.MatchString(s), mil.ValidName(s), "%#x %#x", a, b)
		}
	}
}

func FuzzValidName(f *testing.F) {
	f.Add("layers_0_q")
	f.Add("0x")
	f.Fuzz(func(t *testing.T, s string) {
		if identRE.MatchString(s) != mil.ValidName(s) {
			t.Fatalf("ValidName(%q) = %v", s, mil.ValidName(s))
		}
	})
}
