package hf

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRopeTablesMatchGolden(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "tiny-llama", "golden", "constants", "single", "base.json"))
	require.NoError(t, err)
	var golden struct {
		ConstantMethods map[string]struct {
			Shape        []int       `json:"shape"`
			ValueFloat32 [][]float32 `json:"value_float32"`
		} `json:"constant_methods"`
	}
	require.NoError(t, json.Unmarshal(data, &golden))
	cfgData, err := os.ReadFile(filepath.Join("..", "..", "testdata", "tiny-llama", "model", "config.json"))
	require.NoError(t, err)
	cfg, err := ParseConfig(cfgData, "config.json")
	require.NoError(t, err)

	cos, sin := RopeTables(cfg, 12)
	gc := golden.ConstantMethods["freqs_cos"].ValueFloat32
	gs := golden.ConstantMethods["freqs_sin"].ValueFloat32
	require.Len(t, gc, 12)
	require.Len(t, cos, 12)
	maxDiff := 0.0
	for p := range gc {
		require.Len(t, cos[p], 8)
		for i := range gc[p] {
			maxDiff = max(maxDiff, math.Abs(float64(cos[p][i]-gc[p][i])), math.Abs(float64(sin[p][i]-gs[p][i])))
		}
	}
	t.Logf("max abs diff vs golden: %g", maxDiff)
	require.LessOrEqual(t, maxDiff, 1e-7)

	// inv_freq = 1/10000^(2i/16), the power rounded to float32 first (torch
	// computes theta**x as a float32 tensor, then its reciprocal).
	inv := InvFreq(cfg)
	for i, f := range inv {
		require.Equal(t, float32(1)/float32(math.Pow(10000, float64(i)/8)), f, "i=%d", i)
	}
	c0, s0 := RopeTables(cfg, 0)
	require.Empty(t, c0)
	require.Empty(t, s0)
}

func TestInvFreqLlama3(t *testing.T) {
	cfg := &Config{HeadDim: 16, RopeTheta: 500000, RopeScaling: &RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 64}}
	got := InvFreq(cfg)
	plain := InvFreq(&Config{HeadDim: 16, RopeTheta: 500000})
	require.Len(t, got, 8)
	// wavelen 2π/f: i=0 -> 6.3 < 16 unchanged; i=1 -> 32.5 in [16, 64]
	// smoothed; i>=2 -> > 64 divided by the factor.
	require.Equal(t, plain[0], got[0])
	for i := 2; i < 8; i++ {
		require.Equal(t, plain[i]/32, got[i], "i=%d", i)
	}
	f := float64(plain[1])
	a := (64/(2*math.Pi/f) - 1) / 3
	want := (1-a)*f/32 + a*f
	require.InEpsilon(t, want, float64(got[1]), 1e-6)
	require.NotEqual(t, plain[1], got[1])
	require.NotEqual(t, plain[1]/32, got[1])

	// Llama 3.2 parameters: the §7 item 2 split for hd 64, theta 5e5 — i 15..17
	// smoothed, 18..31 divided (here with the config's factor 32).
	big := &Config{HeadDim: 64, RopeTheta: 500000, RopeScaling: &RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}}
	g := InvFreq(big)
	p := InvFreq(&Config{HeadDim: 64, RopeTheta: 500000})
	for i := range g {
		switch {
		case i < 15:
			require.Equal(t, p[i], g[i], "i=%d", i)
		case i >= 18:
			require.Equal(t, p[i]/32, g[i], "i=%d", i)
		default:
			require.Less(t, g[i], p[i], "i=%d", i)
			require.Greater(t, g[i], p[i]/32, "i=%d", i)
		}
	}
}
