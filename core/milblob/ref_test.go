package milblob

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// refBuffer is a RefWriter whose references are keys of a byte table; it
// records how many bytes came by reference.
type refBuffer struct {
	bytes.Buffer
	table   map[string][]byte
	viaRefs int64
	fail    error
}

func (r *refBuffer) WriteRef(ref any, n int64) error {
	if r.fail != nil {
		return r.fail
	}
	b, ok := r.table[ref.(string)]
	if !ok || int64(len(b)) != n {
		return errors.New("bad reference")
	}
	r.viaRefs += n
	r.Buffer.Write(b)
	return nil
}

func TestWriteRefSameBytes(t *testing.T) {
	p := NewPlan()
	emb := bytes.Repeat([]byte{1, 2, 3}, 100)
	w4 := PackInt4([]int8{-4, -3, -2, -1, 0, 1, 2, 3, 5})
	p.Add("emb", INT8, 300)
	p.AddBytes(FP16, 2, []byte{0x00, 0x3C, 0x00, 0x40})
	p.Add("w", INT4, 9)
	require.NoError(t, p.Err())
	want := writeAll(t, p, map[string][]byte{"emb": emb, "w": w4}, 1000)

	out := &refBuffer{table: map[string][]byte{"e1": emb[:100], "e2": emb[100:], "w": w4}}
	w := NewWriter(out, p)
	require.True(t, w.CanWriteRef())
	require.NoError(t, w.WriteRef("emb", "e1", 100))
	require.NoError(t, w.WriteRef("emb", "e2", 200), "references and chunks may be mixed and split")
	require.NoError(t, w.WriteRef("w", "w", int64(len(w4))))
	require.NoError(t, w.Close())
	require.Equal(t, want, out.Bytes())
	require.EqualValues(t, 300+len(w4), out.viaRefs)

	// Mixed with plain writes.
	out = &refBuffer{table: out.table}
	w = NewWriter(out, p)
	require.NoError(t, w.Write("emb", emb[:100]))
	require.NoError(t, w.WriteRef("emb", "e2", 200))
	require.NoError(t, w.Write("w", w4))
	require.NoError(t, w.Close())
	require.Equal(t, want, out.Bytes())
}

func TestWriteRefChecks(t *testing.T) {
	p := NewPlan()
	p.Add("a", UINT8, 4)
	p.Add("b", UINT8, 2)
	table := map[string][]byte{"4": {1, 2, 3, 4}, "5": {1, 2, 3, 4, 5}}

	require.False(t, NewWriter(&bytes.Buffer{}, p).CanWriteRef())
	w := NewWriter(&bytes.Buffer{}, p)
	require.ErrorContains(t, w.WriteRef("a", "4", 4), "cannot take references")

	w = NewWriter(&refBuffer{table: table}, p)
	require.ErrorContains(t, w.WriteRef("a", "5", 5), "planned size is 4")
	require.Error(t, w.Write("a", []byte{1, 2, 3, 4}), "sticky")

	w = NewWriter(&refBuffer{table: table}, p)
	require.ErrorContains(t, w.WriteRef("b", "4", 4), "out of plan order")

	w = NewWriter(&refBuffer{table: table}, p)
	require.ErrorContains(t, w.WriteRef("a", "4", -1), "negative")

	boom := errors.New("boom")
	w = NewWriter(&refBuffer{table: table, fail: boom}, p)
	err := w.WriteRef("a", "4", 4)
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "offset 128")
	require.ErrorIs(t, w.Close(), boom, "sticky")
}

// TestWritePrefixRef: a file whose first blobs (with an inline one among
// them) match another plan's takes that range of the other file by one
// reference and gives the same bytes; the prefix digest tells plans that
// differ there apart.
func TestWritePrefixRef(t *testing.T) {
	emb := bytes.Repeat([]byte{1, 2, 3}, 100)
	w4 := PackInt4([]int8{-4, -3, -2, -1, 0, 1, 2, 3, 5})
	plan := func(extra string, n int64) *Plan {
		p := NewPlan()
		p.Add("emb", INT8, 300)
		p.AddBytes(FP16, 2, []byte{0x00, 0x3C, 0x00, 0x40})
		p.Add("w", INT4, 9)
		p.Add(extra, UINT8, n)
		require.NoError(t, p.Err())
		return p
	}
	old, cur := plan("a1", 10), plan("a2", 20)
	oldFile := writeAll(t, old, map[string][]byte{"emb": emb, "w": w4, "a1": make([]byte, 10)}, 1000)
	want := writeAll(t, cur, map[string][]byte{"emb": emb, "w": w4, "a2": bytes.Repeat([]byte{7}, 20)}, 1000)

	require.Equal(t, old.PrefixDigest(3), cur.PrefixDigest(3))
	require.NotEqual(t, old.PrefixDigest(4), cur.PrefixDigest(4), "the fourth blobs differ")
	require.NotEqual(t, old.PrefixDigest(2), old.PrefixDigest(3))
	end := int64(cur.Entries()[2].End())
	out := &refBuffer{table: map[string][]byte{"prefix": oldFile[HeaderSize:end]}}
	w := NewWriter(out, cur)
	require.NoError(t, w.WritePrefixRef(3, "prefix", end-HeaderSize))
	require.NoError(t, w.Write("a2", bytes.Repeat([]byte{7}, 20)))
	require.NoError(t, w.Close())
	require.Equal(t, want, out.Bytes())
	require.Equal(t, end-HeaderSize, out.viaRefs)

	// An inline blob in the prefix differs: so does the digest.
	other := NewPlan()
	other.Add("emb", INT8, 300)
	other.AddBytes(FP16, 2, []byte{0x00, 0x3C, 0x00, 0x41})
	other.Add("w", INT4, 9)
	require.NotEqual(t, cur.PrefixDigest(3), other.PrefixDigest(3))

	w = NewWriter(out, cur)
	require.ErrorContains(t, w.WritePrefixRef(3, "prefix", end-HeaderSize-1), "the plan says")
	w = NewWriter(&refBuffer{table: out.table}, cur)
	require.NoError(t, w.Write("emb", emb))
	require.ErrorContains(t, w.WritePrefixRef(3, "prefix", end-HeaderSize), "only at the start")
	require.ErrorContains(t, NewWriter(&refBuffer{}, cur).WritePrefixRef(5, "prefix", 1), "only at the start")
}
