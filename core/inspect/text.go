package inspect

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"lorapte/core/mlpackage"
	"lorapte/core/pte"
)

func shape(s []int32) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func tensors(ts []Tensor) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.DType + shape(t.Shape)
	}
	return strings.Join(parts, " ")
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "file: %d bytes\n\nmethods:\n", r.Size)
	for _, m := range r.Methods {
		if m.Constant {
			continue
		}
		fmt.Fprintf(w, "  %s\n    inputs  (%d): %s\n    outputs (%d): %s\n", m.Name, len(m.Inputs), tensors(m.Inputs), len(m.Outputs), tensors(m.Outputs))
		for i, d := range m.Delegates {
			fmt.Fprintf(w, "    delegate %d: %s segment %d → %s function %q\n", i, d.Backend, d.Segment, d.Key, d.Function)
		}
	}
	fmt.Fprintf(w, "\nconstant methods:\n")
	for _, m := range r.Methods {
		if !m.Constant {
			continue
		}
		var vals []string
		for _, v := range m.Values {
			if t, ok := v.(map[string]any); ok {
				s := fmt.Sprintf("%s%s", t["dtype"], shape(t["shape"].([]int32)))
				if vs, ok := t["values"].([]any); ok && len(vs) <= 16 {
					s += fmt.Sprint(vs)
				}
				vals = append(vals, s)
			} else {
				vals = append(vals, fmt.Sprintf("%v", v))
			}
		}
		fmt.Fprintf(w, "  %-32s %s\n", m.Name, strings.Join(vals, ", "))
	}
	fmt.Fprintf(w, "\nnamed data:\n")
	for _, nd := range r.NamedData {
		fmt.Fprintf(w, "  %s  segment %d, %d bytes\n", nd.Key, nd.Segment, nd.Size)
	}
	for _, m := range r.Models {
		fmt.Fprintf(w, "\nCore ML model %s (%s)\n", m.Key, m.Identifier)
		for _, f := range m.Files {
			fmt.Fprintf(w, "  %-60s %d\n", f.Path, f.Size)
		}
		for _, fn := range m.Functions {
			ops := make([]string, 0, len(fn.Ops))
			for _, k := range sortedKeys(fn.Ops) {
				ops = append(ops, fmt.Sprintf("%s×%d", k, fn.Ops[k]))
			}
			fmt.Fprintf(w, "  function %s: %d inputs, %d outputs; ops %s\n", fn.Name, len(fn.Inputs), len(fn.Outputs), strings.Join(ops, " "))
		}
		shared, sharedBytes := 0, int64(0)
		for _, b := range m.Blobs {
			if len(b.Functions) == len(m.Functions) && len(m.Functions) > 1 {
				shared++
				sharedBytes += b.Bytes
			}
		}
		fmt.Fprintf(w, "  weight blobs: %d (%d bytes); shared by all %d functions: %d (%d bytes)\n",
			len(m.Blobs), m.WeightSize, len(m.Functions), shared, sharedBytes)
	}
	s := r.Sizes
	fmt.Fprintf(w, "\nsizes: total %d = base weights %d", s.Total, s.Base)
	for _, a := range sortedKeys(s.Adapters) {
		fmt.Fprintf(w, " + adapter %s %d", a, s.Adapters[a])
	}
	fmt.Fprintf(w, " + overhead %d (program %d, constants %d)\n", s.Overhead, s.Program, s.Constants)
	if r.Verified {
		fails := 0
		for _, f := range r.Findings {
			kind := "FAIL"
			if f.Warn {
				kind = "WARN"
			} else {
				fails++
			}
			fmt.Fprintf(w, "%s [%s] %s\n", kind, f.ID, f.Msg)
		}
		if fails == 0 {
			fmt.Fprintf(w, "verify: ok (%d warnings)\n", len(r.Findings))
		} else {
			fmt.Fprintf(w, "verify: %d failed checks\n", fails)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Extract writes each Core ML model as DIR/<key>/model.mlpackage plus its
// metadata.json, so it can be opened in Xcode or checked with other tools.
func Extract(r io.ReaderAt, size int64, dir string) error {
	f, err := pte.Read(r, size)
	if err != nil {
		return err
	}
	for _, nd := range f.Program.NamedData {
		sr, err := f.Segment(nd.Segment)
		if err != nil {
			return err
		}
		pkg, err := OpenPackage(sr, sr.Size())
		if err != nil {
			return fmt.Errorf("named data %s: %w", nd.Key, err)
		}
		if !safeName(nd.Key) {
			return fmt.Errorf("named data key %q is not a safe folder name", nd.Key)
		}
		out := filepath.Join(dir, nd.Key)
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		md, _ := pkg.FS.Open("metadata.json")
		if err := copyTo(filepath.Join(out, "metadata.json"), md); err != nil {
			return err
		}
		wr, err := pkg.FS.Open("model.mlpackage/" + mlpackage.WeightPath)
		if err != nil {
			return err
		}
		if err := mlpackage.WriteDir(filepath.Join(out, "model.mlpackage"), pkg.Manifest, pkg.Model, wr); err != nil {
			return err
		}
	}
	return nil
}

func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`+"\x00")
}

func copyTo(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
