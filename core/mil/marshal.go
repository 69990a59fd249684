package mil

// A hand-written protobuf encoder for the Core ML model messages
// (core/coremlspec/proto/{Model,MIL,FeatureTypes}.proto). protobuf-go's
// reflection-driven marshal was ~45 % of export planning; this one writes
// the very same bytes as proto.MarshalOptions{Deterministic: true} 2-3x
// faster (it is bound by walking ~10^5 scattered messages, half of its time
// being the per-message unknown-fields lookup through protobuf reflection).
// marshal_test.go checks the equality on real, random and fuzzed models.
//
// The encoder writes back to front: a message's fields are prepended in
// reverse order, so when a child message is finished its length is known and
// is simply prepended before it. Every byte is written exactly once, with no
// size pre-pass and no shifting of already written data.
//
// The rules of protobuf-go's generated-code marshal that it reproduces:
//   - non-oneof fields in field-number order, then each oneof (declaration
//     order), then the message's unknown fields verbatim;
//   - proto3 zero scalars, empty strings and bytes, empty repeated fields and
//     nil message fields are omitted; a set oneof member is always written,
//     a oneof wrapper holding a nil message is written as an empty message;
//   - a nil element of a repeated message field is written as an empty
//     message, and so is a nil map value;
//   - map entries sorted by key (bytewise), key and value always written;
//   - repeated scalars packed; negative int32 and enums as 10-byte varints;
//   - every string (field, repeated, oneof, map key and value) must be valid
//     UTF-8, otherwise marshalling fails.

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"

	"lorapte/core/coremlspec/coremlpb"
	"lorapte/core/coremlspec/milpb"
)

// Wire types.
const (
	wtVarint = 0
	wtI64    = 1
	wtLen    = 2
	wtI32    = 5
)

// encoder holds the bytes written so far in buf[pos:]; it grows at the front.
type encoder struct {
	buf   []byte
	pos   int
	err   error // first error (invalid UTF-8)
	built bool  // no unknown fields to look for (MarshalBuilt)

	// Sorted entries of the maps being written, one stack per value type
	// (maps nest: a Value's type can have attributes).
	valueEntries    []entry[*milpb.Value]
	argumentEntries []entry[*milpb.Argument]
	blockEntries    []entry[*milpb.Block]
	functionEntries []entry[*milpb.Function]
	stringEntries   []entry[string]
}

// entry is one map entry.
type entry[V any] struct {
	k string
	v V
}

// marshalModel encodes m exactly as protobuf-go's deterministic marshal does.
// With built, m has no unknown fields (MarshalBuilt).
func marshalModel(m *coremlpb.Model, built bool) ([]byte, error) {
	if m == nil {
		return nil, nil // protobuf-go: a nil message has no bytes
	}
	e := &encoder{built: built}
	e.grow(sizeHint(m))
	e.model(m)
	if e.err != nil {
		return nil, e.err
	}
	out := e.buf[e.pos:]
	if e.pos > len(out)/16 {
		// The exporter keeps the bytes: do not keep a mostly unused buffer.
		out = append(make([]byte, 0, len(out)), out...)
	}
	return out, nil // never nil, like protobuf-go's result for an empty message
}

// sizeHint guesses the encoded size so that the buffer rarely grows: the
// exporter's models take 150-190 bytes per operation.
func sizeHint(m *coremlpb.Model) int {
	ops := 0
	t, _ := m.Type.(*coremlpb.Model_MlProgram)
	if t == nil { // GetMlProgram would panic on a nil wrapper
		return 1024
	}
	for _, f := range t.MlProgram.GetFunctions() {
		for _, b := range f.GetBlockSpecializations() {
			ops += len(b.GetOperations())
		}
	}
	return 1024 + 176*ops
}

// size is the number of bytes written so far; it is unaffected by growth.
func (e *encoder) size() int { return len(e.buf) - e.pos }

// reserve makes room for n more bytes at the front.
func (e *encoder) reserve(n int) {
	if e.pos < n {
		e.grow(n)
	}
}

// grow reallocates buf with at least n free bytes at the front, keeping the
// written bytes at its end.
func (e *encoder) grow(n int) {
	used := e.size()
	c := max(2*len(e.buf), used+n, 1024)
	nb := make([]byte, c)
	copy(nb[c-used:], e.buf[e.pos:])
	e.buf, e.pos = nb, c-used
}

func (e *encoder) byte1(b byte) {
	if e.pos == 0 {
		e.grow(1)
	}
	e.pos--
	e.buf[e.pos] = b
}

func (e *encoder) uvarint(v uint64) {
	if v < 0x80 {
		e.byte1(byte(v))
		return
	}
	n := (bits.Len64(v) + 6) / 7
	e.reserve(n)
	e.pos -= n
	b := e.buf[e.pos : e.pos+n]
	for i := 0; i < n-1; i++ {
		b[i] = byte(v) | 0x80
		v >>= 7
	}
	b[n-1] = byte(v)
}

func (e *encoder) tag(num int, wt int) { e.uvarint(uint64(num)<<3 | uint64(wt)) }

func (e *encoder) raw(b []byte) {
	e.reserve(len(b))
	e.pos -= len(b)
	copy(e.buf[e.pos:], b)
}

func (e *encoder) rawString(s string) {
	e.reserve(len(s))
	e.pos -= len(s)
	copy(e.buf[e.pos:], s)
}

// closeField prepends the length and tag of the length-delimited field num
// whose content was written after the size was mark.
func (e *encoder) closeField(num int, mark int) {
	e.uvarint(uint64(e.size() - mark))
	e.tag(num, wtLen)
}

// str writes string field num (named field, for errors) unconditionally.
func (e *encoder) str(num int, s string, field string) {
	if e.err == nil && !utf8.ValidString(s) {
		e.err = fmt.Errorf("mil: marshal: %s is not valid UTF-8", field)
	}
	e.rawString(s)
	e.uvarint(uint64(len(s)))
	e.tag(num, wtLen)
}

// optStr writes a proto3 string field unless it is empty.
func (e *encoder) optStr(num int, s string, field string) {
	if s != "" {
		e.str(num, s, field)
	}
}

func (e *encoder) strs(num int, ss []string, field string) {
	for i := len(ss) - 1; i >= 0; i-- {
		e.str(num, ss[i], field)
	}
}

func (e *encoder) optVarint(num int, v uint64) {
	if v != 0 {
		e.uvarint(v)
		e.tag(num, wtVarint)
	}
}

func (e *encoder) optBool(num int, v bool) {
	if v {
		e.optVarint(num, 1)
	}
}

// unknown writes the unknown fields protobuf-go kept when m was parsed
// (they follow all known fields, so they are written first here).
func (e *encoder) unknown(m protoreflect.ProtoMessage) {
	if e.built {
		return
	}
	if u := m.ProtoReflect().GetUnknown(); len(u) > 0 {
		e.raw(u)
	}
}

// writeMap writes map field num: its entries sorted by key (deterministic
// marshal), each {key = 1, value = 2} with both always present. val writes
// one value's content. stack is the encoder's scratch stack for this value
// type; it is indexed afresh each time because nested maps may reallocate it.
func writeMap[V any](e *encoder, stack *[]entry[V], num int, m map[string]V, keyField string, val func(*encoder, V)) {
	if len(m) == 0 {
		return
	}
	lo := len(*stack)
	for k, v := range m {
		*stack = append(*stack, entry[V]{k, v})
	}
	hi := len(*stack)
	if hi-lo > 1 {
		slices.SortFunc((*stack)[lo:hi], func(a, b entry[V]) int { return strings.Compare(a.k, b.k) })
	}
	for i := hi - 1; i >= lo; i-- {
		kv := (*stack)[i]
		mark := e.size()
		val(e, kv.v)
		e.str(1, kv.k, keyField)
		e.closeField(num, mark)
	}
	clear((*stack)[lo:hi]) // drop references to the model
	*stack = (*stack)[:lo]
}

// Map value writers: each writes field 2 of an entry.
func mapString(e *encoder, v string) { e.str(2, v, "Metadata.userDefined value") }

func mapValue(e *encoder, v *milpb.Value) {
	mark := e.size()
	e.value(v)
	e.closeField(2, mark)
}

func mapArgument(e *encoder, v *milpb.Argument) {
	mark := e.size()
	e.argument(v)
	e.closeField(2, mark)
}

func mapBlock(e *encoder, v *milpb.Block) {
	mark := e.size()
	e.block(v)
	e.closeField(2, mark)
}

func mapFunction(e *encoder, v *milpb.Function) {
	mark := e.size()
	e.function(v)
	e.closeField(2, mark)
}

// ---- Model.proto ----

func (e *encoder) model(x *coremlpb.Model) {
	e.unknown(x)
	switch t := x.Type.(type) {
	case *coremlpb.Model_MlProgram:
		if t != nil {
			mark := e.size()
			e.program(t.MlProgram)
			e.closeField(502, mark)
		}
	}
	e.optBool(10, x.IsUpdatable)
	if x.Description != nil {
		mark := e.size()
		e.modelDescription(x.Description)
		e.closeField(2, mark)
	}
	e.optVarint(1, uint64(x.SpecificationVersion))
}

func (e *encoder) modelDescription(x *coremlpb.ModelDescription) {
	if x == nil {
		return
	}
	e.unknown(x)
	if x.Metadata != nil {
		mark := e.size()
		e.metadata(x.Metadata)
		e.closeField(100, mark)
	}
	e.featureDescriptions(50, x.TrainingInput)
	e.optStr(21, x.DefaultFunctionName, "ModelDescription.defaultFunctionName")
	for i := len(x.Functions) - 1; i >= 0; i-- {
		mark := e.size()
		e.functionDescription(x.Functions[i])
		e.closeField(20, mark)
	}
	e.featureDescriptions(13, x.State)
	e.optStr(12, x.PredictedProbabilitiesName, "ModelDescription.predictedProbabilitiesName")
	e.optStr(11, x.PredictedFeatureName, "ModelDescription.predictedFeatureName")
	e.featureDescriptions(10, x.Output)
	e.featureDescriptions(1, x.Input)
}

func (e *encoder) functionDescription(x *coremlpb.FunctionDescription) {
	if x == nil {
		return
	}
	e.unknown(x)
	e.featureDescriptions(6, x.State)
	e.optStr(5, x.PredictedProbabilitiesName, "FunctionDescription.predictedProbabilitiesName")
	e.optStr(4, x.PredictedFeatureName, "FunctionDescription.predictedFeatureName")
	e.featureDescriptions(3, x.Output)
	e.featureDescriptions(2, x.Input)
	e.optStr(1, x.Name, "FunctionDescription.name")
}

func (e *encoder) featureDescriptions(num int, s []*coremlpb.FeatureDescription) {
	for i := len(s) - 1; i >= 0; i-- {
		mark := e.size()
		e.featureDescription(s[i])
		e.closeField(num, mark)
	}
}

func (e *encoder) featureDescription(x *coremlpb.FeatureDescription) {
	if x == nil {
		return
	}
	e.unknown(x)
	if x.Type != nil {
		mark := e.size()
		e.featureType(x.Type)
		e.closeField(3, mark)
	}
	e.optStr(2, x.ShortDescription, "FeatureDescription.shortDescription")
	e.optStr(1, x.Name, "FeatureDescription.name")
}

func (e *encoder) metadata(x *coremlpb.Metadata) {
	e.unknown(x)
	writeMap(e, &e.stringEntries, 100, x.UserDefined, "Metadata.userDefined key", mapString)
	e.optStr(4, x.License, "Metadata.license")
	e.optStr(3, x.Author, "Metadata.author")
	e.optStr(2, x.VersionString, "Metadata.versionString")
	e.optStr(1, x.ShortDescription, "Metadata.shortDescription")
}

// ---- FeatureTypes.proto ----

func (e *encoder) featureType(x *coremlpb.FeatureType) {
	e.unknown(x)
	// The oneof follows isOptional (1000) on the wire: oneofs go last.
	switch t := x.Type.(type) {
	case *coremlpb.FeatureType_MultiArrayType:
		if t != nil {
			mark := e.size()
			e.arrayFeatureType(t.MultiArrayType)
			e.closeField(5, mark)
		}
	case *coremlpb.FeatureType_StateType:
		if t != nil {
			mark := e.size()
			e.stateFeatureType(t.StateType)
			e.closeField(8, mark)
		}
	}
	e.optBool(1000, x.IsOptional)
}

func (e *encoder) stateFeatureType(x *coremlpb.StateFeatureType) {
	if x == nil {
		return
	}
	e.unknown(x)
	switch t := x.Type.(type) {
	case *coremlpb.StateFeatureType_ArrayType:
		if t != nil {
			mark := e.size()
			e.arrayFeatureType(t.ArrayType)
			e.closeField(1, mark)
		}
	}
}

func (e *encoder) arrayFeatureType(x *coremlpb.ArrayFeatureType) {
	if x == nil {
		return
	}
	e.unknown(x)
	// Oneofs last, in declaration order: ShapeFlexibility, defaultOptionalValue.
	switch t := x.DefaultOptionalValue.(type) {
	case *coremlpb.ArrayFeatureType_IntDefaultValue:
		if t != nil {
			e.uvarint(uint64(int64(t.IntDefaultValue)))
			e.tag(41, wtVarint)
		}
	case *coremlpb.ArrayFeatureType_FloatDefaultValue:
		if t != nil {
			e.fixed32(math.Float32bits(t.FloatDefaultValue))
			e.tag(51, wtI32)
		}
	case *coremlpb.ArrayFeatureType_DoubleDefaultValue:
		if t != nil {
			e.fixed64(math.Float64bits(t.DoubleDefaultValue))
			e.tag(61, wtI64)
		}
	}
	switch t := x.ShapeFlexibility.(type) {
	case *coremlpb.ArrayFeatureType_EnumeratedShapes_:
		if t != nil {
			mark := e.size()
			e.enumeratedShapes(t.EnumeratedShapes)
			e.closeField(21, mark)
		}
	case *coremlpb.ArrayFeatureType_ShapeRange_:
		if t != nil {
			mark := e.size()
			e.shapeRange(t.ShapeRange)
			e.closeField(31, mark)
		}
	}
	e.optVarint(2, uint64(int64(x.DataType)))
	e.packedInt64s(1, x.Shape)
}

func (e *encoder) enumeratedShapes(x *coremlpb.ArrayFeatureType_EnumeratedShapes) {
	if x == nil {
		return
	}
	e.unknown(x)
	for i := len(x.Shapes) - 1; i >= 0; i-- {
		mark := e.size()
		if s := x.Shapes[i]; s != nil {
			e.unknown(s)
			e.packedInt64s(1, s.Shape)
		}
		e.closeField(1, mark)
	}
}

func (e *encoder) shapeRange(x *coremlpb.ArrayFeatureType_ShapeRange) {
	if x == nil {
		return
	}
	e.unknown(x)
	for i := len(x.SizeRanges) - 1; i >= 0; i-- {
		mark := e.size()
		if r := x.SizeRanges[i]; r != nil {
			e.unknown(r)
			e.optVarint(2, uint64(r.UpperBound))
			e.optVarint(1, r.LowerBound)
		}
		e.closeField(1, mark)
	}
}

// ---- scalars ----

func (e *encoder) fixed32(v uint32) {
	e.reserve(4)
	e.pos -= 4
	binary.LittleEndian.PutUint32(e.buf[e.pos:], v)
}

func (e *encoder) fixed64(v uint64) {
	e.reserve(8)
	e.pos -= 8
	binary.LittleEndian.PutUint64(e.buf[e.pos:], v)
}

func (e *encoder) packedInt64s(num int, s []int64) {
	if len(s) == 0 {
		return
	}
	mark := e.size()
	for i := len(s) - 1; i >= 0; i-- {
		e.uvarint(uint64(s[i]))
	}
	e.closeField(num, mark)
}

func (e *encoder) packedInt32s(num int, s []int32) {
	if len(s) == 0 {
		return
	}
	mark := e.size()
	for i := len(s) - 1; i >= 0; i-- {
		e.uvarint(uint64(int64(s[i]))) // sign-extended, as protobuf requires
	}
	e.closeField(num, mark)
}

func (e *encoder) packedFloats(num int, s []float32) {
	if len(s) == 0 {
		return
	}
	e.reserve(4 * len(s))
	e.pos -= 4 * len(s)
	b := e.buf[e.pos:]
	for i, v := range s {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	e.uvarint(uint64(4 * len(s)))
	e.tag(num, wtLen)
}

func (e *encoder) packedDoubles(num int, s []float64) {
	if len(s) == 0 {
		return
	}
	e.reserve(8 * len(s))
	e.pos -= 8 * len(s)
	b := e.buf[e.pos:]
	for i, v := range s {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	e.uvarint(uint64(8 * len(s)))
	e.tag(num, wtLen)
}

func (e *encoder) packedBools(num int, s []bool) {
	if len(s) == 0 {
		return
	}
	e.reserve(len(s))
	e.pos -= len(s)
	b := e.buf[e.pos:]
	for i, v := range s {
		b[i] = 0
		if v {
			b[i] = 1
		}
	}
	e.uvarint(uint64(len(s)))
	e.tag(num, wtLen)
}

// ---- MIL.proto ----

// valueMap writes a map<string, Value> field.
func (e *encoder) valueMap(num int, m map[string]*milpb.Value, keyField string) {
	writeMap(e, &e.valueEntries, num, m, keyField, mapValue)
}

func (e *encoder) program(x *milpb.Program) {
	if x == nil {
		return
	}
	e.unknown(x)
	e.valueMap(4, x.Attributes, "Program.attributes key")
	e.optStr(3, x.DocString, "Program.docString")
	writeMap(e, &e.functionEntries, 2, x.Functions, "Program.functions key", mapFunction)
	e.optVarint(1, uint64(x.Version))
}

func (e *encoder) function(x *milpb.Function) {
	if x == nil {
		return
	}
	e.unknown(x)
	e.valueMap(4, x.Attributes, "Function.attributes key")
	writeMap(e, &e.blockEntries, 3, x.BlockSpecializations, "Function.block_specializations key", mapBlock)
	e.optStr(2, x.Opset, "Function.opset")
	e.namedValueTypes(1, x.Inputs)
}

func (e *encoder) block(x *milpb.Block) {
	if x == nil {
		return
	}
	e.unknown(x)
	e.valueMap(4, x.Attributes, "Block.attributes key")
	for i := len(x.Operations) - 1; i >= 0; i-- {
		mark := e.size()
		e.operation(x.Operations[i])
		e.closeField(3, mark)
	}
	e.strs(2, x.Outputs, "Block.outputs")
	e.namedValueTypes(1, x.Inputs)
}

func (e *encoder) operation(x *milpb.Operation) {
	if x == nil {
		return
	}
	e.unknown(x)
	e.valueMap(5, x.Attributes, "Operation.attributes key")
	for i := len(x.Blocks) - 1; i >= 0; i-- {
		mark := e.size()
		e.block(x.Blocks[i])
		e.closeField(4, mark)
	}
	e.namedValueTypes(3, x.Outputs)
	writeMap(e, &e.argumentEntries, 2, x.Inputs, "Operation.inputs key", mapArgument)
	e.optStr(1, x.Type, "Operation.type")
}

func (e *encoder) argument(x *milpb.Argument) {
	if x == nil {
		return
	}
	e.unknown(x)
	for i := len(x.Arguments) - 1; i >= 0; i-- {
		mark := e.size()
		if b := x.Arguments[i]; b != nil {
			e.unknown(b)
			switch t := b.Binding.(type) {
			case *milpb.Argument_Binding_Name:
				if t != nil {
					e.str(1, t.Name, "Argument.Binding.name")
				}
			case *milpb.Argument_Binding_Value:
				if t != nil {
					vmark := e.size()
					e.value(t.Value)
					e.closeField(2, vmark)
				}
			}
		}
		e.closeField(1, mark)
	}
}

func (e *encoder) namedValueTypes(num int, s []*milpb.NamedValueType) {
	for i := len(s) - 1; i >= 0; i-- {
		mark := e.size()
		if x := s[i]; x != nil {
			e.unknown(x)
			if x.Type != nil {
				tmark := e.size()
				e.valueType(x.Type)
				e.closeField(2, tmark)
			}
			e.optStr(1, x.Name, "NamedValueType.name")
		}
		e.closeField(num, mark)
	}
}

// optValueType writes a non-oneof ValueType field (omitted when nil).
func (e *encoder) optValueType(num int, x *milpb.ValueType) {
	if x != nil {
		mark := e.size()
		e.valueType(x)
		e.closeField(num, mark)
	}
}

func (e *encoder) valueType(x *milpb.ValueType) {
	if x == nil {
		return
	}
	e.unknown(x)
	mark := e.size()
	switch t := x.Type.(type) {
	case *milpb.ValueType_TensorType:
		if t != nil {
			e.tensorType(t.TensorType)
			e.closeField(1, mark)
		}
	case *milpb.ValueType_ListType:
		if t != nil {
			if l := t.ListType; l != nil {
				e.unknown(l)
				if l.Length != nil {
					dmark := e.size()
					e.dimension(l.Length)
					e.closeField(2, dmark)
				}
				e.optValueType(1, l.Type)
			}
			e.closeField(2, mark)
		}
	case *milpb.ValueType_TupleType:
		if t != nil {
			if tt := t.TupleType; tt != nil {
				e.unknown(tt)
				for i := len(tt.Types) - 1; i >= 0; i-- {
					emark := e.size()
					e.valueType(tt.Types[i])
					e.closeField(1, emark)
				}
			}
			e.closeField(3, mark)
		}
	case *milpb.ValueType_DictionaryType:
		if t != nil {
			if d := t.DictionaryType; d != nil {
				e.unknown(d)
				e.optValueType(2, d.ValueType)
				e.optValueType(1, d.KeyType)
			}
			e.closeField(4, mark)
		}
	case *milpb.ValueType_StateType:
		if t != nil {
			if s := t.StateType; s != nil {
				e.unknown(s)
				e.optValueType(1, s.WrappedType)
			}
			e.closeField(5, mark)
		}
	}
}

func (e *encoder) tensorType(x *milpb.TensorType) {
	if x == nil {
		return
	}
	e.unknown(x)
	e.valueMap(4, x.Attributes, "TensorType.attributes key")
	for i := len(x.Dimensions) - 1; i >= 0; i-- {
		mark := e.size()
		e.dimension(x.Dimensions[i])
		e.closeField(3, mark)
	}
	e.optVarint(2, uint64(x.Rank))
	e.optVarint(1, uint64(int64(x.DataType)))
}

func (e *encoder) dimension(x *milpb.Dimension) {
	if x == nil {
		return
	}
	e.unknown(x)
	mark := e.size()
	switch t := x.Dimension.(type) {
	case *milpb.Dimension_Constant:
		if t != nil {
			if c := t.Constant; c != nil {
				e.unknown(c)
				e.optVarint(1, c.Size)
			}
			e.closeField(1, mark)
		}
	case *milpb.Dimension_Unknown:
		if t != nil {
			if u := t.Unknown; u != nil {
				e.unknown(u)
				e.optBool(1, u.Variadic)
			}
			e.closeField(2, mark)
		}
	}
}

func (e *encoder) value(x *milpb.Value) {
	if x == nil {
		return
	}
	e.unknown(x)
	mark := e.size()
	switch t := x.Value.(type) {
	case *milpb.Value_ImmediateValue_:
		if t != nil {
			e.immediateValue(t.ImmediateValue)
			e.closeField(3, mark)
		}
	case *milpb.Value_BlobFileValue_:
		if t != nil {
			if b := t.BlobFileValue; b != nil {
				e.unknown(b)
				e.optVarint(2, b.Offset)
				e.optStr(1, b.FileName, "Value.BlobFileValue.fileName")
			}
			e.closeField(5, mark)
		}
	}
	e.optValueType(2, x.Type)
	e.optStr(1, x.DocString, "Value.docString")
}

func (e *encoder) immediateValue(x *milpb.Value_ImmediateValue) {
	if x == nil {
		return
	}
	e.unknown(x)
	mark := e.size()
	switch t := x.Value.(type) {
	case *milpb.Value_ImmediateValue_Tensor:
		if t != nil {
			e.tensorValue(t.Tensor)
			e.closeField(1, mark)
		}
	case *milpb.Value_ImmediateValue_Tuple:
		if t != nil {
			if v := t.Tuple; v != nil {
				e.unknown(v)
				e.values(v.Values)
			}
			e.closeField(2, mark)
		}
	case *milpb.Value_ImmediateValue_List:
		if t != nil {
			if v := t.List; v != nil {
				e.unknown(v)
				e.values(v.Values)
			}
			e.closeField(3, mark)
		}
	case *milpb.Value_ImmediateValue_Dictionary:
		if t != nil {
			if d := t.Dictionary; d != nil {
				e.unknown(d)
				for i := len(d.Values) - 1; i >= 0; i-- {
					pmark := e.size()
					if kv := d.Values[i]; kv != nil {
						e.unknown(kv)
						if kv.Value != nil {
							vmark := e.size()
							e.value(kv.Value)
							e.closeField(2, vmark)
						}
						if kv.Key != nil {
							kmark := e.size()
							e.value(kv.Key)
							e.closeField(1, kmark)
						}
					}
					e.closeField(1, pmark)
				}
			}
			e.closeField(4, mark)
		}
	}
}

// values writes `repeated Value values = 1` of TupleValue and ListValue.
func (e *encoder) values(s []*milpb.Value) {
	for i := len(s) - 1; i >= 0; i-- {
		mark := e.size()
		e.value(s[i])
		e.closeField(1, mark)
	}
}

func (e *encoder) tensorValue(x *milpb.TensorValue) {
	if x == nil {
		return
	}
	e.unknown(x)
	mark := e.size()
	// Each alternative is a message whose only field is `values = 1`.
	switch t := x.Value.(type) {
	case *milpb.TensorValue_Floats:
		if t != nil {
			if v := t.Floats; v != nil {
				e.unknown(v)
				e.packedFloats(1, v.Values)
			}
			e.closeField(1, mark)
		}
	case *milpb.TensorValue_Ints:
		if t != nil {
			if v := t.Ints; v != nil {
				e.unknown(v)
				e.packedInt32s(1, v.Values)
			}
			e.closeField(2, mark)
		}
	case *milpb.TensorValue_Bools:
		if t != nil {
			if v := t.Bools; v != nil {
				e.unknown(v)
				e.packedBools(1, v.Values)
			}
			e.closeField(3, mark)
		}
	case *milpb.TensorValue_Strings:
		if t != nil {
			if v := t.Strings; v != nil {
				e.unknown(v)
				e.strs(1, v.Values, "TensorValue.RepeatedStrings.values")
			}
			e.closeField(4, mark)
		}
	case *milpb.TensorValue_LongInts:
		if t != nil {
			if v := t.LongInts; v != nil {
				e.unknown(v)
				e.packedInt64s(1, v.Values)
			}
			e.closeField(5, mark)
		}
	case *milpb.TensorValue_Doubles:
		if t != nil {
			if v := t.Doubles; v != nil {
				e.unknown(v)
				e.packedDoubles(1, v.Values)
			}
			e.closeField(6, mark)
		}
	case *milpb.TensorValue_Bytes:
		if t != nil {
			if v := t.Bytes; v != nil {
				e.unknown(v)
				if len(v.Values) > 0 {
					e.raw(v.Values)
					e.uvarint(uint64(len(v.Values)))
					e.tag(1, wtLen)
				}
			}
			e.closeField(7, mark)
		}
	}
}
