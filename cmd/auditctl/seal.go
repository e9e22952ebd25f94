package main

// seal: the keys that sign the teams' Merkle log checkpoints (docs/integrity.md).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/seal"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

const sealUsage = "usage: auditctl seal keygen --name <origin> [--out FILE] | auditctl seal run --seal-key FILE [--once]"

// sealCmd runs `auditctl seal keygen`: it writes a new Ed25519 signer key to a file of mode 0600
// (never over an existing one) and prints its verifier key, the line customers pin, first on
// standard output. The signer key stays out of Elasticsearch: whoever can write to the cluster must
// not be able to sign.
func sealCmd(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "run" {
		return sealRun(ctx, fs, args[1:], stderr)
	}
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

// sealRun runs `auditctl seal run`: a sealer of every team's log, until interrupted (or one pass
// with --once). Any number may run against one cluster.
func sealRun(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer) error {
	connect := recorder.RegisterFlags(fs)
	index := seal.IndexFlag(fs)
	flags := seal.RegisterSealerFlags(fs, "the signer key file (auditctl seal keygen)")
	once := fs.Bool("once", false, "seal what is stored now, then exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !flags.Enabled() {
		return errors.New("--seal-key is required (or AUDIT_SEAL_SIGNER_KEY)")
	}
	c, err := connect.Client()
	if err != nil {
		return err
	}
	store, err := seal.NewStore(c, *index)
	if err != nil {
		return fmt.Errorf("--seal-index: %w", err)
	}
	s, err := flags.Sealer(store)
	if err != nil {
		return err
	}
	s.SetLogger(slog.New(slog.NewTextHandler(stderr, nil)))
	if !*once {
		s.Run(ctx)
		return nil
	}
	total := 0
	for {
		st, err := s.Round(ctx)
		total += st.Events
		if err != nil {
			return err
		}
		if !st.More {
			fmt.Fprintf(stderr, "auditctl: sealed %d events\n", total)
			return nil
		}
	}
}
