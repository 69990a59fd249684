package pte

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"lorapte/core/inmemfs"
)

// Size caps for the small texts Verify reads out of segments.
const (
	maxCMJR     = 1 << 20
	maxMetaJSON = 16 << 20
	maxSpec     = 64 << 20
)

// ComputeUnits are the values the Core ML runtime accepts for the
// "compute_units" compile spec (pte.md §3.5).
var ComputeUnits = []string{"all", "cpu_and_gpu", "cpu_and_ne", "cpu_only"}

// Failures keeps the findings that are not warnings.
func Failures(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if !f.Warn {
			out = append(out, f)
		}
	}
	return out
}

type verifier struct {
	f     *File
	out   []Finding
	blobs map[string]*blobInfo
}

func (v *verifier) fail(id, format string, args ...any) {
	v.out = append(v.out, Finding{ID: id, Msg: fmt.Sprintf(format, args...)})
}

func (v *verifier) warn(id, format string, args ...any) {
	v.out = append(v.out, Finding{ID: id, Msg: fmt.Sprintf(format, args...), Warn: true})
}

// Verify runs every check of pte.md §6 that needs no Apple device (F, P, S, C,
// N, M, V, T, I, D, K and B1–B11) and returns the failures and warnings found
// (none for a good file). Segments are read through the File's reader, but
// only small parts: CMJR payloads, the blob's trailer, metadata.json, the
// Manifest and the model spec.
func Verify(f *File) []Finding {
	v := &verifier{f: f, blobs: map[string]*blobInfo{}}
	v.header()
	v.out = append(v.out, f.notes...)
	v.program()
	for i := range f.Program.Methods {
		v.method(i)
	}
	return v.out
}

func (v *verifier) header() {
	f := v.f
	if f.size < 64 {
		v.fail("F1", "file is %d bytes; the runtime's header probe reads 64", f.size)
	}
	if f.Identifier != FileIdentifier {
		v.fail("F2", "file identifier %q, the runtime expects %q", f.Identifier, FileIdentifier)
	}
	if !f.HasHeader {
		if len(f.SegmentTable) > 0 {
			v.fail("F3", "no %q extended header, but the program has %d segments", HeaderMagic, len(f.SegmentTable))
		}
		return
	}
	if f.HeaderLength < HeaderLength {
		v.warn("F3", "extended header length %d: no segment_data_size (pre-1.0 layout)", f.HeaderLength)
	}
	ps, base, sds := f.ProgramSize, f.SegmentBaseOffset, f.SegmentDataSize
	if sds > 0 || base == 0 {
		want := ps
		if base != 0 {
			want = base + sds
			if want < base {
				want = ^uint64(0)
			}
		}
		if want > uint64(f.size) {
			v.fail("F5", "file size %d is smaller than %d from the header (runtime: \"File size is too small\")", f.size, want)
		}
	}
	if base != 0 {
		if base < ps {
			v.fail("F6", "segment_base_offset %d < program_size %d: segments overlap the FlatBuffer", base, ps)
		} else if base%SegmentAlignment != 0 {
			v.warn("F6", "segment_base_offset %d is not %d-aligned", base, SegmentAlignment)
		}
	}
}

func (v *verifier) program() {
	f, p := v.f, &v.f.Program
	seen := map[string]bool{}
	for _, m := range p.Methods {
		if seen[m.Name] {
			v.fail("P2", "duplicate method name %q: only the first is reachable", m.Name)
		}
		seen[m.Name] = true
	}

	for i, s := range f.SegmentTable {
		if off := f.SegmentOffset(i); !f.HasHeader || f.SegmentBaseOffset == 0 || off < 0 || off > f.size || s.Size > uint64(f.size-off) {
			v.fail("S1", "segment %d (offset %d, size %d) lies outside the file or there is no segment base", i, s.Offset, s.Size)
		} else if f.SegmentDataSize > 0 && s.Offset+s.Size > f.SegmentDataSize {
			v.warn("S1", "segment %d ends at %d, beyond segment_data_size %d", i, s.Offset+s.Size, f.SegmentDataSize)
		}
		if s.Offset%SegmentAlignment != 0 {
			v.warn("S2", "segment %d offset %d is not %d-aligned", i, s.Offset, SegmentAlignment)
		}
		if i > 0 {
			prev := f.SegmentTable[i-1]
			if s.Offset < prev.Offset {
				v.warn("S2", "segment %d starts before segment %d (not sorted)", i, i-1)
			} else if s.Offset < prev.Offset+prev.Size {
				v.fail("S3", "segment %d overlaps segment %d", i, i-1)
			}
		}
	}

	offs := p.ConstantOffsets
	switch {
	case !f.HasConstantSegment || len(offs) == 0:
		v.warn("C1", "constant_segment missing or without offsets: the runtime takes the deprecated constant_buffer path")
	case len(offs) > 1:
		if len(f.ConstantBufferSizes) > 0 {
			v.fail("C1", "constant_buffer has %d entries while constant_segment is used", len(f.ConstantBufferSizes))
		}
		if offs[0] != 0 {
			v.warn("C1", "constant_segment.offsets[0] = %d, the placeholder is 0", offs[0])
		}
		if p.ConstantSegment >= len(f.SegmentTable) {
			v.fail("C2", "constant_segment.segment_index %d >= %d segments", p.ConstantSegment, len(f.SegmentTable))
			break
		}
		size := f.SegmentTable[p.ConstantSegment].Size
		for k, o := range offs {
			if o > size {
				v.fail("C3", "constant offset [%d] = %d beyond the %d-byte constant segment", k, o, size)
			}
		}
	}
	for i, m := range f.MutableDataSegments {
		if m.Segment >= len(f.SegmentTable) {
			v.fail("C4", "mutable_data_segments[%d].segment_index %d >= %d segments", i, m.Segment, len(f.SegmentTable))
		}
	}

	keys := map[string]bool{}
	for i, nd := range p.NamedData {
		if keys[nd.Key] {
			v.warn("N3", "duplicate named_data key %q: lookups return the first", nd.Key)
		}
		keys[nd.Key] = true
		if nd.Segment >= len(f.SegmentTable) {
			v.fail("N4", "named_data[%d] %q: segment_index %d >= %d segments", i, nd.Key, nd.Segment, len(f.SegmentTable))
		}
	}
}

// constSegmentSize is the constant segment's size, or -1 if unusable.
func (v *verifier) constSegmentSize() int64 {
	p := &v.f.Program
	if len(p.ConstantOffsets) <= 1 {
		return 0
	}
	if p.ConstantSegment >= len(v.f.SegmentTable) {
		return -1
	}
	return int64(min(v.f.SegmentTable[p.ConstantSegment].Size, 1<<62))
}

func (v *verifier) method(mi int) {
	m := &v.f.Program.Methods[mi]
	w := fmt.Sprintf("method %q", m.Name)
	chains := m.chains()
	if len(chains) == 0 {
		v.fail("M5", "%s: no chains (Method::init \"No chains\")", w)
	}
	ncbs := m.NonConstBufferSizes
	if len(ncbs) > 0 && ncbs[0] != 0 {
		v.warn("M3", "%s: non_const_buffer_sizes[0] = %d (reserved, the exporter writes 0)", w, ncbs[0])
	}
	for i, s := range ncbs {
		if s < 0 {
			v.fail("M3", "%s: non_const_buffer_sizes[%d] = %d is negative", w, i, s)
		}
	}

	nv := len(m.Values)
	for i, ev := range m.Values {
		vw := fmt.Sprintf("%s values[%d]", w, i)
		switch {
		case !ev.Kind.valid():
			v.fail("V2", "%s: union type %d (NONE or unknown; Method::init fails)", vw, ev.Kind)
		case ev.Kind == KindTensor && ev.Tensor != nil:
			v.tensor(ev.Tensor, vw, ncbs)
		case ev.Kind == KindIntList:
			for _, x := range ev.Ints {
				if x < 0 || x >= int64(nv) {
					v.fail("V3", "%s: IntList refers to value %d outside [0,%d)", vw, x, nv)
					break
				}
			}
		case ev.Kind == KindTensorList || ev.Kind == KindOptionalTensorList:
			lo := int32(0)
			if ev.Kind == KindOptionalTensorList {
				lo = -1
			}
			for _, x := range ev.Items {
				if x < lo || int(x) >= nv {
					v.fail("V3", "%s: %s refers to value %d outside [0,%d)", vw, ev.Kind, x, nv)
					break
				}
			}
		}
	}

	for _, l := range []struct {
		name string
		list []int32
	}{{"input", m.Inputs}, {"output", m.Outputs}} {
		for k, x := range l.list {
			if x < 0 || int(x) >= nv {
				v.fail("M7", "%s: %s %d refers to value %d outside [0,%d)", w, l.name, k, x, nv)
				continue
			}
			switch m.Values[x].Kind {
			case KindNull, KindInt, KindDouble, KindBool, KindString, KindTensor:
			default:
				v.fail("M7", "%s: %s %d is a %s (MethodMeta handles Tensor/Int/Double/Bool/String/None only)", w, l.name, k, m.Values[x].Kind)
			}
		}
	}

	inRange := func(x int32) bool { return x >= 0 && int(x) < nv }
	calls := make([][][]int32, len(m.Delegates)) // per delegate: args of each call
	for ci, c := range chains {
		for ii, in := range c.Instructions {
			iw := fmt.Sprintf("%s chain %d instruction %d", w, ci, ii)
			switch in.Kind {
			case InstrKernelCall, InstrDelegateCall:
				for _, x := range in.Args {
					if !inRange(x) {
						v.fail("I3", "%s: %s arg %d outside [0,%d)", iw, in.Kind, x, nv)
						break
					}
				}
				if in.Kind == InstrKernelCall {
					v.warn("I4", "%s: KernelCall needs operator %d's kernel registered (method not fully delegated)", iw, in.Index)
					continue
				}
				if in.Index < 0 || int(in.Index) >= len(m.Delegates) {
					v.fail("I5", "%s: delegate_index %d >= %d delegates", iw, in.Index, len(m.Delegates))
					continue
				}
				calls[in.Index] = append(calls[in.Index], in.Args)
				if m.Delegates[in.Index].ID != CoreMLBackendID {
					continue
				}
				for _, x := range in.Args {
					if inRange(x) && m.Values[x].Kind == KindTensor && m.Values[x].Tensor != nil && !m.Values[x].Tensor.Type.CoreMLBindable() {
						v.fail("I6", "%s: arg value %d has scalar type %d, which the Core ML delegate cannot bind", iw, x, m.Values[x].Tensor.Type)
					}
				}
			case InstrMoveCall:
				if !inRange(in.Index) || !inRange(in.To) {
					v.fail("I3", "%s: MoveCall %d -> %d outside values", iw, in.Index, in.To)
				}
			case InstrJumpFalseCall:
				if !inRange(in.Index) {
					v.fail("I3", "%s: JumpFalseCall condition %d outside values", iw, in.Index)
				}
			case InstrFreeCall:
				if !inRange(in.Index) {
					v.fail("I3", "%s: FreeCall value %d outside values", iw, in.Index)
				}
			default:
				v.fail("I2", "%s: instruction type %d (NONE or unknown)", iw, in.Kind)
			}
		}
	}

	// M8 (advice): every I/O tensor of a delegated method goes through a call.
	if len(m.Delegates) > 0 {
		used := map[int32]bool{}
		for _, cs := range calls {
			for _, args := range cs {
				for _, x := range args {
					used[x] = true
				}
			}
		}
		for k, x := range m.Inputs {
			if inRange(x) && !used[x] {
				v.warn("M8", "%s: input %d (value %d) is passed to no DelegateCall", w, k, x)
			}
		}
		for k, x := range m.Outputs {
			if inRange(x) && m.Values[x].Kind == KindTensor && !used[x] && !contains(m.Inputs, x) {
				v.warn("M8", "%s: output %d (value %d) is written by no DelegateCall", w, k, x)
			}
		}
	}

	for di := range m.Delegates {
		v.delegate(m, di, calls[di])
		if len(calls[di]) == 0 {
			v.warn("D9", "%s: delegate %d is initialised at load but never called", w, di)
		}
	}
}

func contains(xs []int32, x int32) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (v *verifier) tensor(t *Tensor, w string, ncbs []int64) {
	p := &v.f.Program
	for _, s := range t.Sizes {
		if s < 0 {
			v.fail("T2", "%s: negative size in %v", w, t.Sizes)
			break
		}
	}
	if _, ok := t.Type.Size(); !ok {
		v.fail("T3", "%s: scalar_type %d outside 0..29", w, t.Type)
	}
	if len(t.Sizes) > 16 {
		v.fail("T4", "%s: rank %d > 16", w, len(t.Sizes))
	}
	if len(t.DimOrder) != len(t.Sizes) {
		v.fail("T5", "%s: dim_order length %d != rank %d (\"Invalid dim order\")", w, len(t.DimOrder), len(t.Sizes))
	} else {
		seen := make([]bool, len(t.Sizes))
		for _, d := range t.DimOrder {
			if int(d) >= len(seen) || seen[d] {
				v.fail("T5", "%s: dim_order %v is not a permutation of 0..%d (\"Invalid dim order\")", w, t.DimOrder, len(t.Sizes)-1)
				break
			}
			seen[d] = true
		}
	}
	if t.StorageOffset != 0 {
		v.fail("T6", "%s: storage_offset %d != 0", w, t.StorageOffset)
	}
	if t.ShapeDynamism == 2 {
		v.fail("T7", "%s: DYNAMIC_UNBOUND tensors are not supported", w)
	}
	if t.Extra != nil && t.Extra.Location == 1 {
		v.fail("T8", "%s: EXTERNAL tensor %q needs a .ptd file", w, t.Extra.FullyQualifiedName)
	}
	nbytes, ok := t.NBytes()
	if !ok {
		if _, known := t.Type.Size(); known {
			v.fail("T2", "%s: sizes %v give an invalid byte count", w, t.Sizes)
		}
		return
	}
	if t.Alloc != nil {
		id := t.Alloc.MemoryID
		switch {
		case id < 1 || int64(id) >= int64(len(ncbs)):
			v.fail("T9", "%s: allocation_info.memory_id %d not in [1,%d]", w, id, len(ncbs)-1)
		case t.Alloc.Offset > 1<<62 || int64(t.Alloc.Offset)+nbytes > ncbs[id]:
			v.fail("T9", "%s: planned range [%d,+%d) exceeds non_const_buffer_sizes[%d] = %d", w, t.Alloc.Offset, nbytes, id, ncbs[id])
		}
		if k := t.DataBufferIdx; k > 0 && (len(v.f.MutableDataSegments) == 0 || int(k) >= len(v.f.MutableDataSegments[0].Offsets)) {
			v.fail("T10", "%s: data_buffer_idx %d with allocation_info needs mutable_data_segments[0].offsets[%d]", w, k, k)
		}
		return
	}
	k := t.DataBufferIdx
	if k == 0 {
		return
	}
	if offs := p.ConstantOffsets; len(offs) > 1 {
		size := v.constSegmentSize()
		switch {
		case int(k) >= len(offs):
			v.fail("T10", "%s: data_buffer_idx %d >= %d constant offsets", w, k, len(offs))
		case size < 0:
			// C2 already failed.
		case offs[k] > uint64(size) || nbytes > size-int64(offs[k]):
			v.fail("T10", "%s: constant [%d,+%d) exceeds the %d-byte constant segment (\"Constant segment offset invalid\")", w, offs[k], nbytes, size)
		}
		return
	}
	if int(k) >= len(v.f.ConstantBufferSizes) || int64(v.f.ConstantBufferSizes[k]) < nbytes {
		v.fail("T10", "%s: data_buffer_idx %d has no backing constant data", w, k)
	}
}

func (v *verifier) delegate(m *Method, di int, calls [][]int32) {
	d := m.Delegates[di]
	w := fmt.Sprintf("method %q delegate %d", m.Name, di)
	if d.ID != "" && d.ID != CoreMLBackendID {
		v.warn("D1", "%s: backend %q is not %q; it must be registered in the runtime", w, d.ID, CoreMLBackendID)
	}
	for k, s := range d.CompileSpecs {
		if s.Key == "compute_units" && !containsString(ComputeUnits, string(s.Value)) {
			v.fail("D3", "%s: compile_specs[%d] compute_units %q not one of %v (\"Invalid compute_unit value\")", w, k, s.Value, ComputeUnits)
		}
	}
	if d.Segment < 0 {
		return // D2 noted while decoding
	}
	var payload io.ReaderAt
	var size int64
	var blobKey string
	if d.Inline {
		if d.Segment >= len(v.f.Program.InlineData) {
			v.fail("D2", "%s: INLINE index %d >= %d backend_delegate_data entries", w, d.Segment, len(v.f.Program.InlineData))
			return
		}
		data := v.f.Program.InlineData[d.Segment]
		payload, size, blobKey = bytes.NewReader(data), int64(len(data)), fmt.Sprintf("inline %d", d.Segment)
	} else {
		sr, err := v.f.Segment(d.Segment)
		if err != nil {
			v.fail("D2", "%s: SEGMENT %d unreadable: %v", w, d.Segment, err)
			return
		}
		payload, size, blobKey = sr, sr.Size(), fmt.Sprintf("segment %d", d.Segment)
	}
	if d.ID != CoreMLBackendID {
		return
	}
	v.coreML(m, w, payload, size, blobKey, calls)
}

func containsString(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// blobInfo caches a parsed Core ML blob shared by several delegates.
type blobInfo struct {
	fs      *inmemfs.FS
	err     error
	md      *Metadata
	mdErr   error
	spec    []byte // model spec bytes when readable (for B11)
	specErr error
	manPath string
}

func (v *verifier) coreML(m *Method, w string, payload io.ReaderAt, size int64, payloadKey string, calls [][]int32) {
	var magic [4]byte
	isRef := size >= 4 && readFull(payload, magic[:], 0) == nil && string(magic[:]) == CMJRMagic
	var functionName string
	blob, blobSize, blobKey := payload, size, payloadKey
	if isRef {
		if size > maxCMJR {
			v.fail("K1", "%s: CMJR reference of %d bytes is implausibly large", w, size)
			return
		}
		data := make([]byte, size)
		if err := readFull(payload, data, 0); err != nil {
			v.fail("K1", "%s: reading CMJR reference: %v", w, err)
			return
		}
		ref, err := ParseCMJR(data)
		if err != nil {
			var fd Finding
			if errors.As(err, &fd) {
				v.fail(fd.ID, "%s: %s", w, fd.Msg)
			} else {
				v.fail("K1", "%s: %v", w, err)
			}
			return
		}
		if ref.Version != 1 {
			v.warn("K1", "%s: CMJR version %d (the exporter writes 1; ignored by the runtime)", w, ref.Version)
		}
		functionName = ref.FunctionName
		idx := -1
		for _, nd := range v.f.Program.NamedData {
			if nd.Key == ref.Key {
				idx = nd.Segment
				break
			}
		}
		if idx < 0 {
			v.fail("K3", "%s: CMJR key %q not in named_data (\"Failed to load model data from NamedDataStore\")", w, ref.Key)
			return
		}
		sr, err := v.f.Segment(idx)
		if err != nil {
			v.fail("K4", "%s: named data %q unreadable: %v", w, ref.Key, err)
			return
		}
		blob, blobSize, blobKey = sr, sr.Size(), fmt.Sprintf("segment %d", idx)
	}

	bi := v.blob(blobKey, blob, blobSize)
	if bi.err != nil {
		v.fail("B1", "%s: model blob is not a valid flattened directory: %v", w, bi.err)
		return
	}
	if bi.mdErr != nil {
		v.fail("B2", "%s: %v (\"Metadata is invalid or missing\")", w, bi.mdErr)
		return
	}
	md := bi.md
	if md.Identifier == "" {
		v.fail("B3", "%s: metadata.json has no identifier", w)
	} else if bytes.ContainsRune([]byte(md.Identifier), '/') || md.Identifier == "." || md.Identifier == ".." {
		v.fail("B3", "%s: identifier %q is used as a file name and must not contain '/'", w, md.Identifier)
	}
	var in, out []string
	if md.Methods != nil {
		var empty []string
		for name, mio := range md.Methods {
			if len(mio.OutputNames) == 0 {
				empty = append(empty, name)
			}
		}
		if len(empty) > 0 {
			sort.Strings(empty)
			v.fail("B4", "%s: metadata methods %q have no outputNames", w, empty)
		}
		mio, ok := md.Methods[m.Name]
		if !ok {
			v.fail("B5", "%s: metadata.json methods has no entry for %q (\"Method not found in multifunction model metadata\")", w, m.Name)
			return
		}
		if functionName == "" {
			v.fail("B6", "%s: multifunction model but the CMJR reference has no functionName", w)
		}
		in, out = mio.InputNames, mio.OutputNames
	} else {
		in, out = md.InputNames, md.OutputNames
		if len(out) == 0 {
			v.fail("B4", "%s: single-function metadata without outputNames", w)
		}
	}
	for _, l := range []struct {
		name  string
		names []string
	}{{"inputNames", in}, {"outputNames", out}} {
		seen := map[string]bool{}
		for _, n := range l.names {
			if n == "" {
				v.fail("B7", "%s: %s has an empty or non-string name: %q", w, l.name, l.names)
				break
			}
			if seen[n] {
				v.fail("B7", "%s: %s has duplicate %q", w, l.name, n)
				break
			}
			seen[n] = true
		}
	}
	for ci, args := range calls {
		if len(args) != len(in)+len(out) {
			v.fail("B8", "%s: DelegateCall %d has %d args, metadata names %d inputs + %d outputs", w, ci, len(args), len(in), len(out))
		}
	}
	switch {
	case bi.fs.IsDir("model.mlmodelc"):
	case bi.fs.IsDir("model.mlpackage"):
		if bi.specErr != nil {
			v.fail("B10", "%s: %v", w, bi.specErr)
			return
		}
		if functionName != "" && md.Methods != nil && !bytes.Contains(bi.spec, []byte(functionName)) {
			v.warn("B11", "%s: function name %q not found in %s", w, functionName, bi.manPath)
		}
		for _, n := range append(append([]string{}, in...), out...) {
			if n != "" && !bytes.Contains(bi.spec, []byte(n)) {
				v.warn("B11", "%s: I/O name %q not found in %s", w, n, bi.manPath)
			}
		}
	default:
		v.fail("B9", "%s: neither model.mlmodelc/ nor model.mlpackage/ at the blob root (\"AOT blob is missing model file\")", w)
	}
}

func (v *verifier) blob(key string, r io.ReaderAt, size int64) *blobInfo {
	if bi, ok := v.blobs[key]; ok {
		return bi
	}
	bi := &blobInfo{}
	v.blobs[key] = bi
	bi.fs, bi.err = inmemfs.Open(r, size)
	if bi.err != nil {
		return bi
	}
	raw, err := readSmall(bi.fs, "metadata.json", maxMetaJSON)
	switch {
	case err != nil:
		bi.mdErr = err
	case len(raw) == 0:
		bi.mdErr = errors.New("metadata.json is empty")
	default:
		bi.md, bi.mdErr = ParseMetadata(raw)
	}
	if bi.fs.IsDir("model.mlpackage") {
		bi.spec, bi.manPath, bi.specErr = modelSpec(bi.fs)
	}
	return bi
}

func readSmall(fs *inmemfs.FS, path string, limit int64) ([]byte, error) {
	e, ok := fs.Stat(path)
	if !ok {
		return nil, fmt.Errorf("no %s in the blob", path)
	}
	if e.Size > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", path, e.Size, limit)
	}
	r, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	data := make([]byte, e.Size)
	if err := readFull(r, data, 0); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}

// modelSpec follows Manifest.json's rootModelIdentifier to the model spec
// (B10) and returns its bytes for the name heuristics of B11.
func modelSpec(fs *inmemfs.FS) ([]byte, string, error) {
	raw, err := readSmall(fs, "model.mlpackage/Manifest.json", maxMetaJSON)
	if err != nil {
		return nil, "", err
	}
	var man struct {
		Root  string `json:"rootModelIdentifier"`
		Items map[string]struct {
			Path string `json:"path"`
		} `json:"itemInfoEntries"`
	}
	if err := json.Unmarshal(raw, &man); err != nil {
		return nil, "", fmt.Errorf("model.mlpackage/Manifest.json unreadable: %v", err)
	}
	item, ok := man.Items[man.Root]
	if !ok || item.Path == "" {
		return nil, "", fmt.Errorf("Manifest rootModelIdentifier %q does not name an itemInfoEntries path", man.Root)
	}
	path := "model.mlpackage/Data/" + item.Path
	spec, err := readSmall(fs, path, maxSpec)
	if err != nil {
		return nil, path, fmt.Errorf("Manifest root model: %v", err)
	}
	return spec, path, nil
}
