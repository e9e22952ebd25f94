package recorder

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter"
	"github.com/auditpipe/auditpipe/internal/query"
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
	client := func(t *testing.T, config string) (*query.Client, error) {
		c, _, err := fromConfig(t, url, config)
		return c, err
	}

	c, err := client(t, "processors:\n  audit:\n    catalog: {file: "+catalog+", mode: extend}\n"+exporter)
	require.NoError(t, err)
	c = withTemplates(t, c)
	load(t, c, []audit.Event{{Time: time.Now().Add(-time.Minute), Action: "invoice_paid", TeamID: "5", Actor: auditlog.System()}})
	out, n := exportString(t, c, query.Filter{Team: "5"}, query.CSV)
	require.Equal(t, int64(1), n)
	assert.Contains(t, out, ",invoice_paid,An invoice was paid,")
	assert.Equal(t, "A job was created", c.Catalog().Description(audit.ActionJobCreated), "extending the embedded one")

	c, err = client(t, exporter)
	require.NoError(t, err)
	assert.Empty(t, c.Catalog().Description("invoice_paid"), "no processor: the embedded catalog")

	_, err = client(t, "processors:\n  audit:\n    catalog: {file: "+filepath.Join(dir, "missing.yaml")+"}\n"+exporter)
	assert.ErrorContains(t, err, "missing.yaml")
}

// TestAnOperatorsActionIsStoredWithItsCatalogEntry: an action of the operator's catalog, recorded
// with the collector's configuration, is stored with its category, its description and
// action_known true, as the processor knows it. The configuration gives the exporter the
// processor's catalog with a YAML anchor, as README shows.
func TestAnOperatorsActionIsStoredWithItsCatalogEntry(t *testing.T) {
	url, prefix := estest.URL(t), estest.Prefix(t)
	catalog := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(catalog, []byte("version: 1\nactions:\n  - {name: invoice_paid, category: billing, description: An invoice was paid}\n"), 0o600))
	c, f, err := fromConfig(t, url, fmt.Sprintf("processors:\n  audit:\n    catalog: &catalog {file: %s}\nexporters:\n  auditelasticsearch:\n    endpoints: [%s]\n    index_prefix: %s%s\n    quarantine_index: %s%s\n    catalog: *catalog\n",
		catalog, url, prefix, layout.DefaultPrefix, prefix, layout.DefaultQuarantine))
	require.NoError(t, err)
	ecfg := auditelasticsearchexporter.NewFactory().CreateDefaultConfig().(*auditelasticsearchexporter.Config)
	require.NoError(t, CollectorSection(context.Background(), *f.Config, "exporters::auditelasticsearch", ecfg))
	assert.Equal(t, audit.CatalogConfig{File: catalog, Mode: audit.CatalogExtend}, ecfg.Catalog, "the anchor gives the exporter the processor's setting")
	c = withTemplates(t, c)
	pcfg, err := f.ProcessorConfig(context.Background())
	require.NoError(t, err)
	rec, err := New(context.Background(), c, pcfg)
	require.NoError(t, err)
	defer rec.Close()
	id, err := rec.Record(context.Background(), audit.Event{Action: "invoice_paid", TeamID: "5", Actor: auditlog.System()})
	require.NoError(t, err)
	refresh(t, c)
	doc, err := c.Show(context.Background(), "5", id)
	require.NoError(t, err)
	var d struct {
		Event struct {
			Category string `json:"category"`
		} `json:"event"`
		Audit struct {
			Known       bool   `json:"action_known"`
			Description string `json:"action_description"`
		} `json:"audit"`
	}
	require.NoError(t, json.Unmarshal(doc, &d))
	assert.Equal(t, "billing", d.Event.Category)
	assert.Equal(t, "An invoice was paid", d.Audit.Description)
	assert.True(t, d.Audit.Known)
}
