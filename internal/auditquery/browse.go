package auditquery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// Team is one team with an audit index.
type Team struct {
	ID          string
	Events      int64
	First, Last string // @timestamp of the oldest and newest event; empty when there is none
}

// Teams lists the teams that have an audit index, with their event counts and time ranges, sorted by
// team id. The quarantine index is not a team.
func (c *Client) Teams(ctx context.Context) ([]Team, error) {
	body := `{"size":0,"aggs":{"teams":{"terms":{"field":"_index","size":65536},"aggs":{"first":{"min":{"field":"@timestamp","format":"strict_date_optional_time_nanos"}},"last":{"max":{"field":"@timestamp","format":"strict_date_optional_time_nanos"}}}}}}`
	var res struct {
		Aggregations struct {
			Teams struct {
				Buckets []struct {
					Key      string `json:"key"`
					DocCount int64  `json:"doc_count"`
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
	ignore := true
	req := esapi.SearchRequest{
		Index:             []string{c.conn.IndexPrefix + "*", "-" + c.conn.QuarantineIndex},
		Body:              strings.NewReader(body),
		IgnoreUnavailable: &ignore,
		AllowNoIndices:    &ignore,
	}
	if err := c.do(ctx, req, &res); err != nil {
		return nil, err
	}
	var teams []Team
	for _, b := range res.Aggregations.Teams.Buckets {
		teams = append(teams, Team{ID: strings.TrimPrefix(b.Key, c.conn.IndexPrefix), Events: b.DocCount, First: b.First.Value, Last: b.Last.Value})
	}
	// Teams whose index is still empty do not show in the aggregation.
	var indices []struct {
		Index string `json:"index"`
	}
	if err := c.do(ctx, esapi.CatIndicesRequest{Index: []string{c.conn.IndexPrefix + "*"}, Format: "json", H: []string{"index"}}, &indices); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, t := range teams {
		seen[t.ID] = true
	}
	for _, ix := range indices {
		if ix.Index == c.conn.QuarantineIndex {
			continue
		}
		if id := strings.TrimPrefix(ix.Index, c.conn.IndexPrefix); !seen[id] {
			teams = append(teams, Team{ID: id})
		}
	}
	sort.Slice(teams, func(i, j int) bool { return teams[i].ID < teams[j].ID })
	return teams, nil
}

// CheckTeam makes sure the cluster answers and the team has an audit log, before anything is
// written about it.
func (c *Client) CheckTeam(ctx context.Context, team string) error {
	index, err := c.TeamIndex(team)
	if err != nil {
		return err
	}
	return c.teamErr(team, c.do(ctx, esapi.CountRequest{Index: []string{index}}, nil))
}

// Show returns one stored event of a team by its id, as stored.
func (c *Client) Show(ctx context.Context, team, id string) (json.RawMessage, error) {
	index, err := c.TeamIndex(team)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Found  bool            `json:"found"`
		Source json.RawMessage `json:"_source"`
	}
	res, err := esapi.GetRequest{Index: index, DocumentID: url.PathEscape(id)}.Do(ctx, c.es)
	if err != nil {
		return nil, fmt.Errorf("Elasticsearch at %s is unreachable: %w", strings.Join(c.conn.URLs, ", "), err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode == 404 {
		if bytes.Contains(b, []byte("index_not_found_exception")) {
			return nil, c.teamErr(team, ErrNoTeam)
		}
		return nil, fmt.Errorf("team %s has no event %q", team, id)
	}
	if res.IsError() {
		return nil, fmt.Errorf("Elasticsearch answered %s: %s", res.Status(), truncate(string(b), 500))
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	return doc.Source, nil
}

// tailOverlap is how far back before the newest ingest time seen each poll of Tail looks again:
// documents become searchable slightly out of ingest order (parallel exporters, refreshes).
const tailOverlap = 30 * time.Second

// Tail writes, as NDJSON, the team's events stored at or after since that match the filter, then polls
// every interval for newer ones until ctx ends. It follows event.ingested, when the pipeline stored
// an event, not @timestamp: an event that arrives late with an older timestamp is printed too. Each
// poll looks tailOverlap back and prints every event once.
func (c *Client) Tail(ctx context.Context, f Filter, since time.Time, interval time.Duration, w io.Writer) error {
	index, err := c.TeamIndex(f.Team)
	if err != nil {
		return err
	}
	f.Since, f.Until = time.Time{}, time.Time{}
	base, err := f.query()
	if err != nil {
		return err
	}
	order := []any{
		map[string]any{"event.ingested": map[string]any{"order": "asc", "format": "strict_date_optional_time_nanos"}},
		map[string]any{"event.id": "asc"},
	}
	seen := map[string]time.Time{} // printed events of the overlap window, by id
	high := since
	for {
		// Make what was indexed since the last poll searchable; a tail wants to see it now.
		_ = c.do(ctx, esapi.IndicesRefreshRequest{Index: []string{index}}, nil)
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
			page, err := c.search(ctx, []string{index}, req)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return c.teamErr(f.Team, err)
			}
			for _, h := range page.Hits.Hits {
				after = h.Sort
				var d struct {
					Event struct {
						ID       string    `json:"id"`
						Ingested time.Time `json:"ingested"`
					} `json:"event"`
				}
				if err := json.Unmarshal(h.Source, &d); err != nil {
					return fmt.Errorf("stored document: %w", err)
				}
				if _, ok := seen[d.Event.ID]; ok {
					continue
				}
				if _, err := w.Write(append(h.Source, '\n')); err != nil {
					return err
				}
				seen[d.Event.ID] = d.Event.Ingested
				if d.Event.Ingested.After(high) {
					high = d.Event.Ingested
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
