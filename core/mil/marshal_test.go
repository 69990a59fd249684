package mil

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"lorapte/core/coremlspec/coremlpb"
	"lorapte/core/coremlspec/milpb"
	"lorapte/core/milblob"
)

// protoMarshal is the reference the hand-written encoder must match.
func protoMarshal(m *coremlpb.Model) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// requireSameBytes checks that Marshal and protobuf-go agree on m: same bytes,
// or both fail.
func requireSameBytes(t testing.TB, m *coremlpb.Model, msgAndArgs ...any) {
	t.Helper()
	want, werr := protoMarshal(m)
	got, gerr := Marshal(m)
	if werr != nil {
		require.Error(t, gerr, msgAndArgs...)
		return
	}
	require.NoError(t, gerr, msgAndArgs...)
	require.Equal(t, want, got, msgAndArgs...)
}

// blobAt is the i-th aligned metadata offset of a weight file.
func blobAt(i int) uint64 { return uint64(milblob.HeaderSize + i*milblob.Align) }

// buildLayers builds a program of nFuncs functions, each a stack of layers
// using most builder ops and every kind of constant value.
func buildLayers(t testing.TB, nFuncs, layers int) *Program {
	t.Helper()
	p := NewProgram()
	for fi := 0; fi < nFuncs; fi++ {
		S := int64(1 + 3*(fi%3)) // 1, 4 or 7 (< 8, the mask width)
		f := p.Func(fmt.Sprintf("fn_%d", fi))
		tokens := f.Input("tokens", INT32, 1, S)
		mask := f.Input("mask", FP16, 1, 1, S, 8)
		E := f.ConstexprBlockwiseShiftScale("emb", Blob(INT8, []int64{32, 8}, blobAt(0)), Blob(FP16, []int64{32, 1}, blobAt(1)))
		x := f.Gather("h0", E, tokens, 0)
		for l := 0; l < layers; l++ {
			n := func(s string) string { return fmt.Sprintf("l%d_%s", l, s) }
			sq := f.Mul(n("sq"), x, x)
			ms := f.Reduce("reduce_mean", n("ms"), sq, []int32{-1}, true)
			r := f.Rsqrt(n("r"), ms, 1e-5)
			g := f.Const(n("gamma"), Blob(FP16, []int64{8}, blobAt(2+l)))
			hn := f.Mul(n("hn"), f.Mul(n("hr"), x, r), g)
			W := f.ConstexprBlockwiseShiftScaleOffset(n("wq"),
				Raw(INT4, []int64{8, 8}, make([]byte, 32)), F16([]int64{8, 2}, make([]uint16, 16)), Raw(INT4, []int64{8, 2}, make([]byte, 8)))
			q := f.Linear(n("q"), hn, W, f.Const(n("bq"), F16([]int64{8}, []uint16{1, 2, 3, 4, 5, 6, 7, 0x3c00})))
			qh := f.Transpose(n("qh"), f.Reshape(n("q4"), q, []int64{1, S, 2, 4}), []int32{0, 2, 1, 3})
			k := f.Linear(n("k"), hn, f.Const(n("wk"), Blob(FP16, []int64{8, 8}, blobAt(100+l))), nil)
			kh := f.Transpose(n("kh"), f.Reshape(n("k4"), k, []int64{1, S, 2, 4}), []int32{0, 2, 1, 3})
			sc := f.Matmul(n("scores"), qh, kh, false, true)
			scaled := f.Mul(n("scaled"), sc, f.Const(n("inv"), ScalarF16(0.5)))
			pad := f.Concat(n("pad"), -1, scaled, f.Const(n("zeros"), F16([]int64{1, 2, S, 8 - S}, make([]uint16, 2*S*(8-S)))))
			pr := f.Softmax(n("p"), f.Add(n("masked"), pad, mask), -1)
			parts := f.Split(n("split"), pr, -1, []int32{int32(S), int32(8 - S)})
			att := f.Matmul(n("att"), parts[0], kh, false, false)
			merged := f.Reshape(n("merged"), f.Transpose(n("att_t"), att, []int32{0, 2, 1, 3}), []int64{1, S, 8})
			act := f.Unary("silu", n("act"), merged)
			big := f.Compare("greater", n("big"), act, f.Const(n("thr"), ScalarF16(2)))
			clipped := f.Select(n("clip"), big, f.Const(n("two"), ScalarF16(2)), act)
			e := f.ExpandDims(n("e"), clipped, []int32{0})
			sqz := f.Squeeze(n("s"), e, []int32{0})
			c32 := f.Cast(n("c32"), sqz, FP32)
			w32 := f.Const(n("w32"), F32([]int64{8}, []float32{0, -0.5, 1, float32(math.Inf(1)), 2, 3, 4, 5}))
			y32 := f.RealDiv(n("div"), f.Sub(n("sub"), f.Maximum(n("max"), c32, w32), f.Minimum(n("min"), c32, w32)), f.Const(n("one"), ScalarF32(1)))
			x = f.Cast(n("back"), f.Pow(n("pow"), y32, f.Const(n("p1"), ScalarF32(1))), FP16)
			sl := f.SliceByIndex(n("sl"), x, []int32{0, 0, 0}, []int32{1, int32(S), 4})
			f.Tile(n("tile"), sl, []int32{1, 1, 2})
			f.Const(n("flags"), Bools([]int64{3}, []bool{true, false, true}))
			f.Const(n("idx"), I32([]int64{4}, []int32{-1, 0, math.MaxInt32, math.MinInt32}))
			f.Const(n("str"), Str("héllo"))
			f.Const(n("flag"), ScalarBool(false))
			f.Const(n("i"), ScalarI32(-7))
			f.Const(n("u8"), Raw(UINT8, []int64{3}, []byte{0, 1, 255}))
		}
		logits := f.Linear("logits", x, E, nil)
		f.SetOutputs(logits, x)
	}
	require.NoError(t, p.Err())
	return p
}

// withStates adds a state input (as a description state and a block input of
// StateType) and metadata, which the builder does not produce.
func withStates(m *coremlpb.Model) {
	st := &coremlpb.FeatureType{Type: &coremlpb.FeatureType_StateType{StateType: &coremlpb.StateFeatureType{
		Type: &coremlpb.StateFeatureType_ArrayType{ArrayType: &coremlpb.ArrayFeatureType{Shape: []int64{1, 2, 6, 4}, DataType: coremlpb.ArrayFeatureType_FLOAT16}},
	}}}
	for _, fd := range m.Description.Functions {
		fd.State = append(fd.State, &coremlpb.FeatureDescription{Name: "k_cache", Type: st})
	}
	m.Description.Metadata = &coremlpb.Metadata{Author: "lorapte", UserDefined: map[string]string{"b": "2", "a": "", "": "empty key"}}
	for _, fn := range m.GetMlProgram().Functions {
		fn.Inputs = append(fn.Inputs, &milpb.NamedValueType{Name: "k_cache", Type: &milpb.ValueType{
			Type: &milpb.ValueType_StateType{StateType: &milpb.StateType{WrappedType: TensorType(FP16, []int64{1, 2, 6, 4})}},
		}})
	}
}

func TestMarshalBuilderModels(t *testing.T) {
	for _, tc := range []struct{ funcs, layers int }{{1, 1}, {2, 3}, {3, 8}} {
		p := buildLayers(t, tc.funcs, tc.layers)
		m, err := p.Model("fn_0")
		require.NoError(t, err)
		requireSameBytes(t, m, "plain %v", tc)
		withStates(m)
		requireSameBytes(t, m, "with states %v", tc)
		// Built models have no unknown fields: MarshalBuilt gives the same bytes.
		want, err := protoMarshal(m)
		require.NoError(t, err)
		built, err := MarshalBuilt(m)
		require.NoError(t, err)
		require.Equal(t, want, built, "MarshalBuilt %v", tc)
		b, err := Marshal(m)
		require.NoError(t, err)
		back := &coremlpb.Model{}
		require.NoError(t, proto.Unmarshal(b, back))
		require.True(t, proto.Equal(m, back), "round trip %v", tc)
	}
}

// TestMarshalEdgeCases pins the rules for nil and empty parts, where the
// encoder must copy protobuf-go's choices.
func TestMarshalEdgeCases(t *testing.T) {
	tensor := func(tv *milpb.TensorValue) *milpb.Value {
		return &milpb.Value{Value: &milpb.Value_ImmediateValue_{ImmediateValue: &milpb.Value_ImmediateValue{Value: &milpb.Value_ImmediateValue_Tensor{Tensor: tv}}}}
	}
	op := func(o *milpb.Operation) *coremlpb.Model {
		return &coremlpb.Model{Type: &coremlpb.Model_MlProgram{MlProgram: &milpb.Program{Functions: map[string]*milpb.Function{
			"f": {BlockSpecializations: map[string]*milpb.Block{"CoreML8": {Operations: []*milpb.Operation{o}}}},
		}}}}
	}
	cases := map[string]*coremlpb.Model{
		"empty":                  {},
		"zero scalars":           {SpecificationVersion: 0, IsUpdatable: false, Description: &coremlpb.ModelDescription{}},
		"negative version":       {SpecificationVersion: -1},
		"nil oneof wrapper":      {Type: (*coremlpb.Model_MlProgram)(nil)},
		"oneof nil content":      {Type: &coremlpb.Model_MlProgram{}},
		"empty program":          {Type: &coremlpb.Model_MlProgram{MlProgram: &milpb.Program{}}},
		"nil repeated elements":  {Description: &coremlpb.ModelDescription{Input: []*coremlpb.FeatureDescription{nil, {}}, Functions: []*coremlpb.FunctionDescription{nil}}},
		"nil and empty map vals": {Type: &coremlpb.Model_MlProgram{MlProgram: &milpb.Program{Functions: map[string]*milpb.Function{"": nil, "b": {}}, Attributes: map[string]*milpb.Value{"x": nil, "": {}}}}},
		"empty map":              {Type: &coremlpb.Model_MlProgram{MlProgram: &milpb.Program{Functions: map[string]*milpb.Function{}}}},
		"metadata empty entries": {Description: &coremlpb.ModelDescription{Metadata: &coremlpb.Metadata{UserDefined: map[string]string{"": ""}}}},
		"oneof zero scalars": {Description: &coremlpb.ModelDescription{Input: []*coremlpb.FeatureDescription{
			{Type: &coremlpb.FeatureType{IsOptional: true, Type: &coremlpb.FeatureType_MultiArrayType{MultiArrayType: &coremlpb.ArrayFeatureType{DefaultOptionalValue: &coremlpb.ArrayFeatureType_IntDefaultValue{}}}}},
			{Type: &coremlpb.FeatureType{Type: &coremlpb.FeatureType_MultiArrayType{MultiArrayType: &coremlpb.ArrayFeatureType{DefaultOptionalValue: &coremlpb.ArrayFeatureType_FloatDefaultValue{FloatDefaultValue: float32(math.Copysign(0, -1))}}}}},
			{Type: &coremlpb.FeatureType{Type: &coremlpb.FeatureType_MultiArrayType{MultiArrayType: &coremlpb.ArrayFeatureType{DefaultOptionalValue: &coremlpb.ArrayFeatureType_DoubleDefaultValue{DoubleDefaultValue: math.NaN()}}}}},
		}}},
		"empty tensor values": op(&milpb.Operation{Type: "const", Attributes: map[string]*milpb.Value{
			"a": tensor(&milpb.TensorValue{Value: &milpb.TensorValue_Bytes{Bytes: &milpb.TensorValue_RepeatedBytes{Values: []byte{}}}}),
			"b": tensor(&milpb.TensorValue{Value: &milpb.TensorValue_Floats{}}),
			"c": tensor(&milpb.TensorValue{Value: &milpb.TensorValue_Strings{Strings: &milpb.TensorValue_RepeatedStrings{Values: []string{"", ""}}}}),
			"d": tensor(&milpb.TensorValue{Value: &milpb.TensorValue_Ints{Ints: &milpb.TensorValue_RepeatedInts{Values: []int32{0, -1}}}}),
			"e": tensor(nil),
			"f": {Value: (*milpb.Value_BlobFileValue_)(nil)},
		}}),
		"binding oneofs": op(&milpb.Operation{Inputs: map[string]*milpb.Argument{
			"x": {Arguments: []*milpb.Argument_Binding{{Binding: &milpb.Argument_Binding_Name{}}, {Binding: &milpb.Argument_Binding_Value{}}, nil, {}}},
			"y": nil,
		}}),
		"long fields": op(&milpb.Operation{Type: strings.Repeat("t", 200), Attributes: map[string]*milpb.Value{
			strings.Repeat("k", 20000): tensor(&milpb.TensorValue{Value: &milpb.TensorValue_Bytes{Bytes: &milpb.TensorValue_RepeatedBytes{Values: make([]byte, 1<<17)}}}),
		}}),
	}
	for name, m := range cases {
		requireSameBytes(t, m, name)
	}
	b, err := Marshal(nil)
	require.NoError(t, err)
	require.Empty(t, b)
	b, err = Marshal(&coremlpb.Model{})
	require.NoError(t, err)
	require.NotNil(t, b)
	require.Empty(t, b)
}

// The oneof of FeatureType (fields 5, 8) is written after isOptional (1000):
// protobuf-go writes oneofs after the other fields.
func TestMarshalOneofLast(t *testing.T) {
	ft := &coremlpb.FeatureType{IsOptional: true, Type: &coremlpb.FeatureType_StateType{StateType: &coremlpb.StateFeatureType{}}}
	m := &coremlpb.Model{Description: &coremlpb.ModelDescription{Input: []*coremlpb.FeatureDescription{{Type: ft}}}}
	b, err := Marshal(m)
	require.NoError(t, err)
	// description{input{type{isOptional=1 (tag 1000<<3 = c0 3e), stateType{} (tag 8<<3|2)}}}
	require.Equal(t, []byte{0x12, 0x09, 0x0a, 0x07, 0x1a, 0x05, 0xc0, 0x3e, 0x01, 0x42, 0x00}, b)
	requireSameBytes(t, m)
}

func TestMarshalUnknownFields(t *testing.T) {
	p := buildLayers(t, 1, 1)
	m, err := p.Model("fn_0")
	require.NoError(t, err)
	withStates(m)
	unk := func(msg proto.Message, num protowire.Number) {
		var b []byte
		b = protowire.AppendTag(b, num, protowire.VarintType)
		b = protowire.AppendVarint(b, 300)
		b = protowire.AppendTag(b, num+1, protowire.BytesType)
		b = protowire.AppendString(b, "unknown")
		msg.ProtoReflect().SetUnknown(b)
	}
	unk(m, 7)
	unk(m.Description, 99)
	unk(m.Description.Functions[0].Input[0].Type, 2)
	prog := m.GetMlProgram()
	unk(prog, 9)
	blk := prog.Functions["fn_0"].BlockSpecializations["CoreML8"]
	unk(blk, 9)
	for _, o := range blk.Operations {
		unk(o, 8)
		for _, a := range o.Inputs {
			unk(a, 3)
			unk(a.Arguments[0], 4)
		}
		for _, v := range o.Attributes {
			unk(v, 6)
			unk(v.Type.GetTensorType(), 9)
		}
	}
	requireSameBytes(t, m)
}

func TestMarshalInvalidUTF8(t *testing.T) {
	const bad = "a\xffb"
	mk := []func() *coremlpb.Model{
		func() *coremlpb.Model {
			return &coremlpb.Model{Description: &coremlpb.ModelDescription{DefaultFunctionName: bad}}
		},
		func() *coremlpb.Model {
			return &coremlpb.Model{Description: &coremlpb.ModelDescription{Metadata: &coremlpb.Metadata{UserDefined: map[string]string{bad: "x"}}}}
		},
		func() *coremlpb.Model {
			return &coremlpb.Model{Description: &coremlpb.ModelDescription{Metadata: &coremlpb.Metadata{UserDefined: map[string]string{"x": bad}}}}
		},
		func() *coremlpb.Model {
			return &coremlpb.Model{Type: &coremlpb.Model_MlProgram{MlProgram: &milpb.Program{Functions: map[string]*milpb.Function{bad: {}}}}}
		},
		func() *coremlpb.Model {
			return &coremlpb.Model{Type: &coremlpb.Model_MlProgram{MlProgram: &milpb.Program{Functions: map[string]*milpb.Function{"f": {BlockSpecializations: map[string]*milpb.Block{"b": {Outputs: []string{"ok", bad}}}}}}}}
		},
		func() *coremlpb.Model {
			return &coremlpb.Model{Type: &coremlpb.Model_MlProgram{MlProgram: &milpb.Program{Functions: map[string]*milpb.Function{"f": {BlockSpecializations: map[string]*milpb.Block{"b": {Operations: []*milpb.Operation{
				{Inputs: map[string]*milpb.Argument{"x": {Arguments: []*milpb.Argument_Binding{{Binding: &milpb.Argument_Binding_Name{Name: bad}}}}}},
			}}}}}}}}
		},
	}
	for i, f := range mk {
		_, perr := protoMarshal(f())
		require.Error(t, perr, "case %d: protobuf-go accepts it", i)
		_, err := Marshal(f())
		require.ErrorContains(t, err, "UTF-8", "case %d", i)
	}
}

// gen builds random models that use every field of every message.
type gen struct {
	r     *rand.Rand
	depth int
	bad   bool // may emit invalid UTF-8
}

func (g *gen) p(x float64) bool { return g.r.Float64() < x }
func (g *gen) n(k int) int      { return g.r.IntN(k) }

func (g *gen) str() string {
	if g.bad && g.p(0.02) {
		return "bad\xc3"
	}
	switch g.n(8) {
	case 0, 1:
		return ""
	case 2:
		return "x"
	case 3:
		return "é_ü€"
	case 4:
		return strings.Repeat("long", 40) // two-byte length
	case 5:
		return fmt.Sprintf("k%d", g.n(5))
	default:
		return fmt.Sprintf("name_%d", g.n(1000))
	}
}

func (g *gen) i64() int64 {
	switch g.n(8) {
	case 0:
		return 0
	case 1:
		return -1
	case 2:
		return math.MinInt64
	case 3:
		return math.MaxInt64
	case 4:
		return int64(g.n(300))
	default:
		return int64(g.r.Uint64()) >> g.n(64)
	}
}

func (g *gen) u64() uint64 {
	switch g.n(4) {
	case 0:
		return 0
	case 1:
		return math.MaxUint64
	default:
		return g.r.Uint64() >> g.n(64)
	}
}

func (g *gen) i32() int32 {
	switch g.n(6) {
	case 0:
		return 0
	case 1:
		return math.MinInt32
	case 2:
		return math.MaxInt32
	case 3:
		return -int32(g.n(200))
	default:
		return int32(g.r.Uint32()) >> g.n(32)
	}
}

func (g *gen) f64() float64 {
	switch g.n(7) {
	case 0:
		return 0
	case 1:
		return math.Copysign(0, -1)
	case 2:
		return math.NaN()
	case 3:
		return math.Inf(1 - 2*g.n(2))
	case 4:
		return math.SmallestNonzeroFloat64
	default:
		return g.r.NormFloat64() * 1e6
	}
}

func (g *gen) bytes() []byte {
	switch g.n(4) {
	case 0:
		return nil
	case 1:
		return []byte{}
	default:
		b := make([]byte, g.n(300))
		for i := range b {
			b[i] = byte(g.r.Uint32())
		}
		return b
	}
}

func (g *gen) count() int {
	if g.depth > 3 {
		return g.n(2)
	}
	return g.n(4)
}

// unk sometimes gives msg unknown fields.
func (g *gen) unk(msg proto.Message) {
	if g.p(0.03) {
		b := protowire.AppendTag(nil, protowire.Number(500+g.n(100)), protowire.VarintType)
		msg.ProtoReflect().SetUnknown(protowire.AppendVarint(b, g.u64()))
	}
}

func slice[T any](g *gen, f func() T) []T {
	if g.p(0.2) {
		return nil
	}
	s := make([]T, g.count())
	for i := range s {
		s[i] = f()
	}
	return s
}

// msgs is slice for message pointers, with the odd nil element.
func msgs[T any](g *gen, f func() *T) []*T {
	return slice(g, func() *T {
		if g.p(0.05) {
			return nil
		}
		return f()
	})
}

func mapOf[V any](g *gen, f func() V) map[string]V {
	switch g.n(5) {
	case 0:
		return nil
	case 1:
		return map[string]V{}
	}
	m := map[string]V{}
	for i := g.count() + 1; i > 0; i-- {
		m[g.str()] = f()
	}
	return m
}

// opt returns f() or nil.
func opt[T any](g *gen, f func() *T) *T {
	if g.p(0.3) {
		return nil
	}
	return f()
}

func (g *gen) model() *coremlpb.Model {
	m := &coremlpb.Model{SpecificationVersion: g.i32(), IsUpdatable: g.p(0.5), Description: opt(g, g.modelDescription)}
	switch g.n(4) {
	case 0:
	case 1:
		m.Type = (*coremlpb.Model_MlProgram)(nil)
	default:
		m.Type = &coremlpb.Model_MlProgram{MlProgram: opt(g, g.program)}
	}
	g.unk(m)
	return m
}

func (g *gen) modelDescription() *coremlpb.ModelDescription {
	d := &coremlpb.ModelDescription{
		Input: msgs(g, g.featureDescription), Output: msgs(g, g.featureDescription),
		PredictedFeatureName: g.str(), PredictedProbabilitiesName: g.str(),
		State: msgs(g, g.featureDescription), Functions: msgs(g, g.functionDescription),
		DefaultFunctionName: g.str(), TrainingInput: msgs(g, g.featureDescription),
	}
	if g.p(0.5) {
		d.Metadata = &coremlpb.Metadata{ShortDescription: g.str(), VersionString: g.str(), Author: g.str(), License: g.str(), UserDefined: mapOf(g, g.str)}
		g.unk(d.Metadata)
	}
	g.unk(d)
	return d
}

func (g *gen) functionDescription() *coremlpb.FunctionDescription {
	d := &coremlpb.FunctionDescription{
		Name: g.str(), Input: msgs(g, g.featureDescription), Output: msgs(g, g.featureDescription),
		PredictedFeatureName: g.str(), PredictedProbabilitiesName: g.str(), State: msgs(g, g.featureDescription),
	}
	g.unk(d)
	return d
}

func (g *gen) featureDescription() *coremlpb.FeatureDescription {
	d := &coremlpb.FeatureDescription{Name: g.str(), ShortDescription: g.str(), Type: opt(g, g.featureType)}
	g.unk(d)
	return d
}

func (g *gen) featureType() *coremlpb.FeatureType {
	ft := &coremlpb.FeatureType{IsOptional: g.p(0.5)}
	switch g.n(4) {
	case 1:
		ft.Type = &coremlpb.FeatureType_MultiArrayType{MultiArrayType: opt(g, g.arrayFeatureType)}
	case 2, 3:
		st := &coremlpb.StateFeatureType{}
		if g.p(0.8) {
			st.Type = &coremlpb.StateFeatureType_ArrayType{ArrayType: opt(g, g.arrayFeatureType)}
		}
		g.unk(st)
		ft.Type = &coremlpb.FeatureType_StateType{StateType: st}
	}
	g.unk(ft)
	return ft
}

func (g *gen) arrayFeatureType() *coremlpb.ArrayFeatureType {
	dts := []coremlpb.ArrayFeatureType_ArrayDataType{0, coremlpb.ArrayFeatureType_FLOAT16, coremlpb.ArrayFeatureType_INT32, -3, 77}
	a := &coremlpb.ArrayFeatureType{Shape: slice(g, g.i64), DataType: dts[g.n(len(dts))]}
	switch g.n(3) {
	case 1:
		es := &coremlpb.ArrayFeatureType_EnumeratedShapes{Shapes: msgs(g, func() *coremlpb.ArrayFeatureType_Shape {
			s := &coremlpb.ArrayFeatureType_Shape{Shape: slice(g, g.i64)}
			g.unk(s)
			return s
		})}
		g.unk(es)
		a.ShapeFlexibility = &coremlpb.ArrayFeatureType_EnumeratedShapes_{EnumeratedShapes: opt(g, func() *coremlpb.ArrayFeatureType_EnumeratedShapes { return es })}
	case 2:
		sr := &coremlpb.ArrayFeatureType_ShapeRange{SizeRanges: msgs(g, func() *coremlpb.SizeRange {
			r := &coremlpb.SizeRange{LowerBound: g.u64(), UpperBound: g.i64()}
			g.unk(r)
			return r
		})}
		g.unk(sr)
		a.ShapeFlexibility = &coremlpb.ArrayFeatureType_ShapeRange_{ShapeRange: opt(g, func() *coremlpb.ArrayFeatureType_ShapeRange { return sr })}
	}
	switch g.n(4) {
	case 1:
		a.DefaultOptionalValue = &coremlpb.ArrayFeatureType_IntDefaultValue{IntDefaultValue: g.i32()}
	case 2:
		a.DefaultOptionalValue = &coremlpb.ArrayFeatureType_FloatDefaultValue{FloatDefaultValue: float32(g.f64())}
	case 3:
		a.DefaultOptionalValue = &coremlpb.ArrayFeatureType_DoubleDefaultValue{DoubleDefaultValue: g.f64()}
	}
	g.unk(a)
	return a
}

func (g *gen) program() *milpb.Program {
	p := &milpb.Program{Version: g.i64(), Functions: mapOf(g, func() *milpb.Function { return opt(g, g.function) }), DocString: g.str(), Attributes: g.values()}
	g.unk(p)
	return p
}

func (g *gen) values() map[string]*milpb.Value {
	return mapOf(g, func() *milpb.Value { return opt(g, g.value) })
}

func (g *gen) function() *milpb.Function {
	f := &milpb.Function{
		Inputs: msgs(g, g.namedValueType), Opset: g.str(),
		BlockSpecializations: mapOf(g, func() *milpb.Block { return opt(g, g.block) }), Attributes: g.values(),
	}
	g.unk(f)
	return f
}

func (g *gen) block() *milpb.Block {
	g.depth++
	defer func() { g.depth-- }()
	b := &milpb.Block{Inputs: msgs(g, g.namedValueType), Outputs: slice(g, g.str), Operations: msgs(g, g.operation), Attributes: g.values()}
	g.unk(b)
	return b
}

func (g *gen) operation() *milpb.Operation {
	o := &milpb.Operation{Type: g.str(), Inputs: mapOf(g, func() *milpb.Argument { return opt(g, g.argument) }), Outputs: msgs(g, g.namedValueType), Attributes: g.values()}
	if g.depth < 3 {
		o.Blocks = msgs(g, g.block)
	}
	g.unk(o)
	return o
}

func (g *gen) argument() *milpb.Argument {
	a := &milpb.Argument{Arguments: msgs(g, func() *milpb.Argument_Binding {
		b := &milpb.Argument_Binding{}
		switch g.n(3) {
		case 1:
			b.Binding = &milpb.Argument_Binding_Name{Name: g.str()}
		case 2:
			b.Binding = &milpb.Argument_Binding_Value{Value: opt(g, g.value)}
		}
		g.unk(b)
		return b
	})}
	g.unk(a)
	return a
}

func (g *gen) namedValueType() *milpb.NamedValueType {
	n := &milpb.NamedValueType{Name: g.str(), Type: opt(g, g.valueType)}
	g.unk(n)
	return n
}

func (g *gen) valueType() *milpb.ValueType {
	g.depth++
	defer func() { g.depth-- }()
	vt := &milpb.ValueType{}
	k := g.n(6)
	if g.depth > 4 && k > 1 {
		k = 1 // no deeper recursion
	}
	switch k {
	case 1:
		tt := &milpb.TensorType{DataType: []milpb.DataType{0, FP16, INT4, milpb.DataType_FLOAT8E5M2, -1, 200}[g.n(6)], Rank: g.i64(), Dimensions: msgs(g, g.dimension)}
		if g.depth < 3 {
			tt.Attributes = g.values()
		}
		g.unk(tt)
		vt.Type = &milpb.ValueType_TensorType{TensorType: opt(g, func() *milpb.TensorType { return tt })}
	case 2:
		lt := &milpb.ListType{Type: opt(g, g.valueType), Length: opt(g, g.dimension)}
		g.unk(lt)
		vt.Type = &milpb.ValueType_ListType{ListType: opt(g, func() *milpb.ListType { return lt })}
	case 3:
		tt := &milpb.TupleType{Types: msgs(g, g.valueType)}
		g.unk(tt)
		vt.Type = &milpb.ValueType_TupleType{TupleType: opt(g, func() *milpb.TupleType { return tt })}
	case 4:
		dt := &milpb.DictionaryType{KeyType: opt(g, g.valueType), ValueType: opt(g, g.valueType)}
		g.unk(dt)
		vt.Type = &milpb.ValueType_DictionaryType{DictionaryType: opt(g, func() *milpb.DictionaryType { return dt })}
	case 5:
		st := &milpb.StateType{WrappedType: opt(g, g.valueType)}
		g.unk(st)
		vt.Type = &milpb.ValueType_StateType{StateType: opt(g, func() *milpb.StateType { return st })}
	}
	g.unk(vt)
	return vt
}

func (g *gen) dimension() *milpb.Dimension {
	d := &milpb.Dimension{}
	switch g.n(3) {
	case 1:
		c := &milpb.Dimension_ConstantDimension{Size: g.u64()}
		g.unk(c)
		d.Dimension = &milpb.Dimension_Constant{Constant: opt(g, func() *milpb.Dimension_ConstantDimension { return c })}
	case 2:
		u := &milpb.Dimension_UnknownDimension{Variadic: g.p(0.5)}
		g.unk(u)
		d.Dimension = &milpb.Dimension_Unknown{Unknown: opt(g, func() *milpb.Dimension_UnknownDimension { return u })}
	}
	g.unk(d)
	return d
}

func (g *gen) value() *milpb.Value {
	g.depth++
	defer func() { g.depth-- }()
	v := &milpb.Value{DocString: g.str(), Type: opt(g, g.valueType)}
	switch g.n(3) {
	case 1:
		iv := &milpb.Value_ImmediateValue{}
		k := g.n(5)
		if g.depth > 4 && k > 1 {
			k = 1
		}
		switch k {
		case 1:
			iv.Value = &milpb.Value_ImmediateValue_Tensor{Tensor: opt(g, g.tensorValue)}
		case 2:
			tv := &milpb.TupleValue{Values: msgs(g, g.value)}
			g.unk(tv)
			iv.Value = &milpb.Value_ImmediateValue_Tuple{Tuple: opt(g, func() *milpb.TupleValue { return tv })}
		case 3:
			lv := &milpb.ListValue{Values: msgs(g, g.value)}
			g.unk(lv)
			iv.Value = &milpb.Value_ImmediateValue_List{List: opt(g, func() *milpb.ListValue { return lv })}
		case 4:
			dv := &milpb.DictionaryValue{Values: msgs(g, func() *milpb.DictionaryValue_KeyValuePair {
				kv := &milpb.DictionaryValue_KeyValuePair{Key: opt(g, g.value), Value: opt(g, g.value)}
				g.unk(kv)
				return kv
			})}
			g.unk(dv)
			iv.Value = &milpb.Value_ImmediateValue_Dictionary{Dictionary: opt(g, func() *milpb.DictionaryValue { return dv })}
		}
		g.unk(iv)
		v.Value = &milpb.Value_ImmediateValue_{ImmediateValue: opt(g, func() *milpb.Value_ImmediateValue { return iv })}
	case 2:
		b := &milpb.Value_BlobFileValue{FileName: g.str(), Offset: g.u64()}
		g.unk(b)
		v.Value = &milpb.Value_BlobFileValue_{BlobFileValue: opt(g, func() *milpb.Value_BlobFileValue { return b })}
	}
	g.unk(v)
	return v
}

func (g *gen) tensorValue() *milpb.TensorValue {
	tv := &milpb.TensorValue{}
	switch g.n(8) {
	case 1:
		r := &milpb.TensorValue_RepeatedFloats{Values: slice(g, func() float32 { return float32(g.f64()) })}
		g.unk(r)
		tv.Value = &milpb.TensorValue_Floats{Floats: opt(g, func() *milpb.TensorValue_RepeatedFloats { return r })}
	case 2:
		r := &milpb.TensorValue_RepeatedInts{Values: slice(g, g.i32)}
		g.unk(r)
		tv.Value = &milpb.TensorValue_Ints{Ints: opt(g, func() *milpb.TensorValue_RepeatedInts { return r })}
	case 3:
		r := &milpb.TensorValue_RepeatedBools{Values: slice(g, func() bool { return g.p(0.5) })}
		g.unk(r)
		tv.Value = &milpb.TensorValue_Bools{Bools: opt(g, func() *milpb.TensorValue_RepeatedBools { return r })}
	case 4:
		r := &milpb.TensorValue_RepeatedStrings{Values: slice(g, g.str)}
		g.unk(r)
		tv.Value = &milpb.TensorValue_Strings{Strings: opt(g, func() *milpb.TensorValue_RepeatedStrings { return r })}
	case 5:
		r := &milpb.TensorValue_RepeatedLongInts{Values: slice(g, g.i64)}
		g.unk(r)
		tv.Value = &milpb.TensorValue_LongInts{LongInts: opt(g, func() *milpb.TensorValue_RepeatedLongInts { return r })}
	case 6:
		r := &milpb.TensorValue_RepeatedDoubles{Values: slice(g, g.f64)}
		g.unk(r)
		tv.Value = &milpb.TensorValue_Doubles{Doubles: opt(g, func() *milpb.TensorValue_RepeatedDoubles { return r })}
	case 7:
		r := &milpb.TensorValue_RepeatedBytes{Values: g.bytes()}
		g.unk(r)
		tv.Value = &milpb.TensorValue_Bytes{Bytes: opt(g, func() *milpb.TensorValue_RepeatedBytes { return r })}
	}
	g.unk(tv)
	return tv
}

func TestMarshalRandomModels(t *testing.T) {
	g := &gen{r: rand.New(rand.NewPCG(1, 2))}
	var total, failed int
	for i := 0; i < 3000; i++ {
		g.bad = i%10 == 9
		m := g.model()
		requireSameBytes(t, m, "model %d", i)
		if _, err := protoMarshal(m); err != nil {
			failed++
		}
		b, _ := Marshal(m)
		total += len(b)
	}
	// The generator must produce substantial models and some invalid UTF-8.
	require.Greater(t, total, 1<<20)
	require.Positive(t, failed)
}

func FuzzMarshalMatchesProto(f *testing.F) {
	p := buildLayers(f, 2, 1)
	m, err := p.Model("fn_0")
	require.NoError(f, err)
	withStates(m)
	b, err := protoMarshal(m)
	require.NoError(f, err)
	f.Add(b)
	g := &gen{r: rand.New(rand.NewPCG(3, 4))}
	for i := 0; i < 8; i++ {
		b, err := protoMarshal(g.model())
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x09, 0xb2, 0x1f, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &coremlpb.Model{}
		if proto.Unmarshal(data, m) != nil {
			return
		}
		requireSameBytes(t, m)
	})
}

// BenchmarkMarshal compares the encoder with protobuf-go on a model of a few
// thousand ops.
func BenchmarkMarshal(b *testing.B) {
	p := buildLayers(b, 4, 40)
	m, err := p.Model("fn_0")
	require.NoError(b, err)
	want, err := protoMarshal(m)
	require.NoError(b, err)
	ops := 0
	for _, fn := range m.GetMlProgram().GetFunctions() {
		for _, n := range OpCounts(fn) {
			ops += n
		}
	}
	b.Logf("model: %d ops, %d bytes", ops, len(want))
	b.Run("lorapte", func(b *testing.B) {
		b.SetBytes(int64(len(want)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protobuf", func(b *testing.B) {
		b.SetBytes(int64(len(want)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protoMarshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
