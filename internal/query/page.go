// Searching, points in time and search_after paging: how every listing and export reads.

package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/auditpipe/auditpipe/internal/document"
)

// pitKeepAlive is how long a point in time lives between two pages of a listing or an export.
const pitKeepAlive = "2m"

// testHooks let a test end an export's point in time after a page, and learn that Page reopened it.
var testHooks struct {
	page     func(pit string)
	reopened func()
}

// Order of a listing by event time (then the order in which the partition stored the events).
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
func (c *Client) Page(ctx context.Context, f Filter, order Order, limit int, pos *Position) ([]document.Hit, *Position, error) {
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
		if pit, err = c.openPIT(ctx, f); err != nil {
			return nil, nil, err
		}
	} else {
		pit, after = pos.PIT, pos.After
	}
	sort := []any{
		map[string]any{"@timestamp": map[string]any{"order": order, "format": "strict_date_optional_time_nanos"}},
		map[string]any{"_seq_no": order},
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
		if pit, err = c.openPIT(ctx, f); err != nil {
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
	out := make([]document.Hit, len(hits))
	for i, h := range hits {
		out[i] = h.Hit
	}
	return out, next, nil
}

// ClosePosition ends a listing before its last page, freeing its point in time.
func (c *Client) ClosePosition(pos *Position) {
	if pos != nil && pos.PIT != "" {
		c.closePIT(pos.PIT)
	}
}

// openPIT opens a point in time over every index that may hold the filter's events.
func (c *Client) openPIT(ctx context.Context, f Filter) (string, error) {
	var pit struct {
		ID string `json:"id"`
	}
	yes := true
	err := c.do(ctx, esapi.OpenPointInTimeRequest{Index: c.indices(f), KeepAlive: pitKeepAlive, IgnoreUnavailable: &yes}, &pit)
	return pit.ID, err
}

// closePIT frees a point in time; a failure only leaves it to expire.
func (c *Client) closePIT(id string) {
	body, _ := json.Marshal(map[string]string{"id": id})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.do(ctx, esapi.ClosePointInTimeRequest{Body: bytes.NewReader(body)}, nil)
}

// indices are the indices that may hold the filter's events: its team's, in its time range.
func (c *Client) indices(f Filter) []string {
	return c.layout.ReadIndicesFor(f.Team, f.Since, f.Until, time.Now())
}

// Count counts the filter's events, in the indices that may hold them.
func (c *Client) Count(ctx context.Context, f Filter) (int64, error) {
	q, err := f.query()
	if err != nil {
		return 0, err
	}
	var cnt struct{ Count int64 }
	body, _ := json.Marshal(map[string]any{"query": q})
	yes := true
	err = c.do(ctx, esapi.CountRequest{Index: c.indices(f), Body: bytes.NewReader(body), IgnoreUnavailable: &yes, AllowNoIndices: &yes}, &cnt)
	return cnt.Count, err
}

// isExpiredPIT tells the answer to a search on a point in time that is gone.
func isExpiredPIT(err error) bool {
	var he *httpError
	return errors.As(err, &he) && he.status == http.StatusNotFound && strings.Contains(he.msg, "search_context_missing_exception")
}

// page is one page of search hits.
type page struct {
	PitID string `json:"pit_id"`
	Hits  struct {
		Hits []struct {
			document.Hit
			Sort []json.RawMessage `json:"sort"`
		} `json:"hits"`
	} `json:"hits"`
}

// search runs one search and decodes its answer into out: over every index that may hold team events
// (layout.ReadIndices), or over the point in time the request names.
func (c *Client) search(ctx context.Context, req map[string]any, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	sr := esapi.SearchRequest{Body: bytes.NewReader(body)}
	if _, ok := req["pit"]; !ok {
		yes := true
		sr.Index, sr.IgnoreUnavailable, sr.AllowNoIndices = c.layout.ReadIndices(), &yes, &yes
	}
	return c.do(ctx, sr, out)
}
