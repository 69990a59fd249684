//go:build !(js && wasm)

package main

import (
	"fmt"
	"os"
)

// main explains the build instead of failing to compile on other targets.
func main() {
	fmt.Fprintln(os.Stderr, "lorapte/wasm runs in the browser: build it with ./build.sh wasm (GOOS=js GOARCH=wasm)")
	os.Exit(2)
}
