//go:build js && wasm

package main

import (
	"syscall/js"

	"lorapte/jsbridge"
)

// main registers globalThis.__lorapteCore (see jsbridge.Core.Register) for
// site/lorapte.js, tells the page through __lorapteReady when it exists,
// and then serves calls for the page's lifetime.
//
// In a Web Worker (site/lorapte-worker.js) it registers
// globalThis.__lorapteWorker instead: the converter of the page's pool.
func main() {
	if jsbridge.InWorker() {
		jsbridge.RegisterWorker(js.Global(), "__lorapteWorker")
		select {}
	}
	jsbridge.NewCore().Register(js.Global(), "__lorapteCore")
	if ready := js.Global().Get("__lorapteReady"); ready.Type() == js.TypeFunction {
		ready.Invoke()
	}
	select {}
}
