package pte

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/stretchr/testify/require"

	"lorapte/core/pte/internal/fb"
)

func TestTreeSpecText(t *testing.T) {
	leaf := `{"type": null, "context": null, "children_spec": []}`
	require.Equal(t, `[1, {"type": "builtins.tuple", "context": "null", "children_spec": [`+
		`{"type": "builtins.tuple", "context": "null", "children_spec": [`+leaf+`, `+leaf+`]}, `+
		`{"type": "builtins.dict", "context": "[]", "children_spec": []}]}]`, TreeSpecInputs(2))
	require.Equal(t, `[1, {"type": "builtins.tuple", "context": "null", "children_spec": [`+
		`{"type": "builtins.tuple", "context": "null", "children_spec": []}, `+
		`{"type": "builtins.dict", "context": "[]", "children_spec": []}]}]`, TreeSpecInputs(0))
	require.Equal(t, `[1, `+leaf+`]`, TreeSpecOutputs(1))
	require.Equal(t, `[1, {"type": "builtins.tuple", "context": "null", "children_spec": [`+leaf+`, `+leaf+`, `+leaf+`]}]`, TreeSpecOutputs(3))

	m := ConstantMethod("vocab_size", IntValue(32000))
	require.Equal(t, "", m.InputSpec)
	require.Equal(t, `[1, `+leaf+`]`, m.OutputSpec)
	require.Equal(t, []int32{0}, m.Outputs)
	require.Empty(t, m.Inputs)
	require.Equal(t, []int64{0}, m.NonConstBufferSizes)
	require.Equal(t, []Chain{{}}, m.chains())

	m = ConstantMethod("eos", IntValue(1), IntValue(2))
	require.Equal(t, `[1, {"type": "builtins.list", "context": "null", "children_spec": [`+leaf+`, `+leaf+`]}]`, m.OutputSpec)
	require.Equal(t, []int32{0, 1}, m.Outputs)
	m = ConstantListMethod("lora_methods", StringValue("forward_lora"))
	require.Equal(t, `[1, {"type": "builtins.list", "context": "null", "children_spec": [`+leaf+`]}]`, m.OutputSpec)
}

func TestCMJRText(t *testing.T) {
	b := EncodeCMJR("coreml_executorch_ab", "forward")
	require.Equal(t, `CMJR{"version": 1, "key": "coreml_executorch_ab", "functionName": "forward"}`, string(b))
	c, err := ParseCMJR(b)
	require.NoError(t, err)
	require.Equal(t, CMJR{Key: "coreml_executorch_ab", FunctionName: "forward", Version: 1}, c)

	// json.dumps escaping (ensure_ascii): quotes, control, non-ASCII, astral.
	b = EncodeCMJR("k\"\\\n\x01é\x7f😀", "f")
	require.Equal(t, `CMJR{"version": 1, "key": "k\"\\\n\u0001\u00e9\u007f\ud83d\ude00", "functionName": "f"}`, string(b))
	c, err = ParseCMJR(b)
	require.NoError(t, err)
	require.Equal(t, "k\"\\\n\x01é\x7f😀", c.Key)

	c, err = ParseCMJR([]byte(`CMJR{"key": "x"}`))
	require.NoError(t, err)
	require.Equal(t, CMJR{Key: "x"}, c)

	_, err = ParseCMJR([]byte("abc"))
	require.ErrorIs(t, err, ErrNotCMJR)
	_, err = ParseCMJR([]byte("bplist00"))
	require.ErrorIs(t, err, ErrNotCMJR)
	var fd Finding
	_, err = ParseCMJR([]byte(`CMJR[1]`))
	require.ErrorAs(t, err, &fd)
	require.Equal(t, "K1", fd.ID)
	_, err = ParseCMJR([]byte(`CMJR{"key": 3, "functionName": "f"}`))
	require.ErrorAs(t, err, &fd)
	require.Equal(t, "K2", fd.ID)
	_, err = ParseCMJR([]byte(`CMJR{"functionName": "f"}`))
	require.ErrorAs(t, err, &fd)
	require.Equal(t, "K2", fd.ID)
}

func TestMetadataText(t *testing.T) {
	b := EncodeMetadata("executorch_x", []MethodIO{
		{Method: "forward", InputNames: []string{"tokens", "input_pos"}, OutputNames: []string{"logits"}},
		{Method: "prefill", OutputNames: []string{"logits"}},
	})
	require.Equal(t, `{"identifier": "executorch_x", "methods": {"forward": {"inputNames": ["tokens", "input_pos"], "outputNames": ["logits"]}, `+
		`"prefill": {"inputNames": [], "outputNames": ["logits"]}}}`, string(b))
	md, err := ParseMetadata(b)
	require.NoError(t, err)
	require.Equal(t, "executorch_x", md.Identifier)
	require.Equal(t, map[string]MethodIO{
		"forward": {Method: "forward", InputNames: []string{"tokens", "input_pos"}, OutputNames: []string{"logits"}},
		"prefill": {Method: "prefill", InputNames: []string{}, OutputNames: []string{"logits"}},
	}, md.Methods)

	md, err = ParseMetadata([]byte(`{"inputNames": ["a", 3], "outputNames": ["y"], "identifier": 7}`))
	require.NoError(t, err)
	require.Nil(t, md.Methods)
	require.Equal(t, []string{"a", ""}, md.InputNames)
	require.Equal(t, []string{"y"}, md.OutputNames)
	require.Equal(t, "", md.Identifier)
	_, err = ParseMetadata([]byte(`[]`))
	require.Error(t, err)
}

func TestConstantSegmentBuilder(t *testing.T) {
	cb := NewConstantSegmentBuilder()
	require.Equal(t, uint32(1), cb.Add(f16bytes(8))) // 16 bytes
	require.Equal(t, uint32(2), cb.Add(make([]byte, 80)))
	require.Equal(t, uint32(1), cb.Add(f16bytes(8))) // identical bytes stored once
	data, offs := cb.Finish()
	require.Equal(t, []uint64{0, 0, 16}, offs)
	require.Len(t, data, 96)
	require.Equal(t, uint32(3), cb.Add([]byte{1, 2, 3}))
	require.Equal(t, uint32(4), cb.Add([]byte{4}))
	data, offs = cb.Finish()
	require.Equal(t, []uint64{0, 0, 16, 96, 112}, offs)
	require.Len(t, data, 113) // the last constant is not padded
	require.Equal(t, make([]byte, 13), data[99:112])

	data, offs = NewConstantSegmentBuilder().Finish()
	require.Empty(t, data)
	require.Equal(t, []uint64{0}, offs)
}

// A program without constant tensors: offsets [0] on a zero-size segment.
func TestNoConstants(t *testing.T) {
	blob := exampleBlob(t, exampleCfg{})
	ref := EncodeCMJR(exKey, "forward")
	m := delegatedMethod("forward", 1, 1)
	p := &Program{
		Methods:         []Method{m, ConstantMethod("vocab_size", IntValue(32000)), ConstantMethod("use_kv_cache", BoolValue(true))},
		Segments:        []int64{0, int64(len(ref)), int64(len(blob))},
		ConstantOffsets: []uint64{0},
		NamedData:       []NamedData{{Key: exKey, Segment: 2}},
	}
	l, data := writeProgram(t, p, [][]byte{nil, ref, blob})
	require.Equal(t, l.SegmentOffset(0), l.SegmentOffset(1), "a zero-size segment shares its offset")
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.Equal(t, *p, f.Program)
	// The shared metadata also lists "prefill"; that is allowed.
	require.Empty(t, Failures(Verify(f)))

	// Skipping the empty segment is allowed too.
	var buf bytes.Buffer
	w := NewWriter(&buf, l)
	require.NoError(t, w.WriteSegment(1, ref))
	require.NoError(t, w.WriteSegment(2, blob))
	require.NoError(t, w.Close())
	require.Equal(t, data, buf.Bytes())

	// nil ConstantOffsets is written as [0].
	p.ConstantOffsets = nil
	_, data2 := writeProgram(t, p, [][]byte{nil, ref, blob})
	require.Equal(t, data, data2)
}

// Unplanned I/O (pte.md §3.2 variant B) verifies too.
func TestUnplannedIO(t *testing.T) {
	fs := readVerify(t, exampleFile(t, exampleCfg{mutate: func(p *Program) {
		for i := range p.Methods[:2] {
			m := &p.Methods[i]
			for _, v := range m.Values {
				v.Tensor.Alloc = nil
			}
			m.NonConstBufferSizes = []int64{0, 0}
		}
	}}))
	require.Empty(t, fs)
}

// Every schema feature the model can express survives a round trip.
func TestRoundTripEverything(t *testing.T) {
	tens := NewTensor(Float, 2, 3)
	tens.StorageOffset = 0
	tens.RequiresGrad = true
	tens.Layout = 1
	tens.ShapeDynamism = 1
	tens.Alloc = &Alloc{MemoryID: 1, Offset: 1<<33 + 16}
	tens.Extra = &ExtraTensorInfo{MutableDataSegmentsIdx: 3, FullyQualifiedName: "layers.0.k_cache", Location: 0}
	scalar := NewTensor(Double) // rank 0: empty sizes and dim_order
	p := &Program{
		Version: 0,
		Methods: []Method{{
			Name:       "everything",
			InputSpec:  "in",
			OutputSpec: "out",
			Values: []EValue{
				NullValue(), IntValue(-5), BoolValue(true), DoubleValue(2.5), StringValue("héllo"),
				TensorValue(tens), TensorValue(scalar),
				{Kind: KindIntList, Ints: []int64{1, 2}},
				{Kind: KindDoubleList, Doubles: []float64{0.5, -1}},
				{Kind: KindBoolList, Bools: []bool{true, false, true}},
				{Kind: KindTensorList, Items: []int32{5, 6}},
				{Kind: KindOptionalTensorList, Items: []int32{5, -1}},
				{Kind: Kind(200)}, // unknown type: kept, Verify reports V2
			},
			Inputs:  []int32{5},
			Outputs: []int32{6, 1},
			Chains: []Chain{
				{Instructions: []Instruction{
					{Kind: InstrKernelCall, Index: 0, Args: []int32{5, 6}},
					{Kind: InstrDelegateCall, Index: 0, Args: []int32{5}},
					{Kind: InstrMoveCall, Index: 1, To: 2},
					{Kind: InstrJumpFalseCall, Index: 2, To: 0},
					{Kind: InstrFreeCall, Index: 6},
				}},
				{},
			},
			Operators:           []Operator{{Name: "aten::add", Overload: "out"}},
			Delegates:           []Delegate{{ID: "OtherBackend", Segment: 0, Inline: true, CompileSpecs: []CompileSpec{{Key: "k", Value: []byte{}}}}},
			NonConstBufferSizes: []int64{0, 1 << 34},
		}},
		Segments:        []int64{5},
		ConstantSegment: 0,
		ConstantOffsets: []uint64{0},
		NamedData:       []NamedData{{Key: "a", Segment: 0}, {Key: "", Segment: 0}},
		InlineData:      [][]byte{[]byte("inline payload"), {}},
	}
	l, data := writeProgram(t, p, [][]byte{[]byte("12345")})
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.Equal(t, *p, f.Program)
	require.Equal(t, []DataSegment{{Offset: 0, Size: 5}}, f.SegmentTable)
	require.Equal(t, l.SegmentOffset(0), f.SegmentOffset(0))
	sr, err := f.Segment(0)
	require.NoError(t, err)
	got, err := io.ReadAll(sr)
	require.NoError(t, err)
	require.Equal(t, "12345", string(got))
	sr, err = f.NamedData("a")
	require.NoError(t, err)
	require.Equal(t, int64(5), sr.Size())
	_, err = f.NamedData("zzz")
	require.Error(t, err)

	got2 := ids(Verify(f))
	require.Contains(t, got2, "V2")
	require.Contains(t, got2, "I4")
	require.Contains(t, got2, "D1")

	// Inline payloads (force_align 16) start 16-aligned in the file.
	prog := fb.GetRootAsProgram(data[:l.ProgramSize()], 0)
	var inl fb.BackendDelegateInlineData
	for i := 0; i < prog.BackendDelegateDataLength(); i++ {
		require.True(t, prog.BackendDelegateData(&inl, i))
		tab := inl.Table()
		o := tab.Offset(4)
		require.NotZero(t, o)
		require.Zero(t, tab.Vector(flatbuffers.UOffsetT(o))%16, "inline data %d", i)
	}
}

func TestCallsAndChainsForms(t *testing.T) {
	p := &Program{Methods: []Method{{Name: "m", Calls: []DelegateCall{{0, nil}}, Chains: []Chain{}}}}
	_, err := Plan(p)
	require.Error(t, err, "both forms")

	// One chain of DelegateCalls reads back as Calls, anything else as Chains.
	for _, m := range []Method{
		{Name: "calls", Calls: []DelegateCall{{Delegate: 0, Args: []int32{1}}, {Delegate: 1}}},
		{Name: "none", Chains: []Chain{}},
		{Name: "two", Chains: []Chain{{}, {}}},
		{Name: "move", Chains: []Chain{{Instructions: []Instruction{{Kind: InstrMoveCall}}}}},
	} {
		_, data := writeProgram(t, &Program{Methods: []Method{m}}, nil)
		f, err := Read(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		require.Equal(t, m, f.Program.Methods[0])
	}
}

func TestPlanRejects(t *testing.T) {
	_, err := Plan(&Program{Segments: []int64{-1}})
	require.Error(t, err)
	_, err = Plan(&Program{ConstantSegment: -1})
	require.Error(t, err)
	_, err = Plan(&Program{NamedData: []NamedData{{Key: "k", Segment: -2}}})
	require.Error(t, err)
	_, err = Plan(&Program{Methods: []Method{{Delegates: []Delegate{{Segment: -1}}}}})
	require.Error(t, err)
	_, err = Plan(&Program{Methods: []Method{{Values: []EValue{{Kind: KindTensor}}}}})
	require.Error(t, err)
}

func TestWriterChecks(t *testing.T) {
	p := &Program{Segments: []int64{3, 0, 2}, Methods: []Method{ConstantMethod("x", IntValue(1))}}
	l, err := Plan(p)
	require.NoError(t, err)
	require.Equal(t, l.SegmentOffset(1), l.SegmentOffset(2), "zero-size segment shares the next offset")
	require.Equal(t, l.SegmentBaseOffset()+128+2, l.Size())

	w := NewWriter(io.Discard, l)
	require.Error(t, w.WriteSegment(0, []byte("1234")), "too long")
	require.Error(t, w.Close(), "sticky")

	w = NewWriter(io.Discard, l)
	require.Error(t, w.WriteSegment(0, []byte("12")), "too short")

	w = NewWriter(io.Discard, l)
	require.Error(t, w.WriteSegment(2, []byte("12")), "segment 0 skipped but not empty")

	w = NewWriter(io.Discard, l)
	require.NoError(t, w.WriteSegment(0, []byte("123")))
	require.Error(t, w.WriteSegment(0, []byte("123")), "out of order")

	w = NewWriter(io.Discard, l)
	require.NoError(t, w.WriteSegment(0, []byte("123")))
	require.Error(t, w.Close(), "segment 2 missing")

	w = NewWriter(io.Discard, l)
	err = w.StreamSegment(0, func(sw io.Writer) error {
		_, err := sw.Write([]byte("1"))
		return err
	})
	require.ErrorContains(t, err, "missing")

	var buf bytes.Buffer
	w = NewWriter(&buf, l)
	require.NoError(t, w.StreamSegment(0, func(sw io.Writer) error {
		for _, c := range "123" {
			if _, err := sw.Write([]byte{byte(c)}); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, w.WriteSegment(2, []byte("ab")))
	require.NoError(t, w.Close())
	require.Equal(t, l.Size(), int64(buf.Len()))
	require.Error(t, w.Close(), "already closed")

	// No segments at all: the file is the program alone, no padding.
	l, err = Plan(&Program{Methods: []Method{ConstantMethod("x", IntValue(1))}})
	require.NoError(t, err)
	require.Zero(t, l.SegmentBaseOffset())
	require.Equal(t, l.ProgramSize(), l.Size())
	buf.Reset()
	w = NewWriter(&buf, l)
	require.NoError(t, w.Close())
	require.Equal(t, l.Head(), buf.Bytes())
	f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.NoError(t, err)
	require.Empty(t, Failures(Verify(f)))
	require.Equal(t, uint64(0), binary.LittleEndian.Uint64(buf.Bytes()[24:]))
}

// Absent required fields (which the Go writer never omits) are reported.
func TestAbsentRequiredFields(t *testing.T) {
	b := flatbuffers.NewBuilder(256)
	fb.TensorStart(b)
	tensor := fb.TensorEnd(b) // no sizes, no dim_order
	fb.EValueStart(b)
	fb.EValueAddValType(b, fb.KernelTypesTensor)
	fb.EValueAddVal(b, tensor)
	ev1 := fb.EValueEnd(b)
	fb.EValueStart(b)
	fb.EValueAddValType(b, fb.KernelTypesInt) // payload missing
	ev2 := fb.EValueEnd(b)
	vals := builder{b}.tables([]uoff{ev1, ev2})
	fb.ExecutionPlanStart(b)
	fb.ExecutionPlanAddValues(b, vals)
	plan := fb.ExecutionPlanEnd(b)
	plans := builder{b}.tables([]uoff{plan})
	fb.ProgramStart(b)
	fb.ProgramAddExecutionPlan(b, plans)
	root := fb.ProgramEnd(b)
	b.FinishWithFileIdentifier(root, []byte("ET12"))
	data := b.FinishedBytes()
	data = append(data, make([]byte, 64)...) // F1 wants 64 bytes

	f, err := Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.False(t, f.HasHeader)
	got := ids(Verify(f))
	for _, id := range []string{"P2", "M2", "M3", "M4", "M5", "M6", "T1", "V1", "C1"} {
		require.Contains(t, got, id)
	}
}

func FuzzRead(f *testing.F) {
	good := exampleFile(f, exampleCfg{})
	f.Add(good)
	_, small := writeProgram(f, &Program{Methods: []Method{ConstantMethod("x", IntValue(1))}, Segments: []int64{3}}, [][]byte{[]byte("abc")})
	f.Add(small)
	f.Add(good[:200])
	bad := append([]byte{}, good...)
	binary.LittleEndian.PutUint32(bad[binary.LittleEndian.Uint32(bad):], 0x7fff0000)
	f.Add(bad)
	f.Add([]byte("\x0c\x00\x00\x00ET12eh00\x20\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		Verify(file)
		for i := range file.SegmentTable {
			if sr, err := file.Segment(i); err == nil {
				if sr.Size() > int64(len(data)) {
					t.Fatalf("segment %d larger than the file", i)
				}
			}
		}
	})
}
