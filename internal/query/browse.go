package query

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// Team is one team with an audit log.
type Team struct {
	ID          string
	Events      int64
	First, Last string // @timestamp of the oldest and newest event
}

// Teams lists the teams that have events, with their event counts and time ranges, sorted by team
// id. It pages through a composite aggregation, so 100,000 teams take 100 requests of 1,000.
func (c *Client) Teams(ctx context.Context) ([]Team, error) {
	var teams []Team
	var after map[string]any
	for {
		composite := map[string]any{"size": 1000, "sources": []any{map[string]any{"team": map[string]any{"terms": map[string]any{"field": "team_id"}}}}}
		if after != nil {
			composite["after"] = after
		}
		req := map[string]any{"size": 0, "aggs": map[string]any{"teams": map[string]any{
			"composite": composite,
			"aggs": map[string]any{
				"first": map[string]any{"min": map[string]any{"field": "@timestamp", "format": "strict_date_optional_time_nanos"}},
				"last":  map[string]any{"max": map[string]any{"field": "@timestamp", "format": "strict_date_optional_time_nanos"}},
			},
		}}}
		var res struct {
			Aggregations struct {
				Teams struct {
					AfterKey map[string]any `json:"after_key"`
					Buckets  []struct {
						Key      struct{ Team string } `json:"key"`
						DocCount int64                 `json:"doc_count"`
						First    struct {
							Value string `json:"value_as_string"`
						} `json:"first"`
						Last struct {
							Value string `json:"value_as_string"`
						} `json:"last"`
					} `json:"buckets"`
				} `json:"teams"`
			} `json:"aggregations"`
		}
		if err := c.search(ctx, req, &res); err != nil {
			return nil, err
		}
		for _, b := range res.Aggregations.Teams.Buckets {
			teams = append(teams, Team{ID: b.Key.Team, Events: b.DocCount, First: b.First.Value, Last: b.Last.Value})
		}
		if len(res.Aggregations.Teams.Buckets) == 0 || res.Aggregations.Teams.AfterKey == nil {
			break
		}
		after = res.Aggregations.Teams.AfterKey
	}
	sort.Slice(teams, func(i, j int) bool { return teams[i].ID < teams[j].ID })
	return teams, nil
}

// CheckTeam makes sure the cluster answers and the team has events, before anything is written
// about it.
func (c *Client) CheckTeam(ctx context.Context, team string) error {
	n, err := c.Count(ctx, Filter{Team: team})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("team %s: %w", team, ErrNoTeam)
	}
	return nil
}

// Show returns one stored event of a team by its event id, wherever the layout put it, with every
// field of every template version (document.Expand).
func (c *Client) Show(ctx context.Context, team, id string) (json.RawMessage, error) {
	hit, err := c.Get(ctx, team, id)
	if err != nil {
		return nil, err
	}
	return document.Expand(hit, c.Catalog())
}

// Get returns one stored event of a team by its event id, wherever the layout put it.
func (c *Client) Get(ctx context.Context, team, id string) (document.Hit, error) {
	q, err := Filter{Team: team}.query()
	if err != nil {
		return document.Hit{}, err
	}
	// The _id of the team's event, or, in the previous per-team layout's indices, its event.id.
	byID := map[string]any{"bool": map[string]any{"should": []any{
		map[string]any{"ids": map[string]any{"values": []string{layout.DocID(team, id)}}},
		map[string]any{"term": map[string]any{document.EventID: id}},
	}, "minimum_should_match": 1}}
	q = map[string]any{"bool": map[string]any{"filter": []any{q, byID}}}
	var p page
	if err := c.search(ctx, map[string]any{"size": 1, "query": q}, &p); err != nil {
		return document.Hit{}, err
	}
	if len(p.Hits.Hits) == 0 {
		return document.Hit{}, fmt.Errorf("team %s has no event %q: %w", team, id, ErrNoEvent)
	}
	return p.Hits.Hits[0].Hit, nil
}

// tailOverlap is how far back before the newest ingest time seen each poll of Tail looks again:
// documents become searchable slightly out of ingest order (parallel exporters, refreshes).
const tailOverlap = 30 * time.Second

// Tail writes, as NDJSON, the team's events stored at or after since that match the filter, then polls
// every interval for newer ones until ctx ends. It follows event.ingested, when the pipeline stored
// an event, not @timestamp: an event that arrives late with an older timestamp is printed too. Each
// poll looks tailOverlap back and prints every event once.
func (c *Client) Tail(ctx context.Context, f Filter, since time.Time, interval time.Duration, w io.Writer) error {
	f.Since, f.Until = time.Time{}, time.Time{}
	base, err := f.query()
	if err != nil {
		return err
	}
	order := []any{
		map[string]any{"event.ingested": map[string]any{"order": "asc", "format": "strict_date_optional_time_nanos"}},
		map[string]any{"_seq_no": "asc"},
	}
	catalog := c.Catalog()
	seen := map[string]time.Time{} // printed events of the overlap window, by id
	high := since
	for {
		// Make what was indexed since the last poll searchable; a tail wants to see it now.
		_ = c.do(ctx, esapi.IndicesRefreshRequest{Index: c.layout.ReadIndices()}, nil)
		from := high.Add(-tailOverlap)
		if from.Before(since) {
			from = since
		}
		q := map[string]any{"bool": map[string]any{"filter": []any{base, timeRange("event.ingested", from, time.Time{})}}}
		var after []json.RawMessage
		for {
			req := map[string]any{"size": PageSize, "query": q, "sort": order, "_source": true}
			if after != nil {
				req["search_after"] = after
			}
			var page page
			if err := c.search(ctx, req, &page); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			for _, h := range page.Hits.Hits {
				after = h.Sort
				d, err := document.Decode(h.Hit)
				if err != nil {
					return err
				}
				if _, ok := seen[d.Event.ID]; ok {
					continue
				}
				ingested, _ := time.Parse(time.RFC3339Nano, d.Event.Ingested) // sorted on: every document has it
				doc, err := document.Expand(h.Hit, catalog)
				if err != nil {
					return err
				}
				if _, err := w.Write(append(doc, '\n')); err != nil {
					return err
				}
				seen[d.Event.ID] = ingested
				if ingested.After(high) {
					high = ingested
				}
			}
			if len(page.Hits.Hits) < PageSize {
				break
			}
		}
		for id, at := range seen {
			if at.Before(high.Add(-tailOverlap)) {
				delete(seen, id)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// IndexCount is how many of a team's events one index holds.
type IndexCount struct {
	Index  string
	Events int64
}

// TeamIndices lists the indices that hold a team's events, with counts, sorted by name.
func (c *Client) TeamIndices(ctx context.Context, team string) ([]IndexCount, error) {
	q, err := Filter{Team: team}.query()
	if err != nil {
		return nil, err
	}
	req := map[string]any{"size": 0, "query": q, "aggs": map[string]any{"indices": map[string]any{"terms": map[string]any{"field": "_index", "size": 10000}}}}
	var res struct {
		Aggregations struct {
			Indices struct {
				Buckets []struct {
					Key      string `json:"key"`
					DocCount int64  `json:"doc_count"`
				} `json:"buckets"`
			} `json:"indices"`
		} `json:"aggregations"`
	}
	if err := c.search(ctx, req, &res); err != nil {
		return nil, err
	}
	var out []IndexCount
	for _, b := range res.Aggregations.Indices.Buckets {
		out = append(out, IndexCount{b.Key, b.DocCount})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}
