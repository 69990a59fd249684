//go:build js && wasm

package jsbridge

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"syscall/js"

	"lorapte/core/export"
)

// fileGroup is the files of one model or one adapter and the folder that
// holds its config, which becomes ModelDir or Adapter.Path.
type fileGroup struct {
	fs  *FS
	dir string
}

// fileEntries reads an array (or FileList) of File objects or
// {file, path} objects. A File's path is its webkitRelativePath when it
// came from a folder pick, else its name.
func fileEntries(v js.Value, field string) ([]FileEntry, error) {
	if v.IsUndefined() || v.IsNull() {
		return nil, nil
	}
	if v.Type() != js.TypeObject || v.Get("length").Type() != js.TypeNumber {
		return nil, fmt.Errorf("%s: want an array of File objects", field)
	}
	arr := js.Global().Get("Array").Call("from", v)
	blob := js.Global().Get("Blob")
	var out []FileEntry
	for i := 0; i < arr.Length(); i++ {
		e := arr.Index(i)
		where := fmt.Sprintf("%s[%d]", field, i)
		var f FileEntry
		switch {
		case e.Type() == js.TypeObject && e.InstanceOf(blob):
			f.Blob = e
			if rp := e.Get("webkitRelativePath"); rp.Type() == js.TypeString && rp.String() != "" {
				f.Path = rp.String()
			} else if n := e.Get("name"); n.Type() == js.TypeString {
				f.Path = n.String()
			}
		case e.Type() == js.TypeObject && e.Get("file").Type() == js.TypeObject && e.Get("file").InstanceOf(blob):
			f.Blob = e.Get("file")
			if p := e.Get("path"); p.Type() == js.TypeString {
				f.Path = p.String()
			} else if n := f.Blob.Get("name"); n.Type() == js.TypeString {
				f.Path = n.String()
			}
		default:
			return nil, fmt.Errorf("%s: not a File", where)
		}
		if f.Path == "" {
			return nil, fmt.Errorf("%s: file has no name", where)
		}
		out = append(out, f)
	}
	return out, nil
}

// newGroup builds the FS of one model or adapter. The folder is that of
// the anchor file (config.json or adapter_config.json); files picked
// without a folder path join it, so a mix of picks still works.
func newGroup(entries []FileEntry, anchor string, window int) (*fileGroup, error) {
	dir := ""
	for _, e := range entries {
		if path.Base(e.Path) == anchor {
			dir = path.Dir(strings.TrimPrefix(e.Path, "/"))
			break
		}
	}
	if dir == "" {
		dir = path.Dir(strings.TrimPrefix(entries[0].Path, "/"))
	}
	placed := make([]FileEntry, len(entries))
	for i, e := range entries {
		p := strings.TrimPrefix(e.Path, "/")
		if !strings.Contains(p, "/") {
			p = path.Join(dir, p)
		}
		placed[i] = FileEntry{Path: p, Blob: e.Blob}
	}
	fsys, err := NewFS(placed, window)
	if err != nil {
		return nil, err
	}
	fsys.Prefetch()
	return &fileGroup{fs: fsys, dir: dir}, nil
}

// optionKeys maps the JS option names to export.Options fields.
var optionKeys = map[string]func(o *export.Options, v js.Value, key string) error{
	"multifunction":     boolOpt(func(o *export.Options) *bool { return &o.Multifunction }),
	"noGraphBreaks":     boolOpt(func(o *export.Options) *bool { return &o.NoGraphBreaks }),
	"dtype":             strOpt(func(o *export.Options) *string { return &o.DType }),
	"embeddingQuantize": strOpt(func(o *export.Options) *string { return &o.EmbeddingQuantize }),
	"linearQuantize":    strOpt(func(o *export.Options) *string { return &o.LinearQuantize }),
	"maxContextLen":     intOpt(func(o *export.Options) *int { return &o.MaxContextLen }),
	"inputLen":          intOpt(func(o *export.Options) *int { return &o.InputLen }),
	"targetSplitSize":   intOpt(func(o *export.Options) *int { return &o.TargetSplitSize }),
	"maxSplits":         intOpt(func(o *export.Options) *int { return &o.MaxSplits }),
}

func boolOpt(f func(*export.Options) *bool) func(*export.Options, js.Value, string) error {
	return func(o *export.Options, v js.Value, key string) error {
		if v.Type() != js.TypeBoolean {
			return fmt.Errorf("options.%s: want true or false, got %s", key, describe(v))
		}
		*f(o) = v.Bool()
		return nil
	}
}

func strOpt(f func(*export.Options) *string) func(*export.Options, js.Value, string) error {
	return func(o *export.Options, v js.Value, key string) error {
		if v.Type() != js.TypeString {
			return fmt.Errorf("options.%s: want a string, got %s", key, describe(v))
		}
		*f(o) = v.String()
		return nil
	}
}

func intOpt(f func(*export.Options) *int) func(*export.Options, js.Value, string) error {
	return func(o *export.Options, v js.Value, key string) error {
		// Form fields hand over strings; accept "32" as well as 32.
		num := v
		if v.Type() == js.TypeString && strings.TrimSpace(v.String()) != "" {
			num = js.Global().Call("Number", v)
		}
		if num.Type() != js.TypeNumber || !js.Global().Get("Number").Call("isSafeInteger", num).Bool() {
			return fmt.Errorf("options.%s: want a whole number, got %s", key, describe(v))
		}
		v = num
		n := v.Float()
		if n < -1<<31 || n > 1<<31-1 {
			return fmt.Errorf("options.%s: %v is out of range", key, n)
		}
		*f(o) = int(n)
		return nil
	}
}

func describe(v js.Value) string {
	switch v.Type() {
	case js.TypeString:
		return fmt.Sprintf("%q", v.String())
	case js.TypeUndefined, js.TypeNull:
		return v.Type().String()
	}
	return js.Global().Call("String", v).String()
}

// parseOptions starts from the CLI defaults; unknown keys are errors so a
// typo does not silently export with a default.
func parseOptions(v js.Value) (export.Options, error) {
	o := export.DefaultOptions()
	if v.IsUndefined() || v.IsNull() {
		return o, nil
	}
	if v.Type() != js.TypeObject {
		return o, fmt.Errorf("options: want an object, got %s", describe(v))
	}
	keys := js.Global().Get("Object").Call("keys", v)
	for i := 0; i < keys.Length(); i++ {
		k := keys.Index(i).String()
		set, ok := optionKeys[k]
		if !ok {
			return o, fmt.Errorf("options.%s: unknown option (known: %s)", k, strings.Join(optionNames(), ", "))
		}
		val := v.Get(k)
		if val.IsUndefined() {
			continue
		}
		if err := set(&o, val, k); err != nil {
			return o, err
		}
	}
	return o, nil
}

func optionNames() []string {
	names := make([]string, 0, len(optionKeys))
	for k := range optionKeys {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// optionsToJS is the inverse of parseOptions (for defaults()).
func optionsToJS(o export.Options) map[string]any {
	return map[string]any{
		"multifunction": o.Multifunction, "dtype": o.DType, "maxContextLen": o.MaxContextLen,
		"inputLen": o.InputLen, "embeddingQuantize": o.EmbeddingQuantize, "linearQuantize": o.LinearQuantize,
		"targetSplitSize": o.TargetSplitSize, "maxSplits": o.MaxSplits, "noGraphBreaks": o.NoGraphBreaks,
	}
}

// exportRequest is a parsed export() argument.
type exportRequest struct {
	model      *fileGroup
	base       string
	adapters   []export.Adapter
	options    export.Options
	onProgress js.Value
	onNotice   js.Value
	signal     js.Value
	output     js.Value
	cache      bool
	files      []*FS // of the model and the adapters
}

var requestKeys = map[string]bool{"model": true, "base": true, "adapters": true, "options": true,
	"onProgress": true, "onNotice": true, "signal": true, "output": true, "cache": true}

func parseExportRequest(v js.Value, window int) (*exportRequest, error) {
	if v.Type() != js.TypeObject {
		return nil, fmt.Errorf("export: want a request object, got %s", describe(v))
	}
	keys := js.Global().Get("Object").Call("keys", v)
	for i := 0; i < keys.Length(); i++ {
		if k := keys.Index(i).String(); !requestKeys[k] {
			return nil, fmt.Errorf("export: unknown field %q", k)
		}
	}
	r := &exportRequest{onProgress: v.Get("onProgress"), onNotice: v.Get("onNotice"), signal: v.Get("signal"),
		output: v.Get("output"), cache: v.Get("cache").Type() != js.TypeBoolean || v.Get("cache").Bool()}
	var err error
	if r.options, err = parseOptions(v.Get("options")); err != nil {
		return nil, err
	}
	model, err := fileEntries(v.Get("model"), "model")
	if err != nil {
		return nil, err
	}
	if b := v.Get("base"); !b.IsUndefined() && !b.IsNull() {
		if b.Type() != js.TypeString || b.String() == "" {
			return nil, fmt.Errorf("base: want the id of a cached base, got %s", describe(b))
		}
		r.base = b.String()
	}
	switch {
	case len(model) > 0 && r.base != "":
		return nil, fmt.Errorf("give either model files or a cached base, not both")
	case len(model) > 0:
		if r.model, err = newGroup(model, "config.json", window); err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		r.files = append(r.files, r.model.fs)
	case r.base == "":
		return nil, fmt.Errorf("no base model: give the model files (config.json and *.safetensors) or the id of a cached base")
	}
	ads := v.Get("adapters")
	if !ads.IsUndefined() && !ads.IsNull() {
		if ads.Type() != js.TypeObject || ads.Get("length").Type() != js.TypeNumber {
			return nil, fmt.Errorf("adapters: want an array of {name, files}")
		}
		for i := 0; i < ads.Length(); i++ {
			a := ads.Index(i)
			where := fmt.Sprintf("adapters[%d]", i)
			if a.Type() != js.TypeObject || a.Get("name").Type() != js.TypeString {
				return nil, fmt.Errorf("%s: want {name: \"NAME\", files: [File, ...]}", where)
			}
			name := a.Get("name").String()
			files, err := fileEntries(a.Get("files"), where+".files")
			if err != nil {
				return nil, err
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("adapter %q: no files (want adapter_config.json and adapter_model.safetensors)", name)
			}
			g, err := newGroup(files, "adapter_config.json", window)
			if err != nil {
				return nil, fmt.Errorf("adapter %q: %w", name, err)
			}
			r.adapters = append(r.adapters, export.Adapter{Name: name, FS: g.fs, Path: g.dir})
			r.files = append(r.files, g.fs)
		}
	}
	return r, nil
}
