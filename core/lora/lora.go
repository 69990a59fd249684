// Package lora reads PEFT/unsloth LoRA adapters (adapter_config.json +
// adapter_model.safetensors) and maps them onto a Hugging Face base model:
// which projection each A/B pair belongs to, its rank and its scale, with
// PEFT's semantics for rsLoRA and rank/alpha patterns (spec model.md
// Decision (c)).
package lora

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"lorapte/core/hf"
	"lorapte/core/safetensors"
)

// File names PEFT writes.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// maxConfigSize bounds adapter_config.json (real ones are under 2 KB).
const maxConfigSize = 1 << 20

// Module is one adapted projection.
type Module struct {
	Name       string // HF module, e.g. "model.layers.0.self_attn.q_proj"
	A, B       string // tensor names in the adapter file
	R, In, Out int
	Alpha      float64
	Scale      float64 // alpha/r, or alpha/sqrt(r) with rsLoRA
}

// Adapter is a loaded, validated adapter.
type Adapter struct {
	Name         string
	Config       *Config
	Source       *safetensors.Source
	Modules      map[string]*Module
	ConfigDigest [32]byte
}

// pattern is one ordered entry of rank_pattern / alpha_pattern.
type pattern struct {
	key string
	re  *regexp.Regexp
	val float64
}

// Config is the part of adapter_config.json lorapte uses.
type Config struct {
	File         string
	R            int
	Alpha        float64
	Targets      []string       // list form of target_modules
	TargetRegex  *regexp.Regexp // string form (PEFT: full match on the module name)
	AllLinear    bool
	Exclude      []string
	ExcludeRegex *regexp.Regexp
	UseRSLoRA    bool
	RankPattern  []pattern
	AlphaPattern []pattern
	FanInFanOut  bool
	Layers       map[int]bool // layers_to_transform; nil = all
}

// ParseConfig parses and checks adapter_config.json. file names it in errors.
func ParseConfig(data []byte, file string) (*Config, error) {
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%s: more than %d bytes, too large for an adapter config", file, maxConfigSize)
	}
	raw, key, err := hf.DecodeObject(data)
	if err != nil {
		if key != "" {
			return nil, fmt.Errorf("%s: field %q: %v", file, key, err)
		}
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	c := &Config{File: file}
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("%s: field %q: %s", file, field, fmt.Sprintf(format, a...))
	}
	str := func(field string) (string, bool, error) {
		v, ok := raw[field]
		if !ok || string(v) == "null" {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", true, bad(field, "want a string")
		}
		return s, true, nil
	}
	boolean := func(field string) (bool, error) {
		v, ok := raw[field]
		if !ok || string(v) == "null" {
			return false, nil
		}
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return false, bad(field, "want true or false")
		}
		return b, nil
	}
	if t, ok, err := str("peft_type"); err != nil {
		return nil, err
	} else if ok && t != "LORA" {
		return nil, bad("peft_type", "%q adapters are not supported, only LORA", t)
	}
	if v, ok := raw["r"]; !ok {
		return nil, fmt.Errorf("%s: missing field \"r\" (the LoRA rank)", file)
	} else if err := json.Unmarshal(v, &c.R); err != nil || c.R <= 0 || c.R > 1<<16 {
		return nil, bad("r", "want a positive integer rank, got %s", v)
	}
	if v, ok := raw["lora_alpha"]; !ok {
		return nil, fmt.Errorf("%s: missing field \"lora_alpha\"", file)
	} else if err := json.Unmarshal(v, &c.Alpha); err != nil || math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0) {
		return nil, bad("lora_alpha", "want a number, got %s", v)
	}
	if c.UseRSLoRA, err = boolean("use_rslora"); err != nil {
		return nil, err
	}
	if dora, err := boolean("use_dora"); err != nil {
		return nil, err
	} else if dora {
		return nil, bad("use_dora", "DoRA adapters are not supported (their magnitude vectors have no Core ML equivalent here)")
	}
	if c.FanInFanOut, err = boolean("fan_in_fan_out"); err != nil {
		return nil, err
	}
	if b, ok, err := str("bias"); err != nil {
		return nil, err
	} else if ok && b != "none" {
		return nil, bad("bias", "%q: trained biases are not supported, only \"none\"", b)
	}
	if v, ok := raw["modules_to_save"]; ok && string(v) != "null" {
		var m []string
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, bad("modules_to_save", "want a list of module names")
		}
		if len(m) > 0 {
			return nil, bad("modules_to_save", "%v: fully trained modules are not supported, only LoRA A/B", m)
		}
	}
	if err := c.parseTargets(raw["target_modules"], "target_modules", false); err != nil {
		return nil, err
	}
	if v, ok := raw["exclude_modules"]; ok && string(v) != "null" {
		if err := c.parseTargets(v, "exclude_modules", true); err != nil {
			return nil, err
		}
	}
	if v, ok := raw["layers_to_transform"]; ok && string(v) != "null" {
		var one int
		var many []int
		switch {
		case json.Unmarshal(v, &one) == nil:
			many = []int{one}
		case json.Unmarshal(v, &many) == nil:
		default:
			return nil, bad("layers_to_transform", "want a layer index or a list of them")
		}
		c.Layers = map[int]bool{}
		for _, l := range many {
			c.Layers[l] = true
		}
	}
	if c.RankPattern, err = parsePatterns(raw["rank_pattern"], file, "rank_pattern"); err != nil {
		return nil, err
	}
	if c.AlphaPattern, err = parsePatterns(raw["alpha_pattern"], file, "alpha_pattern"); err != nil {
		return nil, err
	}
	for _, p := range c.RankPattern {
		if p.val <= 0 || p.val != math.Trunc(p.val) {
			return nil, bad("rank_pattern", "rank for %q must be a positive integer", p.key)
		}
	}
	return c, nil
}

func (c *Config) parseTargets(v json.RawMessage, field string, exclude bool) error {
	if v == nil || string(v) == "null" {
		if exclude {
			return nil
		}
		return fmt.Errorf("%s: missing field %q (which projections the adapter changes)", c.File, field)
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		if s == "all-linear" && !exclude {
			c.AllLinear = true
			return nil
		}
		re, err := regexp.Compile(`^(?:` + s + `)$`)
		if err != nil {
			return fmt.Errorf("%s: field %q: invalid regular expression %q: %v", c.File, field, s, err)
		}
		if exclude {
			c.ExcludeRegex = re
		} else {
			c.TargetRegex = re
		}
		return nil
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil {
		return fmt.Errorf("%s: field %q: want a list of module names or a regular expression string", c.File, field)
	}
	if exclude {
		c.Exclude = list
	} else {
		if len(list) == 0 {
			return fmt.Errorf("%s: field %q is empty", c.File, field)
		}
		c.Targets = list
	}
	return nil
}

// parsePatterns reads a JSON object keeping key order: PEFT takes the first
// matching key.
func parsePatterns(v json.RawMessage, file, field string) ([]pattern, error) {
	if v == nil || string(v) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("%s: field %q: want an object of module pattern → number", file, field)
	}
	var out []pattern
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: field %q: %v", file, field, err)
		}
		key, _ := t.(string)
		var val float64
		if err := dec.Decode(&val); err != nil {
			return nil, fmt.Errorf("%s: field %q: value for %q must be a number", file, field, key)
		}
		re, err := regexp.Compile(`^(?:.*\.)?(?:` + key + `)$`)
		if err != nil {
			return nil, fmt.Errorf("%s: field %q: invalid pattern %q: %v", file, field, key, err)
		}
		out = append(out, pattern{key: key, re: re, val: val})
	}
	return out, nil
}

func firstMatch(ps []pattern, module string) (float64, bool) {
	for _, p := range ps {
		if p.re.MatchString(module) {
			return p.val, true
		}
	}
	return 0, false
}

// targets reports whether the config adapts module (full HF name).
func (c *Config) targets(module string) bool {
	short := module[strings.LastIndexByte(module, '.')+1:]
	in := false
	switch {
	case c.AllLinear:
		in = true
	case c.TargetRegex != nil:
		in = c.TargetRegex.MatchString(module)
	default:
		for _, t := range c.Targets {
			if module == t || strings.HasSuffix(module, "."+t) {
				in = true
			}
		}
	}
	if c.ExcludeRegex != nil && c.ExcludeRegex.MatchString(module) {
		return false
	}
	for _, t := range c.Exclude {
		if module == t || strings.HasSuffix(module, "."+t) || short == t {
			return false
		}
	}
	return in
}

// RankAlpha returns the module's rank, alpha and scale.
func (c *Config) RankAlpha(module string) (r int, alpha, scale float64) {
	r, alpha = c.R, c.Alpha
	if v, ok := firstMatch(c.RankPattern, module); ok {
		r = int(v)
	}
	if v, ok := firstMatch(c.AlphaPattern, module); ok {
		alpha = v
	}
	if c.UseRSLoRA {
		return r, alpha, alpha / math.Sqrt(float64(r))
	}
	return r, alpha, alpha / float64(r)
}

// projections lists every projection of the base model with its shape.
func projections(cfg *hf.Config) map[string][2]int {
	out := map[string][2]int{}
	d, hd := cfg.Hidden, cfg.HeadDim
	for i := 0; i < cfg.Layers; i++ {
		p := "model.layers." + strconv.Itoa(i) + "."
		out[p+"self_attn.q_proj"] = [2]int{cfg.Heads * hd, d}
		out[p+"self_attn.k_proj"] = [2]int{cfg.KVHeads * hd, d}
		out[p+"self_attn.v_proj"] = [2]int{cfg.KVHeads * hd, d}
		out[p+"self_attn.o_proj"] = [2]int{d, cfg.Heads * hd}
		out[p+"mlp.gate_proj"] = [2]int{cfg.Intermediate, d}
		out[p+"mlp.up_proj"] = [2]int{cfg.Intermediate, d}
		out[p+"mlp.down_proj"] = [2]int{d, cfg.Intermediate}
	}
	return out
}

var keyRE = regexp.MustCompile(`^base_model\.model\.(.+?)\.(lora_A|lora_B)(?:\.[A-Za-z0-9_\-]+)?\.weight$`)
var layerRE = regexp.MustCompile(`^model\.layers\.(\d+)\.`)

// Load reads and validates an adapter. p is a folder with both PEFT files,
// or the .safetensors file with adapter_config.json beside it.
func Load(name string, fsys fs.FS, p string, cfg *hf.Config) (*Adapter, error) {
	cfgPath, wPath := path.Join(p, ConfigFile), path.Join(p, WeightsFile)
	if st, err := fs.Stat(fsys, p); err == nil && !st.IsDir() {
		cfgPath, wPath = path.Join(path.Dir(p), ConfigFile), p
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("adapter %s: %s: %w", name, p, err)
	}
	data, err := readConfig(fsys, cfgPath)
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %s: %w", name, cfgPath, notFound(err))
	}
	c, err := ParseConfig(data, cfgPath)
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", name, err)
	}
	src, err := safetensors.OpenFSFile(fsys, wPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("adapter %s: %s: not found", name, wPath)
	}
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", name, err)
	}
	ad := &Adapter{Name: name, Config: c, Source: src, Modules: map[string]*Module{}, ConfigDigest: sha256.Sum256(data)}
	if err := ad.mapTensors(cfg, wPath); err != nil {
		return nil, fmt.Errorf("adapter %s: %w", name, err)
	}
	return ad, nil
}

// readConfig reads at most one byte more than ParseConfig accepts, so a
// huge file is refused without reading it whole.
func readConfig(fsys fs.FS, p string) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxConfigSize+1))
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return errors.New("not found")
	}
	return err
}

// openFile opens the adapter's safetensors file; errors name p.

func (ad *Adapter) mapTensors(cfg *hf.Config, file string) error {
	c := ad.Config
	projs := projections(cfg)
	// Every targeted projection must be present, and every target name must
	// exist in the model.
	names := make([]string, 0, len(projs))
	for n := range projs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, t := range c.Targets {
		found := false
		for _, n := range names {
			if n == t || strings.HasSuffix(n, "."+t) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s: field \"target_modules\": %q is not a projection of this model (supported: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)", c.File, t)
		}
	}
	if c.TargetRegex != nil {
		hit := false
		for _, n := range names {
			hit = hit || c.TargetRegex.MatchString(n)
		}
		if !hit {
			return fmt.Errorf("%s: field \"target_modules\": the pattern matches no projection of this model", c.File)
		}
	}
	for _, key := range ad.Source.Names() {
		info, _ := ad.Source.Info(key)
		if strings.Contains(key, "lora_magnitude_vector") {
			return fmt.Errorf("%s: tensor %s: DoRA magnitude vectors are not supported", file, key)
		}
		m := keyRE.FindStringSubmatch(key)
		if m == nil {
			return fmt.Errorf("%s: tensor %s: not a LoRA A/B weight of a projection (embedding/LM-head LoRA, biases and saved modules are not supported)", file, key)
		}
		module, which := m[1], m[2]
		shape, ok := projs[module]
		if !ok && (strings.HasSuffix(module, "lm_head") || strings.HasSuffix(module, "embed_tokens")) {
			return fmt.Errorf("%s: tensor %s: LoRA on %s is not supported (only the q/k/v/o/gate/up/down projections)", file, key, module)
		}
		if !ok {
			return fmt.Errorf("%s: tensor %s: the base model has no projection %s (adapter made for another model?)", file, key, module)
		}
		if !c.targets(module) {
			return fmt.Errorf("%s: tensor %s: module %s is not in target_modules of %s", file, key, module, c.File)
		}
		switch info.DType {
		case "F32", "F16", "BF16":
		default:
			return fmt.Errorf("%s: tensor %s: dtype %s is not supported (F32, F16 or BF16)", file, key, info.DType)
		}
		mod := ad.Modules[module]
		if mod == nil {
			r, alpha, scale := c.RankAlpha(module)
			mod = &Module{Name: module, R: r, Alpha: alpha, Scale: scale, Out: shape[0], In: shape[1]}
			ad.Modules[module] = mod
		}
		want := []int64{int64(mod.R), int64(mod.In)}
		if which == "lora_A" {
			if mod.A != "" {
				return fmt.Errorf("%s: tensor %s: a second lora_A for %s", file, key, module)
			}
			mod.A = key
		} else {
			if mod.B != "" {
				return fmt.Errorf("%s: tensor %s: a second lora_B for %s", file, key, module)
			}
			mod.B = key
			want = []int64{int64(mod.Out), int64(mod.R)}
		}
		if !slices.Equal(info.Shape, want) {
			return fmt.Errorf("%s: tensor %s: shape %v, want %v (rank %d, base projection %d×%d) — adapter made for another base or r mismatch",
				file, key, info.Shape, want, mod.R, mod.Out, mod.In)
		}
	}
	for _, n := range names {
		if !c.targets(n) {
			continue
		}
		if c.Layers != nil {
			if m := layerRE.FindStringSubmatch(n); m != nil {
				if l, _ := strconv.Atoi(m[1]); !c.Layers[l] {
					continue
				}
			}
		}
		mod := ad.Modules[n]
		switch {
		case mod == nil:
			return fmt.Errorf("%s: no LoRA weights for targeted module %s", file, n)
		case mod.A == "":
			return fmt.Errorf("%s: missing tensor %s.lora_A.weight", file, "base_model.model."+n)
		case mod.B == "":
			return fmt.Errorf("%s: missing tensor %s.lora_B.weight", file, "base_model.model."+n)
		}
	}
	if len(ad.Modules) == 0 {
		return fmt.Errorf("%s: no LoRA tensors", file)
	}
	return nil
}
