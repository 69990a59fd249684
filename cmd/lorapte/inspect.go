package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"lorapte/core/inspect"
)

func runInspect(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fl.SetOutput(stderr)
	asJSON := fl.Bool("json", false, "print the report as JSON")
	verify := fl.Bool("verify", false, "run every check; exit 1 naming each failure")
	extract := fl.String("extract", "", "write each Core ML model as DIR/<key>/model.mlpackage + metadata.json")
	// Flags may come before or after the file name.
	var file string
	for len(args) > 0 {
		if err := fl.Parse(args); err != nil {
			return errUsage
		}
		args = fl.Args()
		if len(args) > 0 {
			if file != "" {
				fmt.Fprintf(stderr, "lorapte inspect: more than one file given\n")
				return errUsage
			}
			file, args = args[0], args[1:]
		}
	}
	if file == "" {
		fmt.Fprintln(stderr, "usage: lorapte inspect FILE.pte [--json] [--verify] [--extract DIR]")
		return errUsage
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	rep, err := inspect.Inspect(f, st.Size(), *verify)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if *extract != "" {
		if err := inspect.Extract(f, st.Size(), *extract); err != nil {
			return fmt.Errorf("%s: extract: %w", file, err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.WriteText(stdout)
	}
	if *verify && rep.Failed() {
		return errors.New(file + ": verification failed")
	}
	return nil
}
