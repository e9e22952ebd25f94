package recorder

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
)

func testClient(t testing.TB) *query.Client {
	t.Helper()
	prefix := estest.Prefix(t)
	c, err := query.New(query.Conn{URLs: []string{estest.URL(t)}, IndexPrefix: prefix + layout.DefaultPrefix, QuarantineIndex: prefix + layout.DefaultQuarantine, InstallTemplates: true})
	require.NoError(t, err)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return c
}

// fromConfig connects as auditctl and auditapi do with --config.
func fromConfig(t *testing.T, url, config string) (*query.Client, *Flags, error) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"--es-url", url, "--config", path}))
	c, err := f.Client()
	return c, f, err
}

// withTemplates lets c's recorder install the index templates, as the collector would.
func withTemplates(t *testing.T, c *query.Client) *query.Client {
	conn := c.Conn()
	conn.InstallTemplates = true
	c, err := query.New(conn)
	require.NoError(t, err)
	return c
}

func refresh(t testing.TB, c *query.Client) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.Conn().URLs[0]+"/"+c.Conn().IndexPrefix+"*/_refresh", nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
}

func load(t testing.TB, c *query.Client, events []audit.Event) []string {
	t.Helper()
	ids, err := RecordAll(context.Background(), c, events)
	require.NoError(t, err)
	refresh(t, c)
	return ids
}

func exportString(t *testing.T, c *query.Client, f query.Filter, format query.Format) (string, int64) {
	t.Helper()
	var b bytes.Buffer
	n, err := c.Export(context.Background(), f, format, &b, nil)
	require.NoError(t, err)
	return b.String(), n
}
