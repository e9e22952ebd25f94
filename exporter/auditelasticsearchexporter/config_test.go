package auditelasticsearchexporter

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter/internal/metadata"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

func loadConfig(t *testing.T, name string) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig()
	id := component.NewID(metadata.Type)
	if name != "" {
		id = component.NewIDWithName(metadata.Type, name)
	}
	sub, err := cm.Sub(id.String())
	require.NoError(t, err)
	require.NoError(t, sub.Unmarshal(cfg))
	return cfg.(*Config)
}

func TestLoadConfig(t *testing.T) {
	def := loadConfig(t, "")
	require.NoError(t, confmap.Validate(def))
	assert.Equal(t, "audit-", def.IndexPrefix)
	assert.Equal(t, "audit-quarantine", def.QuarantineIndex)
	assert.True(t, def.Template.Install)
	assert.True(t, def.QueueConfig.HasValue())
	assert.True(t, def.QueueConfig.Get().BlockOnOverflow)

	full := loadConfig(t, "full")
	require.NoError(t, confmap.Validate(full))
	assert.Equal(t, []string{"https://es-1:9200", "https://es-2:9200"}, full.endpoints())
	assert.Equal(t, "c2VjcmV0", string(full.APIKey))
	assert.Equal(t, TemplateConfig{Install: false, Shards: 3, Replicas: 2, RefreshInterval: "5s", Codec: "default", Sort: false, ILMPolicy: "audit-365d"}, full.Template)
	assert.Equal(t, ItemRetryConfig{MaxAttempts: 3, InitialInterval: 50 * time.Millisecond, MaxInterval: time.Second}, full.ItemRetry)
	require.NotNil(t, full.QueueConfig.Get().StorageID)
	assert.Equal(t, "file_storage", full.QueueConfig.Get().StorageID.String())
	lay, err := full.layout()
	require.NoError(t, err)
	assert.Contains(t, string(full.templates(lay)["tenant-audit-events"]), `"lifecycle":{"name":"audit-365d"}`)
	assert.NotContains(t, string(full.templates(lay)["tenant-audit-events"]), document.EventIndexSort)
	assert.Equal(t, layout.Year, full.Layout.Period)
	assert.Equal(t, "tenant-audit-dedicated.191796.legal.2027", lay.Index("191796", time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)))
	assert.Equal(t, "tenant-audit-shared.standard.2026", lay.Index("191796", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)))
}

func TestConfigErrorsNameTheirKey(t *testing.T) {
	err := confmap.Validate(loadConfig(t, "bad"))
	require.Error(t, err)
	for _, want := range []string{
		`endpoints[0]: "es-1:9200" is not an http(s) URL`,
		`user: user and password go together`,
		`index_prefix: "Audit-" must be a non-empty lowercase index name prefix`,
		`quarantine_index: "audit,all" must not contain`,
		`template.shards: 0, must be at least 1`,
		`template.replicas: -1, must not be negative`,
		`template.refresh_interval: "soon" is not a duration`,
		`template.codec: "zstd", use best_compression or default`,
		`max_document_bytes: 10, must be at least 1024`,
		`item_retry.max_attempts: 0, must be at least 2`,
		`layout.period: "weekly"`,
		`layout.teams[0]: tier: "private"`,
		`layout.retention.default: "forever"`,
		`catalog.file: required when catalog.mode is replace`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	noEndpoint := createDefaultConfig()
	assert.ErrorContains(t, noEndpoint.Validate(), "endpoints: at least one Elasticsearch URL is required")
}

func TestTemplatesMatchTheirIndices(t *testing.T) {
	cfg := createDefaultConfig()
	lay, err := cfg.layout()
	require.NoError(t, err)
	tpl := cfg.templates(lay)
	require.Len(t, tpl, 2)
	assert.Contains(t, string(tpl["audit-events"]), `"_routing":{"required":true}`)
	assert.Contains(t, string(tpl["audit-events"]), `"index_patterns":["audit-*"]`)
	assert.Contains(t, string(tpl["audit-quarantine-index"]), `"index_patterns":["audit-quarantine"]`)
	assert.Contains(t, string(tpl["audit-events"]), `"codec":"best_compression",`+document.EventIndexSort)
	assert.NotContains(t, string(tpl["audit-quarantine-index"]), document.EventIndexSort)
}

func TestDefaultsKeepData(t *testing.T) {
	cfg := createDefaultConfig()
	assert.Zero(t, cfg.BackOffConfig.MaxElapsedTime, "exporterhelper must never give up on a batch")
	assert.True(t, cfg.BackOffConfig.Enabled)
	cfg.Endpoints = []string{"http://127.0.0.1:9200"}
	require.NoError(t, cfg.Validate())
	cfg.ItemRetry.MaxAttempts = 1
	assert.ErrorContains(t, cfg.Validate(), "item_retry.max_attempts")
}
