// Package esinspect answers what the tests and the reliability scenarios ask Elasticsearch: how many
// documents each index under a prefix holds, and which event ids are stored where. Every error of a
// query the verdict depends on is returned: an unanswered question never reads as "nothing there".
package esinspect

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/document"

	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// client bounds every request: a node that stops answering fails the question, it does not hang it.
var client = &http.Client{Timeout: 2 * time.Minute}

// Refresh makes everything indexed under prefix searchable.
func Refresh(base, prefix string) error {
	req, _ := http.NewRequest(http.MethodPost, strings.TrimRight(base, "/")+"/"+prefix+"*/_refresh?expand_wildcards=all", nil)
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	return nil
}

// ForceMerge merges each index of the prefix to one segment and returns once it is done: what a
// partition no longer written to becomes, and a size that does not depend on when it is measured.
func ForceMerge(base, prefix string) error {
	req, _ := http.NewRequest(http.MethodPost, strings.TrimRight(base, "/")+"/"+prefix+"*/_forcemerge?max_num_segments=1", nil)
	res, err := (&http.Client{Timeout: 30 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("_forcemerge: %d: %s", res.StatusCode, b)
	}
	return nil
}

// Counts refreshes and returns the number of events of every team in the layout's indices, and the
// number of quarantine documents.
func Counts(base string, lay *layout.Layout) (teams map[string]int, quarantined int, err error) {
	if err := Refresh(base, lay.Prefix()); err != nil {
		return nil, 0, err
	}
	base = strings.TrimRight(base, "/")
	teams = map[string]int{}
	var after json.RawMessage
	for {
		composite := map[string]any{"size": 10000, "sources": []any{map[string]any{"team": map[string]any{"terms": map[string]any{"field": document.TeamID}}}}}
		if after != nil {
			composite["after"] = after
		}
		body, _ := json.Marshal(map[string]any{"size": 0, "aggs": map[string]any{"teams": map[string]any{"composite": composite}}})
		var res struct {
			Aggregations struct {
				Teams struct {
					AfterKey json.RawMessage `json:"after_key"`
					Buckets  []struct {
						Key      struct{ Team string } `json:"key"`
						DocCount int                   `json:"doc_count"`
					} `json:"buckets"`
				} `json:"teams"`
			} `json:"aggregations"`
		}
		if err := do(http.MethodPost, base+"/"+strings.Join(lay.ReadIndices(), ",")+"/_search?allow_no_indices=true&ignore_unavailable=true", string(body), &res); err != nil {
			return nil, 0, err
		}
		for _, b := range res.Aggregations.Teams.Buckets {
			teams[b.Key.Team] = b.DocCount
		}
		if len(res.Aggregations.Teams.Buckets) == 0 || len(res.Aggregations.Teams.AfterKey) == 0 {
			break
		}
		after = res.Aggregations.Teams.AfterKey
	}
	var cnt struct{ Count int }
	if err := do(http.MethodPost, base+"/"+lay.Quarantine()+"/_count?allow_no_indices=true&ignore_unavailable=true", "", &cnt); err != nil {
		return nil, 0, err
	}
	return teams, cnt.Count, nil
}

// Total refreshes and counts the events and the quarantine documents of the layout's indices.
func Total(base string, lay *layout.Layout) (events, quarantined int, err error) {
	if err := Refresh(base, lay.Prefix()); err != nil {
		return 0, 0, err
	}
	base = strings.TrimRight(base, "/")
	for _, c := range []struct {
		indices string
		n       *int
	}{{strings.Join(lay.ReadIndices(), ","), &events}, {lay.Quarantine(), &quarantined}} {
		var cnt struct{ Count int }
		if err := do(http.MethodPost, base+"/"+c.indices+"/_count?allow_no_indices=true&ignore_unavailable=true", "", &cnt); err != nil {
			return 0, 0, err
		}
		*c.n = cnt.Count
	}
	return events, quarantined, nil
}

// Doc is one stored document, as the proofs see it.
type Doc struct {
	Index    string   // the index name
	ID       string   // _id
	Routing  string   // _routing
	Time     string   // @timestamp
	EventID  string   // event.id, or what the _id carries (layout.EventIDOf)
	TeamID   string   // team_id of an event document
	QTeamID  string   // quarantine.team_id of a quarantine document
	Reasons  []string // quarantine.reasons
	Ingested string   // event.ingested
}

// Inventory refreshes and returns every document of the layout's indices (the quarantine
// included), read through one point in time.
func Inventory(base string, lay *layout.Layout) ([]Doc, error) {
	if err := Refresh(base, lay.Prefix()); err != nil {
		return nil, err
	}
	var docs []Doc
	fields := []string{document.Timestamp, document.EventID, document.EventIngested, document.TeamID, document.QuarantineTeamID, document.QuarantineReason}
	err := EachHit(base, []string{lay.Family()}, fields, func(h Hit) error {
		var s struct {
			Time  string `json:"@timestamp"`
			Event struct {
				ID       string `json:"id"`
				Ingested string `json:"ingested"`
			} `json:"event"`
			TeamID     string `json:"team_id"`
			Quarantine struct {
				TeamID  string   `json:"team_id"`
				Reasons []string `json:"reasons"`
			} `json:"quarantine"`
		}
		if err := json.Unmarshal(h.Source, &s); err != nil {
			return fmt.Errorf("document %s in %s: %w", h.ID, h.Index, err)
		}
		if s.Event.ID == "" && s.TeamID != "" { // an event document whose _id carries its id
			s.Event.ID = layout.EventIDOf(h.ID)
		}
		docs = append(docs, Doc{Index: h.Index, ID: h.ID, Routing: h.Routing, Time: s.Time, EventID: s.Event.ID, TeamID: s.TeamID,
			QTeamID: s.Quarantine.TeamID, Reasons: s.Quarantine.Reasons, Ingested: s.Event.Ingested})
		return nil
	})
	return docs, err
}

// Hit is one stored document as a search returns it.
type Hit struct {
	Index   string          `json:"_index"`
	ID      string          `json:"_id"`
	Routing string          `json:"_routing"`
	Source  json.RawMessage `json:"_source"`
	Sort    json.RawMessage `json:"sort"`
}

// EachHit reads every document of indices (closed ones too) through one point in time, in pages
// of 10,000, and calls fn for each; source names the _source fields to read (nil: all of them).
func EachHit(base string, indices []string, source []string, fn func(Hit) error) error {
	base = strings.TrimRight(base, "/")
	var pit struct {
		ID string `json:"id"`
	}
	if err := do(http.MethodPost, base+"/"+strings.Join(indices, ",")+"/_pit?keep_alive=2m&expand_wildcards=all&allow_no_indices=true", "", &pit); err != nil {
		return err
	}
	defer func() { do(http.MethodDelete, base+"/_pit", fmt.Sprintf(`{"id":%q}`, pit.ID), nil) }()
	var after json.RawMessage
	for {
		req := map[string]any{
			"size": 10000, "pit": map[string]any{"id": pit.ID, "keep_alive": "2m"}, "sort": []any{"_shard_doc"}, "track_total_hits": false,
		}
		if source != nil {
			req["_source"] = source
		}
		if after != nil {
			req["search_after"] = after
		}
		body, _ := json.Marshal(req)
		var res struct {
			PitID string `json:"pit_id"`
			Hits  struct {
				Hits []Hit `json:"hits"`
			} `json:"hits"`
		}
		if err := do(http.MethodPost, base+"/_search", string(body), &res); err != nil {
			return err
		}
		pit.ID = res.PitID
		for _, h := range res.Hits.Hits {
			if err := fn(h); err != nil {
				return err
			}
			after = h.Sort
		}
		if len(res.Hits.Hits) < 10000 {
			return nil
		}
	}
}

// do sends a request with a JSON body and decodes a 200 answer into out; anything else is an error.
func do(method, url, body string, out any) error {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, res.Status, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

func get(base, path string, out any) error {
	res, err := client.Get(strings.TrimRight(base, "/") + path)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, res.Status, b)
	}
	return json.Unmarshal(b, out)
}

// DeleteAll deletes the indices and index templates whose names start with prefix.
func DeleteAll(base, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, path := range []string{"/" + prefix + "*?expand_wildcards=all", "/_index_template/" + prefix + "*"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, strings.TrimRight(base, "/")+path, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	// Callers that check for leaked goroutines must not see idle connections.
	client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
}

// Footprint is what indices cost the cluster, whatever they hold.
type Footprint struct {
	Shards     int   // shard copies of the indices under the prefix
	StoreBytes int64 // their primary store size
	AllShards  int   // active shard copies in the cluster
	StateBytes int   // the cluster state, as GET _cluster/state returns it (uncompressed JSON)
}

// Measure reads the footprint of the indices under prefix and of the whole cluster.
func Measure(base, prefix string) (Footprint, error) {
	var f Footprint
	var shards []json.RawMessage
	if err := get(base, "/_cat/shards/"+prefix+"*?format=json&h=index", &shards); err != nil {
		return f, err
	}
	f.Shards = len(shards)
	var indices []struct {
		Size string `json:"pri.store.size"`
	}
	if err := get(base, "/_cat/indices/"+prefix+"*?format=json&h=pri.store.size&bytes=b", &indices); err != nil {
		return f, err
	}
	for _, ix := range indices {
		var n int64
		fmt.Sscan(ix.Size, &n)
		f.StoreBytes += n
	}
	var health struct {
		ActiveShards int `json:"active_shards"`
	}
	if err := get(base, "/_cluster/health", &health); err != nil {
		return f, err
	}
	f.AllShards = health.ActiveShards
	var state json.RawMessage
	if err := get(base, "/_cluster/state", &state); err != nil {
		return f, err
	}
	f.StateBytes = len(state)
	return f, nil
}

// WaitMerged waits, at most limit, until no segment merge runs on any node, so that a measurement
// starts on a quiet cluster instead of sharing it with the merges of the one before.
func WaitMerged(base string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var stats struct {
			Nodes map[string]struct {
				Indices struct {
					Merges struct {
						Current int `json:"current"`
					} `json:"merges"`
				} `json:"indices"`
			} `json:"nodes"`
		}
		if err := get(base, "/_nodes/stats/indices/merge", &stats); err != nil {
			return err
		}
		running := 0
		for _, n := range stats.Nodes {
			running += n.Indices.Merges.Current
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d merges still running after %s", running, limit)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
