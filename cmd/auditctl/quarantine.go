// auditctl quarantine list, show and replay.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
)

func quarantine(ctx context.Context, fs *flag.FlagSet, connect *recorder.Flags, args []string, stdout, stderr io.Writer) error {
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
		return c.EachQuarantined(ctx, f, n, 500, func(docs []document.Quarantined) (bool, error) {
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
		res, err := recorder.Replay(ctx, c, f, *limit, pcfg, *operator)
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
