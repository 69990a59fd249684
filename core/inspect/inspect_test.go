package inspect

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/inmemfs"
	"lorapte/core/mil"
	"lorapte/core/milblob"
	"lorapte/core/mlpackage"
	"lorapte/core/pte"
)

// buildTwoFunction writes, from the format packages alone, a Core ML model
// with functions forward (S=1) and prefill (S=4) sharing an int4 blockwise
// weight, each with its own fp16 weight, and a .pte with two methods that
// reference it plus constant methods. It returns the .pte bytes.
func buildTwoFunction(t *testing.T, mutate func(*pte.Program, *[]byte)) []byte {
	t.Helper()
	plan := milblob.NewPlan()
	dataOff := plan.Add("w.data", milblob.INT4, 16*8)
	scaleOff := plan.Add("w.scale", milblob.FP16, 16*2)
	own := map[string]uint64{
		"forward": plan.Add("forward.bias", milblob.FP16, 16),
		"prefill": plan.Add("prefill.bias", milblob.FP16, 16),
	}
	prog := mil.NewProgram()
	for _, fs := range []struct {
		name string
		s    int64
	}{{"forward", 1}, {"prefill", 4}} {
		f := prog.Func(fs.name)
		x := f.Input("x", mil.FP16, 1, fs.s, 8)
		w := f.ConstexprBlockwiseShiftScale("w", mil.Blob(mil.INT4, []int64{16, 8}, dataOff), mil.Blob(mil.FP16, []int64{16, 2}, scaleOff))
		b := f.Const("b", mil.Blob(mil.FP16, []int64{16}, own[fs.name]))
		y := f.Linear("y", x, w, b)
		f.SetOutputs(f.Unary("silu", "out", y))
	}
	model, err := prog.Model("forward")
	require.NoError(t, err)
	modelBytes, err := mil.Marshal(model)
	require.NoError(t, err)

	var weights bytes.Buffer
	bw := milblob.NewWriter(&weights, plan)
	codes := make([]int8, 16*8)
	for i := range codes {
		codes[i] = int8(i%16 - 8)
	}
	require.NoError(t, bw.Write("w.data", milblob.PackInt4(codes)))
	half := func(n int, v uint16) []byte {
		b := make([]byte, 2*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint16(b[2*i:], v)
		}
		return b
	}
	require.NoError(t, bw.Write("w.scale", half(32, 0x2e66)))      // 0.1
	require.NoError(t, bw.Write("forward.bias", half(16, 0x3c00))) // 1.0
	require.NoError(t, bw.Write("prefill.bias", half(16, 0xbc00))) // -1.0
	require.NoError(t, bw.Close())

	const id = "executorch_00112233445566778899aabbccddeeff"
	manifest := mlpackage.Manifest([]byte(id))
	meta := pte.EncodeMetadata(id, []pte.MethodIO{
		{Method: "forward", InputNames: []string{"x"}, OutputNames: []string{"out"}},
		{Method: "prefill", InputNames: []string{"x"}, OutputNames: []string{"out"}},
	})
	files := map[string][]byte{
		"metadata.json":                           meta,
		"model.mlpackage/Manifest.json":           manifest,
		"model.mlpackage/" + mlpackage.ModelPath:  modelBytes,
		"model.mlpackage/" + mlpackage.WeightPath: weights.Bytes(),
	}
	var list []inmemfs.File
	for p, d := range files {
		list = append(list, inmemfs.File{Path: p, Size: int64(len(d))})
	}
	layout, err := inmemfs.Plan("partition_0", list)
	require.NoError(t, err)
	var blob bytes.Buffer
	fw := inmemfs.NewWriter(&blob, layout)
	for _, f := range layout.Files() {
		require.NoError(t, fw.WriteFile(f.Path, bytes.NewReader(files[f.Path])))
	}
	require.NoError(t, fw.Close())

	cb := pte.NewConstantSegmentBuilder()
	freqs := cb.Add(half(8, 0x3c00))
	consts, offsets := cb.Finish()
	key := "coreml_" + id
	p := &pte.Program{ConstantOffsets: offsets, Segments: []int64{int64(len(consts))}}
	cmjr := map[string][]byte{}
	for _, m := range []string{"forward", "prefill"} {
		cmjr[m] = pte.EncodeCMJR(key, m)
		p.Segments = append(p.Segments, int64(len(cmjr[m])))
	}
	p.Segments = append(p.Segments, int64(blob.Len()))
	p.NamedData = []pte.NamedData{{Key: key, Segment: 3}}
	specs := []pte.CompileSpec{{Key: "compute_units", Value: []byte("cpu_and_ne")}, {Key: "min_deployment_target", Value: []byte("9")},
		{Key: "model_compute_precision", Value: []byte("float16")}, {Key: "model_type", Value: []byte("model")},
		{Key: "multimethod_weight_sharing_strategy", Value: []byte("positional")}}
	for i, m := range []struct {
		name string
		s    int32
	}{{"forward", 1}, {"prefill", 4}} {
		p.Methods = append(p.Methods, pte.Method{
			Name:   m.name,
			Values: []pte.EValue{pte.TensorValue(pte.NewTensor(pte.Half, 1, m.s, 8)), pte.TensorValue(pte.NewTensor(pte.Half, 1, m.s, 16))},
			Inputs: []int32{0}, Outputs: []int32{1},
			Calls:               []pte.DelegateCall{{Delegate: 0, Args: []int32{0, 1}}},
			Delegates:           []pte.Delegate{{ID: "CoreMLBackend", Segment: 1 + i, CompileSpecs: specs}},
			NonConstBufferSizes: []int64{0, 0},
			InputSpec:           pte.TreeSpecInputs(1), OutputSpec: pte.TreeSpecOutputs(1),
		})
	}
	p.Methods = append(p.Methods,
		pte.ConstantMethod("vocab_size", pte.IntValue(16)),
		pte.ConstantMethod("freqs_cos", pte.EValue{Kind: pte.KindTensor, Tensor: &pte.Tensor{Type: pte.Half, Sizes: []int32{2, 4}, DataBufferIdx: freqs}}),
		pte.ConstantListMethod("lora_methods", pte.StringValue("a"), pte.StringValue("b")))
	segs := [][]byte{consts, cmjr["forward"], cmjr["prefill"], blob.Bytes()}
	if mutate != nil {
		mutate(p, &segs[3])
	}
	l, err := pte.Plan(p)
	require.NoError(t, err)
	var out bytes.Buffer
	w := pte.NewWriter(&out, l)
	for i, s := range segs {
		require.NoError(t, w.WriteSegment(i, s))
	}
	require.NoError(t, w.Close())
	return out.Bytes()
}

func TestTwoFunctionProgramVerifies(t *testing.T) {
	data := buildTwoFunction(t, nil)
	rep, err := Inspect(bytes.NewReader(data), int64(len(data)), true)
	require.NoError(t, err)
	require.False(t, rep.Failed(), "%v", rep.Findings)
	require.Len(t, rep.Models, 1)
	m := rep.Models[0]
	require.Len(t, m.Functions, 2)
	shared := 0
	for _, b := range m.Blobs {
		if len(b.Functions) == 2 {
			shared++
		}
	}
	require.Equal(t, 2, shared, "int4 data + scale are shared by both functions")
	require.Len(t, m.Blobs, 4)
	require.Equal(t, map[string]int{"const": 1, "constexpr_blockwise_shift_scale": 1, "linear": 1, "silu": 1}, m.Functions[0].Ops)

	var names []string
	for _, me := range rep.Methods {
		names = append(names, me.Name)
	}
	require.Equal(t, []string{"forward", "prefill", "vocab_size", "freqs_cos", "lora_methods"}, names)
	require.Equal(t, []any{"a", "b"}, rep.Methods[4].Values)

	if out := os.Getenv("LORAPTE_INSPECT_OUT"); out != "" { // for running the external checkers by hand
		require.NoError(t, os.WriteFile(filepath.Join(out, "two_function.pte"), data, 0o644))
		require.NoError(t, Extract(bytes.NewReader(data), int64(len(data)), out))
	}

	dir := t.TempDir()
	require.NoError(t, Extract(bytes.NewReader(data), int64(len(data)), dir))
	pkg := filepath.Join(dir, "coreml_executorch_00112233445566778899aabbccddeeff", "model.mlpackage")
	r, err := mlpackage.CheckDir(pkg)
	require.NoError(t, err)
	require.Empty(t, r.Errors())
}

// TestVerifyReportsDefects: defects in the Core ML blob surface through
// inspect's verification with their check IDs.
func TestVerifyReportsDefects(t *testing.T) {
	cases := []struct {
		id     string
		mutate func(*pte.Program, *[]byte)
	}{
		{"B5", func(p *pte.Program, _ *[]byte) { p.Methods[1].Name = "decode" }},
		{"B8", func(p *pte.Program, _ *[]byte) { p.Methods[0].Calls[0].Args = []int32{0} }},
		{"D3", func(p *pte.Program, _ *[]byte) { p.Methods[0].Delegates[0].CompileSpecs[0].Value = []byte("gpu") }},
		{"B1", func(_ *pte.Program, blob *[]byte) { (*blob)[len(*blob)-1] = 'x' }},
	}
	for _, c := range cases {
		data := buildTwoFunction(t, c.mutate)
		rep, err := Inspect(bytes.NewReader(data), int64(len(data)), true)
		require.NoError(t, err, c.id)
		require.True(t, rep.Failed(), c.id)
		found := false
		for _, f := range rep.Findings {
			found = found || f.ID == c.id
		}
		require.True(t, found, "%s not reported: %v", c.id, rep.Findings)
	}
}

func FuzzInspect(f *testing.F) {
	f.Add([]byte("ET12"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Inspect(bytes.NewReader(data), int64(len(data)), true)
		if err == nil {
			rep.WriteText(&bytes.Buffer{})
		}
	})
}

// TestLegacyPayload: files from older exporters put the model blob itself
// in the delegate's processed data (no CMJR); inspect still describes it.
func TestLegacyPayload(t *testing.T) {
	data := buildTwoFunction(t, func(p *pte.Program, _ *[]byte) {
		p.Methods[0].Delegates[0].Segment = 3
	})
	rep, err := Inspect(bytes.NewReader(data), int64(len(data)), false)
	require.NoError(t, err)
	var keys []string
	for _, m := range rep.Models {
		keys = append(keys, m.Key)
		require.Len(t, m.Functions, 2)
	}
	require.ElementsMatch(t, []string{"segment_3", "coreml_executorch_00112233445566778899aabbccddeeff"}, keys)
	require.Equal(t, "segment_3", rep.Methods[0].Delegates[0].Key)
}

// FuzzOpenPackage feeds delegate blobs (a flattened directory holding
// metadata.json, Manifest.json, model.mlmodel and weight.bin) through the
// readers inspect uses on each Core ML model, then checks the model the
// way --verify does.
func FuzzOpenPackage(f *testing.F) {
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkg, err := OpenPackage(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, e := range pkg.FS.Files() {
			if e.Offset < 0 || e.Size < 0 || e.Offset+e.Size > int64(len(data)) {
				t.Fatalf("file %+v outside the %d-byte blob", e, len(data))
			}
		}
		rep := mlpackage.Check(pkg.Manifest, pkg.Model, pkg.Weights)
		_ = rep.Summary()
		if prog := pkg.Spec.GetMlProgram(); prog != nil {
			for _, fn := range prog.Functions {
				_ = mil.OpCounts(fn)
			}
		}
		if pkg.Weights != nil {
			es, _ := pkg.Weights.Walk()
			for _, e := range es {
				if e.End() > uint64(pkg.Weights.Size()) {
					t.Fatalf("blob %+v past the end of weight.bin", e)
				}
			}
		}
	})
}
