// Package mlpackage lays out, writes and verifies Core ML `.mlpackage`
// directories (coreml.md §1) holding one ML Program model and its weight
// file: Manifest.json, Data/com.apple.CoreML/model.mlmodel and
// Data/com.apple.CoreML/weights/weight.bin.
package mlpackage

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Package-relative paths of the three files.
const (
	ManifestPath = "Manifest.json"
	ModelPath    = "Data/com.apple.CoreML/model.mlmodel"
	WeightPath   = "Data/com.apple.CoreML/weights/weight.bin"
)

// Manifest item constants as coremltools writes them.
const (
	FileFormatVersion = "1.0.0"
	Author            = "com.apple.CoreML"
	modelName         = "model.mlmodel"
	weightsName       = "weights"
	modelDescription  = "CoreML Model Specification"
	weightsDescr      = "CoreML Model Weights"
)

// Item is one itemInfoEntries value. Paths are relative to Data/.
type Item struct {
	Author      string `json:"author"`
	Description string `json:"description"`
	Name        string `json:"name"`
	Path        string `json:"path"`
}

// ManifestFile is the content of Manifest.json.
type ManifestFile struct {
	FileFormatVersion   string          `json:"fileFormatVersion"`
	ItemInfoEntries     map[string]Item `json:"itemInfoEntries"`
	RootModelIdentifier string          `json:"rootModelIdentifier"`
}

// Root is the item of the model specification.
func (m *ManifestFile) Root() Item { return m.ItemInfoEntries[m.RootModelIdentifier] }

// IDs lists the item identifiers in sorted order.
func (m *ManifestFile) IDs() []string {
	ids := make([]string, 0, len(m.ItemInfoEntries))
	for id := range m.ItemInfoEntries {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// ItemID derives a deterministic item identifier from seed: the first 16
// bytes of sha256(seed ‖ itemName) formatted as an upper-case UUID, with the
// RFC 9562 version-8 ("custom") and variant bits set so it is a well-formed UUID.
func ItemID(seed []byte, itemName string) string {
	h := sha256.New()
	h.Write(seed)
	h.Write([]byte(itemName))
	s := h.Sum(nil)[:16]
	s[6] = s[6]&0x0F | 0x80
	s[8] = s[8]&0x3F | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16]))
}

// NewManifest describes a package with a model item (the root)
// and a weights item, identifiers derived from seed.
func NewManifest(seed []byte) *ManifestFile {
	mid, wid := ItemID(seed, modelName), ItemID(seed, weightsName)
	return &ManifestFile{
		FileFormatVersion: FileFormatVersion,
		ItemInfoEntries: map[string]Item{
			mid: {Author: Author, Description: modelDescription, Name: modelName, Path: Author + "/" + modelName},
			wid: {Author: Author, Description: weightsDescr, Name: weightsName, Path: Author + "/" + weightsName},
		},
		RootModelIdentifier: mid,
	}
}

// Bytes encodes m like coremltools (4-space indent, sorted keys, trailing newline).
func (m *ManifestFile) Bytes() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(m); err != nil {
		panic(err) // strings and maps of strings always encode
	}
	return buf.Bytes()
}

// Manifest returns Manifest.json for a package whose item identifiers are
// derived from seed: NewManifest(seed).Bytes().
func Manifest(seed []byte) []byte { return NewManifest(seed).Bytes() }

// ParseManifest decodes and validates Manifest.json: fileFormatVersion
// "1.0.0", every item with the four keys, safe relative paths, and a root
// identifier naming an item.
func ParseManifest(data []byte) (*ManifestFile, error) {
	var raw struct {
		FileFormatVersion   *string                               `json:"fileFormatVersion"`
		ItemInfoEntries     map[string]map[string]json.RawMessage `json:"itemInfoEntries"`
		RootModelIdentifier *string                               `json:"rootModelIdentifier"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("mlpackage: Manifest.json: %v", err)
	}
	if raw.FileFormatVersion == nil || *raw.FileFormatVersion != FileFormatVersion {
		return nil, fmt.Errorf("mlpackage: Manifest.json: fileFormatVersion must be %q", FileFormatVersion)
	}
	if len(raw.ItemInfoEntries) == 0 {
		return nil, fmt.Errorf("mlpackage: Manifest.json: itemInfoEntries missing or empty")
	}
	m := &ManifestFile{FileFormatVersion: FileFormatVersion, ItemInfoEntries: map[string]Item{}}
	for id, fields := range raw.ItemInfoEntries {
		var it Item
		for _, k := range []struct {
			key string
			dst *string
		}{{"author", &it.Author}, {"description", &it.Description}, {"name", &it.Name}, {"path", &it.Path}} {
			v, ok := fields[k.key]
			if !ok {
				return nil, fmt.Errorf("mlpackage: Manifest.json: item %q has no %q", id, k.key)
			}
			if err := json.Unmarshal(v, k.dst); err != nil {
				return nil, fmt.Errorf("mlpackage: Manifest.json: item %q: %q is not a string", id, k.key)
			}
		}
		if err := checkItemPath(it.Path); err != nil {
			return nil, fmt.Errorf("mlpackage: Manifest.json: item %q: %v", id, err)
		}
		m.ItemInfoEntries[id] = it
	}
	if raw.RootModelIdentifier == nil {
		return nil, fmt.Errorf("mlpackage: Manifest.json: rootModelIdentifier missing")
	}
	m.RootModelIdentifier = *raw.RootModelIdentifier
	if _, ok := m.ItemInfoEntries[m.RootModelIdentifier]; !ok {
		return nil, fmt.Errorf("mlpackage: Manifest.json: rootModelIdentifier %q is not an item", m.RootModelIdentifier)
	}
	return m, nil
}

// checkItemPath accepts clean relative slash paths that stay inside Data/.
func checkItemPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) ||
		path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("path %q is not a clean relative path inside Data/", p)
	}
	return nil
}
