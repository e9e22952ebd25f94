package auditelasticsearchexporter

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// Config is the exporter's configuration.
type Config struct {
	// ClientConfig carries the HTTP transport settings: tls, timeout, headers, compression, proxy. Its
	// endpoint is used when endpoints is empty.
	confighttp.ClientConfig `mapstructure:",squash"`
	// Endpoints are Elasticsearch URLs, used round-robin.
	Endpoints []string `mapstructure:"endpoints"`
	// User and Password enable basic authentication; APIKey is the base64 "id:key" of an API key.
	User     string              `mapstructure:"user"`
	Password configopaque.String `mapstructure:"password"`
	APIKey   configopaque.String `mapstructure:"api_key"`

	// IndexPrefix starts the name of every index the exporter writes: audit-shared.standard.2026-11.
	IndexPrefix string `mapstructure:"index_prefix"`
	// QuarantineIndex receives invalid events and events Elasticsearch refuses, with the reasons.
	QuarantineIndex string `mapstructure:"quarantine_index"`
	// Layout maps each team's events to their partitions: tiers, periods, retention (internal/shared/layout).
	Layout layout.Config `mapstructure:"layout"`
	// Catalog is the action catalog that says whether an action is known (audit.action_known, where
	// the record does not say): the same setting as the audit processor's catalog, and to be given the
	// same value.
	Catalog audit.CatalogConfig `mapstructure:"catalog"`
	// Template controls the index templates the exporter installs at start.
	Template TemplateConfig `mapstructure:"template"`

	// MaxDocumentBytes bounds one encoded document; a larger one is quarantined (truncated) instead.
	MaxDocumentBytes int `mapstructure:"max_document_bytes"`
	// Flush bounds one bulk request; a batch larger than this is sent as several requests.
	Flush FlushConfig `mapstructure:"flush"`
	// ItemRetry retries, inside one export, the documents a condition of the cluster kept from being
	// stored (429, 5xx, blocks, closed or missing indices, the shard limit); see bulk.go.
	ItemRetry ItemRetryConfig `mapstructure:"item_retry"`

	// QueueConfig is exporterhelper's sending queue (with storage: a persistent queue) and batching.
	QueueConfig configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	// BackOffConfig is exporterhelper's retry of failed exports (whole request failures, and items
	// still failing after item_retry). Its max_elapsed_time defaults to 0: never give up.
	BackOffConfig configretry.BackOffConfig `mapstructure:"retry_on_failure"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// TemplateConfig configures the composable index templates.
type TemplateConfig struct {
	// Install the templates at start (idempotent, versioned). Turn off where templates are managed
	// elsewhere.
	Install         bool   `mapstructure:"install"`
	Shards          int    `mapstructure:"shards"`
	Replicas        int    `mapstructure:"replicas"`
	RefreshInterval string `mapstructure:"refresh_interval"`
	// Codec is index.codec of new indices: best_compression (zstd in blocks of up to 2,048
	// documents) or default (LZ4 in small blocks).
	Codec string `mapstructure:"codec"`
	// Sort lays new partitions out on disk by team, then newest first (document.EventIndexSort), as
	// Elasticsearch's logsdb mode does by host. With best_compression the pair stores an event in
	// under half the bytes of LZ4 unsorted, and a team's page still comes from a few blocks; sorting
	// costs the node about an eighth more indexing CPU (BENCHMARKS.md).
	Sort bool `mapstructure:"sort"`
	// ILMPolicy, when set, names an existing ILM policy for the team indices (index.lifecycle.name).
	ILMPolicy string `mapstructure:"ilm_policy"`
}

// FlushConfig bounds bulk requests.
type FlushConfig struct {
	Bytes int `mapstructure:"bytes"`
}

// ItemRetryConfig is the bounded exponential backoff, with jitter, of retried bulk items.
type ItemRetryConfig struct {
	MaxAttempts     int           `mapstructure:"max_attempts"`
	InitialInterval time.Duration `mapstructure:"initial_interval"`
	MaxInterval     time.Duration `mapstructure:"max_interval"`
}

func createDefaultConfig() *Config {
	qc := exporterhelper.NewDefaultQueueConfig()
	qc.BlockOnOverflow = true // push back on the receiver rather than refuse data
	http := confighttp.NewDefaultClientConfig()
	http.Timeout = 90 * time.Second
	return &Config{
		ClientConfig:     http,
		IndexPrefix:      layout.DefaultPrefix,
		QuarantineIndex:  layout.DefaultQuarantine,
		Layout:           layout.NewDefaultConfig(),
		Catalog:          audit.DefaultCatalogConfig(),
		Template:         TemplateConfig{Install: true, Shards: 1, Replicas: 1, RefreshInterval: "1s", Codec: "best_compression", Sort: true},
		MaxDocumentBytes: 1 << 20,
		Flush:            FlushConfig{Bytes: 10 << 20},
		ItemRetry:        ItemRetryConfig{MaxAttempts: 5, InitialInterval: 100 * time.Millisecond, MaxInterval: 5 * time.Second},
		QueueConfig:      configoptional.Some(qc),
		BackOffConfig:    defaultBackOff(),
	}
}

// defaultBackOff retries a failed export until it succeeds: an audit record is never given up on
// because the cluster was down for longer than some limit. The persistent queue keeps it meanwhile.
func defaultBackOff() configretry.BackOffConfig {
	b := configretry.NewDefaultBackOffConfig()
	b.MaxElapsedTime = 0
	return b
}

// layout validates and compiles the index names and the layout.
func (c *Config) layout() (*layout.Layout, error) {
	return layout.New(c.IndexPrefix, c.QuarantineIndex, c.Layout)
}

// endpoints returns the configured URLs: endpoints, else endpoint.
func (c *Config) endpoints() []string {
	if len(c.Endpoints) > 0 {
		return c.Endpoints
	}
	if c.Endpoint != "" {
		return []string{c.Endpoint}
	}
	return nil
}

// Validate checks the configuration; each error names its key.
func (c *Config) Validate() error {
	var errs []error
	eps := c.endpoints()
	if len(eps) == 0 {
		errs = append(errs, errors.New("endpoints: at least one Elasticsearch URL is required"))
	}
	for i, e := range eps {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("endpoints[%d]: %q is not an http(s) URL", i, e))
		}
	}
	if c.APIKey != "" && (c.User != "" || c.Password != "") {
		errs = append(errs, errors.New("api_key: set either api_key or user/password, not both"))
	}
	if (c.User == "") != (c.Password == "") {
		errs = append(errs, errors.New("user: user and password go together"))
	}
	if _, err := c.layout(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Catalog.Check(); err != nil {
		errs = append(errs, err)
	}
	if c.Template.Shards < 1 {
		errs = append(errs, fmt.Errorf("template.shards: %d, must be at least 1", c.Template.Shards))
	}
	if c.Template.Replicas < 0 {
		errs = append(errs, fmt.Errorf("template.replicas: %d, must not be negative", c.Template.Replicas))
	}
	if c.Template.Codec != "best_compression" && c.Template.Codec != "default" {
		errs = append(errs, fmt.Errorf("template.codec: %q, use best_compression or default", c.Template.Codec))
	}
	if c.Template.RefreshInterval != "-1" {
		if _, err := time.ParseDuration(c.Template.RefreshInterval); err != nil {
			errs = append(errs, fmt.Errorf("template.refresh_interval: %q is not a duration like 1s or -1", c.Template.RefreshInterval))
		}
	}
	if c.MaxDocumentBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_document_bytes: %d, must be at least 1024", c.MaxDocumentBytes))
	}
	if c.Flush.Bytes < c.MaxDocumentBytes {
		errs = append(errs, fmt.Errorf("flush.bytes: %d, must be at least max_document_bytes (%d)", c.Flush.Bytes, c.MaxDocumentBytes))
	}
	if c.ItemRetry.MaxAttempts < 2 {
		errs = append(errs, fmt.Errorf("item_retry.max_attempts: %d, must be at least 2 (one retry inside an export)", c.ItemRetry.MaxAttempts))
	}
	if c.ItemRetry.InitialInterval <= 0 || c.ItemRetry.MaxInterval < c.ItemRetry.InitialInterval {
		errs = append(errs, errors.New("item_retry: initial_interval must be positive and max_interval at least initial_interval"))
	}
	return errors.Join(errs...)
}
