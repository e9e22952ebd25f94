// auditctl export: one team's log as CSV or NDJSON, recorded in its log.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/seal"
)

func export(ctx context.Context, fs *flag.FlagSet, connect *recorder.Flags, args []string, stdout, stderr io.Writer) error {
	team := fs.String("team", "", "the team id (required)")
	since := fs.String("since", "", "first event time, inclusive: RFC 3339, a date, or a duration back from now")
	until := fs.String("until", "", "end time, exclusive: RFC 3339, a date, or a duration back from now")
	var actions multi
	fs.Var(&actions, "action", "action name or pattern with * and ? (repeatable; any matches)")
	actor := fs.String("actor", "", "only events of this actor id")
	format := fs.String("format", "csv", "csv, ndjson (the stored documents), events (NDJSON of the audit log API's events) or bundle (the signed log, to verify offline: docs/integrity.md)")
	sealIndex := seal.IndexFlag(fs)
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
	bundle := *format == "bundle"
	if bundle && (*since != "" || *until != "" || len(actions) > 0 || *actor != "") {
		return errors.New("--format bundle: a bundle is the team's whole signed log; it takes no --since, --until, --action or --actor")
	}
	if err := query.Format(*format).Check(); err != nil && !bundle {
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
	pcfg, err := connect.ProcessorConfig(ctx)
	if err != nil {
		return err
	}
	rec, err := recorder.New(ctx, c, pcfg)
	if err != nil {
		return err
	}
	defer rec.Close()
	var sealed *seal.Log
	if bundle {
		store, err := seal.NewStore(c, *sealIndex)
		if err != nil {
			return fmt.Errorf("--seal-index: %w", err)
		}
		sealed = seal.NewLog(store)
		if _, err := sealed.Checkpoint(ctx, *team); err != nil {
			return err // nothing to export, nothing recorded
		}
	}
	x := recorder.Export{
		Client: c, Filter: f, Format: query.Format(*format), Metadata: md,
		Record: func(ctx context.Context, md map[string]any) (string, error) {
			return rec.Record(ctx, audit.Event{
				Action:   audit.ActionDataExport,
				TeamID:   *team,
				Actor:    auditlog.User(*operator, "", ""),
				Targets:  []audit.Target{{Type: "audit_log", ID: *team}},
				Metadata: md,
			})
		},
	}
	w := stdout
	if *out != "" {
		// Written to a temporary file beside the target and renamed at the end: a file named --out
		// is always a whole export. Created before the export is recorded, so a --out
		// that cannot be written is refused like a bad flag.
		tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*.partial")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name()) // a no-op once renamed
		defer tmp.Close()
		w = tmp
		x.Finish = func() error {
			if err := tmp.Sync(); err != nil {
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			return os.Rename(tmp.Name(), *out)
		}
	}
	var bar query.Progress
	if *progress == "on" || (*progress == "auto" && isTerminal(stderr)) {
		bar = &progressBar{w: stderr}
	}
	if bundle {
		x.Write = func(ctx context.Context, w io.Writer) (int64, error) { return sealed.WriteBundle(ctx, *team, w) }
	}
	res, err := x.Run(ctx, w, bar)
	if bar != nil && res.StartID != "" {
		fmt.Fprintln(stderr)
	}
	switch {
	case errors.Is(err, recorder.ErrNotRecorded):
		return err
	case err != nil:
		return fmt.Errorf("export failed after %d events (recorded as data_export events %s and %s): %w", res.Events, res.StartID, res.EndID, err)
	case res.RecordErr != nil:
		return fmt.Errorf("exported %d events, but recording the end of the export in the team's log failed (the start is recorded as %s): %w", res.Events, res.StartID, res.RecordErr)
	}
	fmt.Fprintf(stderr, "exported %d events of team %s; recorded as data_export events %s (started) and %s\n", res.Events, *team, res.StartID, res.EndID)
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
	b, pct := bar(n, p.total)
	fmt.Fprintf(p.w, "\r%s %d/%d events (%.0f%%)", b, n, p.total, pct)
}

// bar draws [####......] for done of total (a total of 0: done), and says the percentage.
func bar(done, total int64) (string, float64) {
	const width = 30
	pct := 100.0
	if total > 0 {
		pct = float64(done) * 100 / float64(total)
	}
	filled := min(width, int(pct/100*width))
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]", pct
}
