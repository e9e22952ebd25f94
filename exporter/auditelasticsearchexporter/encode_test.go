package auditelasticsearchexporter

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

// TestTheOperatorsCatalogDescribesStoredActions: with the operator's catalog given to the processor
// and the exporter alike (catalog), an action of that catalog is stored with its category, its
// description and action_known true; without it in the exporter, the document has no category.
func TestTheOperatorsCatalogDescribesStoredActions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(file, []byte("version: 1\nactions:\n  - {name: invoice_paid, category: billing, description: An invoice was paid}\n"), 0o600))
	setting := audit.CatalogConfig{File: file, Mode: audit.CatalogExtend}

	// The processor of the collector, with the operator's catalog.
	pf := auditprocessor.NewFactory()
	pcfg := pf.CreateDefaultConfig().(*auditprocessor.Config)
	pcfg.Catalog = setting
	sink := new(consumertest.LogsSink)
	p, err := pf.CreateLogs(context.Background(), processortest.NewNopSettings(pf.Type()), pcfg, sink)
	require.NoError(t, err)
	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetEventName("audit")
	lr.Body().SetStr(rawEvent(5, "invoice_paid", ""))
	require.NoError(t, p.ConsumeLogs(context.Background(), ld))

	stored := func(catalog audit.CatalogConfig) map[string]any {
		cfg := createDefaultConfig()
		cfg.Endpoints = []string{"http://127.0.0.1:9"}
		cfg.Catalog = catalog
		require.NoError(t, cfg.Validate())
		e, err := newExporter(exportertest.NewNopSettings(NewFactory().Type()), cfg)
		require.NoError(t, err)
		req := converted(t, e, sink.AllLogs()[0])
		require.Len(t, req.items, 1)
		require.Nil(t, req.items[0].q)
		var doc map[string]any
		require.NoError(t, json.Unmarshal(req.items[0].doc, &doc))
		return doc
	}
	doc := stored(setting)
	assert.Equal(t, "billing", doc["event"].(map[string]any)["category"])
	assert.Equal(t, "An invoice was paid", doc["audit"].(map[string]any)["action_description"])
	assert.Equal(t, true, doc["audit"].(map[string]any)["action_known"])

	doc = stored(audit.DefaultCatalogConfig())
	assert.NotContains(t, doc["event"], "category", "the embedded catalog does not know the action")
	assert.NotContains(t, doc["audit"], "action_description")
}

// TestABadCatalogFailsStartUpNamingTheKey: the exporter's catalog setting is checked like the
// processor's.
func TestABadCatalogFailsStartUpNamingTheKey(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.Endpoints = []string{"http://127.0.0.1:9"}
	cfg.Catalog = audit.CatalogConfig{File: filepath.Join(t.TempDir(), "missing.yaml"), Mode: "merge"}
	err := cfg.Validate()
	assert.ErrorContains(t, err, "catalog.file:")
	assert.ErrorContains(t, err, `catalog.mode: "merge"`)
}
