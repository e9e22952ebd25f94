// Package esinspect answers what the tests and the reliability scenarios ask Elasticsearch: how many
// documents each index under a prefix holds, and whether any event id is stored twice.
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

// Refresh makes everything indexed under prefix searchable.
func Refresh(base, prefix string) error {
	req, _ := http.NewRequest(http.MethodPost, strings.TrimRight(base, "/")+"/"+prefix+"*/_refresh?expand_wildcards=all", nil)
	res, err := http.DefaultClient.Do(req)
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

// DuplicateIDs returns how many event ids are stored more than once across the indices under prefix
// (the exporter's _id makes this impossible within one index; this also checks across indices).
func DuplicateIDs(base, prefix string) (int, error) {
	body := `{"size":0,"aggs":{"ids":{"terms":{"field":"event.id","min_doc_count":2,"size":10000}}}}`
	req, _ := http.NewRequest(http.MethodPost, strings.TrimRight(base, "/")+"/"+prefix+"*/_search?expand_wildcards=all", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
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
	res, err := http.Get(strings.TrimRight(base, "/") + path)
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
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	// Callers that check for leaked goroutines must not see idle connections.
	http.DefaultClient.CloseIdleConnections()
}
