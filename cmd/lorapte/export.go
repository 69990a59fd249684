package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"lorapte/core/export"
)

var errUsage = errors.New("usage")

// adapterFlags collects repeated --adapter NAME=PATH values.
type adapterFlags []export.Adapter

func (a *adapterFlags) String() string { return "" }
func (a *adapterFlags) Set(v string) error {
	name, p, ok := strings.Cut(v, "=")
	if !ok || name == "" || p == "" {
		return fmt.Errorf("want NAME=DIR (or NAME=FILE.safetensors), got %q", v)
	}
	fsys, fp, err := fsFor(p)
	if err != nil {
		return err
	}
	*a = append(*a, export.Adapter{Name: name, FS: fsys, Path: fp})
	return nil
}

func runExport(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("export", flag.ContinueOnError)
	fl.SetOutput(stderr)
	o := export.DefaultOptions()
	var model, output string
	var adapters adapterFlags
	var quiet bool
	str := func(p *string, def string, usage string, names ...string) {
		for _, n := range names {
			fl.StringVar(p, n, def, usage)
		}
	}
	num := func(p *int, def int, usage string, names ...string) {
		for _, n := range names {
			fl.IntVar(p, n, def, usage)
		}
	}
	boolean := func(p *bool, usage string, names ...string) {
		for _, n := range names {
			fl.BoolVar(p, n, false, usage)
		}
	}
	str(&model, "", "Hugging Face model folder (config.json + *.safetensors)", "model", "m")
	str(&output, "model.pte", "output .pte file", "output", "o")
	fl.Var(&adapters, "adapter", "LoRA adapter NAME=DIR (repeatable)")
	boolean(&o.Multifunction, "export forward (decode, L=1) and prefill (L=input-len) sharing weights", "multifunction")
	str(&o.DType, o.DType, "float dtype: fp16 or fp32", "dtype")
	num(&o.MaxContextLen, o.MaxContextLen, "maximum context length", "max-context-len", "max_context_len")
	num(&o.InputLen, o.InputLen, "input length of the (prefill) method", "input-len", "input_len")
	str(&o.EmbeddingQuantize, o.EmbeddingQuantize, "embedding quantization: 8,0 | 4,32 | none", "embedding-quantize", "embedding_quantize", "E")
	str(&o.LinearQuantize, o.LinearQuantize, "linear quantization: c4w | b4w | none", "linear-quantize", "linear_quantize")
	num(&o.TargetSplitSize, o.TargetSplitSize, "split linears into pieces of about this many output features", "target-split-size", "target_split_size")
	num(&o.MaxSplits, o.MaxSplits, "maximum pieces per linear", "max-splits", "max_splits")
	boolean(&o.NoGraphBreaks, "one Core ML partition instead of embedding | layers | head", "no-graph-breaks", "no_graph_breaks")
	boolean(&quiet, "no progress output", "quiet", "q")
	size := func(p *int64, def int64, usage string, names ...string) {
		for _, n := range names {
			fl.Func(n, fmt.Sprintf("%s (bytes, or with a suffix KB, MB, GB, KiB, MiB, GiB; default %s)", usage, export.HumanBytes(def)), func(v string) error {
				b, err := parseSize(v)
				if err != nil {
					return err
				}
				*p = b
				return nil
			})
		}
	}
	size(&o.MaxOutputBytes, export.DefaultMaxOutputBytes, "refuse an output larger than this", "max-output-size", "max_output_size")
	size(&o.MaxMemoryBytes, export.DefaultMaxMemoryBytes, "refuse an export whose estimated peak memory is larger than this", "max-memory", "max_memory")
	if err := fl.Parse(args); err != nil {
		return errUsage
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "lorapte export: unexpected argument %q\n", fl.Arg(0))
		return errUsage
	}
	if model == "" {
		fmt.Fprintln(stderr, "lorapte export: --model DIR is required")
		return errUsage
	}
	fsys, dir, err := fsFor(model)
	if err != nil {
		return err
	}
	req := export.Request{FS: fsys, ModelDir: dir, Adapters: adapters, Options: o}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	plan, err := export.NewPlan(req)
	if err != nil {
		return err
	}
	defer plan.Close()
	var progress export.Progress
	if !quiet && isTerminal(stderr) {
		progress = terminalProgress(stderr, start)
	}
	if err := writeAtomic(output, func(w io.Writer) error { return plan.Write(ctx, w, progress) }); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(stderr, "lorapte: wrote %s (%s, methods %s) in %.1fs\n", output, export.HumanBytes(plan.Size()),
		strings.Join(plan.Methods(), ", "), el.Seconds())
	return nil
}

// writeAtomic writes to a temporary file beside path and renames it into
// place only when fn succeeded, so a failed export leaves nothing behind.
func writeAtomic(path string, fn func(io.Writer) error) error {
	return writeAtomicVia(path, nil, fn)
}

// writeAtomicVia is writeAtomic with the file wrapped by wrap (when not
// nil); tests inject a writer that fails like a full disk.
func writeAtomicVia(path string, wrap func(io.Writer) io.Writer, fn func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("cannot write output %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	var w io.Writer = f
	if wrap != nil {
		w = wrap(f)
	}
	// Remember a write error so that it is reported against the output
	// path rather than as an input problem.
	sink := &errWriter{w: w}
	bw := newBufWriter(sink)
	if err = fn(bw); err != nil {
		if sink.err != nil && errors.Is(err, sink.err) {
			return fmt.Errorf("writing %s: %w", path, sink.err)
		}
		return err
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("cannot write output %s: %w", path, err)
	}
	return nil
}

// errWriter records the first error of w.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
