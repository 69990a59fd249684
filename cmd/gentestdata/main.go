// Command gentestdata regenerates lorapte's synthetic test models under
// testdata/ (run from the repository root: go run ./cmd/gentestdata).
// The output is byte-identical on every run.
package main

import (
	"flag"
	"fmt"
	"os"

	"lorapte/internal/testgen"
)

func main() {
	out := flag.String("out", "testdata", "testdata directory to write into")
	flag.Parse()
	if err := testgen.WriteAll(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gentestdata:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %d files under %s\n", len(testgen.Files()), *out)
}
