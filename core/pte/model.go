// Package pte writes, reads and verifies ExecuTorch .pte files (pte.md): one
// FlatBuffer Program with the 32-byte "eh00" extended header spliced in at byte
// 8, followed by 128-aligned data segments (constant tensors, Core ML CMJR
// references, the flattened Core ML model blob).
//
// Writing is plan-first: Plan builds the small FlatBuffer from a Program whose
// segment sizes are known, and a Writer then streams each segment's bytes in
// order, so weights never pass through memory. Read parses a file defensively
// (every offset is verified before the generated accessors touch it) and Verify
// runs the load-time checks of pte.md §6 that need no Apple device.
package pte

import "fmt"

// ScalarType is a tensor element type code (pte.md §2).
type ScalarType int8

// Scalar type codes.
const (
	Byte     ScalarType = 0
	Char     ScalarType = 1
	Short    ScalarType = 2
	Int      ScalarType = 3
	Long     ScalarType = 4
	Half     ScalarType = 5
	Float    ScalarType = 6
	Double   ScalarType = 7
	Bool     ScalarType = 11
	QInt8    ScalarType = 12
	QUInt8   ScalarType = 13
	QInt32   ScalarType = 14
	BFloat16 ScalarType = 15
	UInt16   ScalarType = 27
	UInt32   ScalarType = 28
	UInt64   ScalarType = 29
)

// elemSizes holds the element size of every code the runtime accepts (0..29),
// including the complex (8..10) and bits (18..21) codes absent from the schema.
var elemSizes = [30]int{1, 1, 2, 4, 8, 2, 4, 8, 4, 8, 16, 1, 1, 1, 4, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 2, 4, 8}

// Size is the element size in bytes; ok is false for codes outside 0..29.
func (t ScalarType) Size() (n int, ok bool) {
	if t < 0 || int(t) >= len(elemSizes) {
		return 0, false
	}
	return elemSizes[t], true
}

// CoreMLBindable reports whether the Core ML delegate can bind tensors of this
// type (pte.md §2: Bool, Byte, Short, Int, Long, Half, Float, Double).
func (t ScalarType) CoreMLBindable() bool {
	switch t {
	case Bool, Byte, Short, Int, Long, Half, Float, Double:
		return true
	}
	return false
}

// Alloc places a memory-planned tensor in arena MemoryID (1-based) at Offset.
type Alloc struct {
	MemoryID uint32
	Offset   uint64
}

// ExtraTensorInfo is the optional Tensor.extra_tensor_info table.
type ExtraTensorInfo struct {
	MutableDataSegmentsIdx uint64
	FullyQualifiedName     string
	Location               int8 // 0 SEGMENT, 1 EXTERNAL (needs a .ptd file)
}

// Tensor is a Tensor table. A nil DimOrder is written as the contiguous order
// [0..rank-1]; Read always returns what the file holds (nil when empty).
type Tensor struct {
	Type          ScalarType
	Sizes         []int32
	DimOrder      []uint8
	DataBufferIdx uint32 // k >= 1 selects constant k; 0 for inputs/outputs
	Alloc         *Alloc // planned I/O; nil for unplanned I/O and constants
	StorageOffset int32
	RequiresGrad  bool
	Layout        int8
	ShapeDynamism int8 // 0 STATIC, 1 DYNAMIC_BOUND, 2 DYNAMIC_UNBOUND
	Extra         *ExtraTensorInfo
}

// NewTensor returns a contiguous tensor of type t and shape sizes.
func NewTensor(t ScalarType, sizes ...int32) *Tensor {
	return &Tensor{Type: t, Sizes: sizes, DimOrder: contiguous(len(sizes))}
}

func contiguous(rank int) []uint8 {
	if rank == 0 {
		return nil
	}
	d := make([]uint8, rank)
	for i := range d {
		d[i] = uint8(i)
	}
	return d
}

// NBytes is numel × element size; ok is false for an unknown type, a negative
// size or a product that overflows 2^62.
func (t *Tensor) NBytes() (n int64, ok bool) {
	es, ok := t.Type.Size()
	if !ok {
		return 0, false
	}
	n = int64(es)
	for _, s := range t.Sizes {
		if s < 0 {
			return 0, false
		}
		if s != 0 && n > (1<<62)/int64(s) {
			return 0, false
		}
		n *= int64(s)
	}
	return n, true
}

// Kind is an EValue's KernelTypes union code.
type Kind uint8

// KernelTypes codes (pte.md §2). KindNone is invalid for the runtime.
const (
	KindNone Kind = iota
	KindNull
	KindInt
	KindBool
	KindDouble
	KindTensor
	KindString
	KindIntList
	KindDoubleList
	KindBoolList
	KindTensorList
	KindOptionalTensorList
)

var kindNames = [...]string{"NONE", "Null", "Int", "Bool", "Double", "Tensor", "String", "IntList", "DoubleList", "BoolList", "TensorList", "OptionalTensorList"}

func (k Kind) valid() bool { return k > KindNone && int(k) < len(kindNames) }

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// EValue is one entry of ExecutionPlan.values; the field matching Kind is used.
type EValue struct {
	Kind    Kind
	Int     int64
	Bool    bool
	Double  float64
	Str     string
	Tensor  *Tensor
	Ints    []int64   // IntList: indices of Int values
	Doubles []float64 // DoubleList
	Bools   []bool    // BoolList
	Items   []int32   // TensorList, OptionalTensorList (-1 = none): value indices
}

// Value constructors.
func NullValue() EValue            { return EValue{Kind: KindNull} }
func IntValue(v int64) EValue      { return EValue{Kind: KindInt, Int: v} }
func BoolValue(v bool) EValue      { return EValue{Kind: KindBool, Bool: v} }
func DoubleValue(v float64) EValue { return EValue{Kind: KindDouble, Double: v} }
func StringValue(v string) EValue  { return EValue{Kind: KindString, Str: v} }
func TensorValue(t *Tensor) EValue { return EValue{Kind: KindTensor, Tensor: t} }

// InstrKind is an Instruction's InstructionArguments union code.
type InstrKind uint8

// InstructionArguments codes. Only DelegateCall is written by lorapte.
const (
	InstrNone InstrKind = iota
	InstrKernelCall
	InstrDelegateCall
	InstrMoveCall
	InstrJumpFalseCall
	InstrFreeCall
)

var instrNames = [...]string{"NONE", "KernelCall", "DelegateCall", "MoveCall", "JumpFalseCall", "FreeCall"}

func (k InstrKind) String() string {
	if int(k) < len(instrNames) {
		return instrNames[k]
	}
	return fmt.Sprintf("InstrKind(%d)", uint8(k))
}

// Instruction is one instruction of a chain.
type Instruction struct {
	Kind InstrKind
	// Index is delegate_index (DelegateCall), op_index (KernelCall), move_from,
	// cond_value_index or value_index (FreeCall).
	Index int32
	Args  []int32 // DelegateCall / KernelCall arguments (value indices)
	To    int32   // move_to (MoveCall) or destination_instruction (JumpFalseCall)
}

// DelegateCall calls Method.Delegates[Delegate] with value indices Args: the
// Core ML inputs in the model's input order, then its outputs (pte.md §3.4).
type DelegateCall struct {
	Delegate int
	Args     []int32
}

// Chain is one instruction chain.
type Chain struct {
	Instructions []Instruction
}

// chains is the method's instructions in the general form.
func (m *Method) chains() []Chain {
	if m.Chains != nil {
		return m.Chains
	}
	c := Chain{}
	for _, dc := range m.Calls {
		c.Instructions = append(c.Instructions, Instruction{Kind: InstrDelegateCall, Index: int32(dc.Delegate), Args: dc.Args})
	}
	return []Chain{c}
}

// Operator is an ExecutionPlan.operators entry (only KernelCalls need them).
type Operator struct {
	Name, Overload string
}

// CompileSpec is one backend compile spec; both key and value are written.
type CompileSpec struct {
	Key   string
	Value []byte
}

// CoreMLBackendID is the delegate id of the Core ML backend.
const CoreMLBackendID = "CoreMLBackend"

// Delegate is a BackendDelegate. Its processed bytes live in segment Segment,
// or, when Inline, in Program.InlineData[Segment].
type Delegate struct {
	ID           string
	Segment      int
	Inline       bool
	CompileSpecs []CompileSpec
}

// Method is an ExecutionPlan.
//
// Its instructions are given in one of two forms. Calls is the usual one: a
// single chain of DelegateCalls (empty for constant methods). Chains, when not
// nil, is written as is instead (Calls must then be empty); it can express
// anything the schema can, e.g. no chain at all. Read returns Calls when the
// method has exactly one chain holding only DelegateCalls, and Chains (non-nil)
// otherwise.
type Method struct {
	Name                  string
	InputSpec, OutputSpec string // container_meta_type encoded_inp_str / encoded_out_str
	Values                []EValue
	Inputs, Outputs       []int32
	Calls                 []DelegateCall
	Chains                []Chain
	Operators             []Operator
	Delegates             []Delegate
	NonConstBufferSizes   []int64
}

// NamedData maps a key to a whole segment (pte.md §1.5).
type NamedData struct {
	Key     string
	Segment int
}

// Program is the Go model of a .pte's Program table plus its segment sizes.
type Program struct {
	Version uint32 // schema version; 0 (not checked by the runtime)
	Methods []Method
	// Segments holds the size of every segment in file order; Plan computes
	// their offsets (first at 0, each next one 128-aligned).
	Segments        []int64
	ConstantSegment int      // index in Segments of the constant segment
	ConstantOffsets []uint64 // constant k starts at ConstantOffsets[k]; [0] = placeholder; nil is written as [0]
	NamedData       []NamedData
	InlineData      [][]byte // backend_delegate_data (INLINE delegate payloads)
}

// DataSegment is a Program.segments entry as stored: Offset is relative to the
// segment base offset.
type DataSegment struct {
	Offset, Size uint64
}

// SubsegmentOffsets is a mutable_data_segments entry (read only).
type SubsegmentOffsets struct {
	Segment int
	Offsets []uint64
}
