//go:build js && wasm

package jsbridge

import "runtime"

// Go holds on to every JS object it created or was handed (a window read's
// ArrayBuffer, an output chunk, a cache chunk) until its garbage collector
// finalizes the js.Value, and only then may the page free the object. The
// exporter allocates almost nothing on the Go heap, so the collector would
// seldom run and a 1B export would keep gigabytes of dead ArrayBuffers and
// Blobs alive in the page (and Chromium breaks in-memory Blobs beyond its
// blob memory limit). pins counts the bytes such objects hold and runs the
// collector after every gcAfter of them; the finalizers then run at the
// next await.
type pins struct{ n int64 }

const gcAfter = 256 << 20

func (p *pins) add(n int) {
	p.n += int64(n)
	if p.n >= gcAfter {
		p.n = 0
		runtime.GC()
	}
}
