//go:build js && wasm

package jsbridge

import (
	"errors"
	"strings"
	"syscall/js"
)

// The origin private file system holds the output files that are also the
// cache of a converted base (layoutFile): folder "lorapte", one file
// "<session>.pte" per cache session. The writer worker writes them
// (filesink.go); the page reads them as Files and removes them.

const opfsFolder = "lorapte"

// errNoOPFS reports a browser without the origin private file system.
var errNoOPFS = errors.New("this browser has no origin private file system")

// hasOPFS reports whether navigator.storage.getDirectory exists.
func hasOPFS() bool {
	st := js.Global().Get("navigator").Get("storage")
	return st.Truthy() && st.Get("getDirectory").Type() == js.TypeFunction
}

// opfsDir returns the "lorapte" folder (created when missing).
func opfsDir() (js.Value, error) {
	if !js.Global().Get("navigator").Truthy() || !hasOPFS() {
		return js.Value{}, errNoOPFS
	}
	root, err := awaitCall(js.Global().Get("navigator").Get("storage"), "getDirectory")
	if err != nil {
		return js.Value{}, err
	}
	return awaitCall(root, "getDirectoryHandle", opfsFolder, map[string]any{"create": true})
}

// sessionFile names the file of a cache session.
func sessionFile(session string) string { return session + ".pte" }

// opfsFile returns the File of name (a snapshot: it stays readable until
// the file is changed or removed).
func opfsFile(name string) (js.Value, error) {
	dir, err := opfsDir()
	if err != nil {
		return js.Value{}, err
	}
	fh, err := awaitCall(dir, "getFileHandle", name)
	if err != nil {
		return js.Value{}, err
	}
	return awaitCall(fh, "getFile")
}

// opfsRemove removes name; a missing file is not an error.
func opfsRemove(name string) error {
	dir, err := opfsDir()
	if err != nil {
		return err
	}
	if _, err := awaitCall(dir, "removeEntry", name); err != nil {
		var je *JSError
		// Missing, or open for writing (a live export in another tab whose
		// heartbeat looked stale): nothing to remove now.
		if errors.As(err, &je) && (je.Name == "NotFoundError" || je.Name == "NoModificationAllowedError") {
			return nil
		}
		return err
	}
	return nil
}

// opfsSessions lists the sessions that have a file.
func opfsSessions() ([]string, error) {
	dir, err := opfsDir()
	if err != nil {
		return nil, err
	}
	it, err := call(dir, "keys")
	if err != nil {
		return nil, err
	}
	var out []string
	for {
		r, err := awaitCall(it, "next")
		if err != nil {
			return nil, err
		}
		if r.Get("done").Truthy() {
			return out, nil
		}
		if name := r.Get("value").String(); strings.HasSuffix(name, ".pte") {
			out = append(out, strings.TrimSuffix(name, ".pte"))
		}
	}
}
