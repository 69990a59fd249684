package wasmsimd

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestModuleLayout: the module is the same bytes every time, a wasm v1
// header and its sections in order, each as long as it says, exporting
// the memory and the three kernels. (Its numerics are tested against the
// Go kernels under Node, in jsbridge, where it can run.)
func TestModuleLayout(t *testing.T) {
	m := Module()
	require.True(t, bytes.Equal(m, Module()))
	require.Equal(t, []byte{0, 'a', 's', 'm', 1, 0, 0, 0}, m[:8])
	var ids []byte
	for rest := m[8:]; len(rest) > 0; {
		id := rest[0]
		n, k := uint32(0), 1
		for shift := 0; ; shift += 7 {
			b := rest[k]
			k++
			n |= uint32(b&0x7f) << shift
			if b < 0x80 {
				break
			}
		}
		require.LessOrEqual(t, k+int(n), len(rest), "section %d overruns the module", id)
		ids = append(ids, id)
		rest = rest[k+int(n):]
	}
	require.Equal(t, []byte{1, 3, 5, 7, 10}, ids)
	for _, name := range []string{"mem", "amax", "codes4", "codes8"} {
		require.True(t, bytes.Contains(m, append([]byte{byte(len(name))}, name...)), name)
	}
}

func TestFits(t *testing.T) {
	require.True(t, Fits(2048, 4))
	require.True(t, Fits(32, 4))
	require.False(t, Fits(16, 4))
	require.True(t, Fits(16, 8))
	require.False(t, Fits(24, 8))
	require.False(t, Fits(0, 8))
	require.False(t, Fits(64, 2))
}
