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
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/query"
	kibanaobjects "github.com/auditpipe/auditpipe/kibana"
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
  keys create|list|revoke
           the keys customers use to read their own team's log through the audit log API (auditapi)

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
	if cmd == "kibana" {
		return kibana(ctx, fs, args, stdout)
	}
	connect := query.RegisterFlags(fs)
	switch cmd {
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
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// operatorFlag declares --operator: who does what, recorded in the team's log (AUDITCTL_OPERATOR,
// else the login name).
func operatorFlag(fs *flag.FlagSet, who string) *string {
	return fs.String("operator", query.Env("AUDITCTL_OPERATOR", query.Env("USER", "")), who+" (AUDITCTL_OPERATOR)")
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

func export(ctx context.Context, fs *flag.FlagSet, connect *query.Flags, args []string, stdout, stderr io.Writer) error {
	team := fs.String("team", "", "the team id (required)")
	since := fs.String("since", "", "first event time, inclusive: RFC 3339, a date, or a duration back from now")
	until := fs.String("until", "", "end time, exclusive: RFC 3339, a date, or a duration back from now")
	var actions multi
	fs.Var(&actions, "action", "action name or pattern with * and ? (repeatable; any matches)")
	actor := fs.String("actor", "", "only events of this actor id")
	format := fs.String("format", "csv", "csv, ndjson (the stored documents) or events (NDJSON of the audit log API's events)")
	out := fs.String("out", "", "output file (default standard output)")
	operator := operatorFlag(fs, "who runs the export, recorded in the team's log")
	reason := fs.String("reason", "", "why, e.g. the on-call ticket; recorded with the export")
	progress := fs.String("progress", "auto", "progress on standard error: auto (when it is a terminal), on, off")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *team == "" {
		return errors.New("export: --team is required")
	}
	if *operator == "" {
		return errors.New("export: --operator is required (or AUDITCTL_OPERATOR): exports are recorded in the team's log")
	}
	if err := query.Format(*format).Check(); err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	now := time.Now()
	f := query.Filter{Team: *team, Actions: actions, ActorID: *actor}
	var err error
	if f.Since, err = parseTime(*since, now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if f.Until, err = parseTime(*until, now); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	c, err := connect.Client()
	if err != nil {
		return err
	}
	if err := c.CheckTeam(ctx, *team); err != nil {
		return err
	}
	md := map[string]any{"kind": "auditctl", "format": *format}
	for k, v := range map[string]string{"since": *since, "until": *until, "actor": *actor, "reason": *reason, "actions": strings.Join(actions, ",")} {
		if v != "" {
			md[k] = v
		}
	}
	exportEvent := func(ctx context.Context, extra map[string]any) (string, error) {
		m := maps.Clone(md)
		maps.Copy(m, extra)
		return c.Record(ctx, audit.Event{
			Action:   audit.ActionDataExport,
			TeamID:   *team,
			Actor:    auditlog.User(*operator, "", ""),
			Targets:  []audit.Target{{Type: "audit_log", ID: *team}},
			Metadata: m,
		})
	}
	w := stdout
	var tmp *os.File
	if *out != "" {
		// Written to a temporary file beside the target and renamed at the end: a file named --out
		// is always a whole export. Created before the export is recorded, so a --out
		// that cannot be written is refused like a bad flag.
		tmp, err = os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*.partial")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name()) // a no-op once renamed
		defer tmp.Close()
		w = tmp
	}
	// The export is in the team's log before its first row leaves: a killed or piped export is
	// still on record.
	startID, err := exportEvent(ctx, map[string]any{"state": "started"})
	if err != nil {
		return fmt.Errorf("recording the export in the team's log failed, so nothing was exported: %w", err)
	}

	var bar query.Progress
	if *progress == "on" || (*progress == "auto" && isTerminal(stderr)) {
		bar = &progressBar{w: stderr}
	}
	n, err := c.Export(ctx, f, query.Format(*format), w, bar)
	if bar != nil {
		fmt.Fprintln(stderr)
	}
	if err == nil && tmp != nil {
		if err = tmp.Sync(); err == nil {
			if err = tmp.Close(); err == nil {
				err = os.Rename(tmp.Name(), *out)
			}
		}
	}
	end := map[string]any{"state": "completed", "events": n, "started_event_id": startID}
	if err != nil {
		end["state"], end["error"] = "failed", err.Error()
	}
	// Recorded even when the export was interrupted: a fresh context, bounded.
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	endID, recErr := exportEvent(rctx, end)
	if err != nil {
		return fmt.Errorf("export failed after %d events (recorded as data_export events %s and %s): %w", n, startID, endID, err)
	}
	if recErr != nil {
		return fmt.Errorf("exported %d events, but recording the end of the export in the team's log failed (the start is recorded as %s): %w", n, startID, recErr)
	}
	fmt.Fprintf(stderr, "exported %d events of team %s; recorded as data_export events %s (started) and %s\n", n, *team, startID, endID)
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

type progressBar struct {
	w     io.Writer
	total int64
}

func (p *progressBar) Total(n int64) { p.total = n }
func (p *progressBar) Done(n int64) {
	pct := 100.0
	if p.total > 0 {
		pct = float64(n) * 100 / float64(p.total)
	}
	width := 30
	filled := int(pct / 100 * float64(width))
	if filled > width {
		filled = width
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d events (%.0f%%)", strings.Repeat("#", filled), strings.Repeat(".", width-filled), n, p.total, pct)
}

func teams(ctx context.Context, fs *flag.FlagSet, connect *query.Flags, args []string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := connect.Client()
	if err != nil {
		return err
	}
	ts, err := c.Teams(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-24s %10s  %-32s %-32s\n", "TEAM", "EVENTS", "FIRST", "LAST")
	for _, t := range ts {
		fmt.Fprintf(stdout, "%-24s %10d  %-32s %-32s\n", t.ID, t.Events, t.First, t.Last)
	}
	return nil
}

func show(ctx context.Context, fs *flag.FlagSet, connect *query.Flags, args []string, stdout io.Writer) error {
	team := fs.String("team", "", "the team id (required)")
	id := fs.String("id", "", "the event id (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *team == "" || *id == "" {
		return errors.New("show: --team and --id are required")
	}
	c, err := connect.Client()
	if err != nil {
		return err
	}
	doc, err := c.Show(ctx, *team, *id)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", doc)
	return err
}

func tail(ctx context.Context, fs *flag.FlagSet, connect *query.Flags, args []string, stdout io.Writer) error {
	team := fs.String("team", "", "the team id (required)")
	since := fs.String("since", "1m", "start from events at or after this time: RFC 3339, a date, or a duration back from now")
	var actions multi
	fs.Var(&actions, "action", "action name or pattern with * and ? (repeatable)")
	interval := fs.Duration("interval", 2*time.Second, "how often to poll")
	forDur := fs.Duration("for", 0, "stop after this long (default: until interrupted)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *team == "" {
		return errors.New("tail: --team is required")
	}
	from, err := parseTime(*since, time.Now())
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	c, err := connect.Client()
	if err != nil {
		return err
	}
	if *forDur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *forDur)
		defer cancel()
	}
	return c.Tail(ctx, query.Filter{Team: *team, Actions: actions}, from, *interval, stdout)
}

func kibana(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	url := fs.String("kibana-url", query.Env("KIBANA_URL", "http://127.0.0.1:5601"), "Kibana URL (KIBANA_URL)")
	user := fs.String("kibana-user", query.Env("KIBANA_USER", ""), "Kibana user (KIBANA_USER)")
	password := fs.String("kibana-password", query.Env("KIBANA_PASSWORD", ""), "Kibana password (KIBANA_PASSWORD)")
	apiKey := fs.String("kibana-api-key", query.Env("KIBANA_API_KEY", ""), "Kibana API key (KIBANA_API_KEY)")
	file := fs.String("file", "", "saved objects NDJSON to import (default: the ones built into auditctl)")
	team := fs.String("team", "", "print the link to one team's events in Discover instead of importing")
	days := fs.Int("days", 30, "with --team: how many days back the link shows")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *team != "" {
		if err := audit.CheckTeamID(*team); err != nil {
			return fmt.Errorf("team %w", err)
		}
		fmt.Fprintln(stdout, kibanaobjects.DiscoverURL(*url, *team, *days))
		return nil
	}
	objects := kibanaobjects.SavedObjects
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		objects = b
	}
	n, err := kibanaobjects.Import(ctx, *url, kibanaobjects.Auth{User: *user, Password: *password, APIKey: *apiKey}, objects)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d saved objects into %s: open the dashboard \"Audit log\"\n", n, *url)
	return nil
}

func quarantine(ctx context.Context, fs *flag.FlagSet, connect *query.Flags, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("quarantine: list, show or replay")
	}
	sub, args := args[0], args[1:]
	fs.Init("auditctl quarantine "+sub, flag.ContinueOnError)
	var f query.QuarantineFilter
	var since, until *string
	var limit *int
	if sub == "list" || sub == "replay" {
		fs.StringVar(&f.Team, "team", "", "only records that named this team id (as given, valid or not)")
		fs.StringVar(&f.Reason, "reason", "", "only records quarantined for this reason code (unknown_action, id_conflict, rejected, …)")
		since = fs.String("since", "", "records timed at or after: RFC 3339, a date, or a duration back from now")
		until = fs.String("until", "", "records timed before: RFC 3339, a date, or a duration back from now")
		limit = fs.Int("limit", 0, "at most this many records (list: default 50; replay: default all)")
	}
	switch sub {
	case "list":
		if err := parseQuarantineFlags(fs, args, &f, since, until); err != nil {
			return err
		}
		c, err := connect.Client()
		if err != nil {
			return err
		}
		n := *limit
		if n <= 0 {
			n = 50
		}
		fmt.Fprintf(stdout, "%-68s %-20s %-36s %-12s %s\n", "ID", "TEAM", "TIME", "STAGE", "REASONS")
		return c.EachQuarantined(ctx, f, n, 500, func(docs []query.Quarantined) (bool, error) {
			for _, d := range docs {
				fmt.Fprintf(stdout, "%-68s %-20q %-36s %-12s %s\n", d.ID, d.Quarantine.TeamID, d.Timestamp, d.Quarantine.Stage, strings.Join(d.Quarantine.Reasons, "; "))
			}
			return true, nil
		})
	case "show":
		id := fs.String("id", "", "the quarantine document id (from list)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *id == "" {
			return errors.New("quarantine show: --id is required")
		}
		c, err := connect.Client()
		if err != nil {
			return err
		}
		doc, err := c.ShowQuarantined(ctx, *id)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", doc)
		return err
	case "replay":
		operator := operatorFlag(fs, "who runs the replay, recorded in each team's log")
		if err := parseQuarantineFlags(fs, args, &f, since, until); err != nil {
			return err
		}
		if *operator == "" {
			return errors.New("quarantine replay: --operator is required (or AUDITCTL_OPERATOR): replays are recorded in the teams' logs")
		}
		pcfg, err := connect.ProcessorConfig(ctx)
		if err != nil {
			return err
		}
		c, err := connect.Client()
		if err != nil {
			return err
		}
		res, err := c.Replay(ctx, f, *limit, pcfg, *operator)
		for _, msg := range res.Failures {
			fmt.Fprintln(stderr, msg)
		}
		fmt.Fprintf(stdout, "replayed: %d stored in their team's log, %d quarantined again, %d could not be rebuilt\n", res.Stored, res.StillFailed, res.Skipped)
		return err
	}
	return fmt.Errorf("quarantine: unknown subcommand %q: list, show or replay", sub)
}

func parseQuarantineFlags(fs *flag.FlagSet, args []string, f *query.QuarantineFilter, since, until *string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	now := time.Now()
	var err error
	if f.Since, err = parseTime(*since, now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if f.Until, err = parseTime(*until, now); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	return nil
}
