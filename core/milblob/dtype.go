// Package milblob reads and writes Core ML's MIL blob storage, format version 2
// (the weights/weight.bin file of an ML Program package, coreml.md §3).
//
// Writing is split in two phases so that huge weight files can be streamed: a
// Plan assigns every blob its metadata offset (the number MIL BlobFileValues
// carry) before any data exists, then a Writer emits header, records and data
// in plan order while the caller feeds tensor bytes chunk by chunk.
package milblob

import (
	"strconv"

	"lorapte/core/coremlspec/milpb"
)

// DType is a blob dtype code as stored in a metadata record (coreml.md §3.3).
// It is not the MIL DataType enum; use MIL and DTypeFor to convert.
type DType uint32

// Blob dtype codes.
const (
	FP16     DType = 1
	FP32     DType = 2
	UINT8    DType = 3
	INT8     DType = 4
	BF16     DType = 5
	INT16    DType = 6
	UINT16   DType = 7
	INT4     DType = 8
	UINT1    DType = 9
	UINT2    DType = 10
	UINT4    DType = 11
	UINT3    DType = 12
	UINT6    DType = 13
	INT32    DType = 14
	UINT32   DType = 15
	FP8E4M3  DType = 16
	FP8E5M2  DType = 17
	maxDType       = FP8E5M2
)

type dtypeInfo struct {
	name string
	bits int
	mil  milpb.DataType
}

var dtypeTable = [...]dtypeInfo{
	FP16:    {"fp16", 16, milpb.DataType_FLOAT16},
	FP32:    {"fp32", 32, milpb.DataType_FLOAT32},
	UINT8:   {"uint8", 8, milpb.DataType_UINT8},
	INT8:    {"int8", 8, milpb.DataType_INT8},
	BF16:    {"bf16", 16, milpb.DataType_BFLOAT16},
	INT16:   {"int16", 16, milpb.DataType_INT16},
	UINT16:  {"uint16", 16, milpb.DataType_UINT16},
	INT4:    {"int4", 4, milpb.DataType_INT4},
	UINT1:   {"uint1", 1, milpb.DataType_UINT1},
	UINT2:   {"uint2", 2, milpb.DataType_UINT2},
	UINT4:   {"uint4", 4, milpb.DataType_UINT4},
	UINT3:   {"uint3", 3, milpb.DataType_UINT3},
	UINT6:   {"uint6", 6, milpb.DataType_UINT6},
	INT32:   {"int32", 32, milpb.DataType_INT32},
	UINT32:  {"uint32", 32, milpb.DataType_UINT32},
	FP8E4M3: {"fp8e4m3fn", 8, milpb.DataType_FLOAT8E4M3FN},
	FP8E5M2: {"fp8e5m2", 8, milpb.DataType_FLOAT8E5M2},
}

// Valid reports whether d is a known blob dtype code.
func (d DType) Valid() bool { return d >= FP16 && d <= maxDType }

// Bits is the element width in bits, 0 for an unknown code.
func (d DType) Bits() int {
	if !d.Valid() {
		return 0
	}
	return dtypeTable[d].bits
}

// MIL is the MIL DataType of the code (UNUSED_TYPE for an unknown code).
func (d DType) MIL() milpb.DataType {
	if !d.Valid() {
		return milpb.DataType_UNUSED_TYPE
	}
	return dtypeTable[d].mil
}

func (d DType) String() string {
	if !d.Valid() {
		return "blobdtype(" + strconv.FormatUint(uint64(d), 10) + ")"
	}
	return dtypeTable[d].name
}

// DTypeFor maps a MIL DataType to its blob code; false for types that cannot
// live in a blob file (bool, string, int64, ...).
func DTypeFor(t milpb.DataType) (DType, bool) {
	for d := FP16; d <= maxDType; d++ {
		if dtypeTable[d].mil == t {
			return d, true
		}
	}
	return 0, false
}

// ByteSize is the data size of n elements: ceil(n*bits/8), plus the number of
// unused bits in the last byte (non-zero only for sub-byte types).
func (d DType) ByteSize(n int64) (bytes int64, paddingBits uint64) {
	bits := int64(d.Bits())
	total := n * bits
	return (total + 7) / 8, uint64((8 - total%8) % 8)
}
