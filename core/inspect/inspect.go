// Package inspect decodes any ExecuTorch .pte with Core ML delegates (ours
// or the Python exporter's) into a report: methods and their I/O, constant
// values, delegates and the Core ML models they reference, weight blobs and
// how many functions share each, and a size breakdown. With verification
// it also runs every check of pte.md §6 and the package, MIL and weight
// checks of coreml.md.
package inspect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"lorapte/core/coremlspec/coremlpb"
	"lorapte/core/inmemfs"
	"lorapte/core/mil"
	"lorapte/core/milblob"
	"lorapte/core/mlpackage"
	"lorapte/core/pte"
	"lorapte/core/quant"
)

// Tensor is a tensor value's type.
type Tensor struct {
	DType string  `json:"dtype"`
	Shape []int32 `json:"shape"`
}

// Delegate is one backend call of a method.
type Delegate struct {
	Backend      string            `json:"backend"`
	Segment      int               `json:"segment"`
	Key          string            `json:"key,omitempty"`
	Function     string            `json:"function,omitempty"`
	CompileSpecs map[string]string `json:"compile_specs,omitempty"`
}

// Method is an executable or constant method.
type Method struct {
	Name      string     `json:"name"`
	Constant  bool       `json:"constant"`
	Inputs    []Tensor   `json:"inputs,omitempty"`
	Outputs   []Tensor   `json:"outputs,omitempty"`
	Delegates []Delegate `json:"delegates,omitempty"`
	Values    []any      `json:"values,omitempty"` // constant methods: the returned values
}

// Blob is one weight blob of a Core ML model.
type Blob struct {
	Offset    uint64   `json:"offset"`
	DType     string   `json:"dtype"`
	Bytes     int64    `json:"bytes"`
	Functions []string `json:"functions"`
}

// Function is one Core ML function.
type Function struct {
	Name    string         `json:"name"`
	Inputs  []string       `json:"inputs"`
	Outputs []string       `json:"outputs"`
	Ops     map[string]int `json:"ops"`
}

// Model is one Core ML model stored as named data.
type Model struct {
	Key        string     `json:"key"`
	Segment    int        `json:"segment"`
	Identifier string     `json:"identifier"`
	Files      []File     `json:"files"`
	Functions  []Function `json:"functions"`
	Blobs      []Blob     `json:"blobs"`
	WeightSize int64      `json:"weight_bytes"`
}

// File is a file of the flattened directory.
type File struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// Sizes breaks the file down.
type Sizes struct {
	Total     int64            `json:"total"`
	Program   int64            `json:"program"`   // FlatBuffer + header + padding
	Constants int64            `json:"constants"` // constant segment
	Models    int64            `json:"models"`    // named-data blobs
	Weights   int64            `json:"weights"`   // weight.bin data of all models
	Base      int64            `json:"base"`      // blob bytes used by base methods
	Adapters  map[string]int64 `json:"adapters"`  // blob bytes used only by one adapter's methods
	Overhead  int64            `json:"overhead"`  // everything else
}

// Finding is a failed (or warned) check.
type Finding struct {
	ID   string `json:"id"`
	Msg  string `json:"msg"`
	Warn bool   `json:"warn,omitempty"`
}

// Report is what inspect shows.
type Report struct {
	Size      int64       `json:"size"`
	Methods   []Method    `json:"methods"`
	NamedData []NamedData `json:"named_data"`
	Models    []Model     `json:"models"`
	Sizes     Sizes       `json:"sizes"`
	Findings  []Finding   `json:"findings,omitempty"`
	Verified  bool        `json:"verified"`
}

// NamedData is one named-data entry.
type NamedData struct {
	Key     string `json:"key"`
	Segment int    `json:"segment"`
	Size    int64  `json:"size"`
}

// Failed reports whether any check failed (warnings do not count).
func (r *Report) Failed() bool {
	for _, f := range r.Findings {
		if !f.Warn {
			return true
		}
	}
	return false
}

// Inspect decodes the file; with verify it also runs every check.
func Inspect(r io.ReaderAt, size int64, verify bool) (*Report, error) {
	f, err := pte.Read(r, size)
	if err != nil {
		return nil, err
	}
	rep := &Report{Size: size, Verified: verify}
	if verify {
		for _, x := range pte.Verify(f) {
			rep.Findings = append(rep.Findings, Finding{x.ID, x.Msg, x.Warn})
		}
	}
	prog := &f.Program
	for _, nd := range prog.NamedData {
		var sz int64
		if nd.Segment >= 0 && nd.Segment < len(prog.Segments) {
			sz = prog.Segments[nd.Segment]
		}
		rep.NamedData = append(rep.NamedData, NamedData{nd.Key, nd.Segment, sz})
	}
	models := map[string]*Model{}
	for _, m := range prog.Methods {
		rep.Methods = append(rep.Methods, describeMethod(f, &m, models))
	}
	for _, nd := range rep.NamedData {
		if m, ok := models[nd.Key]; ok {
			m.Segment = nd.Segment
		}
	}
	keys := make([]string, 0, len(models))
	for k, m := range models {
		if m.Segment >= 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return models[keys[i]].Segment < models[keys[j]].Segment })
	for _, k := range keys {
		m := models[k]
		if err := describeModel(f, m, rep, verify); err != nil {
			rep.Findings = append(rep.Findings, Finding{ID: "B1", Msg: fmt.Sprintf("Core ML model %s: %v", k, err)})
		}
		rep.Models = append(rep.Models, *m)
	}
	rep.Sizes = sizes(f, rep)
	return rep, nil
}

func dtypeName(t pte.ScalarType) string {
	switch t {
	case pte.Byte:
		return "uint8"
	case pte.Char:
		return "int8"
	case pte.Short:
		return "int16"
	case pte.Int:
		return "int32"
	case pte.Long:
		return "int64"
	case pte.Half:
		return "float16"
	case pte.Float:
		return "float32"
	case pte.Double:
		return "float64"
	case pte.Bool:
		return "bool"
	}
	return fmt.Sprintf("scalar_type_%d", t)
}

func tensorOf(v pte.EValue) Tensor {
	if v.Kind != pte.KindTensor || v.Tensor == nil {
		return Tensor{DType: v.Kind.String()}
	}
	return Tensor{DType: dtypeName(v.Tensor.Type), Shape: v.Tensor.Sizes}
}

func value(vals []pte.EValue, i int32) (pte.EValue, bool) {
	if i < 0 || int(i) >= len(vals) {
		return pte.EValue{}, false
	}
	return vals[i], true
}

func describeMethod(f *pte.File, m *pte.Method, models map[string]*Model) Method {
	out := Method{Name: m.Name, Constant: len(m.Delegates) == 0 && len(m.Inputs) == 0}
	for _, i := range m.Inputs {
		if v, ok := value(m.Values, i); ok {
			out.Inputs = append(out.Inputs, tensorOf(v))
		}
	}
	for _, i := range m.Outputs {
		v, ok := value(m.Values, i)
		if !ok {
			continue
		}
		if out.Constant {
			out.Values = append(out.Values, constantValue(f, v))
		} else {
			out.Outputs = append(out.Outputs, tensorOf(v))
		}
	}
	for _, d := range m.Delegates {
		dd := Delegate{Backend: d.ID, Segment: d.Segment, CompileSpecs: map[string]string{}}
		for _, cs := range d.CompileSpecs {
			dd.CompileSpecs[cs.Key] = string(cs.Value)
		}
		if !d.Inline && d.ID == "CoreMLBackend" {
			if ref, err := readCMJR(f, d.Segment); err == nil {
				dd.Key, dd.Function = ref.Key, ref.FunctionName
				if models[ref.Key] == nil {
					models[ref.Key] = &Model{Key: ref.Key, Segment: -1} // segment from named data
				}
			} else if errors.Is(err, pte.ErrNotCMJR) {
				// Legacy single-method layout: the payload is the model blob itself.
				dd.Key = fmt.Sprintf("segment_%d", d.Segment)
				if models[dd.Key] == nil {
					models[dd.Key] = &Model{Key: dd.Key, Segment: d.Segment}
				}
			}
		}
		out.Delegates = append(out.Delegates, dd)
	}
	return out
}

// readCMJR reads a delegate's processed bytes as a CMJR reference.
func readCMJR(f *pte.File, seg int) (pte.CMJR, error) {
	sr, err := f.Segment(seg)
	if err != nil {
		return pte.CMJR{}, err
	}
	n := sr.Size()
	if n > 4096 {
		n = 4096 // a reference is ~100 bytes; enough to see the magic
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(sr, buf); err != nil {
		return pte.CMJR{}, err
	}
	if sr.Size() > n && string(buf[:4]) == "CMJR" {
		return pte.CMJR{}, fmt.Errorf("CMJR reference of %d bytes is too large", sr.Size())
	}
	return pte.ParseCMJR(buf)
}

// constantValue decodes a constant method's leaf for display.
func constantValue(f *pte.File, v pte.EValue) any {
	switch v.Kind {
	case pte.KindInt:
		return v.Int
	case pte.KindBool:
		return v.Bool
	case pte.KindDouble:
		return v.Double
	case pte.KindString:
		return v.Str
	case pte.KindTensor:
		t := v.Tensor
		desc := map[string]any{"dtype": dtypeName(t.Type), "shape": t.Sizes}
		if data, err := constantBytes(f, t); err == nil {
			desc["values"] = decodeValues(t.Type, data)
		}
		return desc
	}
	return v.Kind.String()
}

func constantBytes(f *pte.File, t *pte.Tensor) ([]byte, error) {
	prog := &f.Program
	k := int(t.DataBufferIdx)
	if k <= 0 || k >= len(prog.ConstantOffsets) {
		return nil, fmt.Errorf("no constant data")
	}
	n, ok := t.NBytes()
	if !ok || n > 1<<26 {
		return nil, fmt.Errorf("tensor too large")
	}
	sr, err := f.Segment(prog.ConstantSegment)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := sr.ReadAt(buf, int64(prog.ConstantOffsets[k])); err != nil {
		return nil, err
	}
	return buf, nil
}

func decodeValues(t pte.ScalarType, b []byte) []any {
	var out []any
	switch t {
	case pte.Long:
		for i := 0; i+8 <= len(b); i += 8 {
			out = append(out, int64(binary.LittleEndian.Uint64(b[i:])))
		}
	case pte.Int:
		for i := 0; i+4 <= len(b); i += 4 {
			out = append(out, int32(binary.LittleEndian.Uint32(b[i:])))
		}
	case pte.Half:
		for i := 0; i+2 <= len(b); i += 2 {
			out = append(out, float64(quant.F16ToF32(binary.LittleEndian.Uint16(b[i:]))))
		}
	case pte.Float:
		for i := 0; i+4 <= len(b); i += 4 {
			out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))))
		}
	}
	return out
}

// Package is one Core ML model read back from a named-data blob.
type Package struct {
	FS       *inmemfs.FS
	Metadata *pte.Metadata
	Manifest []byte
	Model    []byte
	Spec     *coremlpb.Model
	Weights  *milblob.Reader
}

const maxSpec = 256 << 20

// OpenPackage unflattens a Core ML delegate blob.
func OpenPackage(r io.ReaderAt, size int64) (*Package, error) {
	fsys, err := inmemfs.Open(r, size)
	if err != nil {
		return nil, err
	}
	p := &Package{FS: fsys}
	read := func(path string) ([]byte, error) {
		sr, err := fsys.Open(path)
		if err != nil {
			return nil, err
		}
		if sr.Size() > maxSpec {
			return nil, fmt.Errorf("%s: %d bytes is too large", path, sr.Size())
		}
		b := make([]byte, sr.Size())
		_, err = io.ReadFull(sr, b)
		return b, err
	}
	md, err := read("metadata.json")
	if err != nil {
		return nil, err
	}
	if p.Metadata, err = pte.ParseMetadata(md); err != nil {
		return nil, err
	}
	if p.Manifest, err = read("model.mlpackage/" + mlpackage.ManifestPath); err != nil {
		return nil, err
	}
	if p.Model, err = read("model.mlpackage/" + mlpackage.ModelPath); err != nil {
		return nil, err
	}
	p.Spec = &coremlpb.Model{}
	if err := proto.Unmarshal(p.Model, p.Spec); err != nil {
		return nil, fmt.Errorf("model.mlmodel: %v", err)
	}
	if sr, err := fsys.Open("model.mlpackage/" + mlpackage.WeightPath); err == nil {
		if p.Weights, err = milblob.NewReader(sr, sr.Size()); err != nil {
			return nil, fmt.Errorf("weight.bin: %v", err)
		}
	}
	return p, nil
}

func describeModel(f *pte.File, m *Model, rep *Report, verify bool) error {
	sr, err := f.Segment(m.Segment)
	if err != nil {
		return err
	}
	pkg, err := OpenPackage(sr, sr.Size())
	if err != nil {
		return err
	}
	m.Identifier = pkg.Metadata.Identifier
	for _, e := range pkg.FS.Files() {
		m.Files = append(m.Files, File{e.Path, e.Size})
		if strings.HasSuffix(e.Path, "weight.bin") {
			m.WeightSize = e.Size
		}
	}
	if prog := pkg.Spec.GetMlProgram(); prog != nil {
		names := make([]string, 0, len(prog.Functions))
		for n := range prog.Functions {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fn := prog.Functions[n]
			fi := Function{Name: n, Ops: mil.OpCounts(fn)}
			for _, in := range fn.Inputs {
				fi.Inputs = append(fi.Inputs, in.Name)
			}
			if b := fn.BlockSpecializations[fn.Opset]; b != nil {
				fi.Outputs = b.Outputs
			}
			m.Functions = append(m.Functions, fi)
		}
	}
	chk := mlpackage.Check(pkg.Manifest, pkg.Model, pkg.Weights)
	for _, b := range chk.Blobs {
		m.Blobs = append(m.Blobs, Blob{Offset: b.Offset, DType: b.DType.String(), Bytes: b.Bytes, Functions: b.Functions})
	}
	if verify {
		for _, x := range chk.Findings {
			rep.Findings = append(rep.Findings, Finding{ID: x.ID, Msg: m.Key + ": " + x.Msg, Warn: x.Warn})
		}
	}
	return nil
}

// adapterOf maps a method name to its adapter using the lora_methods
// constant method ("" = base). With multifunction methods (the program has
// a "prefill") an adapter's methods are NAME_forward and NAME_prefill;
// otherwise the method is named like the adapter.
func adapterOf(rep *Report) map[string]string {
	out := map[string]string{}
	mf := false
	for _, m := range rep.Methods {
		mf = mf || (m.Name == "prefill" && !m.Constant)
	}
	for _, m := range rep.Methods {
		if m.Name != "lora_methods" {
			continue
		}
		for _, v := range m.Values {
			name, _ := v.(string)
			a := name
			if mf {
				a = strings.TrimSuffix(strings.TrimSuffix(name, "_forward"), "_prefill")
			}
			out[name] = a
		}
	}
	return out
}

func sizes(f *pte.File, rep *Report) Sizes {
	s := Sizes{Total: rep.Size, Program: int64(f.SegmentBaseOffset), Adapters: map[string]int64{}}
	if f.SegmentBaseOffset == 0 {
		s.Program = rep.Size
	}
	prog := &f.Program
	if prog.ConstantSegment >= 0 && prog.ConstantSegment < len(prog.Segments) && f.HasConstantSegment {
		s.Constants = prog.Segments[prog.ConstantSegment]
	}
	for _, m := range rep.Models {
		if m.Segment >= 0 && m.Segment < len(prog.Segments) {
			s.Models += prog.Segments[m.Segment]
		}
	}
	owner := adapterOf(rep)
	for _, m := range rep.Models {
		s.Weights += m.WeightSize
		for _, b := range m.Blobs {
			adapters := map[string]bool{}
			base := false
			for _, fn := range b.Functions {
				if a, ok := owner[fn]; ok {
					adapters[a] = true
				} else {
					base = true
				}
			}
			switch {
			case base || len(adapters) != 1:
				s.Base += b.Bytes
			default:
				for a := range adapters {
					s.Adapters[a] += b.Bytes
				}
			}
		}
	}
	s.Overhead = s.Total - s.Base
	for _, v := range s.Adapters {
		s.Overhead -= v
	}
	return s
}
