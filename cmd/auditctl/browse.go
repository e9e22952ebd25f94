// auditctl teams, show and tail: reading the logs.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
)

func teams(ctx context.Context, fs *flag.FlagSet, connect *recorder.Flags, args []string, stdout io.Writer) error {
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

func show(ctx context.Context, fs *flag.FlagSet, connect *recorder.Flags, args []string, stdout io.Writer) error {
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

func tail(ctx context.Context, fs *flag.FlagSet, connect *recorder.Flags, args []string, stdout io.Writer) error {
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
