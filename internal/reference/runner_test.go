package reference

import (
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeStep returns outputs whose k/v values encode (call, layer, head, row, channel), so cache
// contents show exactly which rows were written where.
func fakeStep(sig Signature, calls *int) StepFunc {
	return func(in StepIn) (StepOut, error) {
		*calls++
		L := len(in.Tokens)
		out := StepOut{KNew: zeros4(sig.Layers, sig.KVHeads, L, sig.HeadDim), VNew: zeros4(sig.Layers, sig.KVHeads, L, sig.HeadDim)}
		for l := range out.KNew {
			for h := range out.KNew[l] {
				for t := range out.KNew[l][h] {
					for d := range out.KNew[l][h][t] {
						code := float64(*calls*10000 + l*1000 + h*100 + t*10 + d)
						out.KNew[l][h][t][d] = code
						out.VNew[l][h][t][d] = -code
					}
				}
			}
		}
		rows := L
		if in.LastValid >= 0 {
			rows = 1
		}
		out.Logits = make([][]float64, rows)
		for r := range out.Logits {
			out.Logits[r] = make([]float64, sig.Vocab)
		}
		return out, nil
	}
}

func table(rows, half int) (cos, sin [][]float64) {
	for p := 0; p < rows; p++ {
		c, s := make([]float64, half), make([]float64, half)
		for i := range c {
			c[i], s[i] = float64(p)+float64(i)/10, -float64(p)-float64(i)/10
		}
		cos, sin = append(cos, c), append(sin, s)
	}
	return cos, sin
}

const inf = -1 // marker for -Inf in expected masks

func maskOf(rows [][]float64) [][]float64 {
	out := copy2(rows)
	for _, r := range out {
		for j := range r {
			if r[j] == inf {
				r[j] = math.Inf(-1)
			}
		}
	}
	return out
}

func TestGenerateSingle(t *testing.T) {
	sig := Signature{L: 2, C: 4, Layers: 1, KVHeads: 2, HeadDim: 2, Vocab: 5}
	n := 0
	fn := fakeStep(sig, &n)
	cos, sin := table(6, 1)
	calls, err := Generate(sig, sig, fn, fn, []int32{3, 1, 4}, []int32{2}, cos, sin)
	require.NoError(t, err)
	require.Len(t, calls, 3)

	require.Equal(t, []string{"prefill", "prefill", "decode"}, []string{calls[0].Method, calls[1].Method, calls[2].Method})
	require.Equal(t, []int{0, 2, 3}, []int{calls[0].Pos, calls[1].Pos, calls[2].Pos})
	require.Equal(t, []int{2, 1, 1}, []int{calls[0].NReal, calls[1].NReal, calls[2].NReal})
	require.Equal(t, []int32{3, 1}, calls[0].In.Tokens)
	require.Equal(t, []int32{4, 0}, calls[1].In.Tokens)
	require.Equal(t, []int32{2, 0}, calls[2].In.Tokens)
	for _, c := range calls {
		require.Equal(t, -1, c.In.LastValid)
		require.Len(t, c.Out.Logits, 2)
	}

	require.Equal(t, maskOf([][]float64{{inf, inf, inf, inf, 0, inf}, {inf, inf, inf, inf, 0, 0}}), calls[0].In.Mask)
	require.Equal(t, maskOf([][]float64{{0, 0, inf, inf, 0, inf}, {0, 0, inf, inf, 0, 0}}), calls[1].In.Mask)
	require.Equal(t, maskOf([][]float64{{0, 0, 0, inf, 0, inf}, {0, 0, 0, inf, 0, 0}}), calls[2].In.Mask)
	require.Equal(t, [][]float64{{3}, {4}}, calls[2].In.Cos)
	require.Equal(t, [][]float64{{-3}, {-4}}, calls[2].In.Sin)
	require.Equal(t, [][]float64{{2}, {3}}, calls[1].In.Cos)

	// Caches: call 0 sees zeros (the record is not changed by later updates); call 1 sees both
	// rows of call 0; call 2 additionally only row 0 of call 1 (row 1 was padding).
	require.Equal(t, zeros4(1, 2, 4, 2), calls[0].In.KCache)
	head1 := calls[2].In.KCache[0][1]
	require.Equal(t, [][]float64{{10100, 10101}, {10110, 10111}, {20100, 20101}, {0, 0}}, head1)
	require.Equal(t, [][]float64{{-10100, -10101}, {-10110, -10111}, {-20100, -20101}, {0, 0}}, calls[2].In.VCache[0][1])
	require.Equal(t, [][]float64{{10000, 10001}, {10010, 10011}, {0, 0}, {0, 0}}, calls[1].In.KCache[0][0])
}

func TestGenerateMultifunction(t *testing.T) {
	pre := Signature{L: 3, C: 6, Layers: 2, KVHeads: 1, HeadDim: 4, Vocab: 7, Multifunction: true}
	dec := pre
	dec.L = 1
	var np, nd int
	cos, sin := table(8, 2)
	calls, err := Generate(pre, dec, fakeStep(pre, &np), fakeStep(dec, &nd), []int32{1, 2, 3, 4}, []int32{5, 6}, cos, sin)
	require.NoError(t, err)
	require.Equal(t, 2, np)
	require.Equal(t, 2, nd)
	require.Len(t, calls, 4)
	require.Equal(t, []int{2, 0, 0, 0}, []int{calls[0].In.LastValid, calls[1].In.LastValid, calls[2].In.LastValid, calls[3].In.LastValid})
	require.Equal(t, []int{0, 3, 4, 5}, []int{calls[0].Pos, calls[1].Pos, calls[2].Pos, calls[3].Pos})
	require.Equal(t, []string{"prefill", "prefill", "decode", "decode"}, []string{calls[0].Method, calls[1].Method, calls[2].Method, calls[3].Method})
	require.Equal(t, []int32{4, 0, 0}, calls[1].In.Tokens)
	require.Equal(t, []int32{6}, calls[3].In.Tokens)
	require.Equal(t, maskOf([][]float64{{0, 0, 0, 0, 0, inf, 0}}), calls[3].In.Mask)
	require.Equal(t, maskOf([][]float64{
		{0, 0, 0, inf, inf, inf, 0, inf, inf},
		{0, 0, 0, inf, inf, inf, 0, 0, inf},
		{0, 0, 0, inf, inf, inf, 0, 0, 0}}), calls[1].In.Mask)
	require.Equal(t, [][]float64{{5, 5.1}}, calls[3].In.Cos)
	// The decode method reads what both prefill calls and the first decode wrote (call numbers
	// count per function): prefill 1 rows 0-2, prefill 2 row 0, decode 1 row 0, then a free slot.
	var slots []float64
	for _, row := range calls[3].In.KCache[0][0] {
		slots = append(slots, row[0])
	}
	require.Equal(t, []float64{10000, 10010, 10020, 20000, 10000, 0}, slots)
	require.Equal(t, 21000.0, calls[3].In.KCache[1][0][3][0]) // prefill call 2, layer 1, row 0
	require.Equal(t, -21003.0, calls[3].In.VCache[1][0][3][3])
}

func TestGenerateErrors(t *testing.T) {
	sig := Signature{L: 2, C: 3, Layers: 1, KVHeads: 1, HeadDim: 2, Vocab: 5}
	n := 0
	fn := fakeStep(sig, &n)
	cos, sin := table(10, 1)

	calls, err := Generate(sig, sig, fn, fn, []int32{1, 2, 3}, []int32{4}, cos, sin)
	require.ErrorContains(t, err, "decode at position 3 with 1 tokens runs past cache length 3")
	require.Len(t, calls, 2, "calls made before the refusal are returned")

	_, err = Generate(sig, sig, fn, fn, []int32{1}, nil, cos[:1], sin[:1])
	require.ErrorContains(t, err, "needs freqs rows up to 1, tables have 1")
	_, err = Generate(sig, sig, fn, fn, []int32{1}, nil, cos, sin[:2])
	require.ErrorContains(t, err, "10 cos rows and 2 sin rows")
	_, err = Generate(sig, sig, fn, fn, []int32{1, 5}, nil, cos, sin)
	require.ErrorContains(t, err, "token 5")
	_, err = Generate(sig, sig, fn, nil, []int32{1}, nil, cos, sin)
	require.ErrorContains(t, err, "nil step function")
	other := sig
	other.C = 4
	_, err = Generate(sig, other, fn, fn, []int32{1}, nil, cos, sin)
	require.ErrorContains(t, err, "must share")
	other = sig
	other.HeadDim = 3
	_, err = Generate(other, other, fn, fn, []int32{1}, nil, cos, sin)
	require.ErrorContains(t, err, "invalid prefill signature")
	_, err = Generate(sig, sig, fn, fn, []int32{1}, nil, [][]float64{{1, 2}}, [][]float64{{1, 2}})
	require.ErrorContains(t, err, "freqs cos table row 0 has 2 values")

	boom := errors.New("boom")
	_, err = Generate(sig, sig, func(StepIn) (StepOut, error) { return StepOut{}, boom }, fn, []int32{1}, nil, cos, sin)
	require.ErrorIs(t, err, boom)

	bad := func(mut func(*StepOut)) StepFunc {
		return func(in StepIn) (StepOut, error) {
			out, err := fn(in)
			mut(&out)
			return out, err
		}
	}
	for _, c := range []struct {
		mut  func(*StepOut)
		want string
	}{
		{func(o *StepOut) { o.Logits = o.Logits[:1] }, "prefill logits has 1 rows, want 2"},
		{func(o *StepOut) { o.Logits[1] = o.Logits[1][:4] }, "prefill logits row 1 has 4 values"},
		{func(o *StepOut) { o.KNew = nil }, "prefill k_new has 0 layers"},
		{func(o *StepOut) { o.VNew[0][0] = o.VNew[0][0][:1] }, "prefill v_new layer 0 head 0 has 1 rows"},
	} {
		_, err = Generate(sig, sig, bad(c.mut), fn, []int32{1}, nil, cos, sin)
		require.ErrorContains(t, err, c.want)
	}
}

// TestGenerateWithModel: the runner and the model fit together beyond the fixture's sizes,
// and a prompt fed in one chunk gives the same next-token logits as token by token.
func TestGenerateWithModel(t *testing.T) {
	m, err := New(tinyCfg, mapWeights(synthWeights(tinyCfg, true)), nil)
	require.NoError(t, err)
	cos, sin := table(16, tinyCfg.HeadDim/2)
	for i := range cos {
		for j := range cos[i] {
			a := float64(i) / float64(j+1)
			cos[i][j], sin[i][j] = math.Cos(a), math.Sin(a)
		}
	}
	pre := Signature{L: 5, C: 9, Layers: tinyCfg.Layers, KVHeads: tinyCfg.KVHeads, HeadDim: tinyCfg.HeadDim, Vocab: tinyCfg.Vocab, Multifunction: true}
	dec := pre
	dec.L = 1
	prompt := []int32{1, 9, 3, 0, 7}
	chunked, err := Generate(pre, dec, m.Step, m.Step, prompt, []int32{2}, cos, sin)
	require.NoError(t, err)
	stepwise, err := Generate(dec, dec, m.Step, m.Step, prompt, []int32{2}, cos, sin)
	require.NoError(t, err)
	require.Len(t, chunked, 2)
	require.Len(t, stepwise, 6)
	requireClose(t, flat2(stepwise[4].Out.Logits), flat2(chunked[0].Out.Logits), 1e-12)
	requireClose(t, flat2(stepwise[5].Out.Logits), flat2(chunked[1].Out.Logits), 1e-12)
	for l := 0; l < tinyCfg.Layers; l++ {
		requireClose(t, flat4(stepwise[5].In.KCache, l), flat4(chunked[1].In.KCache, l), 1e-12)
	}
}
