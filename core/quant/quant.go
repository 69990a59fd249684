// Package quant reproduces torchao's symmetric IntxWeightOnly quantization
// bit for bit (model.md §6, Decision (d)) and provides the float16/bfloat16
// conversions the rest of lorapte uses.
//
// Codes and scales are computed per block: a whole row (Group 0) or Group
// consecutive columns of a row. In float16 mode every step rounds to float16
// exactly where torch does when it runs the same formulas on fp16 tensors.
package quant

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Scheme is a weight-only quantization scheme: Bits 4 or 8, Group 0 for one
// scale per row, else one scale per Group consecutive columns.
type Scheme struct {
	Bits  int
	Group int
}

// String gives the CLI form "bits,group".
func (s Scheme) String() string { return fmt.Sprintf("%d,%d", s.Bits, s.Group) }

// Range returns [qmin, qmax] of the codes: [-8, 7] or [-128, 127].
func (s Scheme) Range() (qmin, qmax int) {
	if s.Bits == 4 {
		return -8, 7
	}
	return -128, 127
}

// GroupSize is the block width for rows of cols columns, checking that the
// scheme is valid and that the group divides cols.
func (s Scheme) GroupSize(cols int) (int, error) {
	if s.Bits != 4 && s.Bits != 8 {
		return 0, fmt.Errorf("quant: %d bits not supported (4 or 8)", s.Bits)
	}
	if cols <= 0 {
		return 0, fmt.Errorf("quant: %d columns", cols)
	}
	switch {
	case s.Group == 0:
		return cols, nil
	case s.Group < 0:
		return 0, fmt.Errorf("quant: negative group size %d", s.Group)
	case cols%s.Group != 0:
		return 0, fmt.Errorf("quant: group size %d does not divide %d columns", s.Group, cols)
	}
	return s.Group, nil
}

// ScaleCount is the number of scales per row.
func (s Scheme) ScaleCount(cols int) (int, error) {
	g, err := s.GroupSize(cols)
	if err != nil {
		return 0, err
	}
	return cols / g, nil
}

// ParseEmbedding parses the --embedding-quantize value "bits,group" (e.g.
// "8,0", "4,32") or "none" (nil scheme).
func ParseEmbedding(v string) (*Scheme, error) {
	if v == "none" {
		return nil, nil
	}
	b, g, ok := strings.Cut(v, ",")
	if !ok {
		return nil, fmt.Errorf("embedding quantization %q: want \"bits,group\" (e.g. 8,0 or 4,32) or \"none\"", v)
	}
	bits, err1 := strconv.Atoi(strings.TrimSpace(b))
	group, err2 := strconv.Atoi(strings.TrimSpace(g))
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("embedding quantization %q: bits and group must be integers", v)
	}
	if bits != 4 && bits != 8 {
		return nil, fmt.Errorf("embedding quantization %q: bits must be 4 or 8", v)
	}
	if group < 0 {
		return nil, fmt.Errorf("embedding quantization %q: group must be >= 0", v)
	}
	return &Scheme{Bits: bits, Group: group}, nil
}

// ParseLinear parses the --linear-quantize value: "c4w" (int4, one scale per
// output row), "b4w" (int4, groups of 32 input columns) or "none" (nil).
func ParseLinear(v string) (*Scheme, error) {
	switch v {
	case "none":
		return nil, nil
	case "c4w":
		return &Scheme{Bits: 4}, nil
	case "b4w":
		return &Scheme{Bits: 4, Group: 32}, nil
	}
	return nil, fmt.Errorf("linear quantization %q: want c4w, b4w or none", v)
}

const (
	epsF16 = 1.0 / 1024       // torch.finfo(torch.float16).eps
	epsF32 = 1.0 / (1 << 23)  // torch.finfo(torch.float32).eps
	magic  = 1.5 * (1 << 23)  // adding and subtracting it rounds half to even
	maxF16 = float32(65504.0) // largest finite float16
)

// roundEven rounds |v| < 2^22 to the nearest integer, ties to even, in
// float32 only (the explicit conversions keep the two steps unfused).
func roundEven(v float32) float32 {
	return float32(float32(v+magic) - magic)
}

// roundF16Normal is RoundF16 for results in float16's normal range, small
// enough to be inlined in the quantization loop; ok is false elsewhere.
func roundF16Normal(f float32) (float32, bool) {
	b := math.Float32bits(f)
	r := (b + 0xfff + (b>>13)&1) &^ 0x1fff
	return math.Float32frombits(r), (b>>23)&0xff-113 <= 142-113 && (r>>23)&0xff <= 142
}

func clampCode(v, lo, hi float32) int8 {
	if v < lo {
		v = lo
	}
	if v > hi {
		v = hi
	}
	return int8(v)
}

func checkSizes(rows, cols, nw, ncodes, nscales, perRow int) error {
	if rows < 0 {
		return fmt.Errorf("quant: %d rows", rows)
	}
	n := rows * cols
	if cols != 0 && n/cols != rows {
		return fmt.Errorf("quant: %d x %d overflows", rows, cols)
	}
	if nw < n || ncodes < n {
		return fmt.Errorf("quant: need %d weights and codes, have %d and %d", n, nw, ncodes)
	}
	if nscales < rows*perRow {
		return fmt.Errorf("quant: need %d scales, have %d", rows*perRow, nscales)
	}
	return nil
}

// ScaleF16 is torchao's float16 block scale for a block whose largest
// magnitude is amax, with div = (qmax-qmin)/2: torch divides the fp16 amax
// by the Python float in float arithmetic, rounds the quotient to fp16 and
// floors it at fp16 eps. It returns the scale's bits and its fp16 inverse,
// which the codes are computed with.
func ScaleF16(amax, div float32) (bits uint16, inv float32) {
	scale := RoundF16(amax / div)
	if scale < epsF16 {
		scale = epsF16
	}
	return F32ToF16(scale), RoundF16(1 / scale)
}

// QuantizeRowsF16 quantizes a rows×cols row-major matrix as torchao does on a
// float16 tensor. w holds float32 values; they are first rounded to float16
// (the export casts the model to fp16 before quantizing), so fp16-exact input
// is used as is. codes receives rows*cols codes, scales rows*(cols/group)
// float16 bits. It allocates nothing. Non-finite weights are an error.
func QuantizeRowsF16(w []float32, rows, cols int, s Scheme, codes []int8, scales []uint16) error {
	g, err := s.GroupSize(cols)
	if err != nil {
		return err
	}
	per := cols / g
	if err := checkSizes(rows, cols, len(w), len(codes), len(scales), per); err != nil {
		return err
	}
	qmin, qmax := s.Range()
	fmin, fmax := float32(qmin), float32(qmax)
	div := float32(qmax-qmin) / 2 // 7.5 or 127.5, exact
	for r := 0; r < rows; r++ {
		for b := 0; b < per; b++ {
			off := r*cols + b*g
			blk := w[off : off+g]
			var amax float32
			exact := true // the common case: weights already fp16 values
			for c, x := range blk {
				xr, ok := roundF16Normal(x)
				if !ok {
					xr = RoundF16(x)
				}
				if !(xr >= -maxF16 && xr <= maxF16) {
					return fmt.Errorf("quant: weight [%d, %d] = %v is not a finite float16", r, b*g+c, x)
				}
				exact = exact && xr == x
				if xr < 0 {
					xr = -xr
				}
				if xr > amax {
					amax = xr
				}
			}
			var inv float32
			scales[r*per+b], inv = ScaleF16(amax, div)
			out := codes[off : off+g]
			for c, x := range blk {
				if !exact {
					x = RoundF16(x)
				}
				p, ok := roundF16Normal(float32(x * inv))
				if !ok {
					p = RoundF16(float32(x * inv))
				}
				out[c] = clampCode(roundEven(p), fmin, fmax)
			}
		}
	}
	return nil
}

// QuantizeRowsF32 is QuantizeRowsF16 for a float32 model (--dtype fp32):
// every step in float32, eps = float32 epsilon, scales as float32.
func QuantizeRowsF32(w []float32, rows, cols int, s Scheme, codes []int8, scales []float32) error {
	g, err := s.GroupSize(cols)
	if err != nil {
		return err
	}
	per := cols / g
	if err := checkSizes(rows, cols, len(w), len(codes), len(scales), per); err != nil {
		return err
	}
	qmin, qmax := s.Range()
	fmin, fmax := float32(qmin), float32(qmax)
	div := float32(qmax-qmin) / 2
	for r := 0; r < rows; r++ {
		for b := 0; b < per; b++ {
			off := r*cols + b*g
			blk := w[off : off+g]
			var amax float32
			for c, x := range blk {
				if !(x >= -math.MaxFloat32 && x <= math.MaxFloat32) {
					return fmt.Errorf("quant: weight [%d, %d] = %v is not finite", r, b*g+c, x)
				}
				if x < 0 {
					x = -x
				}
				if x > amax {
					amax = x
				}
			}
			scale := float32(amax / div)
			if scale < epsF32 {
				scale = epsF32
			}
			scales[r*per+b] = scale
			inv := float32(1 / scale)
			out := codes[off : off+g]
			for c, x := range blk {
				out[c] = clampCode(roundEven(float32(x*inv)), fmin, fmax)
			}
		}
	}
	return nil
}

// DequantizeRowsF16 computes w_hat = fp16(code * scale) (what Core ML's
// constexpr_blockwise_shift_scale yields in fp16) into dst as float32 values.
func DequantizeRowsF16(codes []int8, scales []uint16, rows, cols int, s Scheme, dst []float32) error {
	g, err := s.GroupSize(cols)
	if err != nil {
		return err
	}
	per := cols / g
	if err := checkSizes(rows, cols, len(dst), len(codes), len(scales), per); err != nil {
		return err
	}
	for i := 0; i < rows*cols; i++ {
		r, c := i/cols, i%cols
		sc := F16ToF32(scales[r*per+c/g])
		dst[i] = RoundF16(float32(float32(codes[i]) * sc))
	}
	return nil
}

// DequantizeRowsF32 computes w_hat = code * scale in float32.
func DequantizeRowsF32(codes []int8, scales []float32, rows, cols int, s Scheme, dst []float32) error {
	g, err := s.GroupSize(cols)
	if err != nil {
		return err
	}
	per := cols / g
	if err := checkSizes(rows, cols, len(dst), len(codes), len(scales), per); err != nil {
		return err
	}
	for i := 0; i < rows*cols; i++ {
		r, c := i/cols, i%cols
		dst[i] = float32(float32(codes[i]) * scales[r*per+c/g])
	}
	return nil
}
