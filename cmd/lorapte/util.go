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

// osFS is an fs.FS over absolute paths (given without the leading slash,
// as io/fs requires). Its files are *os.File, which implement io.ReaderAt.
type osFS struct{}

func (osFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	return os.Open(string(filepath.Separator) + filepath.FromSlash(name))
}

// fsFor returns a file system and path for an OS path: relative to the
// working directory when the path lies below it (so error messages show the
// path as typed), else from the root. Both give *os.File, an io.ReaderAt.
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
	rel := strings.TrimPrefix(filepath.ToSlash(filepath.Clean(abs)), "/")
	if rel == "" {
		rel = "."
	}
	return osFS{}, rel, nil
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

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// terminalProgress redraws one status line: stage, percent, MB/s.
func terminalProgress(w io.Writer, start time.Time) export.Progress {
	return func(stage string, done, total int64) {
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		rate := float64(done) / (1 << 20) / time.Since(start).Seconds()
		fmt.Fprintf(w, "\r%-6s %5.1f%%  %s / %s  %.1f MB/s   ", stage, pct, humanBytes(done), humanBytes(total), rate)
		if stage == "done" {
			fmt.Fprintln(w)
		}
	}
}
