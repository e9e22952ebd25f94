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

// Counts refreshes and returns the document count of every index under prefix, keyed by the index
// name without the prefix.
func Counts(base, prefix string) (map[string]int, error) {
	if err := Refresh(base, prefix); err != nil {
		return nil, err
	}
	var rows []struct {
		Index string `json:"index"`
		Count string `json:"docs.count"`
	}
	if err := get(base, "/_cat/indices/"+prefix+"*?format=json&h=index,docs.count&expand_wildcards=all", &rows); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, r := range rows {
		var n int
		fmt.Sscan(r.Count, &n)
		out[strings.TrimPrefix(r.Index, prefix)] = n
	}
	return out, nil
}

// Doc is one stored document, as the proofs see it.
type Doc struct {
	Index    string   // the index name without the prefix
	EventID  string   // event.id
	TeamID   string   // team_id of an event document
	QTeamID  string   // quarantine.team_id of a quarantine document
	Reasons  []string // quarantine.reasons
	Ingested string   // event.ingested
}

// Inventory refreshes and returns every document under prefix, read through one point in time.
func Inventory(base, prefix string) ([]Doc, error) {
	if err := Refresh(base, prefix); err != nil {
		return nil, err
	}
	base = strings.TrimRight(base, "/")
	var pit struct {
		ID string `json:"id"`
	}
	if err := do(http.MethodPost, base+"/"+prefix+"*/_pit?keep_alive=2m&expand_wildcards=all&allow_no_indices=true", "", &pit); err != nil {
		return nil, err
	}
	defer do(http.MethodDelete, base+"/_pit", fmt.Sprintf(`{"id":%q}`, pit.ID), nil)
	var docs []Doc
	var after json.RawMessage
	for {
		req := map[string]any{
			"size": 10000, "pit": map[string]any{"id": pit.ID, "keep_alive": "2m"}, "sort": []any{"_shard_doc"},
			"_source":          []string{"event.id", "event.ingested", "team_id", "quarantine.team_id", "quarantine.reasons"},
			"track_total_hits": false,
		}
		if after != nil {
			req["search_after"] = after
		}
		body, _ := json.Marshal(req)
		var res struct {
			PitID string `json:"pit_id"`
			Hits  struct {
				Hits []struct {
					Index  string          `json:"_index"`
					Sort   json.RawMessage `json:"sort"`
					Source struct {
						Event struct {
							ID       string `json:"id"`
							Ingested string `json:"ingested"`
						} `json:"event"`
						TeamID     string `json:"team_id"`
						Quarantine struct {
							TeamID  string   `json:"team_id"`
							Reasons []string `json:"reasons"`
						} `json:"quarantine"`
					} `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := do(http.MethodPost, base+"/_search", string(body), &res); err != nil {
			return nil, err
		}
		pit.ID = res.PitID
		for _, h := range res.Hits.Hits {
			s := h.Source
			docs = append(docs, Doc{Index: strings.TrimPrefix(h.Index, prefix), EventID: s.Event.ID, TeamID: s.TeamID,
				QTeamID: s.Quarantine.TeamID, Reasons: s.Quarantine.Reasons, Ingested: s.Event.Ingested})
			after = h.Sort
		}
		if len(res.Hits.Hits) < 10000 {
			return docs, nil
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

// DuplicateIDs returns how many event ids are stored more than once across the indices under prefix
// (the exporter's _id makes this impossible within one index; this also checks across indices).
func DuplicateIDs(base, prefix string) (int, error) {
	body := `{"size":0,"aggs":{"ids":{"terms":{"field":"event.id","min_doc_count":2,"size":10000}}}}`
	req, _ := http.NewRequest(http.MethodPost, strings.TrimRight(base, "/")+"/"+prefix+"*/_search?expand_wildcards=all", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("duplicate check: %s: %s", res.Status, b)
	}
	var out struct {
		Aggregations struct {
			IDs struct {
				Buckets []json.RawMessage `json:"buckets"`
			} `json:"ids"`
		} `json:"aggregations"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, fmt.Errorf("%v: %s", err, b)
	}
	return len(out.Aggregations.IDs.Buckets), nil
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
