package export

import (
	"crypto/sha256"
	"fmt"
	"io"

	"lorapte/core/lora"
	"lorapte/core/safetensors"
)

// Sampling stride of the base digest: 4 KiB out of every 4 MiB of tensor
// data (plus each tensor's last 4 KiB). Any fine-tune changes far more than
// that, while the digest costs ~0.1 % of a full read, which matters in the
// browser. Adapters are small and hashed whole.
const (
	sampleBytes  = 4 << 10
	sampleStride = 4 << 20
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
		if err := hashSource(h, ad.Source, true); err != nil {
			return nil, err
		}
	}
	return h.Sum(nil), nil
}

// baseContentDigest fingerprints the base model's tensors (sampled).
func baseContentDigest(base *safetensors.Source) ([]byte, error) {
	h := sha256.New()
	if err := hashSource(h, base, false); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func hashSource(h io.Writer, src *safetensors.Source, full bool) error {
	buf := make([]byte, sampleBytes)
	for _, name := range src.Names() {
		info, _ := src.Info(name)
		fmt.Fprintf(h, "tensor %s %s %v %d\n", name, info.DType, info.Shape, info.Bytes)
		r, err := src.Raw(name)
		if err != nil {
			return err
		}
		if full {
			if _, err := io.Copy(h, r); err != nil {
				return fmt.Errorf("%s: reading tensor %s: %w", info.File, name, err)
			}
			continue
		}
		for off := int64(0); off < info.Bytes; off += sampleStride {
			if err := sample(h, r, off, buf, info); err != nil {
				return err
			}
		}
		if info.Bytes > sampleBytes {
			if err := sample(h, r, info.Bytes-sampleBytes, buf, info); err != nil {
				return err
			}
		}
	}
	return nil
}

func sample(h io.Writer, r *io.SectionReader, off int64, buf []byte, info safetensors.Info) error {
	n := int64(len(buf))
	if off+n > info.Bytes {
		n = info.Bytes - off
	}
	if _, err := r.ReadAt(buf[:n], off); err != nil && err != io.EOF {
		return fmt.Errorf("%s: reading tensor %s: %w", info.File, info.Name, err)
	}
	h.Write(buf[:n])
	return nil
}
