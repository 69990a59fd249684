// Command wasm is the browser build of lorapte (GOOS=js GOARCH=wasm); see
// main.go. Build it with ./build.sh wasm.
package main
