package sitesrv

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestHandler(t *testing.T) {
	fsys := fstest.MapFS{
		"index.html":      {Data: []byte("<!doctype html>")},
		"lorapte.wasm":    {Data: []byte("\x00asm")},
		"app.js":          {Data: []byte("1")},
		"demo/files.json": {Data: []byte("[]")},
		"demo/index.html": {Data: []byte("demo")},
		".git/config":     {Data: []byte("secret")},
		"sub/a.txt":       {Data: []byte("a")},
	}
	srv := httptest.NewServer(Handler(fsys))
	defer srv.Close()
	get := func(p string) *http.Response {
		resp, err := http.Get(srv.URL + p)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	for p, ct := range map[string]string{
		"/":                "text/html; charset=utf-8",
		"/lorapte.wasm":    "application/wasm",
		"/app.js":          "text/javascript; charset=utf-8",
		"/demo/files.json": "application/json",
		"/demo/":           "text/html; charset=utf-8",
	} {
		resp := get(p)
		require.Equal(t, http.StatusOK, resp.StatusCode, p)
		require.Equal(t, ct, resp.Header.Get("Content-Type"), p)
		require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"), p)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), p)
	}
	for _, p := range []string{"/.git/config", "/missing.js", "/sub/", "/../etc/passwd"} {
		require.Equal(t, http.StatusNotFound, get(p).StatusCode, p)
	}
	resp, err := http.Post(srv.URL+"/", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}
