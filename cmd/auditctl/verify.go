package main

// verify: checks a team's log against its signed checkpoint (docs/integrity.md, "Verifying").

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/seal"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// errNotVerified makes auditctl exit 1 after the report is printed.
var errNotVerified = errors.New("verification failed: see the problems in the report")

// verifyCmd runs `auditctl verify --bundle FILE --key KEY [--pinned FILE]`: offline, it reads only
// its files and opens no connection. It prints the JSON report on standard output and fails
// (exit 1) unless the bundle verifies.
//
// With --team instead of --bundle it checks the team's events in the cluster against the team's
// latest checkpoint (seal.Log.Verify), for operators, and reports in the same way.
func verifyCmd(ctx context.Context, fs *flag.FlagSet, connect *recorder.Flags, args []string, stdout io.Writer) error {
	bundle := fs.String("bundle", "", "the bundle file (auditctl export --format bundle, or GET /v1/export?format=bundle)")
	team := fs.String("team", "", "instead of a bundle: check this team's events in the cluster against its latest checkpoint")
	index := seal.IndexFlag(fs)
	key := fs.String("key", "", "a verifier key (<name>+<hash>+<key>), or a file of them, one per line")
	pinned := fs.String("pinned", "", "a signed checkpoint kept from earlier: the log must extend it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*bundle == "") == (*team == "") || *key == "" {
		return errors.New("--key and one of --bundle or --team are required")
	}
	keys := []string{*key}
	if b, err := os.ReadFile(*key); err == nil {
		keys = merkle.VerifierKeys(b)
	} else if !strings.Contains(*key, "+") {
		return fmt.Errorf("--key: neither a verifier key nor a readable file: %w", err)
	}
	var pin []byte
	if *pinned != "" {
		var err error
		if pin, err = os.ReadFile(*pinned); err != nil {
			return fmt.Errorf("--pinned: %w", err)
		}
	}
	if _, err := merkle.Verifiers(keys); err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	var report merkle.Report
	if *team != "" {
		if err := audit.CheckTeamID(*team); err != nil {
			return fmt.Errorf("--team %w", err)
		}
		c, err := connect.Client()
		if err != nil {
			return err
		}
		store, err := seal.NewStore(c, *index)
		if err != nil {
			return fmt.Errorf("--seal-index: %w", err)
		}
		if report, err = seal.NewLog(store).Verify(ctx, *team, keys, pin); err != nil {
			return err
		}
		return printReport(stdout, report)
	}
	f, err := os.Open(*bundle)
	if err != nil {
		return fmt.Errorf("--bundle: %w", err)
	}
	defer f.Close()
	if b, err := merkle.ReadBundle(f); err != nil {
		// The header holds the signed checkpoint and the hashes it signs: unreadable, nothing is.
		report = merkle.Report{SignedBy: []string{}, Problems: []merkle.Problem{{Code: merkle.ProblemSignature, Detail: err.Error()}}}
	} else {
		report = merkle.Verify(b, keys, pin)
	}
	return printReport(stdout, report)
}

// printReport prints a report as JSON; it is an error unless the log verified.
func printReport(stdout io.Writer, report merkle.Report) error {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(report); err != nil {
		return err
	}
	if !report.Verified {
		return errNotVerified
	}
	return nil
}
