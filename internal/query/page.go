package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Order of a listing by event time (then event id).
type Order string

// Orders.
const (
	Asc  Order = "asc"
	Desc Order = "desc" // newest first
)

// Position is where a listing stands: the point in time it reads and the sort values of the last
// event it returned.
type Position struct {
	PIT   string            `json:"pit"`
	After []json.RawMessage `json:"after"`
}

// Page returns up to limit stored events of the filter's team in order, after pos (nil: the first
// page), and the position of the next page (nil when this page is the last).
//
// The first page opens a point in time, and every later page reads it: the listing sees the log as it
// was when it began, and pages by search_after on a total order (time, event id, shard document), so
// each event of that log is returned exactly once, whatever is indexed meanwhile — new events and
// late ones with old timestamps alike neither shift, repeat nor skip any. If the point in time
// expired (a client that paused longer than pitKeepAlive), a new one goes on from the last sort
// values: still nothing skipped or repeated, though events indexed since may then be included.
func (c *Client) Page(ctx context.Context, f Filter, order Order, limit int, pos *Position) ([]json.RawMessage, *Position, error) {
	if order != Asc && order != Desc {
		return nil, nil, fmt.Errorf("order %q: use asc or desc", order)
	}
	if limit < 1 {
		return nil, nil, errors.New("limit must be at least 1")
	}
	q, err := f.query()
	if err != nil {
		return nil, nil, err
	}
	var pit string
	var after []json.RawMessage
	opened := pos == nil // a point in time this call opened is this call's to close on failure
	if opened {
		if pit, err = c.openPIT(ctx); err != nil {
			return nil, nil, err
		}
	} else {
		pit, after = pos.PIT, pos.After
	}
	sort := []any{
		map[string]any{"@timestamp": map[string]any{"order": order, "format": "strict_date_optional_time_nanos"}},
		map[string]any{"event.id": order},
	}
	var p page
	for reopened := false; ; reopened = true {
		// One more than asked tells whether another page follows without a second search.
		// The whole _source: filtering it showed no gain in auditproof api (the node parses and
		// rewrites each document to filter it).
		req := map[string]any{"size": limit + 1, "query": q, "pit": map[string]any{"id": pit, "keep_alive": pitKeepAlive}, "sort": sort, "track_total_hits": false}
		if after != nil {
			req["search_after"] = after
		}
		err = c.search(ctx, req, &p)
		if reopened || !isExpiredPIT(err) {
			break
		}
		if pit, err = c.openPIT(ctx); err != nil {
			return nil, nil, err
		}
		opened = true
		if testHooks.reopened != nil {
			testHooks.reopened()
		}
	}
	if err != nil {
		if opened {
			c.closePIT(pit)
		}
		return nil, nil, err
	}
	if p.PitID != "" {
		pit = p.PitID
	}
	hits := p.Hits.Hits
	var next *Position
	if len(hits) > limit {
		hits = hits[:limit]
		next = &Position{PIT: pit, After: hits[limit-1].Sort}
	} else {
		c.closePIT(pit) // the listing is complete: free the cluster's search contexts now
	}
	out := make([]json.RawMessage, len(hits))
	for i, h := range hits {
		out[i] = h.Source
	}
	return out, next, nil
}

// ClosePosition ends a listing before its last page, freeing its point in time.
func (c *Client) ClosePosition(pos *Position) {
	if pos != nil && pos.PIT != "" {
		c.closePIT(pos.PIT)
	}
}

// Event is the customer-facing shape of a stored event: the specification's fields, with the event id
// and its time (RFC 3339 with nine fractional digits). Internal fields (the hash, the ingest time,
// ECS copies) are left out.
type Event struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	EventBody
}

// EventBody is the specification's fields, named alike in the stored document and in an Event; the
// JSON objects and arrays are kept as stored.
type EventBody struct {
	Action      string          `json:"action"`
	TeamID      string          `json:"team_id"`
	Actor       json.RawMessage `json:"actor"`
	Targets     json.RawMessage `json:"targets"`
	AccessRoute json.RawMessage `json:"access_route"`
	RemoteAddr  *string         `json:"remote_addr"`
	UserAgent   *string         `json:"user_agent"`
	Metadata    json.RawMessage `json:"metadata"`
}

// TimestampLayout is RFC 3339 with nanoseconds, always nine digits, so that timestamps sort as text.
const TimestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// ToEvent renders a stored document as an Event.
func ToEvent(src json.RawMessage) (Event, error) {
	var d struct {
		Timestamp string `json:"@timestamp"`
		Event     struct {
			ID string `json:"id"`
		} `json:"event"`
		EventBody
	}
	if err := json.Unmarshal(src, &d); err != nil {
		return Event{}, fmt.Errorf("stored document: %w", err)
	}
	ts, err := time.Parse(time.RFC3339Nano, d.Timestamp)
	if err != nil {
		return Event{}, fmt.Errorf("stored document: @timestamp: %w", err)
	}
	b := d.EventBody
	b.Actor, b.Targets, b.AccessRoute, b.Metadata = orNull(b.Actor), orEmpty(b.Targets), orEmpty(b.AccessRoute), orNull(b.Metadata)
	return Event{ID: d.Event.ID, Timestamp: ts.UTC().Format(TimestampLayout), EventBody: b}, nil
}

func orNull(r json.RawMessage) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("null")
	}
	return r
}

func orEmpty(r json.RawMessage) json.RawMessage {
	if len(r) == 0 || string(r) == "null" {
		return json.RawMessage("[]")
	}
	return r
}
