package pte

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/inmemfs"
)

// This file builds a file with the shape of pte.md §7: methods forward and
// prefill (2 int32 inputs, 1 fp16 output, planned I/O) sharing one Core ML
// blob, and three constant methods. Knobs in exampleCfg inject single defects.

const (
	exIdentifier = "executorch_7f94aa55aa55aa55aa55aa55aa55772c"
	exKey        = "coreml_" + exIdentifier
)

type exampleCfg struct {
	metadata   []byte                     // metadata.json (default: both methods)
	noMetadata bool                       // leave metadata.json out of the blob
	noPackage  bool                       // leave model.mlpackage/ out of the blob
	cmjr       func(method string) []byte // CMJR payload per method
	blob       []byte                     // replaces the whole blob
	mutate     func(p *Program)
}

func exampleSpecs() []CompileSpec {
	return []CompileSpec{
		{Key: "compute_units", Value: []byte("cpu_and_ne")},
		{Key: "min_deployment_target", Value: []byte("9")},
		{Key: "model_compute_precision", Value: []byte("float16")},
		{Key: "model_type", Value: []byte("model")},
		{Key: "multimethod_weight_sharing_strategy", Value: []byte("positional")},
	}
}

const exManifest = `{"fileFormatVersion": "1.0.0", "itemInfoEntries": {"A1B2": {"author": "com.apple.CoreML", ` +
	`"description": "CoreML Model Specification", "name": "model.mlmodel", "path": "com.apple.CoreML/model.mlmodel"}}, ` +
	`"rootModelIdentifier": "A1B2"}`

func exampleBlob(t testing.TB, cfg exampleCfg) []byte {
	if cfg.blob != nil {
		return cfg.blob
	}
	md := cfg.metadata
	if md == nil {
		md = EncodeMetadata(exIdentifier, []MethodIO{
			{Method: "forward", InputNames: []string{"tokens", "input_pos"}, OutputNames: []string{"logits"}},
			{Method: "prefill", InputNames: []string{"tokens", "input_pos"}, OutputNames: []string{"logits"}},
		})
	}
	content := map[string][]byte{
		"model.mlpackage/Manifest.json":                            []byte(exManifest),
		"model.mlpackage/Data/com.apple.CoreML/model.mlmodel":      []byte("\x08\x09 forward prefill tokens input_pos logits"),
		"model.mlpackage/Data/com.apple.CoreML/weights/weight.bin": bytes.Repeat([]byte{0xab}, 1024),
		"metadata.json": md,
	}
	if cfg.noMetadata {
		delete(content, "metadata.json")
		content["other.json"] = []byte("{}")
	}
	if cfg.noPackage {
		for p, c := range content {
			if strings.HasPrefix(p, "model.mlpackage/") {
				delete(content, p)
				content["model.other/"+strings.TrimPrefix(p, "model.mlpackage/")] = c
			}
		}
	}
	var files []inmemfs.File
	for p, c := range content {
		files = append(files, inmemfs.File{Path: p, Size: int64(len(c))})
	}
	l, err := inmemfs.Plan("lowered_module_partition_0", files)
	require.NoError(t, err)
	var buf bytes.Buffer
	w := inmemfs.NewWriter(&buf, l)
	for _, e := range l.Files() {
		require.NoError(t, w.WriteFile(e.Path, bytes.NewReader(content[e.Path])))
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func f16bytes(n int) []byte { return bytes.Repeat([]byte{0x00, 0x3c}, n) } // 1.0 in fp16

func i64bytes(v ...int64) []byte {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, uint64(x))
	}
	return b
}

func delegatedMethod(name string, segment int, tokens int32) Method {
	tok := NewTensor(Int, 1, tokens)
	tok.Alloc = &Alloc{MemoryID: 1, Offset: 0}
	pos := NewTensor(Int, 1)
	pos.Alloc = &Alloc{MemoryID: 1, Offset: 16}
	logits := NewTensor(Half, 1, tokens, 8)
	logits.Alloc = &Alloc{MemoryID: 1, Offset: 32}
	return Method{
		Name:                name,
		InputSpec:           TreeSpecInputs(2),
		OutputSpec:          TreeSpecOutputs(1),
		Values:              []EValue{TensorValue(tok), TensorValue(pos), TensorValue(logits)},
		Inputs:              []int32{0, 1},
		Outputs:             []int32{2},
		Calls:               []DelegateCall{{Delegate: 0, Args: []int32{0, 1, 2}}},
		Delegates:           []Delegate{{ID: CoreMLBackendID, Segment: segment, CompileSpecs: exampleSpecs()}},
		NonConstBufferSizes: []int64{0, 32 + int64(tokens)*8*2},
	}
}

// exampleProgram returns the program and its segment contents.
func exampleProgram(t testing.TB, cfg exampleCfg) (*Program, [][]byte) {
	cb := NewConstantSegmentBuilder()
	cos := NewTensor(Half, 4, 2)
	cos.DataBufferIdx = cb.Add(f16bytes(8))
	kv := NewTensor(Long, 2, 5)
	kv.DataBufferIdx = cb.Add(i64bytes(4, 1, 6, 3, 64, 5, 2, 7, 4, 64))
	consts, offsets := cb.Finish()

	cmjr := cfg.cmjr
	if cmjr == nil {
		cmjr = func(m string) []byte { return EncodeCMJR(exKey, m) }
	}
	segs := [][]byte{consts, cmjr("forward"), cmjr("prefill"), exampleBlob(t, cfg)}
	p := &Program{
		Methods: []Method{
			delegatedMethod("forward", 1, 1),
			delegatedMethod("prefill", 2, 4),
			ConstantMethod("vocab_size", IntValue(32000)),
			ConstantMethod("freqs_cos", TensorValue(cos)),
			ConstantMethod("kv_cache_specs", TensorValue(kv)),
		},
		ConstantSegment: 0,
		ConstantOffsets: offsets,
		NamedData:       []NamedData{{Key: exKey, Segment: 3}},
	}
	for _, s := range segs {
		p.Segments = append(p.Segments, int64(len(s)))
	}
	if cfg.mutate != nil {
		cfg.mutate(p)
	}
	return p, segs
}

func writeProgram(t testing.TB, p *Program, segs [][]byte) (*Layout, []byte) {
	l, err := Plan(p)
	require.NoError(t, err)
	var buf bytes.Buffer
	w := NewWriter(&buf, l)
	for i, s := range segs {
		require.NoError(t, w.WriteSegment(i, s))
	}
	require.NoError(t, w.Close())
	require.Equal(t, l.Size(), int64(buf.Len()))
	return l, buf.Bytes()
}

func exampleFile(t testing.TB, cfg exampleCfg) []byte {
	p, segs := exampleProgram(t, cfg)
	_, data := writeProgram(t, p, segs)
	return data
}

func readVerify(t testing.TB, data []byte) []Finding {
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	return Verify(f)
}

func ids(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

func TestExampleShape(t *testing.T) {
	p, segs := exampleProgram(t, exampleCfg{})
	l, data := writeProgram(t, p, segs)

	// Segment sizes and places as in pte.md §7.
	require.Equal(t, []int64{96, 106, 106}, p.Segments[:3])
	require.Equal(t, `CMJR{"version": 1, "key": "`+exKey+`", "functionName": "forward"}`, string(segs[1]))
	require.Equal(t, []uint64{0, 0, 16}, p.ConstantOffsets)
	base := l.SegmentBaseOffset()
	require.Zero(t, base%128)
	require.Equal(t, alignUp(l.ProgramSize(), 128), base)
	for i, rel := range []int64{0, 128, 256, 384} {
		require.Equal(t, base+rel, l.SegmentOffset(i))
		require.Equal(t, segs[i], data[l.SegmentOffset(i):l.SegmentOffset(i)+int64(len(segs[i]))])
	}
	require.Equal(t, 384+int64(len(segs[3])), l.SegmentDataSize())
	require.Equal(t, base+l.SegmentDataSize(), int64(len(data)))

	// Header bytes (pte.md §1.2).
	require.Equal(t, "ET12", string(data[4:8]))
	require.Equal(t, "eh00", string(data[8:12]))
	require.Equal(t, uint32(32), binary.LittleEndian.Uint32(data[12:]))
	require.Equal(t, uint64(l.ProgramSize()), binary.LittleEndian.Uint64(data[16:]))
	require.Equal(t, uint64(base), binary.LittleEndian.Uint64(data[24:]))
	require.Equal(t, uint64(l.SegmentDataSize()), binary.LittleEndian.Uint64(data[32:]))
	root := binary.LittleEndian.Uint32(data)
	require.GreaterOrEqual(t, root, uint32(40))
	require.Equal(t, l.Head(), data[:base])
	require.Equal(t, make([]byte, base-l.ProgramSize()), data[l.ProgramSize():base])
	// Padding between segments is zero.
	require.Equal(t, make([]byte, 128-96), data[base+96:base+128])

	// Read back: the same model, and no finding at all.
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.Equal(t, *p, f.Program)
	require.True(t, f.HasHeader)
	require.Equal(t, "ET12", f.Identifier)
	require.Equal(t, uint64(l.ProgramSize()), f.ProgramSize)
	require.Empty(t, Verify(f))
	sr, err := f.NamedData(exKey)
	require.NoError(t, err)
	require.Equal(t, int64(len(segs[3])), sr.Size())
	fs, err := inmemfs.Open(sr, sr.Size())
	require.NoError(t, err)
	require.Len(t, fs.Files(), 4)
	_, err = f.Segment(4)
	require.Error(t, err)

	// Deterministic.
	_, data2 := writeProgram(t, p, segs)
	require.Equal(t, data, data2)

	if out := os.Getenv("LORAPTE_PTE_OUT"); out != "" {
		require.NoError(t, os.WriteFile(out, data, 0o644))
	}
}

func TestDefectsFound(t *testing.T) {
	withMethod := func(name string, fn func(m *Method)) func(p *Program) {
		return func(p *Program) {
			for i := range p.Methods {
				if p.Methods[i].Name == name {
					fn(&p.Methods[i])
				}
			}
		}
	}
	cases := []struct {
		id  string
		cfg exampleCfg
	}{
		{"T5", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.Values[0].Tensor.DimOrder = []uint8{0, 0} })}},
		{"T9", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.Values[0].Tensor.Alloc.MemoryID = 0 })}},
		{"T9", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.NonConstBufferSizes[1] = 40 })}},
		{"M5", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.Calls, m.Chains = nil, []Chain{} })}},
		{"D3", exampleCfg{mutate: withMethod("prefill", func(m *Method) { m.Delegates[0].CompileSpecs[0].Value = []byte("gpu") })}},
		{"T10", exampleCfg{mutate: withMethod("freqs_cos", func(m *Method) { m.Values[0].Tensor.DataBufferIdx = 3 })}},
		{"T10", exampleCfg{mutate: func(p *Program) { p.ConstantOffsets = []uint64{0, 0, 90} }}},
		{"B8", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.Calls[0].Args = m.Calls[0].Args[:2] })}},
		{"I5", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.Calls[0].Delegate = 1 })}},
		{"I3", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.Calls[0].Args[0] = 7 })}},
		{"I6", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.Values[0].Tensor.Type = BFloat16 })}},
		{"M7", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.Outputs = []int32{3} })}},
		{"V2", exampleCfg{mutate: withMethod("vocab_size", func(m *Method) { m.Values[0].Kind = KindNone })}},
		{"P2", exampleCfg{mutate: withMethod("prefill", func(m *Method) { m.Name = "forward" })}},
		{"C2", exampleCfg{mutate: func(p *Program) { p.ConstantSegment = 9 }}},
		{"N4", exampleCfg{mutate: func(p *Program) { p.NamedData[0].Segment = 9 }}},
		{"D2", exampleCfg{mutate: withMethod("forward", func(m *Method) { m.Delegates[0].Segment = 9 })}},
		{"K3", exampleCfg{cmjr: func(m string) []byte { return EncodeCMJR("coreml_executorch_other", m) }}},
		{"K2", exampleCfg{cmjr: func(m string) []byte { return []byte(`CMJR{"version": 1, "key": 5}`) }}},
		{"K1", exampleCfg{cmjr: func(m string) []byte { return []byte(`CMJR{"version": 1, `) }}},
		{"B6", exampleCfg{cmjr: func(m string) []byte { return []byte(`CMJR{"version": 1, "key": "` + exKey + `"}`) }}},
		{"B5", exampleCfg{metadata: EncodeMetadata(exIdentifier, []MethodIO{{Method: "forward", InputNames: []string{"tokens", "input_pos"}, OutputNames: []string{"logits"}}})}},
		{"B4", exampleCfg{metadata: EncodeMetadata(exIdentifier, []MethodIO{{Method: "forward"}, {Method: "prefill", OutputNames: []string{"x"}}})}},
		{"B3", exampleCfg{metadata: EncodeMetadata("", []MethodIO{{Method: "forward", OutputNames: []string{"x"}}, {Method: "prefill", OutputNames: []string{"x"}}})}},
		{"B7", exampleCfg{metadata: EncodeMetadata(exIdentifier, []MethodIO{{Method: "forward", InputNames: []string{"a", "a"}, OutputNames: []string{"x"}}, {Method: "prefill", InputNames: []string{"a", "b"}, OutputNames: []string{"x"}}})}},
		{"B2", exampleCfg{noMetadata: true}},
		{"B2", exampleCfg{metadata: []byte("[1, 2]")}},
		{"B9", exampleCfg{noPackage: true}},
		{"B1", exampleCfg{blob: reversedJSONBlob(`{"nodes":[{"children":{},"dataRegion":{"offset":0,"size":9999},"kind":0,"name":"metadata.json"},{"children":{"metadata.json":0},"dataRegion":{"offset":0,"size":0},"kind":1,"name":"r"}]}`)}},
		{"B10", exampleCfg{blob: blobWithBadManifest(t)}},
	}
	for _, c := range cases {
		fs := readVerify(t, exampleFile(t, c.cfg))
		require.Contains(t, ids(Failures(fs)), c.id, "want %s, got %v", c.id, fs)
	}
}

func reversedJSONBlob(js string) []byte {
	b := []byte("0123456789")
	for i := len(js) - 1; i >= 0; i-- {
		b = append(b, js[i])
	}
	return b
}

func blobWithBadManifest(t testing.TB) []byte {
	md := EncodeMetadata(exIdentifier, []MethodIO{
		{Method: "forward", InputNames: []string{"tokens", "input_pos"}, OutputNames: []string{"logits"}},
		{Method: "prefill", InputNames: []string{"tokens", "input_pos"}, OutputNames: []string{"logits"}},
	})
	man := []byte(`{"rootModelIdentifier": "nope", "itemInfoEntries": {}}`)
	l, err := inmemfs.Plan("r", []inmemfs.File{{Path: "metadata.json", Size: int64(len(md))}, {Path: "model.mlpackage/Manifest.json", Size: int64(len(man))}})
	require.NoError(t, err)
	var buf bytes.Buffer
	w := inmemfs.NewWriter(&buf, l)
	require.NoError(t, w.WriteFile("metadata.json", bytes.NewReader(md)))
	require.NoError(t, w.WriteFile("model.mlpackage/Manifest.json", bytes.NewReader(man)))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestByteLevelDefects(t *testing.T) {
	good := exampleFile(t, exampleCfg{})

	// F2: identifier ET99.
	bad := append([]byte{}, good...)
	copy(bad[4:8], "ET99")
	require.Contains(t, ids(readVerify(t, bad)), "F2")

	// F5: file shorter than segment_base_offset + segment_data_size.
	bad = good[:len(good)-1]
	fs := readVerify(t, bad)
	require.Contains(t, ids(fs), "F5")
	require.Contains(t, ids(fs), "S1")

	// F8: the root table's vtable offset points outside the buffer.
	bad = append([]byte{}, good...)
	root := binary.LittleEndian.Uint32(bad)
	binary.LittleEndian.PutUint32(bad[root:], 0x7fff0000)
	_, err := Read(bytes.NewReader(bad), int64(len(bad)))
	var fd Finding
	require.ErrorAs(t, err, &fd)
	require.Equal(t, "F8", fd.ID)

	// F8: a string that is not NUL-terminated (the method name "forward").
	bad = append([]byte{}, good...)
	i := bytes.Index(bad, []byte("forward\x00"))
	require.Positive(t, i)
	bad[i+7] = 'X'
	_, err = Read(bytes.NewReader(bad), int64(len(bad)))
	require.ErrorAs(t, err, &fd)
	require.Equal(t, "F8", fd.ID)

	// F7: root offset beyond the program.
	bad = append([]byte{}, good...)
	binary.LittleEndian.PutUint32(bad, 0xffffff)
	_, err = Read(bytes.NewReader(bad), int64(len(bad)))
	require.ErrorAs(t, err, &fd)
	require.Equal(t, "F7", fd.ID)

	// F4: program_size beyond the file.
	bad = append([]byte{}, good...)
	binary.LittleEndian.PutUint64(bad[16:], uint64(len(bad)+1))
	_, err = Read(bytes.NewReader(bad), int64(len(bad)))
	require.ErrorAs(t, err, &fd)
	require.Equal(t, "F4", fd.ID)

	// F3: header length below 24.
	bad = append([]byte{}, good...)
	binary.LittleEndian.PutUint32(bad[12:], 16)
	_, err = Read(bytes.NewReader(bad), int64(len(bad)))
	require.ErrorAs(t, err, &fd)
	require.Equal(t, "F3", fd.ID)

	// F6: segment base inside the FlatBuffer.
	bad = append([]byte{}, good...)
	binary.LittleEndian.PutUint64(bad[24:], 128)
	require.Contains(t, ids(readVerify(t, bad)), "F6")

	// F1: too short.
	_, err = Read(bytes.NewReader(good[:7]), 7)
	require.ErrorAs(t, err, &fd)
	require.Equal(t, "F1", fd.ID)
}
