// Command lorapte exports Hugging Face Llama-family models and their LoRA
// adapters to an ExecuTorch .pte delegated to Core ML, and inspects .pte
// files.
//
//	lorapte export --model DIR --output FILE.pte [--adapter NAME=DIR ...] [options]
//	lorapte inspect FILE.pte [--json] [--verify] [--extract DIR]
//	lorapte serve [--dir site] [--addr localhost:8080]   (the browser exporter)
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "export":
		err = runExport(args[1:], stdout, stderr)
	case "inspect":
		err = runInspect(args[1:], stdout, stderr)
	case "bench":
		err = runBench(args[1:], stdout, stderr)
	case "serve":
		err = runServe(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "lorapte: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err != nil {
		if err == errUsage {
			return 2
		}
		fmt.Fprintf(stderr, "lorapte: %v\n", err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  lorapte export --model DIR --output FILE.pte [--adapter NAME=DIR ...] [options]
  lorapte inspect FILE.pte [--json] [--verify] [--extract DIR]
  lorapte bench [--sizes 135m,360m,1b] [--out DIR] [--keep]
  lorapte serve [--dir site] [--addr localhost:8080]
Run "lorapte export -h" for the export options.
`)
}
