//go:build js && wasm

package jsbridge

import (
	"encoding/binary"
	"fmt"
	"math"
	"syscall/js"

	"lorapte/core/export"
	"lorapte/core/quant"
	"lorapte/core/quant/wasmsimd"
	"lorapte/core/safetensors"
)

// simdKernel runs the bfloat16 quantizer's inner loops in a WebAssembly
// SIMD module (wasmsimd) for a conversion worker: the block maxima and
// the codes there, the scales and every decision here, with the same
// arithmetic as quant.QuantizeBF16, so the bytes are the same.
type simdKernel struct {
	mem                  js.Value // the module's WebAssembly.Memory
	amax, codes4, codes8 js.Value
	view                 js.Value // Uint8Array over mem's buffer
	size                 int
	amaxB, invB          []byte
}

// newSIMDKernel instantiates the kernels; nil when this engine has no
// WebAssembly SIMD (the Go kernels then run).
func newSIMDKernel() (k *simdKernel) {
	defer func() {
		if recover() != nil {
			k = nil // a JS exception: no kernels
		}
	}()
	wa := js.Global().Get("WebAssembly")
	if wa.Type() != js.TypeObject {
		return nil
	}
	b := wasmsimd.Module()
	u := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u, b)
	if !wa.Call("validate", u).Bool() {
		return nil
	}
	inst := wa.Get("Instance").New(wa.Get("Module").New(u), js.Global().Get("Object").New())
	ex := inst.Get("exports")
	k = &simdKernel{mem: ex.Get("mem"), amax: ex.Get("amax"), codes4: ex.Get("codes4"), codes8: ex.Get("codes8")}
	k.refresh()
	return k
}

func (k *simdKernel) refresh() {
	buf := k.mem.Get("buffer")
	k.view = js.Global().Get("Uint8Array").New(buf)
	k.size = buf.Get("byteLength").Int()
}

// ensure grows the module's memory to at least n bytes.
func (k *simdKernel) ensure(n int) {
	if n <= k.size {
		return
	}
	k.mem.Call("grow", (n-k.size+65535)/65536)
	k.refresh()
}

// quantize converts piece p from src (a Uint8Array of its bytes) when the
// kernels apply: bfloat16 quantized to float16 scales in blocks they take.
// It writes the codes into out (a Uint8Array of p.OutBytes()) and scales
// (p's scale bytes); ok is false when the kernels do not apply or a block
// overflows float16, and the caller converts the piece in Go (which
// reports that).
func (k *simdKernel) quantize(p export.Piece, src js.Value, scales []byte, out js.Value) (ok bool, err error) {
	if p.DType != safetensors.BF16 || !p.Quant || p.FP32 {
		return false, nil
	}
	g := p.Cols / p.Groups
	if !wasmsimd.Fits(g, p.Bits) {
		return false, nil
	}
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("convert: SIMD kernels: %v", r)
		}
	}()
	blocks := p.Rows * p.Groups
	align := func(n int) int { return (n + 15) &^ 15 }
	amaxOff := align(p.SourceBytes())
	invOff := align(amaxOff + 2*blocks)
	outOff := align(invOff + 4*blocks)
	k.ensure(outOff + p.OutBytes())
	k.view.Call("set", src, 0)
	k.amax.Invoke(0, blocks, 2*g, amaxOff)
	k.amaxB = grow(k.amaxB, 2*blocks)
	k.invB = grow(k.invB, 4*blocks)
	js.CopyBytesToGo(k.amaxB, k.view.Call("subarray", amaxOff, amaxOff+2*blocks))
	for b := range blocks {
		sc, inv, fits := quant.BF16BlockScale(binary.LittleEndian.Uint16(k.amaxB[2*b:]), p.Bits)
		if !fits {
			return false, nil
		}
		binary.LittleEndian.PutUint16(scales[2*b:], sc)
		binary.LittleEndian.PutUint32(k.invB[4*b:], math.Float32bits(inv))
	}
	js.CopyBytesToJS(k.view.Call("subarray", invOff, invOff+4*blocks), k.invB)
	codes := k.codes4
	if p.Bits == 8 {
		codes = k.codes8
	}
	codes.Invoke(0, blocks, 2*g, invOff, outOff)
	out.Call("set", k.view.Call("subarray", outOff, outOff+p.OutBytes()))
	return true, nil
}

// grow returns b resized to n bytes, reallocated only when too small.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
