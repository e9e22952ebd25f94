// Command genactions writes audit/actions.go, the Go constants of the embedded action catalog, so that
// services name actions with the compiler's help. Run through `go generate ./audit`.
package main

import (
	"fmt"
	"os"

	"github.com/auditpipe/auditpipe/audit"
)

func main() {
	out := "actions.go"
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	if err := os.WriteFile(out, audit.GenerateActionsGo(audit.DefaultCatalog()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
