package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// layoutCmd shows where a team's events go, and plans a move between tiers. Both read the layout
// from --config (the collector's configuration), else the defaults.
func layoutCmd(ctx context.Context, fs *flag.FlagSet, connect *recorder.Flags, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("layout: a subcommand is required: show or plan")
	}
	sub, args := args[0], args[1:]
	team := fs.String("team", "", "team id")
	tier := fs.String("tier", layout.Dedicated, "plan: the tier to move to, shared or dedicated")
	period := fs.String("period", "", "plan: the new partition period (day, month, year; dedicated tier only)")
	retention := fs.String("retention", "", "plan: the new retention class")
	if sub != "show" && sub != "plan" {
		return fmt.Errorf("layout: unknown subcommand %q: show or plan", sub)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := audit.CheckTeamID(*team); err != nil {
		return fmt.Errorf("layout %s: --team %w", sub, err)
	}
	c, err := connect.Client()
	if err != nil {
		return err
	}
	lay := c.Layout()
	cfg := lay.Config()
	now := time.Now().UTC()
	if sub == "show" {
		fmt.Fprintf(stdout, "team %s\n", *team)
		for _, p := range lay.Placements(*team) {
			from := "since always"
			if !p.From.IsZero() {
				from = "from " + p.From.Format(time.DateOnly)
			}
			r, _ := lay.Retention(p.Class)
			fmt.Fprintf(stdout, "  %-16s %-9s %-5s retention %s (%s)\n", from, p.Tier, p.Period, p.Class, r)
		}
		fmt.Fprintf(stdout, "an event now goes to %s\n", lay.Index(*team, now))
		fmt.Fprintf(stdout, "readers search %s for team_id %s\n", lay.DataViewTitle(), *team)
		indices, err := c.TeamIndices(ctx, *team)
		if err != nil {
			fmt.Fprintf(stdout, "(stored events not listed: %v)\n", err)
			return nil
		}
		for _, ix := range indices {
			fmt.Fprintf(stdout, "  %-60s %d events\n", ix.Index, ix.Events)
		}
		return nil
	}

	// plan: the move's effective date, the configuration to add, and how to backfill.
	current := lay.PlacementAt(*team, now)
	next := layout.TeamConfig{Team: *team, Tier: *tier, Period: layout.Period(*period), Retention: *retention}
	if next.Retention == "" {
		next.Retention = current.Class
	}
	if next.Period == "" && next.Tier == layout.Dedicated {
		next.Period = cfg.Period
	}
	newPeriod := next.Period
	if next.Tier == layout.Shared {
		newPeriod = cfg.Period
	}
	from := layout.NextBoundary(now.Add(cfg.FutureSkew), current.Period, newPeriod)
	next.From = from.Format(time.DateOnly)
	// The move is checked as the exporter will check it.
	withMove := cfg
	withMove.Teams = append(append([]layout.TeamConfig(nil), cfg.Teams...), next)
	moved, err := layout.New(lay.Prefix(), lay.Quarantine(), withMove)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Team %s is in the %s tier (%s partitions, retention %s).\n", *team, current.Tier, current.Period, current.Class)
	fmt.Fprintf(stdout, "It can move to the %s tier from %s: the first day after the clock skew allowance that starts a %s (the period before) and a %s (the new one).\n\n",
		next.Tier, next.From, current.Period, newPeriod)
	fmt.Fprintf(stdout, "Add to the exporter's layout.teams, on every collector, before %s:\n\n", next.From)
	fmt.Fprintf(stdout, "    - team: %q\n      from: %q\n      tier: %s\n", next.Team, next.From, next.Tier)
	if next.Tier == layout.Dedicated {
		fmt.Fprintf(stdout, "      period: %s\n", next.Period)
	}
	fmt.Fprintf(stdout, "      retention: %s\n\n", next.Retention)
	fmt.Fprintf(stdout, "Events from %s on go to %s and its successors; earlier ones stay where they are.\n", next.From, moved.Index(*team, from))
	fmt.Fprintf(stdout, "Nothing needs moving to read the team's log: auditctl and Kibana read every tier and partition.\n\n")
	indices, err := c.TeamIndices(ctx, *team)
	if err != nil {
		fmt.Fprintf(stdout, "(backfill not planned: %v)\n", err)
		return nil
	}
	fmt.Fprintf(stdout, "Backfill, only where the history must be isolated too, after %s + future_skew (%s), partition by partition:\n", next.From, cfg.FutureSkew)
	fmt.Fprintf(stdout, "copy the team's events into a dedicated partition of the same period, then delete them from the shared one.\n")
	for _, ix := range indices {
		p, ok := lay.Parse(ix.Index)
		if !ok || p.Tier != layout.Shared {
			continue
		}
		dest := lay.DedicatedPartition(*team, p)
		fmt.Fprintf(stdout, "\n  # %s: %d events\n", ix.Index, ix.Events)
		fmt.Fprintf(stdout, "  POST _reindex {\"source\":{\"index\":%q,\"query\":{\"term\":{\"team_id\":%q}}},\"dest\":{\"index\":%q,\"op_type\":\"create\"}}\n", ix.Index, *team, dest)
		fmt.Fprintf(stdout, "  POST %s/_delete_by_query?routing=%s {\"query\":{\"term\":{\"team_id\":%q}}}\n", ix.Index, *team, *team)
	}
	return nil
}
