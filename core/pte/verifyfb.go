package pte

import (
	"encoding/binary"
	"fmt"
)

// A FlatBuffer verifier driven by a description of lorapte's schema subset. It
// checks what the runtime's Verifier checks (pte.md §1.1, §6 F8): every offset
// in bounds, uoffsets and length prefixes 4-aligned, scalars aligned to their
// size, vtables 2-aligned and well formed, strings NUL-terminated, nesting
// depth, table count. Only after it passes do the generated accessors run.

type fieldKind uint8

const (
	fScalar    fieldKind = iota // size bytes inline
	fString                     // uoffset to string
	fTable                      // uoffset to table
	fVecScalar                  // uoffset to vector of size-byte scalars
	fVecTable                   // uoffset to vector of uoffsets to tables
	fUnion                      // uoffset to union member; type byte is the previous field
)

type fieldDesc struct {
	name    string
	kind    fieldKind
	size    int
	table   *tableDesc
	members []*tableDesc // union members; type code = index + 1
}

type tableDesc struct {
	name   string
	fields []fieldDesc // index = field id
}

func scalar(name string, size int) fieldDesc { return fieldDesc{name: name, kind: fScalar, size: size} }
func str(name string) fieldDesc              { return fieldDesc{name: name, kind: fString} }
func vec(name string, size int) fieldDesc    { return fieldDesc{name: name, kind: fVecScalar, size: size} }
func tbl(name string, t *tableDesc) fieldDesc {
	return fieldDesc{name: name, kind: fTable, table: t}
}
func tvec(name string, t *tableDesc) fieldDesc {
	return fieldDesc{name: name, kind: fVecTable, table: t}
}
func union(name string, members ...*tableDesc) []fieldDesc {
	return []fieldDesc{scalar(name+"_type", 1), {name: name, kind: fUnion, members: members}}
}
func fields(f ...fieldDesc) []fieldDesc { return f }

// The schema description; must match schema/program.fbs field for field.
var (
	tdContainerMetadata = &tableDesc{"ContainerMetadata", fields(str("encoded_inp_str"), str("encoded_out_str"))}
	tdNull              = &tableDesc{"Null", nil}
	tdAllocation        = &tableDesc{"AllocationDetails", fields(scalar("memory_id", 4), scalar("memory_offset_low", 4), scalar("memory_offset_high", 4))}
	tdExtraTensorInfo   = &tableDesc{"ExtraTensorInfo", fields(scalar("mutable_data_segments_idx", 8), str("fully_qualified_name"), scalar("location", 1))}
	tdTensor            = &tableDesc{"Tensor", fields(
		scalar("scalar_type", 1), scalar("storage_offset", 4), vec("sizes", 4), vec("dim_order", 1),
		scalar("requires_grad", 1), scalar("data_buffer_idx", 4), tbl("allocation_info", tdAllocation),
		scalar("layout", 1), scalar("shape_dynamism", 1), tbl("extra_tensor_info", tdExtraTensorInfo))}
	tdInt                = &tableDesc{"Int", fields(scalar("int_val", 8))}
	tdBool               = &tableDesc{"Bool", fields(scalar("bool_val", 1))}
	tdDouble             = &tableDesc{"Double", fields(scalar("double_val", 8))}
	tdString             = &tableDesc{"String", fields(str("string_val"))}
	tdIntList            = &tableDesc{"IntList", fields(vec("items", 8))}
	tdDoubleList         = &tableDesc{"DoubleList", fields(vec("items", 8))}
	tdBoolList           = &tableDesc{"BoolList", fields(vec("items", 1))}
	tdTensorList         = &tableDesc{"TensorList", fields(vec("items", 4))}
	tdOptionalTensorList = &tableDesc{"OptionalTensorList", fields(vec("items", 4))}
	tdEValue             = &tableDesc{"EValue", union("val", tdNull, tdInt, tdBool, tdDouble, tdTensor, tdString,
		tdIntList, tdDoubleList, tdBoolList, tdTensorList, tdOptionalTensorList)}
	tdOperator      = &tableDesc{"Operator", fields(str("name"), str("overload"))}
	tdKernelCall    = &tableDesc{"KernelCall", fields(scalar("op_index", 4), vec("args", 4))}
	tdDelegateCall  = &tableDesc{"DelegateCall", fields(scalar("delegate_index", 4), vec("args", 4))}
	tdMoveCall      = &tableDesc{"MoveCall", fields(scalar("move_from", 4), scalar("move_to", 4))}
	tdJumpFalseCall = &tableDesc{"JumpFalseCall", fields(scalar("cond_value_index", 4), scalar("destination_instruction", 4))}
	tdFreeCall      = &tableDesc{"FreeCall", fields(scalar("value_index", 4))}
	tdInstruction   = &tableDesc{"Instruction", union("instr_args", tdKernelCall, tdDelegateCall, tdMoveCall, tdJumpFalseCall, tdFreeCall)}
	tdFrame         = &tableDesc{"Frame", fields(str("filename"), scalar("lineno", 4), str("name"), str("context"))}
	tdFrameList     = &tableDesc{"FrameList", fields(tvec("items", tdFrame))}
	tdChain         = &tableDesc{"Chain", fields(vec("inputs", 4), vec("outputs", 4), tvec("instructions", tdInstruction), tvec("stacktrace", tdFrameList))}
	tdDataRef       = &tableDesc{"BackendDelegateDataReference", fields(scalar("location", 1), scalar("index", 4))}
	tdCompileSpec   = &tableDesc{"CompileSpec", fields(str("key"), vec("value", 1))}
	tdDelegate      = &tableDesc{"BackendDelegate", fields(str("id"), tbl("processed", tdDataRef), tvec("compile_specs", tdCompileSpec))}
	tdPlan          = &tableDesc{"ExecutionPlan", fields(
		str("name"), tbl("container_meta_type", tdContainerMetadata), tvec("values", tdEValue),
		vec("inputs", 4), vec("outputs", 4), tvec("chains", tdChain), tvec("operators", tdOperator),
		tvec("delegates", tdDelegate), vec("non_const_buffer_sizes", 8))}
	tdBuffer     = &tableDesc{"Buffer", fields(vec("storage", 1))}
	tdInlineData = &tableDesc{"BackendDelegateInlineData", fields(vec("data", 1))}
	tdSegment    = &tableDesc{"DataSegment", fields(scalar("offset", 8), scalar("size", 8))}
	tdSubsegment = &tableDesc{"SubsegmentOffsets", fields(scalar("segment_index", 4), vec("offsets", 8))}
	tdNamedData  = &tableDesc{"NamedData", fields(str("key"), scalar("segment_index", 4))}
	tdProgram    = &tableDesc{"Program", fields(
		scalar("version", 4), tvec("execution_plan", tdPlan), tvec("constant_buffer", tdBuffer),
		tvec("backend_delegate_data", tdInlineData), tvec("segments", tdSegment),
		tbl("constant_segment", tdSubsegment), tvec("mutable_data_segments", tdSubsegment),
		tvec("named_data", tdNamedData))}
)

const (
	maxDepth  = 64
	maxTables = 1000000
)

type fbVerifier struct {
	buf    []byte
	n      int64
	tables int
	// maxTables and budget bound the work (and the decoder's allocations) for
	// buffers whose offsets make subtrees shared many times: a table takes at
	// least 4 bytes and a vector element at least 1, so honest buffers stay far
	// below these limits.
	maxTables int
	budget    int64
}

// verifyFlatBuffer checks buf (the program region, header included) from the
// root offset at byte 0.
func verifyFlatBuffer(buf []byte) error {
	v := &fbVerifier{buf: buf, n: int64(len(buf))}
	if v.n < 8 {
		return fmt.Errorf("buffer of %d bytes is shorter than 8", v.n)
	}
	if v.n >= 1<<31 {
		return fmt.Errorf("program region of %d bytes is 2 GiB or larger", v.n)
	}
	v.maxTables = min(maxTables, len(buf)/4+64)
	v.budget = 4*v.n + 4096
	root, err := v.deref(0, "root offset")
	if err != nil {
		return err
	}
	return v.table(root, tdProgram, 0)
}

func (v *fbVerifier) need(pos, size int64, what string) error {
	if pos < 0 || size < 0 || pos > v.n || size > v.n-pos {
		return fmt.Errorf("%s: range [%d,+%d) outside the %d-byte buffer", what, pos, size, v.n)
	}
	return nil
}

func aligned(pos int64, a int) bool { return a <= 1 || pos%int64(a) == 0 }

func (v *fbVerifier) u32(pos int64) uint32 { return binary.LittleEndian.Uint32(v.buf[pos:]) }
func (v *fbVerifier) u16(pos int64) uint16 { return binary.LittleEndian.Uint16(v.buf[pos:]) }

// deref follows the uoffset stored at pos.
func (v *fbVerifier) deref(pos int64, what string) (int64, error) {
	if err := v.need(pos, 4, what); err != nil {
		return 0, err
	}
	if !aligned(pos, 4) {
		return 0, fmt.Errorf("%s: uoffset at %d not 4-aligned", what, pos)
	}
	off := v.u32(pos)
	if off == 0 || off >= 1<<31 {
		return 0, fmt.Errorf("%s: bad uoffset %d at %d", what, off, pos)
	}
	tgt := pos + int64(off)
	if err := v.need(tgt, 1, what); err != nil {
		return 0, err
	}
	return tgt, nil
}

// vector checks a length-prefixed vector (or string) at pos and returns its length.
func (v *fbVerifier) vector(pos int64, elemSize int, what string) (int64, error) {
	if err := v.need(pos, 4, what); err != nil {
		return 0, err
	}
	if !aligned(pos, 4) {
		return 0, fmt.Errorf("%s: length prefix at %d not 4-aligned", what, pos)
	}
	ln := int64(v.u32(pos))
	if err := v.need(pos+4, ln*int64(elemSize), what); err != nil {
		return 0, err
	}
	v.budget -= ln
	if v.budget < 0 {
		return 0, fmt.Errorf("%s: vectors and strings add up to more data than the buffer can hold (shared subtrees?)", what)
	}
	return ln, nil
}

// table verifies the table at pos. Errors name the path from the root, e.g.
// "execution_plan[0].values[2].val.sizes: ...".
func (v *fbVerifier) table(pos int64, d *tableDesc, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("nested deeper than %d", maxDepth)
	}
	v.tables++
	if v.tables > v.maxTables {
		return fmt.Errorf("more than %d tables", v.maxTables)
	}
	if err := v.need(pos, 4, d.name); err != nil {
		return err
	}
	if !aligned(pos, 4) {
		return fmt.Errorf("%s table at %d not 4-aligned", d.name, pos)
	}
	vt := pos - int64(int32(v.u32(pos)))
	if err := v.need(vt, 4, d.name+" vtable"); err != nil {
		return err
	}
	if !aligned(vt, 2) {
		return fmt.Errorf("%s vtable at %d not 2-aligned", d.name, vt)
	}
	vtSize, tSize := int64(v.u16(vt)), int64(v.u16(vt+2))
	if vtSize < 4 || vtSize%2 != 0 {
		return fmt.Errorf("%s vtable at %d: bad vtable size %d", d.name, vt, vtSize)
	}
	if err := v.need(vt, vtSize, d.name+" vtable"); err != nil {
		return err
	}
	if tSize < 4 {
		return fmt.Errorf("%s table at %d: bad table size %d", d.name, pos, tSize)
	}
	if err := v.need(pos, tSize, d.name+" table body"); err != nil {
		return err
	}
	slot := func(id int) int64 {
		e := int64(4 + 2*id)
		if e >= vtSize {
			return 0
		}
		return int64(v.u16(vt + e))
	}
	for id, f := range d.fields {
		off := slot(id)
		if off == 0 {
			continue
		}
		if err := v.field(pos, off, id, f, slot, depth); err != nil {
			sep := "."
			if f.kind == fVecTable {
				sep = "" // the element index follows
			}
			return fmt.Errorf("%s%s%w", f.name, sep, err)
		}
	}
	return nil
}

func (v *fbVerifier) field(pos, off int64, id int, f fieldDesc, slot func(int) int64, depth int) error {
	fp := pos + off
	if f.kind == fScalar {
		if err := v.need(fp, int64(f.size), "scalar"); err != nil {
			return err
		}
		if !aligned(fp, f.size) {
			return fmt.Errorf("scalar at %d not %d-aligned", fp, f.size)
		}
		return nil
	}
	tgt, err := v.deref(fp, "offset")
	if err != nil {
		return err
	}
	switch f.kind {
	case fString:
		ln, err := v.vector(tgt, 1, "string")
		if err != nil {
			return err
		}
		if err := v.need(tgt+4+ln, 1, "string terminator"); err != nil {
			return err
		}
		if v.buf[tgt+4+ln] != 0 {
			return fmt.Errorf("string at %d not NUL-terminated", tgt)
		}
	case fVecScalar:
		_, err := v.vector(tgt, f.size, "vector")
		return err
	case fTable:
		return v.table(tgt, f.table, depth+1)
	case fVecTable:
		ln, err := v.vector(tgt, 4, "vector")
		if err != nil {
			return err
		}
		for k := int64(0); k < ln; k++ {
			et, err := v.deref(tgt+4+4*k, "element offset")
			if err == nil {
				err = v.table(et, f.table, depth+1)
			}
			if err != nil {
				return fmt.Errorf("[%d].%w", k, err)
			}
		}
	case fUnion:
		var typ int64
		if to := slot(id - 1); to != 0 {
			typ = int64(v.buf[pos+to]) // in bounds: checked as the previous field
		}
		// NONE or an unknown member: nothing to verify beyond the offset (the
		// decoder reads no payload then, and Verify reports the type).
		if typ >= 1 && typ <= int64(len(f.members)) {
			return v.table(tgt, f.members[typ-1], depth+1)
		}
	}
	return nil
}
