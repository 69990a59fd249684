package benchgen

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/export"
	"lorapte/core/hf"
	"lorapte/core/lora"
	"lorapte/core/safetensors"
)

// Parameter counts of the real checkpoints (from their model cards /
// safetensors headers).
func TestPresetsParseAndCount(t *testing.T) {
	want := map[string]int64{"135m": 134515008, "360m": 361821120, "1b": 1235814400}
	for _, s := range Presets() {
		for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32} {
			cfg, err := s.Config(dt)
			require.NoError(t, err, s.Name)
			require.Equal(t, s.Hidden, cfg.Hidden)
			require.Equal(t, s.Tied, cfg.Tied)
			require.Equal(t, s.RopeScaling, cfg.RopeScaling)
			require.Equal(t, s.RopeTheta, cfg.RopeTheta)
		}
		n, err := s.Params()
		require.NoError(t, err)
		require.Equal(t, want[s.Key], n, s.Name)
		got, err := Preset(strings.ToUpper(s.Key))
		require.NoError(t, err)
		require.Equal(t, s, got)
	}
	cfg, err := Llama32_1B().Config(safetensors.BF16)
	require.NoError(t, err)
	require.Equal(t, 64, cfg.HeadDim)
	require.Equal(t, 8, cfg.KVHeads)
	_, err = Preset("7b")
	require.ErrorContains(t, err, `unknown model size "7b"`)
	_, err = Tiny().ConfigJSON("I8")
	require.ErrorContains(t, err, "not a float type")
}

func readAll(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	require.NoError(t, err)
	return out
}

func TestModelRoundTrip(t *testing.T) {
	for _, dt := range []safetensors.DType{safetensors.BF16, safetensors.F16, safetensors.F32} {
		for _, tied := range []bool{false, true} {
			s := Tiny()
			s.Tied = tied
			dir := t.TempDir()
			n, err := WriteModel(dir, s, dt)
			require.NoError(t, err)

			files := readAll(t, dir)
			require.Len(t, files, 2)
			require.Equal(t, int64(len(files["config.json"])+len(files["model.safetensors"])), n)
			cfg, err := hf.ParseConfig(files["config.json"], "config.json")
			require.NoError(t, err)
			require.Equal(t, tied, cfg.Tied)
			src, err := safetensors.OpenFS(os.DirFS(dir), ".")
			require.NoError(t, err)
			require.NoError(t, hf.CheckWeights(cfg, src))
			require.Len(t, src.Names(), len(hf.ExpectedTensors(cfg)))
			_, hasHead := src.Info(hf.LMHeadName)
			require.Equal(t, !tied, hasHead)

			// Distributions: weights ≈N(0, 0.02) and bounded, norms ≈1.
			for _, name := range src.Names() {
				info, _ := src.Info(name)
				require.Equal(t, dt, info.DType)
				vals := make([]float32, info.Numel())
				rows := int64(1)
				if len(info.Shape) == 2 {
					rows = info.Shape[0]
				}
				require.NoError(t, src.ReadFloat32(name, 0, rows, vals))
				var sum, sq float64
				for _, v := range vals {
					sum += float64(v)
					sq += float64(v) * float64(v)
				}
				mean := sum / float64(len(vals))
				sd := math.Sqrt(sq/float64(len(vals)) - mean*mean)
				if strings.HasSuffix(name, "norm.weight") {
					require.InDelta(t, 1, mean, 0.01, name)
					continue
				}
				require.InDelta(t, 0, mean, 0.003, name)
				require.InDelta(t, 0.02, sd, 0.003, name)
				for _, v := range vals {
					require.LessOrEqual(t, math.Abs(float64(v)), 0.07, name)
				}
			}
			require.NoError(t, src.Close())
		}
	}
}

// Same inputs give the same bytes for any chunk size; different shapes or
// adapter names give different values.
func TestDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	_, err := writeModel(a, Tiny(), safetensors.BF16, defaultChunk)
	require.NoError(t, err)
	_, err = writeModel(b, Tiny(), safetensors.BF16, 6) // 6 → 4 bytes: two elements per chunk
	require.NoError(t, err)
	_, err = WriteAdapter(filepath.Join(a, "ad"), Tiny(), "x", DefaultAdapter())
	require.NoError(t, err)
	_, err = WriteAdapter(filepath.Join(b, "ad"), Tiny(), "x", DefaultAdapter())
	require.NoError(t, err)
	fa, fb := readAll(t, a), readAll(t, b)
	require.Len(t, fa, 4)
	for k, v := range fa {
		require.True(t, bytes.Equal(v, fb[k]), k)
	}

	c := t.TempDir()
	_, err = WriteAdapter(c, Tiny(), "y", DefaultAdapter())
	require.NoError(t, err)
	other, err := os.ReadFile(filepath.Join(c, "adapter_model.safetensors"))
	require.NoError(t, err)
	mine := fa[filepath.Join("ad", "adapter_model.safetensors")]
	require.Equal(t, len(mine), len(other))
	require.False(t, bytes.Equal(mine, other))
}

func TestAdapterLoads(t *testing.T) {
	s := Tiny()
	dir := t.TempDir()
	_, err := WriteModel(filepath.Join(dir, "model"), s, safetensors.BF16)
	require.NoError(t, err)
	cfg, err := s.Config(safetensors.BF16)
	require.NoError(t, err)

	_, err = WriteAdapter(filepath.Join(dir, "all"), s, "all", DefaultAdapter())
	require.NoError(t, err)
	ad, err := lora.Load("all", os.DirFS(dir), "all", cfg)
	require.NoError(t, err)
	require.Len(t, ad.Modules, 7*s.Layers)
	for _, m := range ad.Modules {
		require.Equal(t, 16, m.R)
		require.Equal(t, 2.0, m.Scale)
		info, ok := ad.Source.Info(m.B)
		require.True(t, ok)
		require.Equal(t, safetensors.F32, info.DType)
		vals := make([]float32, info.Numel())
		require.NoError(t, ad.Source.ReadFloat32(m.B, 0, info.Shape[0], vals))
		nonZero := 0
		for _, v := range vals {
			if v != 0 {
				nonZero++
			}
		}
		require.Greater(t, nonZero, len(vals)*9/10, m.B)
	}
	require.Contains(t, ad.Modules, "model.layers.1.mlp.down_proj")
	info, _ := ad.Source.Info("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")
	require.Equal(t, []int64{16, int64(s.Intermediate)}, info.Shape)

	_, err = WriteAdapter(filepath.Join(dir, "attn"), s, "attn", AdapterSpec{R: 4, Alpha: 8, Modules: []string{"v_proj", "q_proj"}})
	require.NoError(t, err)
	ad, err = lora.Load("attn", os.DirFS(dir), "attn", cfg)
	require.NoError(t, err)
	require.Len(t, ad.Modules, 2*s.Layers)

	_, err = WriteAdapter(filepath.Join(dir, "bad"), s, "bad", AdapterSpec{R: 4, Modules: []string{"x_proj"}})
	require.ErrorContains(t, err, `unknown projection "x_proj"`)
	_, err = WriteAdapter(filepath.Join(dir, "bad"), s, "bad", AdapterSpec{})
	require.ErrorContains(t, err, "rank 0 must be positive")
}

// A generated model and two adapters export with the default options.
func TestExportsTiny(t *testing.T) {
	s := Tiny()
	s.Tied = true
	dir := t.TempDir()
	_, err := WriteModel(filepath.Join(dir, "model"), s, safetensors.BF16)
	require.NoError(t, err)
	var ads []export.Adapter
	for _, name := range []string{"a1", "a2"} {
		_, err := WriteAdapter(filepath.Join(dir, name), s, name, DefaultAdapter())
		require.NoError(t, err)
		ads = append(ads, export.Adapter{Name: name, FS: os.DirFS(dir), Path: name})
	}
	o := export.DefaultOptions()
	o.Multifunction, o.InputLen, o.MaxContextLen = true, 4, 16
	plan, err := export.NewPlan(export.Request{FS: os.DirFS(dir), ModelDir: "model", Adapters: ads, Options: o})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, plan.Write(context.Background(), &buf, nil))
	require.Equal(t, plan.Size(), int64(buf.Len()))
	require.Contains(t, plan.Methods(), "a2_prefill")
}
