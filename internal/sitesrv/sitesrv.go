// Package sitesrv serves the browser exporter's static site (site/) for
// `lorapte serve` and the end-to-end tests: correct MIME types for .wasm,
// .js and .json, revalidation instead of stale caching (the service worker
// does the offline caching), no directory listings, no dotfiles.
package sitesrv

import (
	"errors"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// types maps extensions to the Content-Type sent. Set explicitly rather
// than from the OS MIME table, which differs between machines (wasm
// streaming compilation needs exactly application/wasm).
var types = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".json":        "application/json",
	".wasm":        "application/wasm",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".webmanifest": "application/manifest+json",
	".txt":         "text/plain; charset=utf-8",
	".md":          "text/plain; charset=utf-8",
	".safetensors": "application/octet-stream",
	".pte":         "application/octet-stream",
}

// Handler serves the files of fsys.
func Handler(fsys fs.FS) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		for _, seg := range strings.Split(name, "/") {
			if strings.HasPrefix(seg, ".") {
				http.NotFound(w, r)
				return
			}
		}
		f, err := fsys.Open(name)
		if err == nil {
			if st, serr := f.Stat(); serr == nil && st.IsDir() {
				f.Close()
				name = path.Join(name, "index.html")
				f, err = fsys.Open(name)
			}
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				http.NotFound(w, r)
			} else {
				http.Error(w, "cannot read "+name, http.StatusInternalServerError)
			}
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		ct, ok := types[path.Ext(name)]
		if !ok {
			ct = "application/octet-stream"
		}
		h.Set("Content-Type", ct)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if rs, ok := f.(interface {
			Read([]byte) (int, error)
			Seek(int64, int) (int64, error)
		}); ok {
			http.ServeContent(w, r, name, st.ModTime(), rs)
			return
		}
		http.Error(w, "cannot serve "+name, http.StatusInternalServerError)
	})
}
