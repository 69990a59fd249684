package export

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"

	"lorapte/core/hf"
	"lorapte/core/milblob"
	"lorapte/core/safetensors"
)

// A converted base model can be kept (the browser stores it in IndexedDB)
// so that a later export with new adapters needs only the adapter files:
// the base's config, safetensors headers and digest rebuild the plan, and
// its already encoded weight blobs are copied instead of read and
// quantized again. The output is byte-identical to an export from the
// original files.

// BaseFile is one safetensors file of a cached base, without its data.
type BaseFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Header []byte `json:"header"`
}

// BaseBlob is one converted blob of a cached base. Offset is where its
// bytes start in the .pte the plan wrote: a browser that keeps that file
// can serve the blob from it (no second copy of the base is stored).
type BaseBlob struct {
	Key    string `json:"key"`
	Bytes  int64  `json:"bytes"`
	Offset int64  `json:"offset"`
}

// BaseRegion is the start of a partition's weight file in the written
// .pte that holds only base (and inline) blobs: Bytes bytes at Offset, from
// the end of the file header on. A later export whose weight file starts
// with the same blobs (PrefixDigest) can take the whole range by one
// reference instead of one per blob (RegionRefSource).
type BaseRegion struct {
	Part   int    `json:"part"`
	Offset int64  `json:"offset"`
	Bytes  int64  `json:"bytes"`
	Digest string `json:"digest"` // milblob.Plan.PrefixDigest of those blobs
}

// BaseManifest describes a cached base: enough to plan an export again.
type BaseManifest struct {
	Key    string     `json:"key"`  // fingerprint of the base content and the options that shape its blobs
	Name   string     `json:"name"` // for people: the model folder's name
	Config []byte     `json:"config"`
	Files  []BaseFile `json:"files"`
	Digest []byte     `json:"digest"` // content digest of the base tensors
	Blobs  []BaseBlob `json:"blobs"`
	Bytes  int64      `json:"bytes"` // total blob bytes
	// Regions, one per partition that starts with base blobs, are ranges
	// of the written .pte (see BaseRegion).
	Regions []BaseRegion `json:"regions,omitempty"`
}

// RegionRefSource is an optional capability of a BlobSource that keeps
// the .pte the manifest was written with: the BaseRegion of partition part
// with the given digest as a reference (see BlobRefSource), or a nil ref
// when it has none.
type RegionRefSource interface {
	BlobRefSource
	OpenRegionRef(part int, digest string) (ref any, size int64, err error)
}

// BlobSource serves a cached base's blobs.
type BlobSource interface {
	OpenBlob(key string) (io.Reader, error)
}

// BlobSink receives the base's blobs while an export writes them, each as
// consecutive chunks, blobs in Manifest order.
type BlobSink interface {
	WriteBlob(key string, chunk []byte) error
}

// baseKey fingerprints the stored blobs: content, tool version and the
// options that change their bytes or their split into partitions.
func baseKey(digest []byte, o *Options) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nbase dtype=%s emb=%s lin=%s split=%d/%d breaks=%t\n", ToolVersion, o.DType,
		o.EmbeddingQuantize, o.LinearQuantize, o.TargetSplitSize, o.MaxSplits, !o.NoGraphBreaks)
	h.Write(digest)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// blobKey names a base blob in the cache.
func blobKey(part int, key string) string { return fmt.Sprintf("p%d/%s", part, key) }

// BaseManifest describes the plan's base for a cache. Call it after a
// successful Write with Request.SaveBase set, then store it last so a
// half-written entry is never used.
func (p *Plan) BaseManifest() *BaseManifest {
	m := &BaseManifest{Key: baseKey(p.baseDigest, &p.opts), Name: path.Base(p.modelName), Config: p.configJSON, Digest: p.baseDigest}
	for _, f := range p.base.Files() {
		m.Files = append(m.Files, BaseFile{Name: path.Base(f.Name()), Size: f.Size(), Header: f.Header()})
	}
	for i, pp := range p.parts {
		// The partition's segment is its flattened directory; weight.bin
		// is one file of it.
		var weights int64
		for _, f := range pp.blob.Files() {
			if f.Path == weightPath {
				weights = p.layout.SegmentOffset(pp.segment) + f.Offset
			}
		}
		entries := pp.weights.blobs.Entries()
		for _, e := range entries {
			j := pp.weights.owner[e.Key]
			if j == nil || j.src != p.base {
				continue
			}
			m.Blobs = append(m.Blobs, BaseBlob{Key: blobKey(i, e.Key), Bytes: e.Bytes, Offset: weights + int64(e.Data)})
			m.Bytes += e.Bytes
		}
		if k := pp.weights.basePrefix(); k > 0 {
			m.Regions = append(m.Regions, BaseRegion{Part: i, Offset: weights + milblob.HeaderSize,
				Bytes: int64(entries[k-1].End()) - milblob.HeaderSize, Digest: pp.weights.blobs.PrefixDigest(k)})
		}
	}
	return m
}

// SaveBaseTo replaces Request.SaveBase: where Write sends the converted
// base blobs (nil: nowhere). The browser decides only after planning
// whether it keeps the written file itself as the cache (BaseBlob.Offset).
func (p *Plan) SaveBaseTo(s BlobSink) { p.saveBase = s }

// loadCachedBase rebuilds the config and a header-only tensor source.
func loadCachedBase(m *BaseManifest) (*hf.Config, *safetensors.Source, error) {
	cfg, err := hf.ParseConfig(m.Config, m.Name+"/config.json")
	if err != nil {
		return nil, nil, err
	}
	var files []*safetensors.File
	for _, f := range m.Files {
		sf, err := safetensors.OpenHeader(m.Name+"/"+f.Name, f.Header, f.Size)
		if err != nil {
			return nil, nil, fmt.Errorf("cached base %s: %w", m.Name, err)
		}
		files = append(files, sf)
	}
	src, err := safetensors.OpenFiles(files...)
	if err != nil {
		return nil, nil, err
	}
	if err := hf.CheckWeights(cfg, src); err != nil {
		return nil, nil, err
	}
	return cfg, src, nil
}
