package export

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"lorapte/core/safetensors"
	"lorapte/internal/benchgen"
)

// heapPeak samples the heap every few milliseconds until stopped.
type heapPeak struct {
	stop  chan struct{}
	done  sync.WaitGroup
	inuse uint64 // peak HeapInuse
	sys   uint64 // peak HeapSys
}

func startHeapPeak() *heapPeak {
	p := &heapPeak{stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			p.inuse = max(p.inuse, ms.HeapInuse)
			p.sys = max(p.sys, ms.HeapSys)
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *heapPeak) finish() { close(p.stop); p.done.Wait() }

// smolLM2Request generates a random SmolLM2-135M-shaped bf16 model with
// two r=16 adapters in dir: the request with default options and
// --multifunction, and its input bytes.
func smolLM2Request(b *testing.B, dir string) (Request, int64) {
	s := benchgen.SmolLM2_135M()
	input, err := benchgen.WriteModel(filepath.Join(dir, "model"), s, safetensors.BF16)
	if err != nil {
		b.Fatal(err)
	}
	fsys := os.DirFS(dir)
	var adapters []Adapter
	for _, name := range []string{"a1", "a2"} {
		n, err := benchgen.WriteAdapter(filepath.Join(dir, name), s, name, benchgen.DefaultAdapter())
		if err != nil {
			b.Fatal(err)
		}
		input += n
		adapters = append(adapters, Adapter{Name: name, FS: fsys, Path: name})
	}
	o := DefaultOptions()
	o.Multifunction = true
	return Request{FS: fsys, ModelDir: "model", Adapters: adapters, Options: o}, input
}

// BenchmarkPlanSmolLM2 plans (headers, digest, Core ML programs, layout)
// the export of BenchmarkExportSmolLM2 without writing it: the part of an
// export before its first output byte, which the browser runs on the
// page's thread.
func BenchmarkPlanSmolLM2(b *testing.B) {
	req, _ := smolLM2Request(b, b.TempDir())
	for b.Loop() {
		p, err := NewPlan(req)
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}

// BenchmarkExportSmolLM2 exports a random SmolLM2-135M-shaped bf16 model
// (generated once, outside the timed loop) with two r=16 adapters, default
// options and --multifunction, to io.Discard. MB/s is input bytes per
// second; peak-heap-MB is the largest HeapInuse seen while exporting.
func BenchmarkExportSmolLM2(b *testing.B) {
	req, input := smolLM2Request(b, b.TempDir())
	b.SetBytes(input)
	runtime.GC()
	peak := startHeapPeak()
	for b.Loop() {
		if err := Export(context.Background(), req, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
	peak.finish()
	b.ReportMetric(float64(peak.inuse)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(peak.sys)/(1<<20), "peak-heapsys-MB")
}
