package pte

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// refBuffer resolves references from a table and counts the bytes.
type refBuffer struct {
	bytes.Buffer
	table   map[string][]byte
	viaRefs int64
}

func (r *refBuffer) WriteRef(ref any, n int64) error {
	b, ok := r.table[ref.(string)]
	if !ok || int64(len(b)) != n {
		return errors.New("bad reference")
	}
	r.viaRefs += n
	r.Buffer.Write(b)
	return nil
}

func TestSegmentWriteRef(t *testing.T) {
	l, err := Plan(&Program{Segments: []int64{3, 0, 5}, Methods: []Method{ConstantMethod("x", IntValue(1))}})
	require.NoError(t, err)
	var want bytes.Buffer
	w := NewWriter(&want, l)
	require.NoError(t, w.WriteSegment(0, []byte("abc")))
	require.NoError(t, w.WriteSegment(2, []byte("12345")))
	require.NoError(t, w.Close())

	out := &refBuffer{table: map[string][]byte{"bc": []byte("bc"), "2345": []byte("2345"), "123456": []byte("123456")}}
	w = NewWriter(out, l)
	require.NoError(t, w.StreamSegment(0, func(sw io.Writer) error {
		if _, err := sw.Write([]byte("a")); err != nil {
			return err
		}
		return sw.(RefWriter).WriteRef("bc", 2)
	}))
	require.NoError(t, w.StreamSegment(2, func(sw io.Writer) error {
		rw := sw.(RefWriter)
		require.ErrorContains(t, NewWriter(io.Discard, l).StreamSegment(0, func(sw io.Writer) error {
			_, ok := sw.(RefWriter)
			require.False(t, ok, "a plain destination gives plain segment writers")
			return errors.New("stop")
		}), "stop")
		if err := rw.WriteRef("2345", 0); err != nil { // empty references are allowed
			return err
		}
		if _, err := sw.Write([]byte("1")); err != nil {
			return err
		}
		return rw.WriteRef("2345", 4)
	}))
	require.NoError(t, w.Close())
	require.Equal(t, want.Bytes(), out.Bytes(), "padding and offsets as with plain writes")
	require.EqualValues(t, 6, out.viaRefs)

	w = NewWriter(out, l)
	err = w.StreamSegment(0, func(sw io.Writer) error { return sw.(RefWriter).WriteRef("123456", 6) })
	require.ErrorContains(t, err, "does not fit")
	w = NewWriter(out, l)
	err = w.StreamSegment(0, func(sw io.Writer) error { return sw.(RefWriter).WriteRef("nope", 3) })
	require.ErrorContains(t, err, "bad reference")
	require.Error(t, w.Close(), "sticky")
}
