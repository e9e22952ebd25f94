package recorder

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"

	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

// Env returns the environment variable k, or def when it is unset or empty.
func Env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Flags are the connection flags auditctl and auditapi share: how to reach Elasticsearch (the names
// config.example.yaml uses for the same settings) and, with --config, the collector's configuration
// to take the index names and the layout from, so both read and write where the collector does.
type Flags struct {
	url, user, password, apiKey, ca *string
	insecure                        *bool
	prefix, quarantine              *string
	Config                          *string // the collector's configuration file, if any
	exporterName, processorName     *string
}

// RegisterFlags declares the connection flags on fs, defaulting to the environment.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	return &Flags{
		url:           fs.String("es-url", Env("ES_URL", "http://127.0.0.1:9200"), "Elasticsearch URLs, comma-separated (ES_URL)"),
		user:          fs.String("user", Env("ES_USER", ""), "basic auth user (ES_USER)"),
		password:      fs.String("password", Env("ES_PASSWORD", ""), "basic auth password (ES_PASSWORD)"),
		apiKey:        fs.String("api-key", Env("ES_API_KEY", ""), "API key, base64 id:key (ES_API_KEY)"),
		ca:            fs.String("ca-file", Env("ES_CA_FILE", ""), "PEM file of the CA that signed the cluster's certificate (ES_CA_FILE)"),
		insecure:      fs.Bool("insecure-skip-verify", false, "do not verify the cluster's TLS certificate"),
		prefix:        fs.String("index-prefix", Env("AUDIT_INDEX_PREFIX", layout.DefaultPrefix), "index prefix of the audit indices (AUDIT_INDEX_PREFIX)"),
		quarantine:    fs.String("quarantine-index", Env("AUDIT_QUARANTINE_INDEX", layout.DefaultQuarantine), "quarantine index (AUDIT_QUARANTINE_INDEX)"),
		Config:        fs.String("config", Env("AUDIT_COLLECTOR_CONFIG", ""), "the collector's configuration file: index names, layout and audit processor settings are read from it (AUDIT_COLLECTOR_CONFIG)"),
		exporterName:  fs.String("exporter", "auditelasticsearch", "the exporter's name in --config"),
		processorName: fs.String("processor", "audit", "the processor's name in --config"),
	}
}

// Client connects with the parsed flags.
func (f *Flags) Client() (*query.Client, error) {
	c := query.Conn{
		URLs: strings.Split(*f.url, ","), User: *f.user, Password: *f.password, APIKey: *f.apiKey,
		CAFile: *f.ca, InsecureSkipVerify: *f.insecure, IndexPrefix: *f.prefix, QuarantineIndex: *f.quarantine,
	}
	if *f.Config != "" {
		ecfg := auditelasticsearchexporter.NewFactory().CreateDefaultConfig().(*auditelasticsearchexporter.Config)
		if err := CollectorSection(context.Background(), *f.Config, "exporters::"+*f.exporterName, ecfg); err != nil {
			return nil, err
		}
		c.IndexPrefix, c.QuarantineIndex, c.Layout = ecfg.IndexPrefix, ecfg.QuarantineIndex, &ecfg.Layout
		// The processor's catalog, for descriptions; a configuration without the processor (the
		// tools need only the exporter's names) keeps the embedded one.
		pcfg, err := f.ProcessorConfig(context.Background())
		switch {
		case err == nil:
			if c.Catalog, err = pcfg.LoadCatalog(); err != nil {
				return nil, err
			}
		case !errors.Is(err, errNoSection):
			return nil, err
		}
	}
	return query.New(c)
}

// errNoSection: the collector's configuration has no such component.
var errNoSection = errors.New("no such section")

// ProcessorConfig returns the audit processor's settings from --config, or nil (the defaults)
// without one.
func (f *Flags) ProcessorConfig(ctx context.Context) (*auditprocessor.Config, error) {
	if *f.Config == "" {
		return nil, nil
	}
	pcfg := auditprocessor.NewFactory().CreateDefaultConfig().(*auditprocessor.Config)
	if err := CollectorSection(ctx, *f.Config, "processors::"+*f.processorName, pcfg); err != nil {
		return nil, err
	}
	return pcfg, nil
}

// CollectorSection reads one component's settings (key, such as "processors::audit") from a
// collector configuration file into cfg, with ${env:…} references resolved as the collector resolves
// them, and validates them: a replay normalizes, and the tools record, exactly as the collector does.
func CollectorSection(ctx context.Context, path, key string, cfg interface{ Validate() error }) error {
	resolver, err := confmap.NewResolver(confmap.ResolverSettings{
		URIs:              []string{"file:" + path},
		ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory()},
		DefaultScheme:     "env",
	})
	if err != nil {
		return err
	}
	conf, err := resolver.Resolve(ctx)
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	name := strings.ReplaceAll(key, "::", ": ")
	if !conf.IsSet(key) {
		return fmt.Errorf("--config %s: no %s: section: %w", path, name, errNoSection)
	}
	sub, err := conf.Sub(key)
	if err != nil {
		return err
	}
	if err := sub.Unmarshal(cfg); err != nil {
		return fmt.Errorf("--config %s: %s: %w", path, name, err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("--config %s: %s: %w", path, name, err)
	}
	return nil
}
