//go:build !unix

package main

import "os"

// maxRSS is unknown here; the child's own report (Linux) is used instead.
func maxRSS(*os.ProcessState) int64 { return 0 }
