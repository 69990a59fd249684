package inmemfs

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type refBuffer struct {
	bytes.Buffer
	table map[string]string
}

func (r *refBuffer) WriteRef(ref any, n int64) error {
	s, ok := r.table[ref.(string)]
	if !ok || int64(len(s)) != n {
		return errors.New("bad reference")
	}
	r.WriteString(s)
	return nil
}

func TestFileWriteRef(t *testing.T) {
	l, want := buildBlob(t, smallFiles, smallContent)
	out := &refBuffer{table: map[string]string{"meta": "{ }", "x": "\x01\x02\x03", "long": "12345"}}
	w := NewWriter(out, l)
	for _, e := range l.Files() {
		var err error
		switch e.Path {
		case "metadata.json":
			err = w.StreamFile(e.Path, func(fw io.Writer) error { return fw.(RefWriter).WriteRef("meta", 3) })
		case "model.mlpackage/Data/x.bin":
			err = w.StreamFile(e.Path, func(fw io.Writer) error {
				if _, err := fw.Write([]byte{0}); err != nil {
					return err
				}
				return fw.(RefWriter).WriteRef("x", 3)
			})
		default:
			err = w.WriteFile(e.Path, strings.NewReader(smallContent[e.Path]))
		}
		require.NoError(t, err, e.Path)
	}
	require.NoError(t, w.Close())
	require.Equal(t, want, out.Bytes())

	w = NewWriter(out, l)
	err := w.StreamFile("metadata.json", func(fw io.Writer) error { return fw.(RefWriter).WriteRef("long", 5) })
	require.ErrorContains(t, err, "does not fit")
	w = NewWriter(out, l)
	err = w.StreamFile("metadata.json", func(fw io.Writer) error { return fw.(RefWriter).WriteRef("nope", 3) })
	require.ErrorContains(t, err, "bad reference")
	require.Error(t, w.Close(), "sticky")
	w = NewWriter(io.Discard, l)
	require.NoError(t, w.StreamFile("metadata.json", func(fw io.Writer) error {
		_, ok := fw.(RefWriter)
		require.False(t, ok)
		_, err := fw.Write([]byte("{ }"))
		return err
	}))
}
