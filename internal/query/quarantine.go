package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/auditpipe/auditpipe/internal/document"
)

// The quarantine is a dead-letter queue: records the pipeline could not store in a team's log, each
// with its reasons and the whole original record. EachQuarantined and ShowQuarantined read it; the
// recorder's Replay re-drives records through the processor and the exporter, as the collector
// would, and removes each from quarantine (DeleteQuarantined) only once it is stored.

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

// quarantineOrder pages through the quarantine in a total order (with a point in time).
var quarantineOrder = []any{
	map[string]any{"@timestamp": map[string]any{"order": "asc", "format": "strict_date_optional_time_nanos"}},
	map[string]any{"_shard_doc": "asc"},
}

// EachQuarantined calls fn with pages of the matching quarantine documents, oldest first, until fn
// returns false or an error, or limit documents were seen (0: no limit). It reads one consistent view
// (a point in time), so documents removed or added meanwhile do not upset the paging.
func (c *Client) EachQuarantined(ctx context.Context, f QuarantineFilter, limit, pageSize int, fn func([]document.Quarantined) (bool, error)) error {
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
		docs := make([]document.Quarantined, 0, len(res.Hits.Hits))
		for _, h := range res.Hits.Hits {
			d, err := document.DecodeQuarantined(h.ID, h.Source)
			if err != nil {
				return err
			}
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

// DeleteQuarantined removes one quarantine document (a replay does, once the record is stored);
// a document already gone is no error.
func (c *Client) DeleteQuarantined(ctx context.Context, id string) error {
	err := c.do(ctx, esapi.DeleteRequest{Index: c.conn.QuarantineIndex, DocumentID: url.PathEscape(id)}, nil)
	if isNotFound(err) {
		return nil
	}
	return err
}
