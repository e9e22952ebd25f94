// Command auditctl exports and queries the audit log of a team.
//
//	auditctl export --team 191796 [--since 2025-08-01] [--until 2025-09-01] [--action 'job_*']...
//	                [--actor 445177] [--format csv|ndjson] [--out file] --operator you@example.com
//	auditctl teams
//	auditctl show --team 191796 --id <event id>
//	auditctl tail --team 191796 [--since 10m]
//	auditctl quarantine list [--team T] [--reason unknown_action] [--since …] [--until …] [--limit 50]
//	auditctl quarantine show --id <quarantine id>
//	auditctl quarantine replay [filters] --operator you@example.com
//	auditctl layout show --team 191796
//	auditctl layout plan --team 191796 --tier dedicated [--period year] [--retention legal]
//	auditctl keys create --team 191796 --scope read [--scope export] [--expires 720h] [--name TEXT]
//	auditctl keys list --team 191796
//	auditctl keys revoke --team 191796 --id KEY_ID
//	auditctl import --file history.csv [--file …] --format csv|ndjson --operator you@example.com
//	                [--team T] [--column NAME=FIELD]... [--dry-run] [--report FILE] [--json]
//	auditctl seal keygen --name audit.example.com [--out audit-seal.key]
//	auditctl seal run --seal-key FILE [--seal-interval 10s] [--once]
//	auditctl verify --bundle FILE --key VERIFIER_KEY|FILE [--pinned CHECKPOINT_FILE]
//	auditctl verify --team T --key VERIFIER_KEY|FILE [--pinned CHECKPOINT_FILE]
//
// Connection settings come from flags or the environment: ES_URL, ES_USER, ES_PASSWORD, ES_API_KEY,
// ES_CA_FILE, AUDIT_INDEX_PREFIX, AUDIT_QUARANTINE_INDEX (the same names config.example.yaml uses).
// --config (AUDIT_COLLECTOR_CONFIG) reads the index names, the layout and the audit processor's
// settings from the collector's configuration instead, so that what auditctl records lands where
// the collector would put it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/auditpipe/auditpipe/internal/recorder"
)

const usage = `auditctl: export and query team audit logs in Elasticsearch

Commands:
  export   write one team's events, in time order, as CSV or NDJSON (and record the export in its log)
  teams    list the teams with an audit log, their event counts and time ranges
  show     print one event
  tail     print a team's new events as they arrive
  kibana   import the Kibana saved objects (data view, saved search, dashboard), or with --team
           print the link to one team's events in Discover
  quarantine list|show|replay
           the records the pipeline could not store, and replaying them once the cause is fixed
  layout show|plan
           where a team's events go (tier, partitions, retention), and how to move it between tiers
  import   store the audit history kept before this pipeline (CSV or NDJSON files) in the teams' logs
  keys create|list|revoke
           the keys customers use to read their own team's log through the audit log API (auditapi)
  seal keygen|run
           a key to sign the teams' Merkle log checkpoints with, and the verifier key customers pin;
           a sealer that signs every team's log (auditapi --seal-key runs one too)
  verify   check a team's log bundle against its signed checkpoint, offline, or (--team) a team's
           events in the cluster; a JSON report

Run 'auditctl <command> --help' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "auditctl:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return errors.New("a command is required")
		}
		return nil
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("auditctl "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch cmd {
	case "kibana":
		return kibana(ctx, fs, args, stdout)
	case "seal":
		return sealCmd(ctx, fs, args, stdout, stderr)
	}
	connect := recorder.RegisterFlags(fs)
	switch cmd {
	case "verify":
		return verifyCmd(ctx, fs, connect, args, stdout)
	case "export":
		return export(ctx, fs, connect, args, stdout, stderr)
	case "teams":
		return teams(ctx, fs, connect, args, stdout)
	case "show":
		return show(ctx, fs, connect, args, stdout)
	case "tail":
		return tail(ctx, fs, connect, args, stdout)
	case "quarantine":
		return quarantine(ctx, fs, connect, args, stdout, stderr)
	case "layout":
		return layoutCmd(ctx, fs, connect, args, stdout)
	case "keys":
		return keysCmd(ctx, fs, connect, args, stdout, stderr)
	case "import":
		return importCmd(ctx, fs, connect, args, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// operatorFlag declares --operator: who does what, recorded in the team's log (AUDITCTL_OPERATOR,
// else the login name).
func operatorFlag(fs *flag.FlagSet, who string) *string {
	return fs.String("operator", recorder.Env("AUDITCTL_OPERATOR", recorder.Env("USER", "")), who+" (AUDITCTL_OPERATOR)")
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// parseTime accepts RFC 3339, a date (UTC midnight), or a duration back from now ("24h").
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time, a date (2006-01-02) or a duration (24h)", s)
}
