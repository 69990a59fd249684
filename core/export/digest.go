package export

import (
	"crypto/sha256"
	"fmt"
	"io"
	"sync"

	"lorapte/core/lora"
	"lorapte/core/safetensors"
)

// Sampling of the digests: 4 KiB samples of the tensor data, plus the
// names, dtypes and shapes of the tensors. Any fine-tune (and any
// retrained adapter) changes far more than that.
//   - The base: at most baseSamples per file, at least sampleStride apart,
//     and each file's last 4 KiB (~130 reads of a 2.5 GB checkpoint, ~0.01 %
//     of it). In the browser each read is a round trip costing ~2 ms.
//   - Adapters, whose tensors are small and read whole anyway: every 64 KiB
//     of each tensor and its last 4 KiB (1/16 of the bytes; hashing 2×45 MB
//     whole took ~0.7 s of single-threaded wasm).
const (
	sampleBytes         = 4 << 10
	sampleStride        = 4 << 20
	baseSamples         = 128
	adapterSampleStride = 64 << 10
)

// digest fingerprints everything the output depends on. It keys the Core ML
// identifier (the device's compile-cache key) and the browser's base cache.
func digest(req Request, baseDigest []byte, adapters map[string]*lora.Adapter, o *Options) ([]byte, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", ToolVersion)
	fmt.Fprintf(h, "options mf=%t dtype=%s ctx=%d in=%d emb=%s lin=%s split=%d/%d breaks=%t\n",
		o.Multifunction, o.DType, o.MaxContextLen, o.InputLen, o.EmbeddingQuantize, o.LinearQuantize,
		o.TargetSplitSize, o.MaxSplits, !o.NoGraphBreaks)
	h.Write(baseDigest)
	for _, a := range req.Adapters {
		ad := adapters[a.Name]
		fmt.Fprintf(h, "adapter %s\n", a.Name)
		h.Write(ad.ConfigDigest[:])
		if err := hashSource(h, ad.Source, adapterSampleStride); err != nil {
			return nil, err
		}
	}
	return h.Sum(nil), nil
}

// baseContentDigest fingerprints the base model's tensors (sampled).
func baseContentDigest(base *safetensors.Source) ([]byte, error) {
	var parts []*digestPart
	for _, name := range base.Names() {
		info, _ := base.Info(name)
		parts = append(parts, &digestPart{text: tensorLine(name, info)})
	}
	for _, f := range base.Files() {
		data := f.Data()
		n := data.Size()
		stride := max(int64(sampleStride), (n/baseSamples+sampleBytes-1)/sampleBytes*sampleBytes)
		add := func(off int64) {
			parts = append(parts, &digestPart{r: data, off: off, n: min(int64(sampleBytes), n-off), file: f.Name()})
		}
		for off := int64(0); off < n; off += stride {
			add(off)
		}
		if n > sampleBytes {
			add(n - sampleBytes)
		}
	}
	h := sha256.New()
	if err := hashParts(h, parts); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// samplesInFlight bounds the concurrent sample reads. In the browser each
// read is a round trip to the page; overlapping them turns ~10² sequential
// waits into a few.
const samplesInFlight = 64

// tensorLine is a tensor's name, dtype, shape and size in the digest.
func tensorLine(name string, info safetensors.Info) string {
	return fmt.Sprintf("tensor %s %s %v %d\n", name, info.DType, info.Shape, info.Bytes)
}

// digestPart is one piece of the digest input: text or a sampled byte range.
type digestPart struct {
	text string
	r    *io.SectionReader
	off  int64
	n    int64
	file string // for errors
	what string // for errors: "tensor NAME" or "data"
	data []byte
	err  error
}

// hashSource adds every tensor's name, dtype, shape and size and samples of
// its bytes (4 KiB every stride, and its last 4 KiB).
func hashSource(h io.Writer, src *safetensors.Source, stride int64) error {
	var parts []*digestPart
	for _, name := range src.Names() {
		info, _ := src.Info(name)
		r, err := src.Raw(name)
		if err != nil {
			return err
		}
		parts = append(parts, &digestPart{text: tensorLine(name, info)})
		add := func(off int64) {
			n := min(int64(sampleBytes), info.Bytes-off)
			parts = append(parts, &digestPart{r: r, off: off, n: n, file: info.File, what: "tensor " + info.Name})
		}
		for off := int64(0); off < info.Bytes; off += stride {
			add(off)
		}
		if info.Bytes > sampleBytes {
			add(info.Bytes - sampleBytes)
		}
	}
	return hashParts(h, parts)
}

// hashParts hashes the parts in order. Samples are read concurrently in
// windows, so the digest does not depend on timing.
func hashParts(h io.Writer, parts []*digestPart) error {
	for i := 0; i < len(parts); i += samplesInFlight {
		win := parts[i:min(i+samplesInFlight, len(parts))]
		var wg sync.WaitGroup
		for _, p := range win {
			if p.r == nil {
				continue
			}
			wg.Add(1)
			go func(p *digestPart) {
				defer wg.Done()
				p.data = make([]byte, p.n)
				if _, err := p.r.ReadAt(p.data, p.off); err != nil && err != io.EOF {
					what := p.what
					if what == "" {
						what = "data"
					}
					p.err = fmt.Errorf("%s: reading %s: %w", p.file, what, err)
				}
			}(p)
		}
		wg.Wait()
		for _, p := range win {
			switch {
			case p.r == nil:
				io.WriteString(h, p.text)
			case p.err != nil:
				return p.err
			default:
				h.Write(p.data)
				p.data = nil
			}
		}
	}
	return nil
}
