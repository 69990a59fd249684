package mlpackage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File is one file of a package, path relative to the package directory.
// Data is set for the small in-memory files (nil for weight.bin).
type File struct {
	Path string
	Size int64
	Data []byte
}

// Files lists the package's files sorted by path, which is also the
// post-order of the directory tree with sorted names (the order the Core ML
// delegate's flattened directory stores them, pte.md §5.2).
func Files(model, manifest []byte, weightSize int64) []File {
	return []File{
		{Path: ModelPath, Size: int64(len(model)), Data: model},
		{Path: WeightPath, Size: weightSize},
		{Path: ManifestPath, Size: int64(len(manifest)), Data: manifest},
	}
}

// WriteDir writes a package directory. dir must not exist or be an empty
// directory (like coremltools, which refuses to overwrite). weight supplies
// exactly the weight.bin bytes.
func WriteDir(dir string, manifest, model []byte, weight io.Reader) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("mlpackage: %s exists and is not empty", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mlpackage: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(filepath.Dir(WeightPath))), 0o755); err != nil {
		return fmt.Errorf("mlpackage: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestPath), manifest, 0o644); err != nil {
		return fmt.Errorf("mlpackage: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(ModelPath)), model, 0o644); err != nil {
		return fmt.Errorf("mlpackage: %v", err)
	}
	wf, err := os.Create(filepath.Join(dir, filepath.FromSlash(WeightPath)))
	if err != nil {
		return fmt.Errorf("mlpackage: %v", err)
	}
	if _, err := io.Copy(wf, weight); err != nil {
		wf.Close()
		return fmt.Errorf("mlpackage: writing weight.bin: %v", err)
	}
	if err := wf.Close(); err != nil {
		return fmt.Errorf("mlpackage: writing weight.bin: %v", err)
	}
	return nil
}
