// Package query is the read side's core: it reads the audit indices the exporter writes, one team
// at a time (filter.go: the filters and the team filter every read carries; page.go: search, points
// in time and search_after paging), and on that exports a log (export.go, csv.go), lists teams,
// shows and follows events (browse.go) and reads the quarantine (quarantine.go). Its only writes
// are refreshes and the replay's deletions from the quarantine: the tools' own events go through
// internal/recorder.
package query

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// Conn says how to reach Elasticsearch; the same settings as the exporter's, from flags or the
// environment (ES_URL, ES_USER, ES_PASSWORD, ES_API_KEY, ES_CA_FILE).
type Conn struct {
	URLs               []string
	User, Password     string
	APIKey             string
	CAFile             string
	InsecureSkipVerify bool
	IndexPrefix        string         // default layout.DefaultPrefix
	QuarantineIndex    string         // default layout.DefaultQuarantine
	Layout             *layout.Config // the exporter's layout; nil for the defaults
	Catalog            *audit.Catalog // the processor's catalog (CSV descriptions, the API's actions); nil for the embedded one
	// InstallTemplates lets the recorder install the index templates, as the collector does. The tools
	// leave templates to the collector; tests of fresh prefixes need them.
	InstallTemplates bool
}

// Client queries the audit indices.
type Client struct {
	es     *elasticsearch.Client
	conn   Conn
	layout *layout.Layout
}

// Catalog is the catalog the collector validates against.
func (c *Client) Catalog() *audit.Catalog {
	if c.conn.Catalog == nil {
		return audit.DefaultCatalog()
	}
	return c.conn.Catalog
}

// New connects (lazily: the first request reaches the cluster).
func New(c Conn) (*Client, error) {
	if len(c.URLs) == 0 {
		c.URLs = []string{"http://127.0.0.1:9200"}
	}
	if c.IndexPrefix == "" {
		c.IndexPrefix = layout.DefaultPrefix
	}
	if c.QuarantineIndex == "" {
		c.QuarantineIndex = layout.DefaultQuarantine
	}
	if c.Layout == nil {
		def := layout.NewDefaultConfig()
		c.Layout = &def
	}
	// The names reach index patterns and request paths: the exporter's rules check them.
	lay, err := layout.New(c.IndexPrefix, c.QuarantineIndex, *c.Layout)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Readers run beside the cluster, where CPU is scarcer than bandwidth: Elasticsearch gzips an
	// answer when asked (Go's transport asks by default), and inflating the sealer's pages of events
	// took a tenth of its time (BENCHMARKS.md, "Sealing").
	tr.DisableCompression = true
	if c.CAFile != "" || c.InsecureSkipVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // an explicit operator choice
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca file %s: no certificate found", c.CAFile)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: c.URLs, Username: c.User, Password: c.Password, APIKey: c.APIKey, Transport: tr,
	})
	if err != nil {
		return nil, err
	}
	return &Client{es: es, conn: c, layout: lay}, nil
}

// Conn returns the connection settings in use.
func (c *Client) Conn() Conn { return c.conn }

// Layout returns the layout the client reads and writes with.
func (c *Client) Layout() *layout.Layout { return c.layout }

// ErrNoTeam is returned for a team that has no audit index.
var ErrNoTeam = errors.New("no audit log for this team")

// ErrNoEvent is returned by Show for an event the team does not have.
var ErrNoEvent = errors.New("no such event")

// Do runs a request on the client's connection and decodes a JSON answer into out; a missing index
// is ErrNoTeam, any other error answer says what the cluster said. For the tools' own indices.
func (c *Client) Do(ctx context.Context, req esapi.Request, out any) error {
	return c.do(ctx, req, out)
}

// IsStatus tells whether err is an error answer of Elasticsearch with this HTTP status.
func IsStatus(err error, status int) bool {
	var he *httpError
	return errors.As(err, &he) && he.status == status
}

// Raw runs a request as Do does and returns the answer's bytes, for a caller that decodes them its
// own way.
func (c *Client) Raw(ctx context.Context, req esapi.Request) ([]byte, error) {
	res, err := req.Do(ctx, c.es)
	if err != nil {
		return nil, fmt.Errorf("Elasticsearch at %s is unreachable: %w", strings.Join(c.conn.URLs, ", "), err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode == http.StatusNotFound && bytes.Contains(body, []byte("index_not_found_exception")) {
		return nil, ErrNoTeam
	}
	if res.IsError() {
		return nil, &httpError{status: res.StatusCode, msg: fmt.Sprintf("Elasticsearch answered %s: %s", res.Status(), audit.Abbreviate(string(body), 500))}
	}
	return body, nil
}

// do runs a request and decodes a JSON answer into out; errors say what the cluster said.
func (c *Client) do(ctx context.Context, req esapi.Request, out any) error {
	body, err := c.Raw(ctx, req)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(body, out)
}

// httpError is an error answer of Elasticsearch.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// isNotFound tells a 404 answer (a missing document) from other errors.
func isNotFound(err error) bool { return IsStatus(err, http.StatusNotFound) }

// ES is the client's Elasticsearch connection, for the recorder's reads of what it stored.
func (c *Client) ES() *elasticsearch.Client { return c.es }

// Refresh makes everything written to the audit indices and the quarantine searchable now, for a
// tool that reads right after it wrote (an import, a replay).
func (c *Client) Refresh(ctx context.Context) error {
	yes := true
	idx := append(c.layout.ReadIndices(), c.conn.QuarantineIndex)
	return c.do(ctx, esapi.IndicesRefreshRequest{Index: idx, IgnoreUnavailable: &yes, AllowNoIndices: &yes}, nil)
}

// CheckTemplates makes sure the collector has installed the index templates of these names: a tool
// that writes before it (an import into a cluster the collector never ran against) would create
// partitions with Elasticsearch's guessed mappings.
func (c *Client) CheckTemplates(ctx context.Context) error {
	events, quarantine := c.layout.TemplateNames()
	for _, name := range []string{events, quarantine} {
		err := c.do(ctx, esapi.IndicesGetIndexTemplateRequest{Name: name}, nil)
		if IsStatus(err, http.StatusNotFound) {
			return fmt.Errorf("the cluster has no index template %s: start the collector with this configuration once (it installs the templates), then run this again", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
