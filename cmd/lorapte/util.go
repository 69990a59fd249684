package main

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"lorapte/core/export"
)

// fsFor returns a file system and path for an OS path: relative to the
// working directory when the path lies below it (so error messages show the
// path as typed), else rooted at the path's parent folder (messages then
// start with the folder's own name). Files are *os.File, an io.ReaderAt.
func fsFor(p string) (fs.FS, string, error) {
	if !filepath.IsAbs(p) {
		if c := filepath.Clean(p); filepath.IsLocal(c) {
			return os.DirFS("."), filepath.ToSlash(c), nil
		}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, "", err
	}
	parent, base := filepath.Split(filepath.Clean(abs))
	if base == "" {
		return nil, "", fmt.Errorf("%s: not a model or adapter folder", p)
	}
	return os.DirFS(parent), base, nil
}

// parseSize reads a byte count: digits, optionally followed by a decimal
// (KB, MB, GB, TB) or binary (KiB, MiB, GiB, TiB) unit, case-insensitive.
func parseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult := map[string]int64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mult == 0 || n <= 0 {
		return 0, fmt.Errorf("want a positive size such as 8GB or 4GiB, got %q", v)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return n * mult, nil
}

func newBufWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 1<<20) }

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// terminalProgress redraws one status line: stage, percent, MB/s.
func terminalProgress(w io.Writer, start time.Time) export.Progress {
	return func(stage string, done, total int64) {
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		rate := float64(done) / (1 << 20) / time.Since(start).Seconds()
		fmt.Fprintf(w, "\r%-6s %5.1f%%  %s / %s  %.1f MB/s   ", stage, pct, export.HumanBytes(done), export.HumanBytes(total), rate)
		if stage == "done" {
			fmt.Fprintln(w)
		}
	}
}
