package reference

import (
	"fmt"
	"math"
)

// Signature is the shape of one exported method (model.md §2).
type Signature struct {
	L, C, Layers, KVHeads, HeadDim, Vocab int
	// Multifunction: the method takes last_valid_token_pos and returns last-token logits.
	Multifunction bool
}

// StepFunc runs one method call: the reference Model.Step, or a wrapper around a real runtime.
type StepFunc func(in StepIn) (StepOut, error)

// Call records one method call made by Generate.
type Call struct {
	Method string // "prefill" or "decode"
	In     StepIn
	Out    StepOut
	NReal  int // real (non-padding) tokens in the chunk
	Pos    int // absolute position of row 0
}

// Generate drives one generation the way ExecuTorch's static-attention runners do (model.md
// §3.2, §5.2): the prompt in chunks of prefill.L (the last one padded with token 0), then one
// decode step per decodeTokens entry. It builds masks, picks freqs rows pos..pos+L-1 from the
// cos/sin tables ([maxPos][HeadDim/2]), keeps the caches (first step: zeros) and writes the
// first NReal rows of each call's k/v outputs into slots pos..pos+NReal-1. The returned calls
// hold deep copies of the inputs, so later cache updates do not change earlier records.
//
// Single-method mode passes the same signature and function twice. In multifunction mode
// prefill is the L-wide method and decode the L=1 method, both with the same C.
// The cache ring never wraps here: a chunk that would run past C is refused.
func Generate(prefill, decode Signature, prefillFn, decodeFn StepFunc, prompt []int32, decodeTokens []int32, cos, sin [][]float64) ([]Call, error) {
	if err := checkSignatures(prefill, decode); err != nil {
		return nil, err
	}
	if prefillFn == nil || decodeFn == nil {
		return nil, fmt.Errorf("reference: nil step function")
	}
	if len(cos) != len(sin) {
		return nil, fmt.Errorf("reference: freqs tables have %d cos rows and %d sin rows", len(cos), len(sin))
	}
	if err := check2("freqs cos table", cos, len(cos), prefill.HeadDim/2); err != nil {
		return nil, err
	}
	if err := check2("freqs sin table", sin, len(sin), prefill.HeadDim/2); err != nil {
		return nil, err
	}
	for i, tok := range append(append([]int32(nil), prompt...), decodeTokens...) {
		if tok < 0 || int(tok) >= prefill.Vocab {
			return nil, fmt.Errorf("reference: token %d (index %d of prompt+decode) outside vocabulary [0, %d)", tok, i, prefill.Vocab)
		}
	}

	s := &session{
		k:   zeros4(prefill.Layers, prefill.KVHeads, prefill.C, prefill.HeadDim),
		v:   zeros4(prefill.Layers, prefill.KVHeads, prefill.C, prefill.HeadDim),
		cos: cos, sin: sin,
	}
	var calls []Call
	for start := 0; start < len(prompt); start += prefill.L {
		chunk := prompt[start:min(start+prefill.L, len(prompt))]
		c, err := s.call("prefill", prefill, prefillFn, chunk)
		if err != nil {
			return calls, err
		}
		calls = append(calls, c)
	}
	for _, tok := range decodeTokens {
		c, err := s.call("decode", decode, decodeFn, []int32{tok})
		if err != nil {
			return calls, err
		}
		calls = append(calls, c)
	}
	return calls, nil
}

func checkSignatures(p, d Signature) error {
	for _, s := range []struct {
		name string
		sig  Signature
	}{{"prefill", p}, {"decode", d}} {
		g := s.sig
		if g.L <= 0 || g.C <= 0 || g.Layers <= 0 || g.KVHeads <= 0 || g.HeadDim <= 0 || g.Vocab <= 0 || g.HeadDim%2 != 0 {
			return fmt.Errorf("reference: invalid %s signature %+v", s.name, g)
		}
	}
	if p.C != d.C || p.Layers != d.Layers || p.KVHeads != d.KVHeads || p.HeadDim != d.HeadDim ||
		p.Vocab != d.Vocab || p.Multifunction != d.Multifunction {
		return fmt.Errorf("reference: prefill %+v and decode %+v signatures must share C, layers, kv heads, head_dim, vocab and mode", p, d)
	}
	return nil
}

// session is the runner state between calls: the shared caches and the next position.
type session struct {
	k, v     [][][][]float64 // [layer][kvhead][C][hd]
	pos      int
	cos, sin [][]float64
}

func (s *session) call(method string, sig Signature, fn StepFunc, chunk []int32) (Call, error) {
	n, L, C := len(chunk), sig.L, sig.C
	if s.pos+n > C {
		return Call{}, fmt.Errorf("reference: %s at position %d with %d tokens runs past cache length %d (ring wrap not supported)", method, s.pos, n, C)
	}
	if s.pos+L > len(s.cos) {
		return Call{}, fmt.Errorf("reference: %s at position %d needs freqs rows up to %d, tables have %d", method, s.pos, s.pos+L-1, len(s.cos))
	}
	in := StepIn{
		Tokens:    make([]int32, L), // padding is token 0
		Mask:      make([][]float64, L),
		Cos:       copy2(s.cos[s.pos : s.pos+L]),
		Sin:       copy2(s.sin[s.pos : s.pos+L]),
		KCache:    copy4(s.k),
		VCache:    copy4(s.v),
		LastValid: -1,
	}
	copy(in.Tokens, chunk)
	if sig.Multifunction {
		in.LastValid = n - 1
	}
	for r := range in.Mask {
		row := make([]float64, C+L)
		for c := range row {
			// Cache slots [0, pos) hold data (no wrap); the chunk part is causal.
			if (c < C && c >= s.pos) || (c >= C && c-C > r) {
				row[c] = math.Inf(-1)
			}
		}
		in.Mask[r] = row
	}

	out, err := fn(in)
	if err != nil {
		return Call{}, fmt.Errorf("reference: %s at position %d: %w", method, s.pos, err)
	}
	rows := L
	if sig.Multifunction {
		rows = 1
	}
	if err := check2(method+" logits", out.Logits, rows, sig.Vocab); err != nil {
		return Call{}, err
	}
	for _, o := range []struct {
		name string
		v    [][][][]float64
	}{{method + " k_new", out.KNew}, {method + " v_new", out.VNew}} {
		if err := check4(o.name, o.v, sig.Layers, sig.KVHeads, L, sig.HeadDim); err != nil {
			return Call{}, err
		}
	}

	for l := range s.k {
		for h := range s.k[l] {
			for t := 0; t < n; t++ {
				copy(s.k[l][h][s.pos+t], out.KNew[l][h][t])
				copy(s.v[l][h][s.pos+t], out.VNew[l][h][t])
			}
		}
	}
	c := Call{Method: method, In: in, Out: out, NReal: n, Pos: s.pos}
	s.pos += n
	return c, nil
}

func zeros4(a, b, c, d int) [][][][]float64 {
	v := make([][][][]float64, a)
	for i := range v {
		v[i] = newHeads(b, c, d)
	}
	return v
}

func copy2(v [][]float64) [][]float64 {
	out := make([][]float64, len(v))
	for i, r := range v {
		out[i] = append([]float64(nil), r...)
	}
	return out
}

func copy4(v [][][][]float64) [][][][]float64 {
	out := make([][][][]float64, len(v))
	for i, x := range v {
		out[i] = make([][][]float64, len(x))
		for j, y := range x {
			out[i][j] = copy2(y)
		}
	}
	return out
}
