package mlpackage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"lorapte/core/coremlspec/coremlpb"
	"lorapte/core/coremlspec/milpb"
	"lorapte/core/mil"
	"lorapte/core/milblob"
)

// Finding is one problem found by Check. IDs are stable:
//
//	PKG1 manifest invalid · PKG2 root item not com.apple.CoreML/model.mlmodel (warn) · PKG3 no weights item (warn)
//	MDL1 model does not parse · MDL2 unknown protobuf fields (warn) · MDL3 not an mlProgram
//	DESC1 multifunction with top-level I/O · DESC2 bad defaultFunctionName · DESC3 duplicate function descriptions
//	DESC4 described functions != program functions · DESC5 single-function model without "main"
//	DESC6 feature names != MIL names · DESC7 feature order differs (warn) · DESC8 feature type/dtype mismatch
//	DESC9 feature shape mismatch · DESC10 multifunction needs specificationVersion >= 9
//	MIL1 Program.version != 1 (warn) · MIL2 opset has no block · MIL3 undefined name (dangling var)
//	MIL4 name defined twice · MIL5 op without string "name" attribute · MIL6 malformed const
//	MIL7 undefined block output · MIL8 invalid identifier (warn) · MIL9 constexpr_blockwise_shift_scale rules
//	MIL10 immediate value encoding · MIL11 op without outputs / empty binding · MIL12 missing or unknown op parameter
//	MIL13 extra attributes (warn) · MIL14 invalid tensor type · MIL15 opset does not match the spec version (warn)
//	MIL16 Value without content · MIL17 op not in the parameter table (warn)
//	BLOB1 weight file missing or corrupt · BLOB2 offset not on a metadata record · BLOB3 dtype mismatch
//	BLOB4 size or padding mismatch · BLOB5 file name is not the package weight file
//	BLOB6 unreferenced blob (warn) · BLOB7 record not on the blob chain (warn) · BLOB8 blob type not static
type Finding struct {
	ID   string
	Msg  string
	Warn bool // a warning: legal, but not what coremltools writes
}

func (f Finding) String() string {
	lvl := "ERROR"
	if f.Warn {
		lvl = "WARN"
	}
	return fmt.Sprintf("%s [%s] %s", lvl, f.ID, f.Msg)
}

// BlobUse is one referenced weight blob and the functions referencing it.
type BlobUse struct {
	Offset    uint64
	DType     milblob.DType
	Bytes     int64
	Refs      int      // number of BlobFileValues pointing at it
	Functions []string // sorted
}

// Report is the result of Check.
type Report struct {
	Findings  []Finding
	Functions []string                  // program functions, sorted
	Ops       map[string]map[string]int // function -> op type -> count
	Blobs     []BlobUse                 // referenced blobs by offset
}

// Errors are the findings that are not warnings.
func (r *Report) Errors() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if !f.Warn {
			out = append(out, f)
		}
	}
	return out
}

// Has reports whether a finding with id exists.
func (r *Report) Has(id string) bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.ID == id })
}

// Shared counts the blobs referenced by more than one function and their bytes.
func (r *Report) Shared() (blobs int, bytes int64) {
	for _, b := range r.Blobs {
		if len(b.Functions) > 1 {
			blobs++
			bytes += b.Bytes
		}
	}
	return
}

type checker struct {
	rep     *Report
	w       *milblob.Reader
	chain   map[uint64]milblob.Entry
	uses    map[uint64]*BlobUse
	wErr    bool // weight file unusable, reported once
	version int32
}

func (c *checker) errf(id, format string, args ...any) {
	c.rep.Findings = append(c.rep.Findings, Finding{ID: id, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) warnf(id, format string, args ...any) {
	c.rep.Findings = append(c.rep.Findings, Finding{ID: id, Msg: fmt.Sprintf(format, args...), Warn: true})
}

// CheckDir reads a package directory and checks it.
func CheckDir(dir string) (*Report, error) {
	man, err := os.ReadFile(filepath.Join(dir, ManifestPath))
	if err != nil {
		return nil, fmt.Errorf("mlpackage: %v", err)
	}
	modelPath := filepath.Join(dir, filepath.FromSlash(ModelPath))
	if m, err := ParseManifest(man); err == nil {
		modelPath = filepath.Join(dir, "Data", filepath.FromSlash(m.Root().Path))
	}
	model, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("mlpackage: %v", err)
	}
	var wr *milblob.Reader
	var wErr error
	if f, err := os.Open(filepath.Join(dir, filepath.FromSlash(WeightPath))); err == nil {
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			wr, wErr = milblob.NewReader(f, st.Size())
		}
	}
	rep := Check(man, model, wr)
	if wErr != nil {
		rep.Findings = append(rep.Findings, Finding{ID: "BLOB1", Msg: wErr.Error()})
	}
	return rep, nil
}

// Check verifies a package given its Manifest.json, model.mlmodel bytes and
// weight.bin reader (nil when there is none) against coreml.md §9: manifest,
// description rules, SSA resolution, op parameters and attributes, const and
// constexpr typing, immediate encodings, and every BlobFileValue against the
// weight file. It also collects which functions share which blobs.
func Check(manifest, model []byte, weights *milblob.Reader) *Report {
	c := &checker{rep: &Report{Ops: map[string]map[string]int{}}, w: weights, uses: map[uint64]*BlobUse{}}
	c.manifest(manifest)
	c.chainOf()
	var m coremlpb.Model
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(model, &m); err != nil {
		c.errf("MDL1", "model.mlmodel does not parse as CoreML.Specification.Model: %v", err)
		return c.rep
	}
	for i, u := range unknownFields(m.ProtoReflect(), "Model") {
		if i == 10 {
			break
		}
		c.warnf("MDL2", "unknown protobuf field %s", u)
	}
	prog := m.GetMlProgram()
	if prog == nil {
		c.errf("MDL3", "model type is not mlProgram (Model field 502)")
		return c.rep
	}
	c.version = m.GetSpecificationVersion()
	descs := c.description(m.GetDescription(), prog)
	c.program(prog, descs)
	c.blobSummary()
	return c.rep
}

func (c *checker) manifest(data []byte) {
	m, err := ParseManifest(data)
	if err != nil {
		c.errf("PKG1", "%v", err)
		return
	}
	if r := m.Root(); r.Name != modelName || r.Path != Author+"/"+modelName {
		c.warnf("PKG2", "root item %q has path %q (coremltools: %s/%s)", r.Name, r.Path, Author, modelName)
	}
	hasWeights := false
	for _, it := range m.ItemInfoEntries {
		hasWeights = hasWeights || it.Name == weightsName && it.Path == Author+"/"+weightsName
	}
	if !hasWeights {
		c.warnf("PKG3", "no %s/%s item in the manifest (coremltools always adds it)", Author, weightsName)
	}
}

func (c *checker) chainOf() {
	if c.w == nil {
		return
	}
	c.chain = map[uint64]milblob.Entry{}
	es, err := c.w.Walk()
	if err != nil {
		c.errf("BLOB1", "weight.bin: %v", err)
	}
	for _, e := range es {
		c.chain[e.Meta] = e
	}
}

// unknownFields lists protobuf fields the schema does not know, recursively.
func unknownFields(m protoreflect.Message, path string) []string {
	var out []string
	if len(m.GetUnknown()) > 0 {
		out = append(out, path)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					out = append(out, unknownFields(mv.Message(), p+"["+k.String()+"]")...)
					return true
				})
			}
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				out = append(out, unknownFields(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))...)
			}
		default:
			out = append(out, unknownFields(v.Message(), p)...)
		}
		return true
	})
	sort.Strings(out)
	return out
}

// funcDesc is what the description says about one function.
type funcDesc struct {
	input, output, state []*coremlpb.FeatureDescription
}

func (c *checker) description(d *coremlpb.ModelDescription, prog *milpb.Program) map[string]funcDesc {
	out := map[string]funcDesc{}
	multi := len(d.GetFunctions()) > 0 || d.GetDefaultFunctionName() != ""
	if !multi {
		if _, ok := prog.GetFunctions()["main"]; !ok {
			c.errf("DESC5", "single-function ML Program (top-level description) must have a function named \"main\"")
		}
		if len(prog.GetFunctions()) > 1 {
			c.warnf("DESC4", "program has %d functions but the description is single-function", len(prog.GetFunctions()))
		}
		out["main"] = funcDesc{d.GetInput(), d.GetOutput(), d.GetState()}
		return out
	}
	if c.version < 9 {
		c.errf("DESC10", "multifunction description requires specificationVersion >= 9, have %d", c.version)
	}
	if len(d.GetInput())+len(d.GetOutput())+len(d.GetState())+len(d.GetTrainingInput()) > 0 ||
		d.GetPredictedFeatureName() != "" || d.GetPredictedProbabilitiesName() != "" {
		c.errf("DESC1", "multifunction description must leave top-level input/output/state/trainingInput/predicted* empty")
	}
	var names []string
	for _, f := range d.GetFunctions() {
		if _, dup := out[f.GetName()]; dup {
			c.errf("DESC3", "function %q described twice", f.GetName())
		}
		out[f.GetName()] = funcDesc{f.GetInput(), f.GetOutput(), f.GetState()}
		names = append(names, f.GetName())
	}
	if _, ok := out[d.GetDefaultFunctionName()]; !ok {
		c.errf("DESC2", "defaultFunctionName %q is not one of the described functions %v", d.GetDefaultFunctionName(), names)
	}
	var progNames []string
	for n := range prog.GetFunctions() {
		progNames = append(progNames, n)
	}
	sort.Strings(progNames)
	sorted := slices.Clone(names)
	sort.Strings(sorted)
	if !slices.Equal(slices.Compact(sorted), progNames) {
		c.errf("DESC4", "described functions %v != program functions %v", names, progNames)
	}
	return out
}

var (
	identRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_@]*$`)
	opsetForVer = map[int32]string{6: "CoreML5", 7: "CoreML6", 8: "CoreML7", 9: "CoreML8", 10: "CoreML9"}
)

func (c *checker) program(prog *milpb.Program, descs map[string]funcDesc) {
	if prog.GetVersion() != 1 {
		c.warnf("MIL1", "Program.version is %d; coremltools writes 1", prog.GetVersion())
	}
	var names []string
	for n := range prog.GetFunctions() {
		names = append(names, n)
	}
	sort.Strings(names)
	c.rep.Functions = names
	for _, fname := range names {
		fn := prog.GetFunctions()[fname]
		if !identRE.MatchString(fname) {
			c.warnf("MIL8", "function name %q is not a valid MIL identifier", fname)
		}
		block, ok := fn.GetBlockSpecializations()[fn.GetOpset()]
		if !ok {
			c.errf("MIL2", "function %s: opset %q has no block in block_specializations", fname, fn.GetOpset())
			continue
		}
		if want, ok := opsetForVer[c.version]; ok && want != fn.GetOpset() {
			c.warnf("MIL15", "function %s: opset %s but specificationVersion %d maps to %s", fname, fn.GetOpset(), c.version, want)
		}
		c.rep.Ops[fname] = mil.OpCounts(fn)
		scope := map[string]*milpb.ValueType{}
		kinds := map[string]string{}
		for _, in := range fn.GetInputs() {
			c.tensorType(in.GetType(), fmt.Sprintf("function %s input %s", fname, in.GetName()))
			if _, dup := scope[in.GetName()]; dup {
				c.errf("MIL4", "function %s: input %q declared twice", fname, in.GetName())
			}
			scope[in.GetName()] = in.GetType()
			kinds[in.GetName()] = "input"
		}
		final := c.block(block, scope, kinds, fname, fname)
		d, ok := descs[fname]
		if !ok {
			continue
		}
		states := map[string]bool{}
		for _, s := range d.state {
			states[s.GetName()] = true
		}
		var ins, sts, outs []namedType
		for _, in := range fn.GetInputs() {
			if states[in.GetName()] {
				sts = append(sts, namedType{in.GetName(), in.GetType()})
			} else {
				ins = append(ins, namedType{in.GetName(), in.GetType()})
			}
		}
		for _, o := range block.GetOutputs() {
			if t, ok := final[o]; ok {
				outs = append(outs, namedType{o, t})
			}
		}
		where := "function " + fname
		c.features(d.input, ins, "input", where)
		c.features(d.state, sts, "state", where)
		c.features(d.output, outs, "output", where)
	}
}

type namedType struct {
	name string
	t    *milpb.ValueType
}

// staticTensor returns dtype and shape of a fully static tensor type.
func staticTensor(vt *milpb.ValueType) (milpb.DataType, []int64, bool) {
	tt := vt.GetTensorType()
	if tt == nil {
		return 0, nil, false
	}
	shape := make([]int64, 0, len(tt.GetDimensions()))
	for _, d := range tt.GetDimensions() {
		cd := d.GetConstant()
		if cd == nil || cd.GetSize() > 1<<48 {
			return tt.GetDataType(), nil, false
		}
		shape = append(shape, int64(cd.GetSize()))
	}
	return tt.GetDataType(), shape, true
}

func (c *checker) tensorType(vt *milpb.ValueType, where string) {
	tt := vt.GetTensorType()
	if tt == nil {
		if vt.GetStateType() == nil && vt.GetListType() == nil && vt.GetTupleType() == nil && vt.GetDictionaryType() == nil {
			c.errf("MIL14", "%s: value type not set", where)
		}
		return
	}
	if _, ok := milpb.DataType_name[int32(tt.GetDataType())]; !ok || tt.GetDataType() == milpb.DataType_UNUSED_TYPE {
		c.errf("MIL14", "%s: invalid DataType code %d", where, tt.GetDataType())
	}
	if tt.GetRank() != -1 && tt.GetRank() != int64(len(tt.GetDimensions())) {
		c.errf("MIL14", "%s: rank %d but %d dimensions", where, tt.GetRank(), len(tt.GetDimensions()))
	}
}

var arrayToMIL = map[coremlpb.ArrayFeatureType_ArrayDataType]milpb.DataType{
	coremlpb.ArrayFeatureType_FLOAT16: milpb.DataType_FLOAT16,
	coremlpb.ArrayFeatureType_FLOAT32: milpb.DataType_FLOAT32,
	coremlpb.ArrayFeatureType_DOUBLE:  milpb.DataType_FLOAT64,
	coremlpb.ArrayFeatureType_INT32:   milpb.DataType_INT32,
	coremlpb.ArrayFeatureType_INT8:    milpb.DataType_INT8,
}

func (c *checker) features(fds []*coremlpb.FeatureDescription, mil []namedType, kind, where string) {
	var dn, mn []string
	for _, f := range fds {
		dn = append(dn, f.GetName())
	}
	types := map[string]*milpb.ValueType{}
	for _, m := range mil {
		mn = append(mn, m.name)
		types[m.name] = m.t
	}
	ds, ms := slices.Clone(dn), slices.Clone(mn)
	sort.Strings(ds)
	sort.Strings(ms)
	if !slices.Equal(ds, ms) {
		c.errf("DESC6", "%s: described %ss %v != MIL %ss %v", where, kind, dn, kind, mn)
		return
	}
	if !slices.Equal(dn, mn) {
		c.warnf("DESC7", "%s: described %s order %v differs from MIL order %v", where, kind, dn, mn)
	}
	for _, f := range fds {
		vt := types[f.GetName()]
		var arr *coremlpb.ArrayFeatureType
		switch {
		case f.GetType().GetStateType() != nil:
			if vt.GetStateType() == nil {
				c.errf("DESC8", "%s: %q is a state feature but the MIL type is not a state", where, f.GetName())
				continue
			}
			arr = f.GetType().GetStateType().GetArrayType()
			vt = vt.GetStateType().GetWrappedType()
		case f.GetType().GetMultiArrayType() != nil:
			arr = f.GetType().GetMultiArrayType()
		default:
			c.errf("DESC8", "%s: feature %q is not a MultiArray or State", where, f.GetName())
			continue
		}
		mdt, msh, ok := staticTensor(vt)
		want, known := arrayToMIL[arr.GetDataType()]
		switch {
		case !known:
			c.errf("DESC8", "%s: feature %q has invalid ArrayDataType %d", where, f.GetName(), arr.GetDataType())
		case want != mdt:
			c.errf("DESC8", "%s: feature %q is %v but the MIL type is %v", where, f.GetName(), arr.GetDataType(), mdt)
		}
		if !ok {
			continue
		}
		flexible := arr.GetEnumeratedShapes() != nil || arr.GetShapeRange() != nil
		if len(msh) == 0 {
			if len(arr.GetShape()) > 1 || len(arr.GetShape()) == 1 && arr.GetShape()[0] != 1 {
				c.errf("DESC9", "%s: scalar MIL %s %q should be described with shape [1], has %v", where, kind, f.GetName(), arr.GetShape())
			}
		} else if !flexible && !slices.Equal(arr.GetShape(), msh) {
			c.errf("DESC9", "%s: feature %q shape %v != MIL shape %v", where, f.GetName(), arr.GetShape(), msh)
		}
	}
}

// opParams: required and optional parameter names of the CoreML8 ops (coreml.md §5.3).
var opParams = map[string][2][]string{}

func init() {
	add := func(req, opt []string, ops ...string) {
		for _, o := range ops {
			opParams[o] = [2][]string{req, opt}
		}
	}
	xy := []string{"x", "y"}
	add(xy, nil, "add", "sub", "mul", "real_div", "pow", "maximum", "minimum", "equal", "not_equal",
		"less", "less_equal", "greater", "greater_equal", "floor_div", "mod")
	add([]string{"x"}, nil, "sqrt", "square", "exp", "sigmoid", "silu", "tanh", "relu", "cos", "sin", "abs", "erf", "identity")
	add([]string{"x"}, []string{"axes", "keep_dims"}, "reduce_mean", "reduce_sum", "reduce_max", "reduce_min")
	slice := []string{"stride", "begin_mask", "end_mask", "squeeze_mask"}
	add([]string{"data", "scale"}, []string{"offset"}, "constexpr_blockwise_shift_scale")
	add([]string{"x", "indices"}, []string{"axis", "batch_dims", "validate_indices"}, "gather")
	add([]string{"x", "indices"}, []string{"axis", "validate_indices"}, "gather_along_axis")
	add([]string{"x", "weight"}, []string{"bias"}, "linear")
	add(xy, []string{"transpose_x", "transpose_y"}, "matmul")
	add([]string{"x"}, []string{"epsilon"}, "rsqrt", "inverse")
	add([]string{"x"}, []string{"mode"}, "gelu")
	add([]string{"x"}, []string{"axis", "keep_dims", "output_dtype"}, "reduce_argmax")
	add([]string{"x"}, []string{"axis"}, "softmax")
	add([]string{"x", "shape"}, nil, "reshape")
	add([]string{"x", "perm"}, nil, "transpose")
	add([]string{"values", "axis"}, []string{"interleave"}, "concat")
	add([]string{"x", "axis"}, []string{"num_splits", "split_sizes"}, "split")
	add([]string{"x", "begin", "end"}, slice, "slice_by_index")
	add([]string{"x", "begin", "size"}, nil, "slice_by_size")
	add([]string{"x", "update", "begin", "end"}, slice, "slice_update")
	add([]string{"x", "axes"}, nil, "expand_dims")
	add([]string{"x"}, []string{"axes"}, "squeeze")
	add([]string{"x", "dtype"}, nil, "cast")
	add([]string{"cond", "a", "b"}, nil, "select")
	add([]string{"shape"}, []string{"value"}, "fill")
	add([]string{"x"}, []string{"lower", "upper"}, "band_part")
	add([]string{"x", "reps"}, nil, "tile")
	add([]string{"x"}, []string{"axes", "gamma", "beta", "epsilon"}, "layer_norm")
	add([]string{"query", "key", "value"}, []string{"attn_mask"}, "scaled_dot_product_attention")
	add([]string{"input"}, nil, "read_state")
	add([]string{"input", "data"}, nil, "write_state")
}

func opName(op *milpb.Operation) (string, bool) {
	v := op.GetAttributes()["name"]
	s := v.GetImmediateValue().GetTensor().GetStrings().GetValues()
	if len(s) != 1 {
		return "", false
	}
	return s[0], true
}

// block checks one block in order and returns the scope after it.
func (c *checker) block(b *milpb.Block, outer map[string]*milpb.ValueType, kinds map[string]string, fname, path string) map[string]*milpb.ValueType {
	scope := make(map[string]*milpb.ValueType, len(outer))
	for k, v := range outer {
		scope[k] = v
	}
	for _, in := range b.GetInputs() {
		scope[in.GetName()] = in.GetType()
	}
	for i, op := range b.GetOperations() {
		typ := op.GetType()
		where := fmt.Sprintf("%s op#%d %s", path, i, typ)
		if n, ok := opName(op); ok {
			where += fmt.Sprintf(" %q", n)
		} else {
			c.errf("MIL5", "%s: no string \"name\" attribute", where)
		}
		if len(op.GetOutputs()) == 0 && typ != "write_state" {
			c.errf("MIL11", "%s: operation has no outputs", where)
		}
		c.params(op, where)
		for _, k := range sortedKeys(op.GetAttributes()) {
			if k != "name" && !(typ == "const" && k == "val") {
				c.warnf("MIL13", "%s: extra attribute %q", where, k)
			}
		}
		for _, p := range sortedKeys(op.GetInputs()) {
			args := op.GetInputs()[p].GetArguments()
			if len(args) == 0 {
				c.errf("MIL11", "%s: input %q has no bindings", where, p)
			}
			for j, a := range args {
				switch bnd := a.GetBinding().(type) {
				case *milpb.Argument_Binding_Name:
					if _, ok := scope[bnd.Name]; !ok {
						c.errf("MIL3", "%s: input %q refers to undefined name %q", where, p, bnd.Name)
					} else if strings.HasPrefix(typ, "constexpr_") && kinds[bnd.Name] == "const" {
						c.warnf("MIL9", "%s: input %q binds const %q by name; coremltools inlines values into iOS18 constexpr inputs", where, p, bnd.Name)
					}
				case *milpb.Argument_Binding_Value:
					c.value(bnd.Value, fmt.Sprintf("%s input %q[%d]", where, p, j), fname)
				default:
					c.errf("MIL11", "%s: input %q has an empty binding", where, p)
				}
			}
		}
		for _, k := range sortedKeys(op.GetAttributes()) {
			c.value(op.GetAttributes()[k], fmt.Sprintf("%s attribute %q", where, k), fname)
		}
		if typ == "constexpr_blockwise_shift_scale" {
			c.cbss(op, scope, where)
		}
		for j, sub := range op.GetBlocks() {
			c.block(sub, scope, kinds, fname, fmt.Sprintf("%s block#%d", where, j))
		}
		for _, o := range op.GetOutputs() {
			c.tensorType(o.GetType(), fmt.Sprintf("%s output %s", where, o.GetName()))
			if !identRE.MatchString(o.GetName()) {
				c.warnf("MIL8", "%s: output name %q is not a valid MIL identifier", where, o.GetName())
			}
			if _, dup := scope[o.GetName()]; dup {
				c.errf("MIL4", "%s: output name %q already defined", where, o.GetName())
			}
			scope[o.GetName()] = o.GetType()
			kinds[o.GetName()] = typ
		}
	}
	for _, o := range b.GetOutputs() {
		if _, ok := scope[o]; !ok {
			c.errf("MIL7", "%s: block output %q is not defined", path, o)
		}
	}
	return scope
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (c *checker) params(op *milpb.Operation, where string) {
	if op.GetType() == "const" {
		if len(op.GetInputs()) > 0 {
			c.errf("MIL6", "%s: const op must not have inputs", where)
		}
		val, ok := op.GetAttributes()["val"]
		switch {
		case !ok:
			c.errf("MIL6", "%s: const op without \"val\" attribute", where)
		case len(op.GetOutputs()) != 1:
			c.errf("MIL6", "%s: const op needs exactly one output", where)
		case !proto.Equal(op.GetOutputs()[0].GetType(), val.GetType()):
			c.errf("MIL6", "%s: output type differs from the type of \"val\"", where)
		}
		return
	}
	spec, ok := opParams[op.GetType()]
	if !ok {
		c.warnf("MIL17", "%s: op type not in the parameter table (not checked)", where)
		return
	}
	for _, p := range spec[0] {
		if _, ok := op.GetInputs()[p]; !ok {
			c.errf("MIL12", "%s: missing required input %q", where, p)
		}
	}
	for _, p := range sortedKeys(op.GetInputs()) {
		if !slices.Contains(spec[0], p) && !slices.Contains(spec[1], p) {
			c.errf("MIL12", "%s: unknown input %q", where, p)
		}
	}
}

// inputType resolves the type of an op parameter's first binding.
func inputType(op *milpb.Operation, p string, scope map[string]*milpb.ValueType) *milpb.ValueType {
	args := op.GetInputs()[p].GetArguments()
	if len(args) == 0 {
		return nil
	}
	if n := args[0].GetName(); n != "" {
		return scope[n]
	}
	return args[0].GetValue().GetType()
}

func (c *checker) cbss(op *milpb.Operation, scope map[string]*milpb.ValueType, where string) {
	ddt, dsh, ok1 := staticTensor(inputType(op, "data", scope))
	sdt, ssh, ok2 := staticTensor(inputType(op, "scale", scope))
	if !ok1 || !ok2 {
		c.errf("MIL9", "%s: data and scale need static tensor types", where)
		return
	}
	if !slices.Contains([]milpb.DataType{milpb.DataType_INT4, milpb.DataType_UINT4, milpb.DataType_INT8, milpb.DataType_UINT8, milpb.DataType_FLOAT16, milpb.DataType_FLOAT32}, ddt) {
		c.errf("MIL9", "%s: data dtype %v not allowed (int4/uint4/int8/uint8/fp16/fp32)", where, ddt)
	}
	if sdt != milpb.DataType_FLOAT16 && sdt != milpb.DataType_FLOAT32 {
		c.errf("MIL9", "%s: scale dtype %v not allowed (fp16/fp32)", where, sdt)
	}
	if len(dsh) == 0 || len(dsh) != len(ssh) {
		c.errf("MIL9", "%s: data rank %d and scale rank %d must be equal and >= 1", where, len(dsh), len(ssh))
		return
	}
	for i := range dsh {
		if ssh[i] == 0 || dsh[i]%ssh[i] != 0 {
			c.errf("MIL9", "%s: data dim %d (%d) not divisible by scale dim (%d)", where, i, dsh[i], ssh[i])
		}
	}
	if _, ok := op.GetInputs()["offset"]; ok {
		odt, osh, ok := staticTensor(inputType(op, "offset", scope))
		switch {
		case !ok || !slices.Equal(osh, ssh):
			c.errf("MIL9", "%s: offset shape %v != scale shape %v", where, osh, ssh)
		case odt != milpb.DataType_FLOAT16 && odt != milpb.DataType_FLOAT32 && odt != ddt:
			c.errf("MIL9", "%s: offset dtype %v must be fp16/fp32 or the data dtype %v", where, odt, ddt)
		}
	}
	if len(op.GetOutputs()) == 1 {
		odt, osh, ok := staticTensor(op.GetOutputs()[0].GetType())
		if !ok || odt != sdt || !slices.Equal(osh, dsh) {
			c.errf("MIL9", "%s: output should be %v%v (scale dtype, data shape)", where, sdt, dsh)
		}
	}
}

func (c *checker) value(v *milpb.Value, where, fname string) {
	c.tensorType(v.GetType(), where)
	switch {
	case v.GetBlobFileValue() != nil:
		c.blob(v, where, fname)
	case v.GetImmediateValue() != nil:
		c.immediate(v, where)
	default:
		c.errf("MIL16", "%s: Value has neither immediateValue nor blobFileValue", where)
	}
}

// bitsOf is the element width used for byte-encoded immediates and blobs.
func bitsOf(dt milpb.DataType) int64 {
	if d, ok := milblob.DTypeFor(dt); ok {
		return int64(d.Bits())
	}
	switch dt {
	case milpb.DataType_FLOAT64, milpb.DataType_INT64, milpb.DataType_UINT64:
		return 64
	}
	return 8
}

func (c *checker) immediate(v *milpb.Value, where string) {
	tv := v.GetImmediateValue().GetTensor()
	if tv == nil {
		return // tuple/list/dictionary values are not used by lorapte
	}
	dt, shape, ok := staticTensor(v.GetType())
	if !ok {
		c.errf("MIL10", "%s: immediate tensor without a static tensor type", where)
		return
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
		if n > 1<<48 {
			c.errf("MIL10", "%s: immediate of shape %v is absurdly large", where, shape)
			return
		}
	}
	want := "bytes"
	switch dt {
	case milpb.DataType_FLOAT32:
		want = "floats"
	case milpb.DataType_FLOAT64:
		want = "doubles"
	case milpb.DataType_INT32, milpb.DataType_INT16, milpb.DataType_UINT16:
		want = "ints"
	case milpb.DataType_INT64, milpb.DataType_UINT64:
		want = "longInts"
	case milpb.DataType_BOOL:
		want = "bools"
	case milpb.DataType_STRING:
		want = "strings"
	}
	var field string
	var have int64
	switch x := tv.GetValue().(type) {
	case *milpb.TensorValue_Floats:
		field, have = "floats", int64(len(x.Floats.GetValues()))
	case *milpb.TensorValue_Doubles:
		field, have = "doubles", int64(len(x.Doubles.GetValues()))
	case *milpb.TensorValue_Ints:
		field, have = "ints", int64(len(x.Ints.GetValues()))
	case *milpb.TensorValue_LongInts:
		field, have = "longInts", int64(len(x.LongInts.GetValues()))
	case *milpb.TensorValue_Bools:
		field, have = "bools", int64(len(x.Bools.GetValues()))
	case *milpb.TensorValue_Strings:
		field, have = "strings", int64(len(x.Strings.GetValues()))
	case *milpb.TensorValue_Bytes:
		field, have = "bytes", int64(len(x.Bytes.GetValues()))
	default:
		if n > 0 {
			c.errf("MIL10", "%s: immediate %v tensor of %d elements has no data", where, dt, n)
		}
		return
	}
	if field != want {
		c.errf("MIL10", "%s: %v immediate stored in %q (Core ML reads %q)", where, dt, field, want)
		return
	}
	expect := n
	if field == "bytes" {
		expect = (n*bitsOf(dt) + 7) / 8
	}
	if have != expect {
		c.errf("MIL10", "%s: %v%v immediate needs %d %s, has %d", where, dt, shape, expect, field, have)
	}
}

func (c *checker) blob(v *milpb.Value, where, fname string) {
	bf := v.GetBlobFileValue()
	if bf.GetFileName() != mil.WeightFile {
		c.errf("BLOB5", "%s: blob file %q is not %q", where, bf.GetFileName(), mil.WeightFile)
		return
	}
	if c.w == nil {
		if !c.wErr {
			c.wErr = true
			c.errf("BLOB1", "%s: blob referenced but the package has no usable weight.bin", where)
		}
		return
	}
	off := bf.GetOffset()
	e, onChain := c.chain[off]
	if !onChain {
		var err error
		if e, err = c.w.Blob(off); err != nil {
			c.errf("BLOB2", "%s: offset %d is not a blob metadata record: %v", where, off, err)
			return
		}
		c.warnf("BLOB7", "%s: offset %d is a valid record but not on the header's blob chain", where, off)
	}
	u := c.uses[off]
	if u == nil {
		u = &BlobUse{Offset: off, DType: e.DType, Bytes: e.Bytes}
		c.uses[off] = u
	}
	u.Refs++
	if !slices.Contains(u.Functions, fname) {
		u.Functions = append(u.Functions, fname)
		sort.Strings(u.Functions)
	}
	dt, shape, ok := staticTensor(v.GetType())
	if v.GetType().GetTensorType() == nil {
		c.errf("BLOB8", "%s: blob value has no tensor type", where)
		return
	}
	if want, known := milblob.DTypeFor(dt); !known || want != e.DType {
		c.errf("BLOB3", "%s: declared %v but the blob at %d is %v", where, dt, off, e.DType)
		return
	}
	if !ok {
		c.errf("BLOB8", "%s: blob value type has non-constant dimensions", where)
		return
	}
	n := int64(1)
	for _, d := range shape {
		if d == 0 || n > (1<<48)/d {
			c.errf("BLOB4", "%s: blob shape %v invalid", where, shape)
			return
		}
		n *= d
	}
	if bytes, pad := e.DType.ByteSize(n); bytes != e.Bytes || pad != e.PaddingBits {
		c.errf("BLOB4", "%s: %v%v needs %d bytes (%d padding bits), blob at %d has %d (%d)", where, dt, shape, bytes, pad, off, e.Bytes, e.PaddingBits)
	}
}

func (c *checker) blobSummary() {
	offs := make([]uint64, 0, len(c.uses))
	for o := range c.uses {
		offs = append(offs, o)
	}
	slices.Sort(offs)
	for _, o := range offs {
		c.rep.Blobs = append(c.rep.Blobs, *c.uses[o])
	}
	if c.chain != nil {
		unref := 0
		for o := range c.chain {
			if c.uses[o] == nil {
				unref++
			}
		}
		if unref > 0 {
			c.warnf("BLOB6", "%d blob(s) in weight.bin are not referenced by any value", unref)
		}
	}
}

// Summary renders the report as text lines (for tools and test logs).
func (r *Report) Summary() string {
	var b bytes.Buffer
	for _, f := range r.Findings {
		fmt.Fprintln(&b, f)
	}
	nb, nbytes := r.Shared()
	fmt.Fprintf(&b, "functions %v; blobs referenced %d, shared by >1 function %d (%d bytes); %d errors, %d warnings\n",
		r.Functions, len(r.Blobs), nb, nbytes, len(r.Errors()), len(r.Findings)-len(r.Errors()))
	return b.String()
}
