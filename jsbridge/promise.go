//go:build js && wasm

package jsbridge

import (
	"errors"
	"fmt"
	"syscall/js"
)

// JSError is a JavaScript exception or rejection reason seen from Go.
type JSError struct {
	Name    string // e.g. "QuotaExceededError", "AbortError"; may be empty
	Message string
}

func (e *JSError) Error() string {
	if e.Message == "" {
		return e.Name
	}
	return e.Message
}

// errorFromJS turns a rejection reason (usually an Error or DOMException)
// into a Go error that keeps its name for errors.As checks.
func errorFromJS(v js.Value) error {
	if v.Type() == js.TypeObject {
		e := &JSError{}
		if n := v.Get("name"); n.Type() == js.TypeString {
			e.Name = n.String()
		}
		if m := v.Get("message"); m.Type() == js.TypeString {
			e.Message = m.String()
		}
		if e.Name != "" || e.Message != "" {
			return e
		}
	}
	if v.Type() == js.TypeUndefined {
		return &JSError{Message: "promise rejected without a reason"}
	}
	return &JSError{Message: js.Global().Call("String", v).String()}
}

// Await blocks the calling goroutine until the promise p settles. Never
// call it on the goroutine that runs a js.FuncOf callback: that goroutine
// must return for the event loop to go on.
func Await(p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	onOK := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- result{v: arg(args, 0)}
		return nil
	})
	onErr := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- result{err: errorFromJS(arg(args, 0))}
		return nil
	})
	defer onOK.Release()
	defer onErr.Release()
	// Promise.resolve accepts plain values and thenables alike.
	js.Global().Get("Promise").Call("resolve", p).Call("then", onOK, onErr)
	r := <-ch
	return r.v, r.err
}

// call invokes a JS method and converts a thrown exception into an error.
func call(v js.Value, method string, args ...any) (res js.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			var je js.Error
			if errors.As(asError(r), &je) {
				err = errorFromJS(je.Value)
				return
			}
			err = fmt.Errorf("%s: %v", method, r)
		}
	}()
	return v.Call(method, args...), nil
}

func asError(r any) error {
	if e, ok := r.(error); ok {
		return e
	}
	return fmt.Errorf("%v", r)
}

func arg(args []js.Value, i int) js.Value {
	if i < len(args) {
		return args[i]
	}
	return js.Undefined()
}

// NewError makes a JS Error carrying msg; an AbortError name for
// cancellation so callers can tell it from failures.
func NewError(err error) js.Value {
	e := js.Global().Get("Error").New(err.Error())
	if errors.Is(err, ErrCancelled) {
		e.Set("name", "AbortError")
	}
	return e
}

// Promise runs fn in a new goroutine and returns a Promise of its result.
// A panic becomes a rejection instead of ending the wasm program (which
// would break every later call on the page).
func Promise(fn func() (any, error)) js.Value {
	var executor js.Func
	executor = js.FuncOf(func(_ js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			defer executor.Release()
			defer func() {
				if r := recover(); r != nil {
					reject.Invoke(NewError(fmt.Errorf("internal error: %v", r)))
				}
			}()
			v, err := fn()
			if err != nil {
				reject.Invoke(NewError(err))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	return js.Global().Get("Promise").New(executor)
}

// awaitCall calls v.method(args...) and awaits the Promise it returns.
func awaitCall(v js.Value, method string, args ...any) (js.Value, error) {
	p, err := call(v, method, args...)
	if err != nil {
		return js.Value{}, err
	}
	return Await(p)
}
