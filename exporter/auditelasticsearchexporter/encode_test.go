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

// TestTheOperatorsCatalogSaysWhetherAnActionIsKnown: with the operator's catalog given to the
// processor and the exporter alike (catalog), an action of that catalog is stored with action_known
// true; a record that does not say is judged by the exporter's catalog. The category and the
// description are not stored: readers take them from the catalog (document.Expand).
func TestTheOperatorsCatalogSaysWhetherAnActionIsKnown(t *testing.T) {
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
	assert.Equal(t, true, doc["audit"].(map[string]any)["action_known"])
	// The category and the description are the catalog's, read with it (document.Expand), not stored.
	assert.NotContains(t, doc["event"], "category")
	assert.NotContains(t, doc["audit"], "action_description")

	// A record that does not say whether its action is known: the exporter's catalog says.
	sink.AllLogs()[0].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes().Remove(audit.AttrKnown)
	doc = stored(audit.DefaultCatalogConfig())
	assert.Equal(t, false, doc["audit"].(map[string]any)["action_known"], "the embedded catalog does not know the action")
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
