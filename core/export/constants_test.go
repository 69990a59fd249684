package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lorapte/core/inspect"
)

// goldenConstants is golden/constants/<mode>/<base|lora>.json.
type goldenConstants struct {
	Methods []struct {
		Name string `json:"name"`
	} `json:"methods"`
	Constant map[string]struct {
		EValue       string          `json:"evalue"`
		DType        string          `json:"dtype"`
		DTypeFP32    string          `json:"dtype_fp32_export"`
		Shape        []int32         `json:"shape"`
		Value        json.RawMessage `json:"value"`
		ValueFloat32 json.RawMessage `json:"value_float32"`
	} `json:"constant_methods"`
}

func flatten(v any) []any {
	if l, ok := v.([]any); ok {
		var out []any
		for _, x := range l {
			out = append(out, flatten(x)...)
		}
		return out
	}
	return []any{v}
}

// TestConstantMethodsGolden checks every constant method (names, kinds,
// dtypes, shapes and values) and the set of executable methods against
// the fixture's golden constants, for both modes, fp16 and fp32, with and
// without adapters.
func TestConstantMethodsGolden(t *testing.T) {
	for _, mode := range []string{"single", "multifunction"} {
		for _, which := range []string{"base", "lora"} {
			for _, dtype := range []string{"fp16", "fp32"} {
				t.Run(mode+"/"+which+"/"+dtype, func(t *testing.T) {
					data, err := os.ReadFile(filepath.Join(fixture, "golden/constants", mode, which+".json"))
					require.NoError(t, err)
					var g goldenConstants
					require.NoError(t, json.Unmarshal(data, &g))

					o := DefaultOptions()
					o.InputLen, o.MaxContextLen, o.Multifunction, o.DType = 4, 12, mode == "multifunction", dtype
					var ads []Adapter
					if which == "lora" {
						ads = fixtureAdapters()
					}
					pte := exportBytes(t, "testdata/tiny-llama/model", ads, o)
					rep, err := inspect.Inspect(bytes.NewReader(pte), int64(len(pte)), false)
					require.NoError(t, err)

					got := map[string]inspect.Method{}
					var exec []string
					for _, m := range rep.Methods {
						if m.Constant {
							got[m.Name] = m
						} else {
							exec = append(exec, m.Name)
						}
					}
					var want []string
					for _, m := range g.Methods {
						want = append(want, m.Name)
					}
					require.ElementsMatch(t, want, exec, "executable methods")
					require.Len(t, got, len(g.Constant), "number of constant methods")
					for name, c := range g.Constant {
						m, ok := got[name]
						require.True(t, ok, "constant method %s missing", name)
						var wantVal any
						raw := c.Value
						if dtype == "fp32" && c.ValueFloat32 != nil {
							raw = c.ValueFloat32
						}
						require.NoError(t, json.Unmarshal(raw, &wantVal))
						switch c.EValue {
						case "Int", "Bool":
							require.Len(t, m.Values, 1, name)
							require.Equal(t, fmt.Sprint(wantVal), fmt.Sprint(m.Values[0]), name)
						case "String":
							require.Equal(t, fmt.Sprint(wantVal), fmt.Sprint(m.Values), name)
						case "Tensor":
							require.Len(t, m.Values, 1, name)
							tv := m.Values[0].(map[string]any)
							wantDT := c.DType
							if dtype == "fp32" && c.DTypeFP32 != "" {
								wantDT = c.DTypeFP32
							}
							require.Equal(t, wantDT, tv["dtype"], name)
							require.Equal(t, c.Shape, tv["shape"], name)
							wv, gv := flatten(wantVal), tv["values"].([]any)
							require.Len(t, gv, len(wv), name)
							for i := range wv {
								if wantDT == "float32" {
									// torch's float32 cos/sin are not always correctly
									// rounded; allow one float32 step.
									require.InDelta(t, wv[i], gv[i], 1.2e-7, "%s[%d]", name, i)
								} else {
									require.Equal(t, fmt.Sprint(wv[i]), fmt.Sprint(gv[i]), "%s[%d]", name, i)
								}
							}
						default:
							t.Fatalf("unknown evalue %s", c.EValue)
						}
					}
				})
			}
		}
	}
}

// varNameRE is varName's rule as a regular expression, its reference.
var varNameRE = regexp.MustCompile(`[^A-Za-z0-9_]+`)

func refVarName(key string) string {
	return "w_" + strings.Trim(varNameRE.ReplaceAllString(strings.TrimPrefix(key, "model."), "_"), "_")
}

func TestVarNameMatchesTheRule(t *testing.T) {
	for _, k := range []string{"", "model.", "model.layers.0.self_attn.q_proj.weight[0:1024]@c4w.data",
		"lora/a1/layers.3.mlp.up_proj.lora_A", "._a", "a._", "a.._b", "_x_", "é.ü", "model.model.x", "[0:8]"} {
		require.Equal(t, refVarName(k), varName(k), "%q", k)
	}
	for a := 0; a < 256; a++ {
		for b := 0; b < 256; b += 7 {
			k := string([]byte{byte(a), '.', byte(b), '_'})
			require.Equal(t, refVarName(k), varName(k), "%q", k)
		}
	}
}

func FuzzVarName(f *testing.F) {
	f.Add("model.layers.0.mlp.down_proj.weight[0:64]@b4w.scale")
	f.Fuzz(func(t *testing.T, k string) {
		if refVarName(k) != varName(k) {
			t.Fatalf("varName(%q) = %q, want %q", k, varName(k), refVarName(k))
		}
	})
}
