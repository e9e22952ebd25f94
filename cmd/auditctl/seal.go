package main

// seal: the keys that sign the teams' Merkle log checkpoints (docs/integrity.md).

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

const sealUsage = "usage: auditctl seal keygen --name <origin> [--out FILE]"

// sealCmd runs `auditctl seal keygen`: it writes a new Ed25519 signer key to a file of mode 0600
// (never over an existing one) and prints its verifier key, the line customers pin, first on
// standard output. The signer key stays out of Elasticsearch: whoever can write to the cluster must
// not be able to sign.
func sealCmd(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "keygen" {
		return errors.New(sealUsage)
	}
	name := fs.String("name", "", "the logs' origin, such as audit.example.com: the key's name, and each checkpoint's origin line is <origin>/<team id>")
	out := fs.String("out", "audit-seal.key", "the file the signer key is written to (mode 0600; an existing file is never overwritten)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--name is required (the logs' origin, such as audit.example.com)")
	}
	signer, verifier, err := merkle.GenerateKey(*name)
	if err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if _, err := fmt.Fprintln(f, signer); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, verifier)
	fmt.Fprintf(stderr, "auditctl: signer key written to %s (mode 0600); its verifier key is the first line of standard output\n", *out)
	return nil
}
