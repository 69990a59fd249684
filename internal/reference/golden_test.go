package reference

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var models = []string{"base", "attn", "mlpq"}

func loadModel(t *testing.T, w Weights, name string) *Model {
	t.Helper()
	var ad Adapter
	if name != "base" {
		ad = loadAdapter(t, name)
	}
	m, err := New(loadConfig(t), w, ad)
	require.NoError(t, err)
	return m
}

// TestGoldenFP checks every input and output of every call against the fp goldens.
func TestGoldenFP(t *testing.T) {
	w := weightsOf(loadST(t, filepath.Join(fixture, "model/model.safetensors")))
	for _, model := range models {
		m := loadModel(t, w, model)
		for _, mode := range []string{"single", "multifunction"} {
			t.Run(model+"/"+mode, func(t *testing.T) {
				worst := runGolden(t, m, filepath.Join(fixture, "golden", model, "fp", mode), mode, 1e-6)
				t.Logf("max abs diff %.3g", worst)
			})
		}
	}
}

// TestAdapterChangesOutput guards against an adapter being silently ignored: the adapter
// goldens differ from the base ones, so the adapter model must differ from the base model.
func TestAdapterChangesOutput(t *testing.T) {
	w := weightsOf(loadST(t, filepath.Join(fixture, "model/model.safetensors")))
	cos, sin := loadFreqs(t)
	base := loadModel(t, w, "base")
	p, d := signatures(base.cfg, "single")
	want, err := Generate(p, d, base.Step, base.Step, prompt, nil, cos, sin)
	require.NoError(t, err)
	for _, name := range []string{"attn", "mlpq"} {
		m := loadModel(t, w, name)
		got, err := Generate(p, d, m.Step, m.Step, prompt, nil, cos, sin)
		require.NoError(t, err)
		require.NotEqual(t, want[0].Out.Logits, got[0].Out.Logits, name)
	}
}
