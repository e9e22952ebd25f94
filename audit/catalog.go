package audit

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"go.yaml.in/yaml/v3"
)

//go:embed catalog.yaml
var defaultCatalogYAML []byte

// CatalogVersion is the only catalog file format version this package reads.
const CatalogVersion = 1

// ActionInfo describes one catalog action.
type ActionInfo struct {
	Name        string `yaml:"name"`
	Category    string `yaml:"category"`
	Description string `yaml:"description"`
}

// Setting is one team setting tracked by the team_settings_changed action.
type Setting struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
}

// Catalog is the set of known actions and tracked team settings. It is immutable once built, so one
// instance is safely shared by every goroutine of the processor, exporter and CLI.
type Catalog struct {
	actions  map[string]ActionInfo
	order    []string
	settings []Setting
}

type catalogFile struct {
	Version      int          `yaml:"version"`
	Actions      []ActionInfo `yaml:"actions"`
	TeamSettings []Setting    `yaml:"team_settings"`
}

var defaultCatalog = func() *Catalog {
	c, err := ParseCatalog(bytes.NewReader(defaultCatalogYAML))
	if err != nil {
		panic("audit: embedded catalog.yaml is invalid: " + err.Error())
	}
	return c
}()

// DefaultCatalog returns the catalog embedded in this package: every action of the product's audit-log
// specification.
func DefaultCatalog() *Catalog { return defaultCatalog }

// DefaultCatalogYAML returns the embedded catalog file, a starting point for an operator's own.
func DefaultCatalogYAML() []byte { return bytes.Clone(defaultCatalogYAML) }

// ParseCatalog reads a catalog file. Unknown keys, a wrong version, malformed or duplicate names and
// empty descriptions are errors that say where they are.
func ParseCatalog(r io.Reader) (*Catalog, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var f catalogFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("catalog: file is empty")
		}
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if f.Version != CatalogVersion {
		return nil, fmt.Errorf("catalog: version: got %d, want %d", f.Version, CatalogVersion)
	}
	if len(f.Actions) == 0 {
		return nil, errors.New("catalog: actions: the list is empty")
	}
	c := &Catalog{actions: make(map[string]ActionInfo, len(f.Actions))}
	for i, a := range f.Actions {
		if err := CheckActionName(a.Name); err != nil {
			return nil, fmt.Errorf("catalog: actions[%d].name: %w", i, err)
		}
		if a.Description == "" {
			return nil, fmt.Errorf("catalog: actions[%d] (%s): description is empty", i, a.Name)
		}
		if _, dup := c.actions[a.Name]; dup {
			return nil, fmt.Errorf("catalog: actions[%d]: %q is listed twice", i, a.Name)
		}
		c.actions[a.Name] = a
		c.order = append(c.order, a.Name)
	}
	seen := map[string]bool{}
	for i, s := range f.TeamSettings {
		if err := CheckActionName(s.Name); err != nil {
			return nil, fmt.Errorf("catalog: team_settings[%d].name: %w", i, err)
		}
		if s.Description == "" {
			return nil, fmt.Errorf("catalog: team_settings[%d] (%s): description is empty", i, s.Name)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("catalog: team_settings[%d]: %q is listed twice", i, s.Name)
		}
		seen[s.Name] = true
		c.settings = append(c.settings, s)
	}
	return c, nil
}

// LoadCatalogFile reads a catalog from a file; errors name the file.
func LoadCatalogFile(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseCatalog(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Extend returns a catalog with the actions and settings of c, then those of add; an entry of add
// replaces the one of c with the same name (so an operator can reword a description).
func (c *Catalog) Extend(add *Catalog) *Catalog {
	out := &Catalog{actions: make(map[string]ActionInfo, len(c.actions)+len(add.actions))}
	for _, src := range []*Catalog{c, add} {
		for _, name := range src.order {
			if _, ok := out.actions[name]; !ok {
				out.order = append(out.order, name)
			}
			out.actions[name] = src.actions[name]
		}
	}
	idx := map[string]int{}
	for _, src := range []*Catalog{c, add} {
		for _, s := range src.settings {
			if i, ok := idx[s.Name]; ok {
				out.settings[i] = s
				continue
			}
			idx[s.Name] = len(out.settings)
			out.settings = append(out.settings, s)
		}
	}
	return out
}

// Lookup returns the action's catalog entry.
func (c *Catalog) Lookup(action string) (ActionInfo, bool) {
	a, ok := c.actions[action]
	return a, ok
}

// Known reports whether the action is in the catalog.
func (c *Catalog) Known(action string) bool {
	_, ok := c.actions[action]
	return ok
}

// Description returns the action's description, or "" for an action the catalog does not know.
func (c *Catalog) Description(action string) string { return c.actions[action].Description }

// Actions returns every action in catalog order.
func (c *Catalog) Actions() []ActionInfo {
	out := make([]ActionInfo, len(c.order))
	for i, n := range c.order {
		out[i] = c.actions[n]
	}
	return out
}

// ActionNames returns the action names, sorted.
func (c *Catalog) ActionNames() []string {
	out := append([]string(nil), c.order...)
	sort.Strings(out)
	return out
}

// TeamSettings returns the settings tracked by team_settings_changed.
func (c *Catalog) TeamSettings() []Setting { return append([]Setting(nil), c.settings...) }

// Values of CatalogConfig.Mode.
const (
	CatalogExtend  = "extend"
	CatalogReplace = "replace"
)

// CatalogConfig is the collector's catalog setting (key catalog), the same in the audit processor
// and the Elasticsearch exporter: an operator's catalog file (the format of catalog.yaml) that
// extends or replaces the embedded catalog.
type CatalogConfig struct {
	File string `mapstructure:"file"`
	// Mode is "extend" (default): the file's actions are added to the embedded ones, or "replace".
	Mode string `mapstructure:"mode"`
}

// DefaultCatalogConfig is the embedded catalog, extended by nothing.
func DefaultCatalogConfig() CatalogConfig { return CatalogConfig{Mode: CatalogExtend} }

// Check reports the setting's problems, each naming its key (catalog.mode, catalog.file). It is not
// named Validate so that the collector does not report them a second time for the component.
func (c CatalogConfig) Check() error {
	var errs []error
	switch c.Mode {
	case CatalogExtend, CatalogReplace:
	default:
		errs = append(errs, fmt.Errorf("catalog.mode: %q is not one of %q, %q", c.Mode, CatalogExtend, CatalogReplace))
	}
	if c.File != "" {
		if _, err := LoadCatalogFile(c.File); err != nil {
			errs = append(errs, fmt.Errorf("catalog.file: %w", err))
		}
	} else if c.Mode == CatalogReplace {
		errs = append(errs, errors.New("catalog.file: required when catalog.mode is replace"))
	}
	return errors.Join(errs...)
}

// Load returns the catalog the setting describes.
func (c CatalogConfig) Load() (*Catalog, error) {
	if c.File == "" {
		return DefaultCatalog(), nil
	}
	file, err := LoadCatalogFile(c.File)
	if err != nil {
		return nil, fmt.Errorf("catalog.file: %w", err)
	}
	if c.Mode == CatalogReplace {
		return file, nil
	}
	return DefaultCatalog().Extend(file), nil
}
