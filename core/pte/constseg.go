package pte

// ConstantTensorAlignment is the padding unit between constants in the
// constant segment (the exporter's constant_tensor_alignment).
const ConstantTensorAlignment = 16

// ConstantSegmentBuilder collects constant tensor bytes (constant methods'
// tensors; small) into the constant segment of pte.md §1.4.
type ConstantSegmentBuilder struct {
	data    []byte
	offsets []uint64
	seen    map[string]uint32
}

// NewConstantSegmentBuilder returns a builder holding only the placeholder
// offset 0 (data_buffer_idx 0 = "no constant").
func NewConstantSegmentBuilder() *ConstantSegmentBuilder {
	return &ConstantSegmentBuilder{offsets: []uint64{0}, seen: map[string]uint32{}}
}

// Add appends a constant's raw little-endian bytes and returns its
// data_buffer_idx (>= 1). Identical bytes are stored once and share an index.
func (c *ConstantSegmentBuilder) Add(data []byte) uint32 {
	if idx, ok := c.seen[string(data)]; ok {
		return idx
	}
	// Pad the previous constant, so the last one stays unpadded.
	if len(c.offsets) > 1 {
		for len(c.data)%ConstantTensorAlignment != 0 {
			c.data = append(c.data, 0)
		}
	}
	c.offsets = append(c.offsets, uint64(len(c.data)))
	c.data = append(c.data, data...)
	idx := uint32(len(c.offsets) - 1)
	c.seen[string(data)] = idx
	return idx
}

// Finish returns the segment content and Program.ConstantOffsets
// ([0, offset of constant 1, ...]).
func (c *ConstantSegmentBuilder) Finish() (data []byte, offsets []uint64) {
	return c.data, append([]uint64(nil), c.offsets...)
}
