package testgen

import (
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/hf"
	"lorapte/core/quant"
	"lorapte/core/safetensors"
)

var testdata = filepath.Join("..", "..", "testdata")

func TestDeterministic(t *testing.T) {
	a, b := Files(), Files()
	require.Equal(t, a, b)
	dir := t.TempDir()
	require.NoError(t, WriteAll(dir))
	for _, f := range a {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		require.NoError(t, err)
		require.Equal(t, f.Data, got, f.Path)
	}
}

// TestCommittedFilesUpToDate fails when testdata/models differs from what
// the generator writes: run `go run ./cmd/gentestdata` and commit.
func TestCommittedFilesUpToDate(t *testing.T) {
	gen := map[string][]byte{}
	for _, f := range Files() {
		gen[f.Path] = f.Data
	}
	var onDisk []string
	err := filepath.WalkDir(filepath.Join(testdata, "models"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(testdata, p)
		onDisk = append(onDisk, filepath.ToSlash(rel))
		return nil
	})
	require.NoError(t, err)
	var want []string
	for p := range gen {
		want = append(want, p)
	}
	sort.Strings(want)
	require.Equal(t, want, onDisk, "files under testdata/models")
	for _, p := range onDisk {
		got, err := os.ReadFile(filepath.Join(testdata, filepath.FromSlash(p)))
		require.NoError(t, err)
		require.True(t, string(got) == string(gen[p]), "%s is stale: run go run ./cmd/gentestdata", p)
	}
}

func TestModelsParseAndCheck(t *testing.T) {
	type want struct {
		arch     string
		tied     bool
		bias     bool
		qkNorm   bool
		headDim  int
		dtype    safetensors.DType
		scaling  bool
		shards   int
		adapters []string
	}
	cases := map[string]want{
		"llama-tied-bf16": {arch: "LlamaForCausalLM", tied: true, headDim: 16, dtype: safetensors.BF16, scaling: true, shards: 1},
		"qwen2-bias":      {arch: "Qwen2ForCausalLM", bias: true, headDim: 16, dtype: safetensors.F16, shards: 1, adapters: []string{"mlp", "rs"}},
		"qwen3-qknorm":    {arch: "Qwen3ForCausalLM", tied: true, qkNorm: true, headDim: 32, dtype: safetensors.F32, shards: 1},
		"llama-sharded":   {arch: "LlamaForCausalLM", headDim: 16, dtype: safetensors.F32, shards: 2},
	}
	for name, w := range cases {
		dir := filepath.Join(testdata, "models", name)
		data, err := os.ReadFile(filepath.Join(dir, "config.json"))
		require.NoError(t, err)
		cfg, err := hf.ParseConfig(data, name+"/config.json")
		require.NoError(t, err, name)
		require.Equal(t, w.arch, cfg.Arch, name)
		require.Equal(t, w.tied, cfg.Tied, name)
		require.Equal(t, w.bias, cfg.AttnBias, name)
		require.Equal(t, w.qkNorm, cfg.QKNorm, name)
		require.Equal(t, w.headDim, cfg.HeadDim, name)
		require.Equal(t, w.scaling, cfg.RopeScaling != nil, name)

		src, err := safetensors.OpenFS(os.DirFS(dir), ".")
		require.NoError(t, err, name)
		require.NoError(t, hf.CheckWeights(cfg, src), name)
		require.Empty(t, hf.WeightNotes(cfg, src), name)
		files := map[string]bool{}
		for _, n := range src.Names() {
			info, _ := src.Info(n)
			require.Equal(t, w.dtype, info.DType, n)
			files[info.File] = true
			// Every value is exact in fp16 and bf16, and non-trivial.
			rows := int64(1)
			if len(info.Shape) == 2 {
				rows = info.Shape[0]
			}
			vals := make([]float32, info.Numel())
			require.NoError(t, src.ReadFloat32(n, 0, rows, vals), n)
			nonzero := 0
			for _, v := range vals {
				require.Equal(t, v, quant.RoundF16(v), n)
				require.Equal(t, v, quant.BF16ToF32(quant.F32ToBF16(v)), n)
				if v != 0 {
					nonzero++
				}
			}
			require.Greater(t, nonzero, len(vals)/2, n)
		}
		require.Len(t, files, w.shards, name)
		require.NoError(t, src.Close())

		for _, a := range w.adapters {
			checkAdapter(t, cfg, filepath.Join(dir, "adapters", a))
		}
	}
}

// checkAdapter verifies the PEFT layout: shapes follow r/rank_pattern, B is
// non-zero, keys name real projections.
func checkAdapter(t *testing.T, cfg *hf.Config, dir string) {
	data, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	require.NoError(t, err)
	var c struct {
		PeftType      string         `json:"peft_type"`
		R             int            `json:"r"`
		Alpha         float64        `json:"lora_alpha"`
		RankPattern   map[string]int `json:"rank_pattern"`
		TargetModules any            `json:"target_modules"`
		UseDora       bool           `json:"use_dora"`
	}
	require.NoError(t, json.Unmarshal(data, &c))
	require.Equal(t, "LORA", c.PeftType)
	require.False(t, c.UseDora)
	fh, err := os.Open(filepath.Join(dir, "adapter_model.safetensors"))
	require.NoError(t, err)
	defer fh.Close()
	st, _ := fh.Stat()
	f, err := safetensors.Open(dir, fh, st.Size())
	require.NoError(t, err)
	shapes := map[string][]int64{}
	for _, s := range hf.ExpectedTensors(cfg) {
		shapes[s.Name] = s.Shape
	}
	require.NotEmpty(t, f.Names())
	for _, n := range f.Names() {
		require.True(t, strings.HasPrefix(n, "base_model.model.model.layers."), n)
		info, _ := f.Info(n)
		module, kind, ok := strings.Cut(strings.TrimPrefix(n, "base_model.model."), ".lora_")
		require.True(t, ok, n)
		base, found := shapes[module+".weight"]
		require.True(t, found, n)
		r := int64(c.R)
		if pr, ok := c.RankPattern[path.Ext(module)[1:]]; ok {
			r = int64(pr)
		}
		if strings.HasPrefix(kind, "A") {
			require.Equal(t, []int64{r, base[1]}, info.Shape, n)
		} else {
			require.Equal(t, []int64{base[0], r}, info.Shape, n)
			vals := make([]float32, info.Numel())
			require.NoError(t, f.ReadFloat32(n, 0, info.Shape[0], vals))
			for _, v := range vals {
				require.NotZero(t, v, n)
			}
		}
	}
}
