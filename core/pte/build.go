package pte

import (
	"fmt"

	flatbuffers "github.com/google/flatbuffers/go"

	"lorapte/core/pte/internal/fb"
)

type uoff = flatbuffers.UOffsetT

// builder wraps a FlatBuffers builder with vector helpers. FlatBuffers are built
// back to front, so vector elements are prepended in reverse.
type builder struct{ *flatbuffers.Builder }

func (b builder) int32s(xs []int32) uoff {
	b.StartVector(4, len(xs), 4)
	for i := len(xs) - 1; i >= 0; i-- {
		b.PrependInt32(xs[i])
	}
	return b.EndVector(len(xs))
}

func (b builder) int64s(xs []int64) uoff {
	b.StartVector(8, len(xs), 8)
	for i := len(xs) - 1; i >= 0; i-- {
		b.PrependInt64(xs[i])
	}
	return b.EndVector(len(xs))
}

func (b builder) uint64s(xs []uint64) uoff {
	b.StartVector(8, len(xs), 8)
	for i := len(xs) - 1; i >= 0; i-- {
		b.PrependUint64(xs[i])
	}
	return b.EndVector(len(xs))
}

func (b builder) float64s(xs []float64) uoff {
	b.StartVector(8, len(xs), 8)
	for i := len(xs) - 1; i >= 0; i-- {
		b.PrependFloat64(xs[i])
	}
	return b.EndVector(len(xs))
}

func (b builder) bools(xs []bool) uoff {
	b.StartVector(1, len(xs), 1)
	for i := len(xs) - 1; i >= 0; i-- {
		b.PrependBool(xs[i])
	}
	return b.EndVector(len(xs))
}

// bytesAligned writes a [ubyte] whose data starts at a multiple of align
// (force_align in the schema; the generated Start*Vector ignores it).
func (b builder) bytesAligned(data []byte, align int) uoff {
	b.StartVector(1, len(data), align)
	for i := len(data) - 1; i >= 0; i-- {
		b.PrependByte(data[i])
	}
	return b.EndVector(len(data))
}

func (b builder) tables(offs []uoff) uoff {
	b.StartVector(4, len(offs), 4)
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

// buildFlatBuffer serialises p (without the extended header). Every vector the
// runtime dereferences is written, empty or not; scalars equal to their default
// are omitted, as every FlatBuffers builder does.
func buildFlatBuffer(p *Program) ([]byte, error) {
	b := builder{flatbuffers.NewBuilder(4096)}

	plans := make([]uoff, len(p.Methods))
	for i := range p.Methods {
		off, err := b.method(&p.Methods[i])
		if err != nil {
			return nil, fmt.Errorf("pte: method %d %q: %w", i, p.Methods[i].Name, err)
		}
		plans[i] = off
	}
	planVec := b.tables(plans)
	constBuf := b.tables(nil)

	inline := make([]uoff, len(p.InlineData))
	for i, d := range p.InlineData {
		data := b.bytesAligned(d, 16)
		fb.BackendDelegateInlineDataStart(b.Builder)
		fb.BackendDelegateInlineDataAddData(b.Builder, data)
		inline[i] = fb.BackendDelegateInlineDataEnd(b.Builder)
	}
	inlineVec := b.tables(inline)

	segs := make([]uoff, len(p.Segments))
	rel := segmentOffsets(p.Segments)
	for i, size := range p.Segments {
		fb.DataSegmentStart(b.Builder)
		fb.DataSegmentAddOffset(b.Builder, uint64(rel[i]))
		fb.DataSegmentAddSize(b.Builder, uint64(size))
		segs[i] = fb.DataSegmentEnd(b.Builder)
	}
	segVec := b.tables(segs)

	offsets := p.ConstantOffsets
	if offsets == nil {
		offsets = []uint64{0}
	}
	offVec := b.uint64s(offsets)
	fb.SubsegmentOffsetsStart(b.Builder)
	fb.SubsegmentOffsetsAddSegmentIndex(b.Builder, uint32(p.ConstantSegment))
	fb.SubsegmentOffsetsAddOffsets(b.Builder, offVec)
	constSeg := fb.SubsegmentOffsetsEnd(b.Builder)

	named := make([]uoff, len(p.NamedData))
	for i, nd := range p.NamedData {
		key := b.CreateString(nd.Key)
		fb.NamedDataStart(b.Builder)
		fb.NamedDataAddKey(b.Builder, key)
		fb.NamedDataAddSegmentIndex(b.Builder, uint32(nd.Segment))
		named[i] = fb.NamedDataEnd(b.Builder)
	}
	namedVec := b.tables(named)

	fb.ProgramStart(b.Builder)
	fb.ProgramAddVersion(b.Builder, p.Version)
	fb.ProgramAddExecutionPlan(b.Builder, planVec)
	fb.ProgramAddConstantBuffer(b.Builder, constBuf)
	fb.ProgramAddBackendDelegateData(b.Builder, inlineVec)
	fb.ProgramAddSegments(b.Builder, segVec)
	fb.ProgramAddConstantSegment(b.Builder, constSeg)
	fb.ProgramAddNamedData(b.Builder, namedVec)
	root := fb.ProgramEnd(b.Builder)
	b.FinishWithFileIdentifier(root, []byte(FileIdentifier))
	return b.FinishedBytes(), nil
}

func (b builder) method(m *Method) (uoff, error) {
	name := b.CreateString(m.Name)
	inSpec := b.CreateString(m.InputSpec)
	outSpec := b.CreateString(m.OutputSpec)
	fb.ContainerMetadataStart(b.Builder)
	fb.ContainerMetadataAddEncodedInpStr(b.Builder, inSpec)
	fb.ContainerMetadataAddEncodedOutStr(b.Builder, outSpec)
	meta := fb.ContainerMetadataEnd(b.Builder)

	vals := make([]uoff, len(m.Values))
	for i := range m.Values {
		v, err := b.evalue(&m.Values[i])
		if err != nil {
			return 0, fmt.Errorf("values[%d]: %w", i, err)
		}
		vals[i] = v
	}
	valVec := b.tables(vals)
	inVec := b.int32s(m.Inputs)
	outVec := b.int32s(m.Outputs)

	if m.Chains != nil && len(m.Calls) > 0 {
		return 0, fmt.Errorf("both Calls and Chains given")
	}
	mc := m.chains()
	chains := make([]uoff, len(mc))
	for i, c := range mc {
		instrs := make([]uoff, len(c.Instructions))
		for j, in := range c.Instructions {
			instrs[j] = b.instruction(in)
		}
		instrVec := b.tables(instrs)
		// The exporter writes empty chain inputs/outputs; so do we.
		cin, cout := b.int32s(nil), b.int32s(nil)
		fb.ChainStart(b.Builder)
		fb.ChainAddInputs(b.Builder, cin)
		fb.ChainAddOutputs(b.Builder, cout)
		fb.ChainAddInstructions(b.Builder, instrVec)
		chains[i] = fb.ChainEnd(b.Builder)
	}
	chainVec := b.tables(chains)

	ops := make([]uoff, len(m.Operators))
	for i, op := range m.Operators {
		n, o := b.CreateString(op.Name), b.CreateString(op.Overload)
		fb.OperatorStart(b.Builder)
		fb.OperatorAddName(b.Builder, n)
		fb.OperatorAddOverload(b.Builder, o)
		ops[i] = fb.OperatorEnd(b.Builder)
	}
	opVec := b.tables(ops)

	dels := make([]uoff, len(m.Delegates))
	for i, d := range m.Delegates {
		if d.Segment < 0 || int64(d.Segment) > 0xFFFFFFFF {
			return 0, fmt.Errorf("delegate %d: index %d out of range", i, d.Segment)
		}
		id := b.CreateString(d.ID)
		specs := make([]uoff, len(d.CompileSpecs))
		for j, s := range d.CompileSpecs {
			k := b.CreateString(s.Key)
			v := b.CreateByteVector(s.Value)
			fb.CompileSpecStart(b.Builder)
			fb.CompileSpecAddKey(b.Builder, k)
			fb.CompileSpecAddValue(b.Builder, v)
			specs[j] = fb.CompileSpecEnd(b.Builder)
		}
		specVec := b.tables(specs)
		loc := fb.DataLocationSEGMENT
		if d.Inline {
			loc = fb.DataLocationINLINE
		}
		fb.BackendDelegateDataReferenceStart(b.Builder)
		fb.BackendDelegateDataReferenceAddLocation(b.Builder, loc)
		fb.BackendDelegateDataReferenceAddIndex(b.Builder, uint32(d.Segment))
		ref := fb.BackendDelegateDataReferenceEnd(b.Builder)
		fb.BackendDelegateStart(b.Builder)
		fb.BackendDelegateAddId(b.Builder, id)
		fb.BackendDelegateAddProcessed(b.Builder, ref)
		fb.BackendDelegateAddCompileSpecs(b.Builder, specVec)
		dels[i] = fb.BackendDelegateEnd(b.Builder)
	}
	delVec := b.tables(dels)
	ncbs := b.int64s(m.NonConstBufferSizes)

	fb.ExecutionPlanStart(b.Builder)
	fb.ExecutionPlanAddName(b.Builder, name)
	fb.ExecutionPlanAddContainerMetaType(b.Builder, meta)
	fb.ExecutionPlanAddValues(b.Builder, valVec)
	fb.ExecutionPlanAddInputs(b.Builder, inVec)
	fb.ExecutionPlanAddOutputs(b.Builder, outVec)
	fb.ExecutionPlanAddChains(b.Builder, chainVec)
	fb.ExecutionPlanAddOperators(b.Builder, opVec)
	fb.ExecutionPlanAddDelegates(b.Builder, delVec)
	fb.ExecutionPlanAddNonConstBufferSizes(b.Builder, ncbs)
	return fb.ExecutionPlanEnd(b.Builder), nil
}

func (b builder) instruction(in Instruction) uoff {
	var args uoff
	if in.Kind == InstrKernelCall || in.Kind == InstrDelegateCall {
		args = b.int32s(in.Args)
	}
	var payload uoff
	switch in.Kind {
	case InstrKernelCall:
		fb.KernelCallStart(b.Builder)
		fb.KernelCallAddOpIndex(b.Builder, in.Index)
		fb.KernelCallAddArgs(b.Builder, args)
		payload = fb.KernelCallEnd(b.Builder)
	case InstrDelegateCall:
		fb.DelegateCallStart(b.Builder)
		fb.DelegateCallAddDelegateIndex(b.Builder, in.Index)
		fb.DelegateCallAddArgs(b.Builder, args)
		payload = fb.DelegateCallEnd(b.Builder)
	case InstrMoveCall:
		fb.MoveCallStart(b.Builder)
		fb.MoveCallAddMoveFrom(b.Builder, in.Index)
		fb.MoveCallAddMoveTo(b.Builder, in.To)
		payload = fb.MoveCallEnd(b.Builder)
	case InstrJumpFalseCall:
		fb.JumpFalseCallStart(b.Builder)
		fb.JumpFalseCallAddCondValueIndex(b.Builder, in.Index)
		fb.JumpFalseCallAddDestinationInstruction(b.Builder, in.To)
		payload = fb.JumpFalseCallEnd(b.Builder)
	case InstrFreeCall:
		fb.FreeCallStart(b.Builder)
		fb.FreeCallAddValueIndex(b.Builder, in.Index)
		payload = fb.FreeCallEnd(b.Builder)
	}
	fb.InstructionStart(b.Builder)
	fb.InstructionAddInstrArgsType(b.Builder, fb.InstructionArguments(in.Kind))
	if payload != 0 {
		fb.InstructionAddInstrArgs(b.Builder, payload)
	}
	return fb.InstructionEnd(b.Builder)
}

func (b builder) evalue(v *EValue) (uoff, error) {
	var payload uoff
	switch v.Kind {
	case KindNull:
		fb.NullStart(b.Builder)
		payload = fb.NullEnd(b.Builder)
	case KindInt:
		fb.IntStart(b.Builder)
		fb.IntAddIntVal(b.Builder, v.Int)
		payload = fb.IntEnd(b.Builder)
	case KindBool:
		fb.BoolStart(b.Builder)
		fb.BoolAddBoolVal(b.Builder, v.Bool)
		payload = fb.BoolEnd(b.Builder)
	case KindDouble:
		fb.DoubleStart(b.Builder)
		fb.DoubleAddDoubleVal(b.Builder, v.Double)
		payload = fb.DoubleEnd(b.Builder)
	case KindString:
		s := b.CreateString(v.Str)
		fb.StringStart(b.Builder)
		fb.StringAddStringVal(b.Builder, s)
		payload = fb.StringEnd(b.Builder)
	case KindTensor:
		if v.Tensor == nil {
			return 0, fmt.Errorf("Tensor value without a tensor")
		}
		payload = b.tensor(v.Tensor)
	case KindIntList:
		items := b.int64s(v.Ints)
		fb.IntListStart(b.Builder)
		fb.IntListAddItems(b.Builder, items)
		payload = fb.IntListEnd(b.Builder)
	case KindDoubleList:
		items := b.float64s(v.Doubles)
		fb.DoubleListStart(b.Builder)
		fb.DoubleListAddItems(b.Builder, items)
		payload = fb.DoubleListEnd(b.Builder)
	case KindBoolList:
		items := b.bools(v.Bools)
		fb.BoolListStart(b.Builder)
		fb.BoolListAddItems(b.Builder, items)
		payload = fb.BoolListEnd(b.Builder)
	case KindTensorList:
		items := b.int32s(v.Items)
		fb.TensorListStart(b.Builder)
		fb.TensorListAddItems(b.Builder, items)
		payload = fb.TensorListEnd(b.Builder)
	case KindOptionalTensorList:
		items := b.int32s(v.Items)
		fb.OptionalTensorListStart(b.Builder)
		fb.OptionalTensorListAddItems(b.Builder, items)
		payload = fb.OptionalTensorListEnd(b.Builder)
	}
	fb.EValueStart(b.Builder)
	fb.EValueAddValType(b.Builder, fb.KernelTypes(v.Kind))
	if payload != 0 {
		fb.EValueAddVal(b.Builder, payload)
	}
	return fb.EValueEnd(b.Builder), nil
}

func (b builder) tensor(t *Tensor) uoff {
	sizes := b.int32s(t.Sizes)
	dimOrder := t.DimOrder
	if dimOrder == nil {
		dimOrder = contiguous(len(t.Sizes))
	}
	dims := b.bytesAligned(dimOrder, 1)
	var extra uoff
	if t.Extra != nil {
		fqn := b.CreateString(t.Extra.FullyQualifiedName)
		fb.ExtraTensorInfoStart(b.Builder)
		fb.ExtraTensorInfoAddMutableDataSegmentsIdx(b.Builder, t.Extra.MutableDataSegmentsIdx)
		fb.ExtraTensorInfoAddFullyQualifiedName(b.Builder, fqn)
		fb.ExtraTensorInfoAddLocation(b.Builder, fb.TensorDataLocation(t.Extra.Location))
		extra = fb.ExtraTensorInfoEnd(b.Builder)
	}
	var alloc uoff
	if t.Alloc != nil {
		fb.AllocationDetailsStart(b.Builder)
		fb.AllocationDetailsAddMemoryId(b.Builder, t.Alloc.MemoryID)
		fb.AllocationDetailsAddMemoryOffsetLow(b.Builder, uint32(t.Alloc.Offset))
		fb.AllocationDetailsAddMemoryOffsetHigh(b.Builder, uint32(t.Alloc.Offset>>32))
		alloc = fb.AllocationDetailsEnd(b.Builder)
	}
	fb.TensorStart(b.Builder)
	fb.TensorAddScalarType(b.Builder, fb.ScalarType(t.Type))
	fb.TensorAddStorageOffset(b.Builder, t.StorageOffset)
	fb.TensorAddSizes(b.Builder, sizes)
	fb.TensorAddDimOrder(b.Builder, dims)
	fb.TensorAddRequiresGrad(b.Builder, t.RequiresGrad)
	fb.TensorAddDataBufferIdx(b.Builder, t.DataBufferIdx)
	if alloc != 0 {
		fb.TensorAddAllocationInfo(b.Builder, alloc)
	}
	fb.TensorAddLayout(b.Builder, t.Layout)
	fb.TensorAddShapeDynamism(b.Builder, fb.TensorShapeDynamism(t.ShapeDynamism))
	if extra != 0 {
		fb.TensorAddExtraTensorInfo(b.Builder, extra)
	}
	return fb.TensorEnd(b.Builder)
}
