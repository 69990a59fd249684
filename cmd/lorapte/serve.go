package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"lorapte/internal/sitesrv"
)

// runServe serves the browser exporter (site/) on a local address.
func runServe(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "site", "folder to serve (built by ./build.sh wasm)")
	addr := fl.String("addr", "localhost:8080", "address to listen on")
	if err := fl.Parse(args); err != nil {
		return errUsage
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "lorapte serve: unexpected argument %q\n", fl.Arg(0))
		return errUsage
	}
	if _, err := os.Stat(filepath.Join(*dir, "index.html")); err != nil {
		return fmt.Errorf("serve: %s has no index.html: %w", *dir, err)
	}
	if _, err := os.Stat(filepath.Join(*dir, "lorapte.wasm")); err != nil {
		fmt.Fprintf(stderr, "lorapte serve: %s has no lorapte.wasm yet; run ./build.sh wasm\n", *dir)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv := &http.Server{Handler: sitesrv.Handler(os.DirFS(*dir)), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "lorapte: serving %s on http://%s/ (Ctrl-C to stop)\n", *dir, ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
}
