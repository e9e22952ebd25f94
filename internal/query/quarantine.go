package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/shared/canonical"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
	"github.com/auditpipe/auditpipe/internal/stored"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

// The quarantine is a dead-letter queue: records the pipeline could not store in a team's log, each
// with its reasons and the whole original record. List and Show read it; Replay re-drives records
// through the processor and the exporter, as the collector would, and removes each from quarantine
// only once it is stored.

// QuarantineFilter selects quarantine documents. Empty fields select everything.
type QuarantineFilter struct {
	Team   string    // quarantine.team_id, exactly as the record gave it
	Reason string    // a reason code, such as unknown_action
	Since  time.Time // @timestamp at or after
	Until  time.Time // @timestamp before
}

var reasonCode = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

func (f QuarantineFilter) query() (map[string]any, error) {
	var filters []any
	if f.Team != "" {
		filters = append(filters, map[string]any{"term": map[string]any{"quarantine.team_id": f.Team}})
	}
	if f.Reason != "" {
		if !reasonCode.MatchString(f.Reason) {
			return nil, fmt.Errorf("reason %q: use a reason code such as unknown_action", f.Reason)
		}
		// reasons are "code: detail"; a prefix query on the keyword finds a code.
		filters = append(filters, map[string]any{"bool": map[string]any{"minimum_should_match": 1, "should": []any{
			map[string]any{"term": map[string]any{"quarantine.reasons": f.Reason}},
			map[string]any{"prefix": map[string]any{"quarantine.reasons": f.Reason + ": "}},
		}}})
	}
	if r := timeRange("@timestamp", f.Since, f.Until); r != nil {
		filters = append(filters, r)
	}
	if len(filters) == 0 {
		return map[string]any{"match_all": map[string]any{}}, nil
	}
	return map[string]any{"bool": map[string]any{"filter": filters}}, nil
}

// Quarantined is one quarantine document.
type Quarantined struct {
	ID        string `json:"-"` // the quarantine document's _id
	Timestamp string `json:"@timestamp"`
	Event     struct {
		ID       string `json:"id"`
		Ingested string `json:"ingested"`
	} `json:"event"`
	Quarantine struct {
		Stage       string   `json:"stage"`
		Reasons     []string `json:"reasons"`
		ErrorType   string   `json:"error_type"`
		ErrorReason string   `json:"error_reason"`
		TeamID      string   `json:"team_id"`
		Index       string   `json:"index"`
	} `json:"quarantine"`
	Record struct {
		EventName    string `json:"event_name"`
		TimeUnixNano string `json:"time_unix_nano"`
		ObservedNano string `json:"observed_time_unix_nano"`
		ScopeName    string `json:"scope_name"`
		Body         string `json:"body"`
		Attributes   string `json:"attributes"`
		Resource     string `json:"resource"`
		Truncated    bool   `json:"truncated"`
	} `json:"record"`
	Service struct {
		Name string `json:"name"`
	} `json:"service"`
}

// quarantineOrder pages through the quarantine in a total order (with a point in time).
var quarantineOrder = []any{
	map[string]any{"@timestamp": map[string]any{"order": "asc", "format": "strict_date_optional_time_nanos"}},
	map[string]any{"_shard_doc": "asc"},
}

// EachQuarantined calls fn with pages of the matching quarantine documents, oldest first, until fn
// returns false or an error, or limit documents were seen (0: no limit). It reads one consistent view
// (a point in time), so documents removed or added meanwhile do not upset the paging.
func (c *Client) EachQuarantined(ctx context.Context, f QuarantineFilter, limit, pageSize int, fn func([]Quarantined) (bool, error)) error {
	q, err := f.query()
	if err != nil {
		return err
	}
	var pit struct {
		ID string `json:"id"`
	}
	if err := c.do(ctx, esapi.OpenPointInTimeRequest{Index: []string{c.conn.QuarantineIndex}, KeepAlive: "5m"}, &pit); err != nil {
		if errors.Is(err, ErrNoTeam) {
			return nil // no quarantine index: nothing is quarantined
		}
		return err
	}
	defer c.closePIT(pit.ID)
	seen := 0
	var after []json.RawMessage
	for {
		size := pageSize
		if limit > 0 && limit-seen < size {
			size = limit - seen
		}
		if size <= 0 {
			return nil
		}
		req := map[string]any{"size": size, "query": q, "pit": map[string]any{"id": pit.ID, "keep_alive": "5m"}, "sort": quarantineOrder, "track_total_hits": false}
		if after != nil {
			req["search_after"] = after
		}
		var res struct {
			PitID string `json:"pit_id"`
			Hits  struct {
				Hits []struct {
					ID     string            `json:"_id"`
					Source json.RawMessage   `json:"_source"`
					Sort   []json.RawMessage `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		body, _ := json.Marshal(req)
		if err := c.do(ctx, esapi.SearchRequest{Body: bytes.NewReader(body)}, &res); err != nil {
			return err
		}
		if res.PitID != "" {
			pit.ID = res.PitID
		}
		docs := make([]Quarantined, 0, len(res.Hits.Hits))
		for _, h := range res.Hits.Hits {
			var d Quarantined
			if err := json.Unmarshal(h.Source, &d); err != nil {
				return fmt.Errorf("quarantine document %s: %w", h.ID, err)
			}
			d.ID = h.ID
			docs = append(docs, d)
			after = h.Sort
		}
		seen += len(docs)
		if len(docs) > 0 {
			more, err := fn(docs)
			if err != nil || !more {
				return err
			}
		}
		if len(docs) < size {
			return nil
		}
	}
}

func (c *Client) closePIT(id string) {
	body, _ := json.Marshal(map[string]string{"id": id})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.do(ctx, esapi.ClosePointInTimeRequest{Body: bytes.NewReader(body)}, nil)
}

// ShowQuarantined returns one quarantine document as stored.
func (c *Client) ShowQuarantined(ctx context.Context, id string) (json.RawMessage, error) {
	var doc struct {
		Source json.RawMessage `json:"_source"`
	}
	err := c.do(ctx, esapi.GetRequest{Index: c.conn.QuarantineIndex, DocumentID: url.PathEscape(id)}, &doc)
	if errors.Is(err, ErrNoTeam) {
		return nil, fmt.Errorf("nothing is quarantined (no index %s)", c.conn.QuarantineIndex)
	}
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("no quarantine document %q", id)
		}
		return nil, err
	}
	return doc.Source, nil
}

// Rebuild appends the original log record of a quarantine document, with its resource and scope.
func (q Quarantined) Rebuild(ld plog.Logs) error {
	if q.Record.Truncated {
		return errors.New("the record was too large and only a preview of it was kept")
	}
	rl := ld.ResourceLogs().AppendEmpty()
	switch {
	case q.Record.Resource != "":
		if err := pjson.DecodeMap([]byte(q.Record.Resource), rl.Resource().Attributes()); err != nil {
			return fmt.Errorf("resource: %w", err)
		}
	case q.Service.Name != "": // quarantined before template version 2 kept only the service name
		rl.Resource().Attributes().PutStr("service.name", q.Service.Name)
	}
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(q.Record.ScopeName)
	lr := sl.LogRecords().AppendEmpty()
	lr.SetEventName(q.Record.EventName)
	for _, t := range []struct {
		s   string
		set func(pcommon.Timestamp)
	}{{q.Record.TimeUnixNano, lr.SetTimestamp}, {q.Record.ObservedNano, lr.SetObservedTimestamp}} {
		if t.s == "" {
			continue
		}
		n, err := strconv.ParseUint(t.s, 10, 64)
		if err != nil {
			return fmt.Errorf("timestamp %q: %w", t.s, err)
		}
		t.set(pcommon.Timestamp(n))
	}
	if q.Record.TimeUnixNano == "" && q.Timestamp != "" {
		// Quarantined before template version 2: @timestamp is the event's time (or its observed time).
		ts, err := time.Parse(time.RFC3339Nano, q.Timestamp)
		if err != nil {
			return fmt.Errorf("@timestamp %q: %w", q.Timestamp, err)
		}
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	}
	if err := pjson.DecodeValue([]byte(q.Record.Body), lr.Body()); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if err := pjson.DecodeMap([]byte(q.Record.Attributes), lr.Attributes()); err != nil {
		return fmt.Errorf("attributes: %w", err)
	}
	return nil
}

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
func (c *Client) Replay(ctx context.Context, f QuarantineFilter, limit int, pcfg *auditprocessor.Config, operator string) (ReplayResult, error) {
	res := ReplayResult{PerTeam: map[string]int{}}
	pipe, err := c.newPipeline(ctx, pcfg)
	if err != nil {
		return res, err
	}
	defer pipe.shutdown()
	fail := func(format string, args ...any) {
		if len(res.Failures) < 10 {
			res.Failures = append(res.Failures, fmt.Sprintf(format, args...))
		}
	}
	err = c.EachQuarantined(ctx, f, limit, 500, func(docs []Quarantined) (bool, error) {
		ld := plog.NewLogs()
		var kept []Quarantined
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
		return true, c.settle(ctx, kept, outs, &res, fail)
	})
	if err != nil {
		return res, err
	}
	// One refresh for the whole replay, so that a list right after it no longer shows what left.
	if err := c.do(ctx, esapi.IndicesRefreshRequest{Index: []string{c.conn.QuarantineIndex}}, nil); err != nil && !errors.Is(err, ErrNoTeam) {
		return res, err
	}
	for team, n := range res.PerTeam {
		if audit.CheckTeamID(team) != nil {
			continue
		}
		_, err := c.Record(ctx, audit.Event{
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
func replayMetadata(n int, f QuarantineFilter) map[string]any {
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
func (c *Client) settle(ctx context.Context, docs []Quarantined, outs []outcome, res *ReplayResult, fail func(string, ...any)) error {
	var refs []stored.Ref
	for i, d := range docs {
		o := outs[i]
		if o.valid {
			refs = append(refs, stored.Ref{Index: o.index, ID: o.id, Routing: o.routing})
		}
		if o.quarantineID != d.ID {
			refs = append(refs, stored.Ref{Index: c.conn.QuarantineIndex, ID: o.quarantineID})
		}
	}
	hashes, err := c.lookup(ctx, refs)
	if err != nil {
		return err
	}
	for i, d := range docs {
		o := outs[i]
		hash, isStored := hashes[stored.Ref{Index: o.index, ID: o.id, Routing: o.routing}]
		switch {
		case o.valid && isStored && hash == o.hash:
			if err := c.deleteQuarantined(ctx, d.ID); err != nil {
				return err
			}
			res.Stored++
			res.PerTeam[o.team]++
		case o.quarantineID != d.ID:
			// Quarantined again, for new reasons: the new document replaces the old one.
			if _, ok := hashes[stored.Ref{Index: c.conn.QuarantineIndex, ID: o.quarantineID}]; !ok {
				return fmt.Errorf("record %s was quarantined again but its new document %s is not found", d.ID, o.quarantineID)
			}
			if err := c.deleteQuarantined(ctx, d.ID); err != nil {
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
func (c *Client) lookup(ctx context.Context, refs []stored.Ref) (map[stored.Ref]string, error) {
	out := map[stored.Ref]string{}
	docs, err := stored.Hashes(ctx, c.es, refs)
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

func (c *Client) deleteQuarantined(ctx context.Context, id string) error {
	err := c.do(ctx, esapi.DeleteRequest{Index: c.conn.QuarantineIndex, DocumentID: url.PathEscape(id)}, nil)
	if isNotFound(err) {
		return nil
	}
	return err
}

// outcome is what the processor made of one replayed record, and where the exporter will put it.
type outcome struct {
	valid        bool
	team, index  string
	routing      string
	id, hash     string // the document _id and event.hash
	quarantineID string
	problems     []string
}

func (c *Client) outcomeOf(lr plog.LogRecord) outcome {
	attrs := lr.Attributes()
	str := func(k string) string {
		if v, ok := attrs.Get(k); ok {
			return v.AsString()
		}
		return ""
	}
	o := outcome{
		valid: str(audit.AttrStatus) == audit.StatusValid, id: str(audit.AttrID), hash: str(audit.AttrHash),
		team: canonical.QuarantineTeamID(lr), quarantineID: canonical.QuarantineID(lr),
	}
	if o.valid {
		// Where the exporter puts it: valid means the team id passed the layout's check.
		o.index, o.routing = c.layout.Index(o.team, lr.Timestamp().AsTime()), o.team
		o.id = layout.DocID(o.team, o.id)
	}
	if v, ok := attrs.Get(audit.AttrProblems); ok && v.Type() == pcommon.ValueTypeSlice {
		for _, p := range v.Slice().All() {
			o.problems = append(o.problems, p.AsString())
		}
	}
	return o
}
