package seal

// Retention: before a partition is purged, the sealer signs, for each team with leaves there, a
// statement that the events of the log's first leaves expired (merkle.Expiry), and keeps the edge
// of those leaves' tree. The tree's hashes outlive the events: a bundle carries the edge instead
// of the expired leaves' hashes, and verifies. The exporter purges a partition a day
// (layout.PurgeGrace) after its events' retention ends; the sealer states the expiry from the end
// of the retention on, while the events can still be read.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// expire states the expiry of the partitions whose retention ended by now, once per partition.
func (s *Sealer) expire(ctx context.Context, hint marks, now time.Time) error {
	done, err := s.s.readExpired(ctx)
	if err != nil {
		return err
	}
	var fresh []string
	for index := range hint {
		p, ok := s.c.Layout().Parse(index)
		if !ok {
			continue
		}
		if at, _ := s.c.Layout().Expired(p, now); !at.IsZero() && !at.After(now) {
			if _, ok := done[index]; !ok {
				fresh = append(fresh, index)
			}
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	for index := range hint {
		if p, ok := s.c.Layout().Parse(index); ok {
			if at, _ := s.c.Layout().Expired(p, now); !at.IsZero() && !at.After(now) {
				done[index] = now
			}
		}
	}
	teams, err := s.s.teamsIn(ctx, fresh)
	if err != nil {
		return err
	}
	for _, team := range teams {
		if err := s.expireTeam(ctx, team, done, now); err != nil {
			return fmt.Errorf("seal: the expiry of team %s: %w", team, err)
		}
	}
	return s.s.writeExpired(ctx, done)
}

// expireTeam extends a team's expired range over the first leaves whose partitions expired, and
// signs the statement; a state changed meanwhile is read again.
func (s *Sealer) expireTeam(ctx context.Context, team string, expired map[string]time.Time, now time.Time) error {
	for attempt := 0; attempt < 10; attempt++ {
		t, err := NewLog(s.s).tree(ctx, team)
		if err != nil {
			return err
		}
		st := t.st
		e := st.Expired
		edge := append(merkle.Edge(nil), st.ExpiredEdge...)
		for e < st.Size {
			k := e / TileLeaves
			r, err := t.refs(k)
			if err != nil {
				return err
			}
			from := int(e - k*TileLeaves)
			stop := from
			for stop < r.len() {
				if _, ok := expired[r.part(stop)]; !ok {
					break
				}
				stop++
			}
			if stop > from {
				hs, err := t.leafHashesFrom(k, e)
				if err != nil {
					return err
				}
				for _, h := range hs[:stop-from] {
					edge = edge.Append(e, h, nil)
					e++
				}
			}
			if stop < r.len() {
				break
			}
		}
		if e == st.Expired {
			return nil
		}
		note, err := merkle.SignExpiry(merkle.Expiry{Origin: merkle.Origin(s.cfg.Origin, team), Size: e, Root: edge.Root(), At: now}, s.cfg.Signers...)
		if err != nil {
			return err
		}
		st.Expired, st.ExpiredEdge, st.Expiry = e, edge, string(note)
		st.ExpiredParts = st.ExpiredParts[:0]
		for p := range st.Marks {
			if _, ok := expired[p]; ok {
				st.ExpiredParts = append(st.ExpiredParts, p)
			}
		}
		slices.Sort(st.ExpiredParts)
		status, err := s.s.bulk(ctx, []bulkItem{stateItem(team, st)}, "")
		if err != nil {
			return err
		}
		if status[0].status < 300 {
			return nil
		}
	}
	return fmt.Errorf("its state kept changing")
}

// readExpired is the partitions whose expiry the sealers have stated, and when.
func (s *Store) readExpired(ctx context.Context) (map[string]time.Time, error) {
	var res struct {
		Source struct {
			Body map[string]time.Time `json:"body"`
		} `json:"_source"`
	}
	err := s.c.Do(ctx, esapi.GetRequest{Index: s.index, DocumentID: "expired"}, &res)
	if isMissing(err) {
		return map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, err
	}
	if res.Source.Body == nil {
		return map[string]time.Time{}, nil
	}
	return res.Source.Body, nil
}

func (s *Store) writeExpired(ctx context.Context, m map[string]time.Time) error {
	body, _ := json.Marshal(doc{Kind: "expired", Body: m})
	return s.c.Do(ctx, esapi.IndexRequest{Index: s.index, DocumentID: "expired", Body: bytes.NewReader(body)}, nil)
}

// teamsIn lists the teams whose logs have leaves in any of the partitions.
func (s *Store) teamsIn(ctx context.Context, parts []string) ([]string, error) {
	var out []string
	var after []any
	for {
		q := map[string]any{"size": 10000, "_source": false, "track_total_hits": false,
			"query": map[string]any{"bool": map[string]any{"filter": []any{
				map[string]any{"term": map[string]any{"kind": "state"}}, map[string]any{"terms": map[string]any{"parts": parts}}}}},
			"sort": []any{map[string]any{"team": "asc"}}, "fields": []string{"team"}}
		if after != nil {
			q["search_after"] = after
		}
		body, _ := json.Marshal(q)
		var res struct {
			Hits struct {
				Hits []struct {
					Fields struct {
						Team []string `json:"team"`
					} `json:"fields"`
					Sort []any `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := s.c.Do(ctx, esapi.SearchRequest{Index: []string{s.index}, Body: bytes.NewReader(body)}, &res); err != nil {
			return nil, err
		}
		for _, h := range res.Hits.Hits {
			out = append(out, h.Fields.Team...)
		}
		if len(res.Hits.Hits) < 10000 {
			return out, nil
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
}
