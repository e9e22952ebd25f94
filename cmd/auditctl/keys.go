package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/tenantapi"
)

// keysCmd mints, lists and revokes the keys of the audit log API (auditapi). A new key's token is
// printed once, alone on the first line of standard output; only its hash is stored.
func keysCmd(ctx context.Context, fs *flag.FlagSet, connect *recorder.Flags, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("keys: create, list or revoke")
	}
	sub, args := args[0], args[1:]
	fs.Init("auditctl keys "+sub, flag.ContinueOnError)
	team := fs.String("team", "", "the team id (required)")
	keysIndex := tenantapi.KeysIndexFlag(fs)
	open := func() (*query.Client, *tenantapi.Keys, error) {
		if *team == "" {
			return nil, nil, fmt.Errorf("keys %s: --team is required", sub)
		}
		c, err := connect.Client()
		if err != nil {
			return nil, nil, err
		}
		k, err := tenantapi.NewKeys(c, *keysIndex)
		return c, k, err
	}
	// openRecording also starts the in-process pipeline that records key events as the collector would.
	openRecording := func() (*tenantapi.Keys, *recorder.Recorder, error) {
		c, k, err := open()
		if err != nil {
			return nil, nil, err
		}
		pcfg, err := connect.ProcessorConfig(ctx)
		if err != nil {
			return nil, nil, err
		}
		rec, err := recorder.New(ctx, c, pcfg)
		return k, rec, err
	}
	switch sub {
	case "create":
		var scopes multi
		fs.Var(&scopes, "scope", "read (list and show events) or export (export the log); repeatable")
		expires := fs.Duration("expires", 0, "the key stops working after this long, e.g. 720h (default: never)")
		name := fs.String("name", "", "what the key is for, shown in keys list and in the team's log")
		op := operatorFlag(fs, "who does it, recorded in the team's log")
		if err := fs.Parse(args); err != nil {
			return err
		}
		k, rec, err := openRecording()
		if err != nil {
			return err
		}
		defer rec.Close()
		token, key, err := k.Create(ctx, rec, tenantapi.NewSpec{Team: *team, Scopes: scopes, Name: *name, Expires: *expires, Operator: *op})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, token)
		fmt.Fprintf(stderr, "created key %s for team %s (scopes %s, expires %s); the token above is shown once: only its hash is kept\n",
			key.ID, key.TeamID, strings.Join(key.Scopes, ","), when(key.ExpiresAt, "never"))
		return nil
	case "list":
		if err := fs.Parse(args); err != nil {
			return err
		}
		_, k, err := open()
		if err != nil {
			return err
		}
		keys, err := k.List(ctx, *team)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-24s %-24s %-12s %-20s %-20s %-20s %s\n", "ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "REVOKED", "CREATED BY")
		for _, key := range keys {
			fmt.Fprintf(stdout, "%-24s %-24s %-12s %-20s %-20s %-20s %s\n", key.ID, fmt.Sprintf("%q", key.Name), strings.Join(key.Scopes, ","),
				key.CreatedAt.UTC().Format(time.RFC3339), when(key.ExpiresAt, "never"), when(key.RevokedAt, "-"), key.CreatedBy)
		}
		return nil
	case "revoke":
		id := fs.String("id", "", "the key id (from keys list; required)")
		op := operatorFlag(fs, "who does it, recorded in the team's log")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *id == "" {
			return errors.New("keys revoke: --id is required")
		}
		k, rec, err := openRecording()
		if err != nil {
			return err
		}
		defer rec.Close()
		if _, err := k.Revoke(ctx, rec, *team, *id, *op); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked key %s of team %s\n", *id, *team)
		return nil
	}
	return fmt.Errorf("keys: unknown subcommand %q: create, list or revoke", sub)
}

func when(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}
