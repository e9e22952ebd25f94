package query

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
)

// TestTheCollectorsCatalogDescribesExports: with --config, a CSV export describes an action of the
// operator's catalog as the collector knows it; a configuration without the processor keeps the
// embedded catalog, and a processor whose catalog cannot be read is an error.
func TestTheCollectorsCatalogDescribesExports(t *testing.T) {
	url, prefix := estest.URL(t), estest.Prefix(t)
	dir := t.TempDir()
	catalog := filepath.Join(dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(catalog, []byte("version: 1\nactions:\n  - {name: invoice_paid, category: billing, description: An invoice was paid}\n"), 0o600))
	exporter := fmt.Sprintf("exporters:\n  auditelasticsearch:\n    endpoints: [%s]\n    index_prefix: %s%s\n    quarantine_index: %s%s\n",
		url, prefix, layout.DefaultPrefix, prefix, layout.DefaultQuarantine)
	client := func(t *testing.T, config string) (*Client, error) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		require.NoError(t, os.WriteFile(path, []byte(config), 0o600))
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f := RegisterFlags(fs)
		require.NoError(t, fs.Parse([]string{"--es-url", url, "--config", path}))
		return f.Client()
	}

	c, err := client(t, "processors:\n  audit:\n    catalog: {file: "+catalog+", mode: extend}\n"+exporter)
	require.NoError(t, err)
	c.conn.InstallTemplates = true
	load(t, c, []audit.Event{{Time: time.Now().Add(-time.Minute), Action: "invoice_paid", TeamID: "5", Actor: auditlog.System()}})
	out, n := exportString(t, c, Filter{Team: "5"}, CSV)
	require.Equal(t, int64(1), n)
	assert.Contains(t, out, ",invoice_paid,An invoice was paid,")
	assert.Equal(t, "A job was created", c.Catalog().Description(audit.ActionJobCreated), "extending the embedded one")

	c, err = client(t, exporter)
	require.NoError(t, err)
	assert.Empty(t, c.Catalog().Description("invoice_paid"), "no processor: the embedded catalog")

	_, err = client(t, "processors:\n  audit:\n    catalog: {file: "+filepath.Join(dir, "missing.yaml")+"}\n"+exporter)
	assert.ErrorContains(t, err, "missing.yaml")
}
