// Package jsbridge connects the browser to lorapte's export API (GOOS=js
// GOARCH=wasm only): dropped File objects become an fs.FS whose files are
// io.ReaderAt, the output goes out as ordered Blob parts or into a
// WritableStream, the converted base is cached in IndexedDB, progress goes
// to a JS callback and an AbortSignal cancels.
//
// Every call that waits for JavaScript (a Blob read, a stream write, an
// IndexedDB request) blocks its goroutine on a channel while the event loop
// keeps running, so the functions JS calls run their work in goroutines and
// return Promises. Buffers are bounded (a read-ahead window per file, one
// output part, one cache chunk) so a multi-gigabyte checkpoint never has to
// fit in the wasm heap.
package jsbridge
