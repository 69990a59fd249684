package quant

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// stEntry is one tensor of a safetensors file, read with a minimal parser
// (the package under test must not depend on core/safetensors).
type stEntry struct {
	DType   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
	data    []byte
}

func readST(t *testing.T, path string) (map[string]*stEntry, map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	n := int(binary.LittleEndian.Uint64(b))
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b[8:8+n], &raw))
	out := map[string]*stEntry{}
	var meta map[string]string
	for k, v := range raw {
		if k == "__metadata__" {
			require.NoError(t, json.Unmarshal(v, &meta))
			continue
		}
		var e stEntry
		require.NoError(t, json.Unmarshal(v, &e))
		e.data = b[8+n+e.Offsets[0] : 8+n+e.Offsets[1]]
		out[k] = &e
	}
	return out, meta
}

func goldenDir() string { return filepath.Join("..", "..", "testdata", "tiny-llama") }

// schemeFromMeta reads the scheme from the golden's description, e.g.
// "int4 symmetric, ... block of 64 consecutive input columns ..." .
func schemeFromMeta(t *testing.T, desc string, cols int) Scheme {
	t.Helper()
	s := Scheme{Bits: 8}
	if strings.HasPrefix(desc, "int4") {
		s.Bits = 4
	}
	_, rest, ok := strings.Cut(desc, "block of ")
	require.True(t, ok, desc)
	num, _, _ := strings.Cut(rest, " ")
	g, err := strconv.Atoi(num)
	require.NoError(t, err)
	if g != cols {
		s.Group = g
	}
	return s
}

func TestQuantizeMatchesGoldens(t *testing.T) {
	base, _ := readST(t, filepath.Join(goldenDir(), "model", "model.safetensors"))
	for _, variant := range []string{"q8c4", "q4b4"} {
		gold, meta := readST(t, filepath.Join(goldenDir(), "golden", "quant", variant, "quantized.safetensors"))
		checked := 0
		for name, desc := range meta {
			if !strings.HasSuffix(name, ".weight") {
				continue
			}
			w := base[name]
			require.NotNil(t, w, name)
			require.Equal(t, "F32", w.DType)
			rows, cols := w.Shape[0], w.Shape[1]
			vals := make([]float32, rows*cols)
			DecodeF32LE(vals, w.data)
			s := schemeFromMeta(t, desc, cols)
			per, err := s.ScaleCount(cols)
			require.NoError(t, err)
			codes := make([]int8, rows*cols)
			scales := make([]uint16, rows*per)
			require.NoError(t, QuantizeRowsF16(vals, rows, cols, s, codes, scales))

			gc, gs := gold[name+".codes"], gold[name+".scales"]
			require.Equal(t, []int{rows, cols}, gc.Shape, name)
			require.Equal(t, []int{rows, per}, gs.Shape, name)
			wantScales := make([]uint16, rows*per)
			for i := range wantScales {
				wantScales[i] = binary.LittleEndian.Uint16(gs.data[2*i:])
			}
			wantCodes := make([]int8, rows*cols)
			for i := range wantCodes {
				wantCodes[i] = int8(gc.data[i])
			}
			require.Equal(t, wantScales, scales, "%s %s scales", variant, name)
			require.Equal(t, wantCodes, codes, "%s %s codes", variant, name)
			checked++
		}
		require.Equal(t, 5, checked, variant)
	}
}
