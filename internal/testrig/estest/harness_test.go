package estest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// TestHarnessIsReal proves the test node is a real Elasticsearch: it creates an index with an explicit
// mapping, bulk-indexes documents through go-elasticsearch, refreshes and counts them.
func TestHarnessIsReal(t *testing.T) {
	es := Client(t)
	index := Prefix(t) + "harness"
	ctx := context.Background()

	res, err := es.Indices.Create(index, es.Indices.Create.WithBody(strings.NewReader(
		`{"mappings":{"dynamic":"strict","properties":{"n":{"type":"integer"},"team_id":{"type":"keyword"},"metadata":{"type":"flattened"}}}}`)))
	mustOK(t, res, err)

	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: es, Index: index, Refresh: "true"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 250
	for i := 0; i < n; i++ {
		doc, _ := json.Marshal(map[string]any{"n": i, "team_id": "191796", "metadata": map[string]any{"k": i}})
		if err := bi.Add(ctx, esutil.BulkIndexerItem{Action: "create", DocumentID: fmt.Sprint(i), Body: bytes.NewReader(doc)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := bi.Stats(); st.NumFailed != 0 || st.NumAdded != n {
		t.Fatalf("bulk stats %+v", st)
	}

	res, err = es.Count(es.Count.WithIndex(index))
	mustOK(t, res, err)
	var c struct{ Count int }
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Count != n {
		t.Fatalf("count %d, want %d", c.Count, n)
	}

	// A strict mapping rejects an unknown field: the node really enforces mappings.
	res, err = es.Index(index, strings.NewReader(`{"unexpected":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 400 {
		t.Fatalf("strict mapping: status %d, want 400", res.StatusCode)
	}
}

func mustOK(t *testing.T, res *esapi.Response, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError() {
		t.Fatalf("%s", res.String())
	}
}
