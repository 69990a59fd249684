//go:build js && wasm

package jsbridge

import (
	"context"
	"errors"
	"syscall/js"
)

// ErrCancelled is the error of an export stopped through its AbortSignal.
var ErrCancelled = errors.New("export cancelled")

// SignalContext derives a context that is cancelled when the AbortSignal
// fires. signal may be undefined or null. stop releases the listener.
func SignalContext(parent context.Context, signal js.Value) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	if signal.IsUndefined() || signal.IsNull() {
		return ctx, func() { cancel(nil) }
	}
	if signal.Get("aborted").Truthy() {
		cancel(ErrCancelled)
		return ctx, func() {}
	}
	onAbort := js.FuncOf(func(js.Value, []js.Value) any {
		cancel(ErrCancelled)
		return nil
	})
	signal.Call("addEventListener", "abort", onAbort)
	return ctx, func() {
		signal.Call("removeEventListener", "abort", onAbort)
		onAbort.Release()
		cancel(nil)
	}
}
