// Package estest gives integration tests the real Elasticsearch node that `make test` (and .ci/run)
// starts with scripts/elasticsearch.sh. Tests find it through ES_URL. A missing node skips the test on
// a developer's machine and fails it when CI=true, so CI can never pass without Elasticsearch.
package estest

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
)

// DefaultURL is where scripts/elasticsearch.sh starts the node.
const DefaultURL = "http://127.0.0.1:9200"

// URL returns the base URL of the test node, checking that an Elasticsearch answers there.
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("ES_URL")
	if u == "" {
		u = DefaultURL
	}
	if err := ping(u); err != nil {
		msg := fmt.Sprintf("no Elasticsearch at %s (%v): run `make test`, or `make es-start` first", u, err)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return u
}

func ping(u string) error {
	c := http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(strings.TrimRight(u, "/") + "/_cluster/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("_cluster/health answered %s", resp.Status)
	}
	if resp.Header.Get("X-Elastic-Product") != "Elasticsearch" {
		return fmt.Errorf("the server does not say it is Elasticsearch")
	}
	return nil
}

// Client returns a go-elasticsearch client for the test node.
func Client(tb testing.TB) *elasticsearch.Client {
	tb.Helper()
	c, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{URL(tb)}})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

var seq atomic.Int64

// Prefix returns an index-name prefix unique to this test run and test, and deletes every index and
// index template under it when the test ends, so tests can share one node.
func Prefix(tb testing.TB) string {
	tb.Helper()
	name := strings.ToLower(tb.Name())
	name = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	p := fmt.Sprintf("t%d-%d-%s-", os.Getpid(), seq.Add(1), strings.Trim(name, "-"))
	base := URL(tb)
	tb.Cleanup(func() { Cleanup(base, p) })
	return p
}

// Cleanup deletes the indices and index templates whose names start with prefix.
func Cleanup(base, prefix string) { esinspect.DeleteAll(base, prefix) }
