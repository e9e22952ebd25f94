package auditprocessor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/processor/auditprocessor/internal/metadata"
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
	require.Equal(t, createDefaultConfig(), def)
	require.NoError(t, confmap.Validate(def))

	strict := loadConfig(t, "strict")
	require.Equal(t, NonAuditDrop, strict.NonAudit)
	require.Equal(t, UnknownReject, strict.UnknownActions)
	require.Equal(t, []Rule{{Attribute: "log.type", Value: "audit"}, {ScopeName: "github.com/acme/audit"}}, strict.Rules)
	require.NoError(t, confmap.Validate(strict))
}

func TestConfigErrorsNameTheirKey(t *testing.T) {
	err := confmap.Validate(loadConfig(t, "bad"))
	require.Error(t, err)
	for _, want := range []string{
		`non_audit: "keep" is not one of`,
		`unknown_actions: "maybe" is not one of`,
		`rules[0].value: required with attribute "log.type"`,
		`rules[1].value: only used with attribute`,
		`rules[2]: set attribute (with value) or scope_name`,
		`catalog.file: required when catalog.mode is replace`,
	} {
		require.Contains(t, err.Error(), want)
	}
}

func TestConfigCatalogFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("version: 1\nactions: [{name: report_viewed, category: report, description: A report was viewed}]\n"), 0o600))
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("version: 1\nactions: [{name: Report}]\n"), 0o600))

	cfg := createDefaultConfig()
	cfg.Catalog.File = bad
	err := cfg.Validate()
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "catalog.file: "+bad), err.Error())

	cfg.Catalog.File = good
	require.NoError(t, cfg.Validate())
	c, err := cfg.LoadCatalog()
	require.NoError(t, err)
	require.True(t, c.Known("report_viewed"))
	require.True(t, c.Known("job_created"), "extend keeps the embedded actions")

	cfg.Catalog.Mode = audit.CatalogReplace
	c, err = cfg.LoadCatalog()
	require.NoError(t, err)
	require.True(t, c.Known("report_viewed"))
	require.False(t, c.Known("job_created"), "replace drops the embedded actions")
}
