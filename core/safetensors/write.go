package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
)

// Tensor is one tensor to write: little-endian row-major data.
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	Data  []byte
}

// Write writes a safetensors file: tensors sorted by name, data packed in
// that order, meta as __metadata__ (omitted when empty), header padded with
// spaces to a multiple of 8 bytes. The same input gives the same bytes.
func Write(w io.Writer, tensors []Tensor, meta map[string]string) error {
	ts := append([]Tensor(nil), tensors...)
	sort.Slice(ts, func(a, b int) bool { return ts[a].Name < ts[b].Name })
	hdr, err := EncodeHeader(ts, meta)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if n := t.Bytes(); int64(len(t.Data)) != n {
			return fmt.Errorf("safetensors: tensor %q: %d data bytes, %s %v needs %d", t.Name, len(t.Data), t.DType, t.Shape, n)
		}
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, t := range ts {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// Bytes is the data size the tensor's dtype and shape call for (-1 for a
// negative dimension).
func (t Tensor) Bytes() int64 {
	n := int64(t.DType.Size())
	for _, d := range t.Shape {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}

// EncodeHeader returns the 8-byte length prefix and the header of a file
// whose tensors (Data is ignored) follow in the given order, which must be
// sorted by name. Writers that stream tensor data (the benchmark's
// multi-GB checkpoints) write it, then the data in that order.
func EncodeHeader(ts []Tensor, meta map[string]string) ([]byte, error) {
	var hdr bytes.Buffer
	hdr.WriteString("\x00\x00\x00\x00\x00\x00\x00\x00{")
	first := true
	if len(meta) > 0 {
		m, err := json.Marshal(meta) // sorted keys
		if err != nil {
			return nil, err
		}
		hdr.WriteString(`"__metadata__":`)
		hdr.Write(m)
		first = false
	}
	var off int64
	for k, t := range ts {
		if t.Name == "" || t.Name == "__metadata__" {
			return nil, fmt.Errorf("safetensors: invalid tensor name %q", t.Name)
		}
		if k > 0 && ts[k-1].Name >= t.Name {
			return nil, fmt.Errorf("safetensors: tensor %q: duplicate or out of name order", t.Name)
		}
		if t.DType.Size() == 0 {
			return nil, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		n := t.Bytes()
		if n < 0 {
			return nil, fmt.Errorf("safetensors: tensor %q: negative dimension in %v", t.Name, t.Shape)
		}
		if !first {
			hdr.WriteByte(',')
		}
		first = false
		name, _ := json.Marshal(t.Name)
		hdr.Write(name)
		hdr.WriteString(`:{"dtype":"` + string(t.DType) + `","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				hdr.WriteByte(',')
			}
			hdr.WriteString(strconv.FormatInt(d, 10))
		}
		hdr.WriteString(`],"data_offsets":[` + strconv.FormatInt(off, 10) + "," + strconv.FormatInt(off+n, 10) + "]}")
		off += n
	}
	hdr.WriteByte('}')
	for (hdr.Len()-8)%8 != 0 {
		hdr.WriteByte(' ')
	}
	b := hdr.Bytes()
	binary.LittleEndian.PutUint64(b, uint64(len(b)-8))
	return b, nil
}
