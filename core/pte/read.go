package pte

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	flatbuffers "github.com/google/flatbuffers/go"

	"lorapte/core/pte/internal/fb"
)

// Finding is one failed (or, with Warn, advisory) check of pte.md §6; ID is the
// checklist ID ("F2", "T5", ...). Read's errors are Findings too.
type Finding struct {
	ID   string
	Msg  string
	Warn bool
}

func (f Finding) Error() string {
	if f.Warn {
		return "WARN [" + f.ID + "] " + f.Msg
	}
	return "[" + f.ID + "] " + f.Msg
}

// File is a parsed .pte.
type File struct {
	Program Program

	Identifier        string // bytes 4..8 ("ET12")
	HasHeader         bool   // "eh00" extended header present
	HeaderLength      uint32
	ProgramSize       uint64
	SegmentBaseOffset uint64
	SegmentDataSize   uint64

	SegmentTable        []DataSegment // as stored (offsets relative to SegmentBaseOffset)
	HasConstantSegment  bool
	ConstantBufferSizes []int // deprecated Program.constant_buffer: storage length per entry
	MutableDataSegments []SubsegmentOffsets

	r    io.ReaderAt
	size int64
	// notes are facts seen while decoding that Verify reports: required
	// fields that are absent (the Go model cannot show absence).
	notes []Finding
}

// Size is the file size given to Read.
func (f *File) Size() int64 { return f.size }

// SegmentOffset is the absolute file offset of segment i (base + relative
// offset), or -1 when i is out of range or the sum overflows.
func (f *File) SegmentOffset(i int) int64 {
	if i < 0 || i >= len(f.SegmentTable) {
		return -1
	}
	off := f.SegmentBaseOffset + f.SegmentTable[i].Offset
	if off < f.SegmentBaseOffset || off > math.MaxInt64 {
		return -1
	}
	return int64(off)
}

// Segment returns a reader over segment i; it fails if the segment does not
// lie inside the file or there is no segment base.
func (f *File) Segment(i int) (*io.SectionReader, error) {
	if i < 0 || i >= len(f.SegmentTable) {
		return nil, fmt.Errorf("pte: segment %d: only %d segments", i, len(f.SegmentTable))
	}
	if !f.HasHeader || f.SegmentBaseOffset == 0 {
		return nil, fmt.Errorf("pte: segment %d: file has no segment base offset", i)
	}
	off, size := f.SegmentOffset(i), f.SegmentTable[i].Size
	if off < 0 || off > f.size || size > uint64(f.size-off) {
		return nil, fmt.Errorf("pte: segment %d [%d,+%d) lies outside the %d-byte file", i, off, size, f.size)
	}
	return io.NewSectionReader(f.r, off, int64(size)), nil
}

// NamedData returns the segment of the first named_data entry whose key equals
// key byte for byte (the runtime's lookup).
func (f *File) NamedData(key string) (*io.SectionReader, error) {
	for _, nd := range f.Program.NamedData {
		if nd.Key == key {
			return f.Segment(nd.Segment)
		}
	}
	return nil, fmt.Errorf("pte: no named data with key %q", key)
}

// Read parses the .pte of the given size from r. It fails (with a Finding as
// error) only when the program cannot be decoded at all: too short (F1), bad
// header length (F3), program size beyond the file (F4), bad root offset
// (F7) or a FlatBuffer that does not verify (F8). Everything else is left to
// Verify. The program region is read into memory (it is small; limit 2 GiB).
func Read(r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, Finding{ID: "F1", Msg: fmt.Sprintf("file is %d bytes, too short for a FlatBuffer", size)}
	}
	probe := make([]byte, min(size, 64))
	if err := readFull(r, probe, 0); err != nil {
		return nil, fmt.Errorf("pte: reading header: %w", err)
	}
	f := &File{r: r, size: size, Identifier: string(probe[4:8]), ProgramSize: uint64(size)}
	if len(probe) >= 16 && string(probe[8:12]) == HeaderMagic {
		f.HasHeader = true
		f.HeaderLength = binary.LittleEndian.Uint32(probe[12:])
		if f.HeaderLength < 24 {
			return nil, Finding{ID: "F3", Msg: fmt.Sprintf("extended header length %d < 24", f.HeaderLength)}
		}
		if len(probe) < 32 {
			return nil, Finding{ID: "F3", Msg: "file too short for its extended header"}
		}
		f.ProgramSize = binary.LittleEndian.Uint64(probe[16:])
		f.SegmentBaseOffset = binary.LittleEndian.Uint64(probe[24:])
		if f.HeaderLength >= 32 {
			if len(probe) < 40 {
				return nil, Finding{ID: "F3", Msg: "file too short for its extended header"}
			}
			f.SegmentDataSize = binary.LittleEndian.Uint64(probe[32:])
		}
	}
	if f.ProgramSize < 8 || f.ProgramSize > uint64(size) {
		return nil, Finding{ID: "F4", Msg: fmt.Sprintf("program_size %d outside the %d-byte file", f.ProgramSize, size)}
	}
	if f.ProgramSize >= 1<<31 {
		return nil, Finding{ID: "F8", Msg: fmt.Sprintf("program region of %d bytes is 2 GiB or larger", f.ProgramSize)}
	}
	if root := binary.LittleEndian.Uint32(probe); root < 8 || uint64(root) > f.ProgramSize-4 {
		return nil, Finding{ID: "F7", Msg: fmt.Sprintf("root table offset %d invalid for program size %d", root, f.ProgramSize)}
	}
	buf := make([]byte, f.ProgramSize)
	if err := readFull(r, buf, 0); err != nil {
		return nil, fmt.Errorf("pte: reading program: %w", err)
	}
	if err := verifyFlatBuffer(buf); err != nil {
		return nil, Finding{ID: "F8", Msg: "FlatBuffer verification failed: " + err.Error()}
	}
	f.decode(buf)
	return f, nil
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (f *File) note(id, format string, args ...any) {
	f.notes = append(f.notes, Finding{ID: id, Msg: fmt.Sprintf(format, args...)})
}

func (f *File) warnNote(id, format string, args ...any) {
	f.notes = append(f.notes, Finding{ID: id, Msg: fmt.Sprintf(format, args...), Warn: true})
}

// has reports whether field id of a table is present.
func has(t flatbuffers.Table, id int) bool {
	return t.Offset(flatbuffers.VOffsetT(4+2*id)) != 0
}

// decode fills f from a verified buffer using the generated accessors.
func (f *File) decode(buf []byte) {
	p := fb.GetRootAsProgram(buf, 0)
	pt := p.Table()
	f.Program.Version = p.Version()

	if !has(pt, 1) {
		f.note("P1", "Program has no execution_plan")
	}
	var plan fb.ExecutionPlan
	for i := 0; i < p.ExecutionPlanLength(); i++ {
		p.ExecutionPlan(&plan, i)
		f.Program.Methods = append(f.Program.Methods, f.decodeMethod(&plan, i))
	}

	var buffer fb.Buffer
	for i := 0; i < p.ConstantBufferLength(); i++ {
		p.ConstantBuffer(&buffer, i)
		f.ConstantBufferSizes = append(f.ConstantBufferSizes, buffer.StorageLength())
	}
	var inline fb.BackendDelegateInlineData
	for i := 0; i < p.BackendDelegateDataLength(); i++ {
		p.BackendDelegateData(&inline, i)
		f.Program.InlineData = append(f.Program.InlineData, append([]byte{}, inline.DataBytes()...))
	}
	var seg fb.DataSegment
	for i := 0; i < p.SegmentsLength(); i++ {
		p.Segments(&seg, i)
		s := DataSegment{Offset: seg.Offset(), Size: seg.Size()}
		f.SegmentTable = append(f.SegmentTable, s)
		f.Program.Segments = append(f.Program.Segments, int64(min(s.Size, math.MaxInt64)))
	}
	if cs := p.ConstantSegment(nil); cs != nil {
		f.HasConstantSegment = true
		f.Program.ConstantSegment = int(cs.SegmentIndex())
		for i := 0; i < cs.OffsetsLength(); i++ {
			f.Program.ConstantOffsets = append(f.Program.ConstantOffsets, cs.Offsets(i))
		}
	}
	var sub fb.SubsegmentOffsets
	for i := 0; i < p.MutableDataSegmentsLength(); i++ {
		p.MutableDataSegments(&sub, i)
		m := SubsegmentOffsets{Segment: int(sub.SegmentIndex())}
		for k := 0; k < sub.OffsetsLength(); k++ {
			m.Offsets = append(m.Offsets, sub.Offsets(k))
		}
		f.MutableDataSegments = append(f.MutableDataSegments, m)
	}
	if has(pt, 7) && !has(pt, 4) {
		f.note("N1", "named_data present but segments missing (Program::load fails)")
	}
	var nd fb.NamedData
	for i := 0; i < p.NamedDataLength(); i++ {
		p.NamedData(&nd, i)
		if nd.Key() == nil {
			f.note("N2", "named_data[%d] has no key", i)
		}
		f.Program.NamedData = append(f.Program.NamedData, NamedData{Key: string(nd.Key()), Segment: int(nd.SegmentIndex())})
	}
}

func (f *File) decodeMethod(plan *fb.ExecutionPlan, idx int) Method {
	t := plan.Table()
	m := Method{Name: string(plan.Name())}
	w := fmt.Sprintf("method %d %q", idx, m.Name)
	if plan.Name() == nil {
		f.note("P2", "method %d has no name", idx)
	}
	if cm := plan.ContainerMetaType(nil); cm != nil {
		m.InputSpec, m.OutputSpec = string(cm.EncodedInpStr()), string(cm.EncodedOutStr())
	} else {
		f.warnNote("M6", "%s: container_meta_type missing (only get_output_flattening_encoding needs it)", w)
	}
	for _, req := range []struct {
		id    int
		check string
		name  string
	}{{2, "M1", "values"}, {3, "M2", "inputs"}, {4, "M2", "outputs"}, {7, "M4", "delegates"}, {8, "M3", "non_const_buffer_sizes"}} {
		if !has(t, req.id) {
			f.note(req.check, "%s: %s missing", w, req.name)
		}
	}

	var ev fb.EValue
	for i := 0; i < plan.ValuesLength(); i++ {
		plan.Values(&ev, i)
		m.Values = append(m.Values, f.decodeValue(&ev, fmt.Sprintf("%s values[%d]", w, i)))
	}
	for i := 0; i < plan.InputsLength(); i++ {
		m.Inputs = append(m.Inputs, plan.Inputs(i))
	}
	for i := 0; i < plan.OutputsLength(); i++ {
		m.Outputs = append(m.Outputs, plan.Outputs(i))
	}
	var ch fb.Chain
	var in fb.Instruction
	for i := 0; i < plan.ChainsLength(); i++ {
		plan.Chains(&ch, i)
		if !has(ch.Table(), 2) {
			f.note("I1", "%s: chain %d has no instructions vector", w, i)
		}
		var c Chain
		for k := 0; k < ch.InstructionsLength(); k++ {
			ch.Instructions(&in, k)
			c.Instructions = append(c.Instructions, f.decodeInstruction(&in, fmt.Sprintf("%s chain %d instruction %d", w, i, k)))
		}
		m.Chains = append(m.Chains, c)
	}
	m.Chains, m.Calls = canonicalChains(m.Chains)
	var op fb.Operator
	for i := 0; i < plan.OperatorsLength(); i++ {
		plan.Operators(&op, i)
		m.Operators = append(m.Operators, Operator{Name: string(op.Name()), Overload: string(op.Overload())})
	}
	var del fb.BackendDelegate
	var spec fb.CompileSpec
	for i := 0; i < plan.DelegatesLength(); i++ {
		plan.Delegates(&del, i)
		dw := fmt.Sprintf("%s delegate %d", w, i)
		d := Delegate{ID: string(del.Id()), Segment: -1}
		if del.Id() == nil {
			f.note("D1", "%s: backend id missing", dw)
		}
		if ref := del.Processed(nil); ref == nil {
			f.note("D2", "%s: processed missing", dw)
		} else {
			switch ref.Location() {
			case fb.DataLocationINLINE:
				d.Inline, d.Segment = true, int(ref.Index())
			case fb.DataLocationSEGMENT:
				d.Segment = int(ref.Index())
			default:
				f.note("D2", "%s: unknown DataLocation %d", dw, ref.Location())
			}
		}
		for k := 0; k < del.CompileSpecsLength(); k++ {
			del.CompileSpecs(&spec, k)
			st := spec.Table()
			if !has(st, 0) || !has(st, 1) {
				f.note("D3", "%s: compile_specs[%d] lacks its key or value (the runtime dereferences both)", dw, k)
			}
			d.CompileSpecs = append(d.CompileSpecs, CompileSpec{Key: string(spec.Key()), Value: append([]byte{}, spec.ValueBytes()...)})
		}
		m.Delegates = append(m.Delegates, d)
	}
	for i := 0; i < plan.NonConstBufferSizesLength(); i++ {
		m.NonConstBufferSizes = append(m.NonConstBufferSizes, plan.NonConstBufferSizes(i))
	}
	return m
}

// canonicalChains turns a single chain of DelegateCalls into the Calls form.
func canonicalChains(chains []Chain) ([]Chain, []DelegateCall) {
	if len(chains) != 1 {
		if chains == nil {
			chains = []Chain{}
		}
		return chains, nil
	}
	var calls []DelegateCall
	for _, in := range chains[0].Instructions {
		if in.Kind != InstrDelegateCall || in.To != 0 {
			return chains, nil
		}
		calls = append(calls, DelegateCall{Delegate: int(in.Index), Args: in.Args})
	}
	return nil, calls
}

func (f *File) decodeValue(ev *fb.EValue, w string) EValue {
	v := EValue{Kind: Kind(ev.ValType())}
	var tab flatbuffers.Table
	if !ev.Val(&tab) {
		if v.Kind != KindNull && v.Kind != KindNone {
			f.note("V1", "%s (%s) has no payload table", w, v.Kind)
		}
		return v
	}
	switch v.Kind {
	case KindInt:
		var x fb.Int
		x.Init(tab.Bytes, tab.Pos)
		v.Int = x.IntVal()
	case KindBool:
		var x fb.Bool
		x.Init(tab.Bytes, tab.Pos)
		v.Bool = x.BoolVal()
	case KindDouble:
		var x fb.Double
		x.Init(tab.Bytes, tab.Pos)
		v.Double = x.DoubleVal()
	case KindString:
		var x fb.String
		x.Init(tab.Bytes, tab.Pos)
		if x.StringVal() == nil {
			f.note("V3", "%s String has no string_val", w)
		}
		v.Str = string(x.StringVal())
	case KindTensor:
		var x fb.Tensor
		x.Init(tab.Bytes, tab.Pos)
		v.Tensor = f.decodeTensor(&x, w)
	case KindIntList:
		var x fb.IntList
		x.Init(tab.Bytes, tab.Pos)
		f.listPresent(x.Table(), w, v.Kind)
		for i := 0; i < x.ItemsLength(); i++ {
			v.Ints = append(v.Ints, x.Items(i))
		}
	case KindDoubleList:
		var x fb.DoubleList
		x.Init(tab.Bytes, tab.Pos)
		f.listPresent(x.Table(), w, v.Kind)
		for i := 0; i < x.ItemsLength(); i++ {
			v.Doubles = append(v.Doubles, x.Items(i))
		}
	case KindBoolList:
		var x fb.BoolList
		x.Init(tab.Bytes, tab.Pos)
		f.listPresent(x.Table(), w, v.Kind)
		for i := 0; i < x.ItemsLength(); i++ {
			v.Bools = append(v.Bools, x.Items(i))
		}
	case KindTensorList:
		var x fb.TensorList
		x.Init(tab.Bytes, tab.Pos)
		f.listPresent(x.Table(), w, v.Kind)
		for i := 0; i < x.ItemsLength(); i++ {
			v.Items = append(v.Items, x.Items(i))
		}
	case KindOptionalTensorList:
		var x fb.OptionalTensorList
		x.Init(tab.Bytes, tab.Pos)
		f.listPresent(x.Table(), w, v.Kind)
		for i := 0; i < x.ItemsLength(); i++ {
			v.Items = append(v.Items, x.Items(i))
		}
	}
	return v
}

func (f *File) listPresent(t flatbuffers.Table, w string, k Kind) {
	if !has(t, 0) {
		f.note("V3", "%s %s has no items", w, k)
	}
}

func (f *File) decodeTensor(x *fb.Tensor, w string) *Tensor {
	t := &Tensor{
		Type:          ScalarType(x.ScalarType()),
		StorageOffset: x.StorageOffset(),
		RequiresGrad:  x.RequiresGrad(),
		DataBufferIdx: x.DataBufferIdx(),
		Layout:        x.Layout(),
		ShapeDynamism: int8(x.ShapeDynamism()),
	}
	tt := x.Table()
	if !has(tt, 2) {
		f.note("T1", "%s: Tensor.sizes missing", w)
	}
	if !has(tt, 3) {
		f.note("T1", "%s: Tensor.dim_order missing", w)
	}
	for i := 0; i < x.SizesLength(); i++ {
		t.Sizes = append(t.Sizes, x.Sizes(i))
	}
	if d := x.DimOrderBytes(); len(d) > 0 {
		t.DimOrder = append([]uint8{}, d...)
	}
	if a := x.AllocationInfo(nil); a != nil {
		t.Alloc = &Alloc{MemoryID: a.MemoryId(), Offset: uint64(a.MemoryOffsetLow()) | uint64(a.MemoryOffsetHigh())<<32}
	}
	if e := x.ExtraTensorInfo(nil); e != nil {
		t.Extra = &ExtraTensorInfo{
			MutableDataSegmentsIdx: e.MutableDataSegmentsIdx(),
			FullyQualifiedName:     string(e.FullyQualifiedName()),
			Location:               int8(e.Location()),
		}
	}
	return t
}

func (f *File) decodeInstruction(in *fb.Instruction, w string) Instruction {
	out := Instruction{Kind: InstrKind(in.InstrArgsType())}
	var tab flatbuffers.Table
	if !in.InstrArgs(&tab) {
		if out.Kind != InstrNone {
			f.note("I2", "%s (%s) has no arguments table", w, out.Kind)
		}
		return out
	}
	args := func(t flatbuffers.Table, n int, at func(int) int32) {
		if !has(t, 1) {
			f.note("I3", "%s (%s) has no args", w, out.Kind)
		}
		for i := 0; i < n; i++ {
			out.Args = append(out.Args, at(i))
		}
	}
	switch out.Kind {
	case InstrKernelCall:
		var x fb.KernelCall
		x.Init(tab.Bytes, tab.Pos)
		out.Index = x.OpIndex()
		args(x.Table(), x.ArgsLength(), x.Args)
	case InstrDelegateCall:
		var x fb.DelegateCall
		x.Init(tab.Bytes, tab.Pos)
		out.Index = x.DelegateIndex()
		args(x.Table(), x.ArgsLength(), x.Args)
	case InstrMoveCall:
		var x fb.MoveCall
		x.Init(tab.Bytes, tab.Pos)
		out.Index, out.To = x.MoveFrom(), x.MoveTo()
	case InstrJumpFalseCall:
		var x fb.JumpFalseCall
		x.Init(tab.Bytes, tab.Pos)
		out.Index, out.To = x.CondValueIndex(), x.DestinationInstruction()
	case InstrFreeCall:
		var x fb.FreeCall
		x.Init(tab.Bytes, tab.Pos)
		out.Index = x.ValueIndex()
	}
	return out
}
