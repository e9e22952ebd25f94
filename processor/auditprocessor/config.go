package auditprocessor

import (
	"errors"
	"fmt"

	"github.com/auditpipe/auditpipe/audit"
)

// Values of Config.NonAudit.
const (
	NonAuditPass = "pass"
	NonAuditDrop = "drop"
)

// Values of Config.UnknownActions.
const (
	UnknownAccept = "accept"
	UnknownReject = "reject"
)

// Config is the audit processor's configuration.
type Config struct {
	// NonAudit says what happens to records that are not audit records: "pass" (default) leaves them
	// untouched, "drop" removes them, for a pipeline dedicated to audit.
	NonAudit string `mapstructure:"non_audit"`
	// UnknownActions says what happens to a well-formed action the catalog does not know: "accept"
	// (default) keeps the event valid and marks it audit.action_known=false; "reject" makes it invalid.
	UnknownActions string `mapstructure:"unknown_actions"`
	// Rules are extra ways, besides the event name and the audit.action attribute, to recognize an audit
	// record. A record matching any rule is an audit record.
	Rules []Rule `mapstructure:"rules"`
	// Catalog optionally extends or replaces the embedded action catalog with an operator's file.
	// Give the exporter the same setting: it stores each action's category and description.
	Catalog audit.CatalogConfig `mapstructure:"catalog"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// Rule recognizes audit records by an attribute value or by the instrumentation scope name. Exactly one
// of Attribute and ScopeName is set.
type Rule struct {
	// Attribute is a log record attribute key, or a resource attribute key when the record lacks it;
	// the record matches when the attribute's string value equals Value.
	Attribute string `mapstructure:"attribute"`
	Value     string `mapstructure:"value"`
	// ScopeName matches records whose instrumentation scope has exactly this name.
	ScopeName string `mapstructure:"scope_name"`
}

func createDefaultConfig() *Config {
	return &Config{
		NonAudit:       NonAuditPass,
		UnknownActions: UnknownAccept,
		Catalog:        audit.DefaultCatalogConfig(),
	}
}

// Validate checks the configuration; each error names its key.
func (c *Config) Validate() error {
	var errs []error
	switch c.NonAudit {
	case NonAuditPass, NonAuditDrop:
	default:
		errs = append(errs, fmt.Errorf("non_audit: %q is not one of %q, %q", c.NonAudit, NonAuditPass, NonAuditDrop))
	}
	switch c.UnknownActions {
	case UnknownAccept, UnknownReject:
	default:
		errs = append(errs, fmt.Errorf("unknown_actions: %q is not one of %q, %q", c.UnknownActions, UnknownAccept, UnknownReject))
	}
	for i, r := range c.Rules {
		switch {
		case r.Attribute != "" && r.ScopeName != "":
			errs = append(errs, fmt.Errorf("rules[%d]: set either attribute or scope_name, not both", i))
		case r.Attribute != "" && r.Value == "":
			errs = append(errs, fmt.Errorf("rules[%d].value: required with attribute %q", i, r.Attribute))
		case r.Attribute == "" && r.ScopeName == "":
			errs = append(errs, fmt.Errorf("rules[%d]: set attribute (with value) or scope_name", i))
		case r.ScopeName != "" && r.Value != "":
			errs = append(errs, fmt.Errorf("rules[%d].value: only used with attribute", i))
		}
	}
	if err := c.Catalog.Check(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// LoadCatalog returns the catalog the processor validates against (the audit log API serves it too).
func (c *Config) LoadCatalog() (*audit.Catalog, error) { return c.Catalog.Load() }
