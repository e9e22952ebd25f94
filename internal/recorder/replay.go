package recorder

// Replay re-drives quarantined records through the pipeline (the quarantine is read with the query
// core, internal/query).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/canonical"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

// ReplayResult counts what a replay did.
type ReplayResult struct {
	Stored      int            // now in their team's log (indexed, or found stored already)
	StillFailed int            // quarantined again, with the reasons of this pass
	Skipped     int            // could not be rebuilt (truncated records)
	PerTeam     map[string]int // stored, by team
	Failures    []string       // first few reasons of records that failed again or were skipped
}

// Replay re-drives the matching quarantined records through the audit processor (configured by pcfg,
// nil for its defaults) and the exporter, in process. A record that is stored in its team's log (or
// found stored already) is removed from quarantine; one that fails again stays quarantined with the
// reasons of this pass. Replaying twice stores once: a record keeps its event id, so the second
// pass finds it stored. Each team that got records back has the replay recorded in its log as
// audit_quarantine_replayed, by operator.
func Replay(ctx context.Context, c *query.Client, f query.QuarantineFilter, limit int, pcfg *auditprocessor.Config, operator string) (ReplayResult, error) {
	res := ReplayResult{PerTeam: map[string]int{}}
	pipe, err := newPipeline(ctx, c, pcfg)
	if err != nil {
		return res, err
	}
	defer pipe.shutdown()
	fail := func(format string, args ...any) {
		if len(res.Failures) < 10 {
			res.Failures = append(res.Failures, fmt.Sprintf(format, args...))
		}
	}
	err = c.EachQuarantined(ctx, f, limit, 500, func(docs []document.Quarantined) (bool, error) {
		ld := plog.NewLogs()
		var kept []document.Quarantined
		for _, d := range docs {
			one := plog.NewLogs()
			if err := d.Rebuild(one); err != nil {
				res.Skipped++
				fail("%s: not replayed: %v", d.ID, err)
				continue
			}
			one.ResourceLogs().MoveAndAppendTo(ld.ResourceLogs())
			kept = append(kept, d)
		}
		if len(kept) == 0 {
			return true, nil
		}
		outs, err := pipe.run(ctx, ld)
		if err != nil {
			return false, fmt.Errorf("replaying %d records: %w", len(kept), err)
		}
		return true, settle(ctx, c, kept, outs, &res, fail)
	})
	if err != nil {
		return res, err
	}
	// One refresh for the whole replay, so that a list right after it no longer shows what left.
	if err := c.Do(ctx, esapi.IndicesRefreshRequest{Index: []string{c.Conn().QuarantineIndex}}, nil); err != nil && !errors.Is(err, query.ErrNoTeam) {
		return res, err
	}
	for team, n := range res.PerTeam {
		if audit.CheckTeamID(team) != nil {
			continue
		}
		_, err := Record(ctx, c, audit.Event{
			Action:   audit.ActionAuditQuarantineReplayed,
			TeamID:   team,
			Actor:    auditlog.User(operator, "", ""),
			Targets:  []audit.Target{{Type: "audit_log", ID: team}},
			Metadata: replayMetadata(n, f),
		})
		if err != nil {
			return res, fmt.Errorf("replayed %d records of team %s, but recording the replay in its log failed: %w", n, team, err)
		}
	}
	return res, nil
}

// replayMetadata describes a replay in the team's log: how many records came back, and the filters.
func replayMetadata(n int, f query.QuarantineFilter) map[string]any {
	md := map[string]any{"kind": "auditctl", "records": n}
	for k, v := range map[string]string{"reason": f.Reason, "team": f.Team} {
		if v != "" {
			md[k] = v
		}
	}
	for k, t := range map[string]time.Time{"since": f.Since, "until": f.Until} {
		if !t.IsZero() {
			md[k] = t.UTC().Format(time.RFC3339Nano)
		}
	}
	return md
}

// settle decides, for each replayed record, where it ended, and removes from quarantine the ones
// stored in their team's log, or quarantined again under a new id. One _mget per page reads what it
// needs: the event.hash stored under each valid record's id, and whether each new quarantine
// document exists.
func settle(ctx context.Context, c *query.Client, docs []document.Quarantined, outs []outcome, res *ReplayResult, fail func(string, ...any)) error {
	var refs []document.Ref
	for i, d := range docs {
		o := outs[i]
		if o.valid {
			refs = append(refs, document.Ref{Index: o.index, ID: o.id, Routing: o.routing})
		}
		if o.quarantineID != d.ID {
			refs = append(refs, document.Ref{Index: c.Conn().QuarantineIndex, ID: o.quarantineID})
		}
	}
	hashes, err := lookup(ctx, c, refs)
	if err != nil {
		return err
	}
	for i, d := range docs {
		o := outs[i]
		hash, isStored := hashes[document.Ref{Index: o.index, ID: o.id, Routing: o.routing}]
		switch {
		case o.valid && isStored && hash == o.hash:
			if err := c.DeleteQuarantined(ctx, d.ID); err != nil {
				return err
			}
			res.Stored++
			res.PerTeam[o.team]++
		case o.quarantineID != d.ID:
			// Quarantined again, for new reasons: the new document replaces the old one.
			if _, ok := hashes[document.Ref{Index: c.Conn().QuarantineIndex, ID: o.quarantineID}]; !ok {
				return fmt.Errorf("record %s was quarantined again but its new document %s is not found", d.ID, o.quarantineID)
			}
			if err := c.DeleteQuarantined(ctx, d.ID); err != nil {
				return err
			}
			res.StillFailed++
			fail("%s: quarantined again as %s: %v", d.ID, o.quarantineID, o.problems)
		default:
			res.StillFailed++
			fail("%s: quarantined again: %v", d.ID, o.problems)
		}
	}
	return nil
}

// lookup reads the documents in one _mget and returns the event.hash of each that exists (empty for
// a document without one); a missing document or index is simply absent.
func lookup(ctx context.Context, c *query.Client, refs []document.Ref) (map[document.Ref]string, error) {
	out := map[document.Ref]string{}
	docs, err := document.Hashes(ctx, c.ES(), refs)
	if err != nil {
		return nil, fmt.Errorf("reading back the replayed records: %w", err)
	}
	for i, d := range docs {
		if d.Found {
			out[refs[i]] = d.Hash
		}
	}
	return out, nil
}

// outcome is what the processor made of one replayed record, and where the exporter will put it.
type outcome struct {
	eventID      string
	valid        bool
	team, index  string
	routing      string
	id, hash     string // the document _id and event.hash
	quarantineID string
	problems     []string
}

// outcomeFunc says, for each record the processor passes on, what it made of it and where c's
// layout puts it; with quarantineID, also the _id its quarantine document would have (a hash of the
// whole record, which only the replay compares).
func outcomeFunc(c *query.Client) func(lr plog.LogRecord, quarantineID bool) outcome {
	return func(lr plog.LogRecord, quarantineID bool) outcome { return outcomeOf(c.Layout(), lr, quarantineID) }
}

func outcomeOf(lay *layout.Layout, lr plog.LogRecord, quarantineID bool) outcome {
	attrs := lr.Attributes()
	str := func(k string) string {
		if v, ok := attrs.Get(k); ok {
			return v.AsString()
		}
		return ""
	}
	o := outcome{
		valid: str(audit.AttrStatus) == audit.StatusValid, id: str(audit.AttrID), eventID: str(audit.AttrID), hash: str(audit.AttrHash),
		team: canonical.QuarantineTeamID(lr),
	}
	if quarantineID {
		o.quarantineID = canonical.QuarantineID(lr)
	}
	if o.valid {
		// Where the exporter puts it: valid means the team id passed the layout's check.
		o.index, o.routing = lay.Index(o.team, lr.Timestamp().AsTime()), o.team
		o.id = layout.DocID(o.team, o.id)
	}
	if v, ok := attrs.Get(audit.AttrProblems); ok && v.Type() == pcommon.ValueTypeSlice {
		for _, p := range v.Slice().All() {
			o.problems = append(o.problems, p.AsString())
		}
	}
	return o
}
