package auditelasticsearchexporter

// The store stage: installing the index templates of internal/document's mappings.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// templates returns the two index templates: one for the partitions (prefix*) and one, of higher
// priority, for the quarantine index, which the partitions' pattern may also match.
func (c *Config) templates(lay *layout.Layout) map[string][]byte {
	settings := fmt.Sprintf(`{"number_of_shards":%d,"number_of_replicas":%d,"refresh_interval":%q,"codec":%q`,
		c.Template.Shards, c.Template.Replicas, c.Template.RefreshInterval, c.Template.Codec)
	teamSettings := settings
	if c.Template.Sort {
		teamSettings += "," + document.EventIndexSort
	}
	if c.Template.ILMPolicy != "" {
		teamSettings += fmt.Sprintf(`,"lifecycle":{"name":%q}`, c.Template.ILMPolicy)
	}
	build := func(pattern string, priority int, settings, mappings string) []byte {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s|%d|%s|%s", pattern, priority, settings, mappings))
		// The hash in _meta tells a changed template from the installed one without comparing JSON.
		return fmt.Appendf(nil, `{"index_patterns":[%q],"priority":%d,"version":%d,"_meta":{"managed_by":"auditpipe","hash":%q},"template":{"settings":{"index":%s},"mappings":%s}}`,
			pattern, priority, document.TemplateVersion, hex.EncodeToString(sum[:8]), settings+"}", mappings)
	}
	events, quarantine := lay.TemplateNames()
	return map[string][]byte{
		events:     build(lay.TemplatePattern(), 200, teamSettings, document.EventMappings),
		quarantine: build(c.QuarantineIndex, 300, settings, document.QuarantineMappings),
	}
}

// ensureTemplates installs each template unless the cluster already has it at the same version and
// hash. It reports the names it (re)installed.
func ensureTemplates(ctx context.Context, es *elasticsearch.Client, templates map[string][]byte) ([]string, error) {
	var installed []string
	for name, body := range templates {
		var want struct {
			Version int `json:"version"`
			Meta    struct {
				Hash string `json:"hash"`
			} `json:"_meta"`
		}
		if err := json.Unmarshal(body, &want); err != nil {
			return installed, err
		}
		res, err := es.Indices.GetIndexTemplate(es.Indices.GetIndexTemplate.WithContext(ctx), es.Indices.GetIndexTemplate.WithName(name))
		if err != nil {
			return installed, fmt.Errorf("reading index template %s: %w", name, err)
		}
		var got struct {
			IndexTemplates []struct {
				IndexTemplate struct {
					Version int `json:"version"`
					Meta    struct {
						Hash string `json:"hash"`
					} `json:"_meta"`
				} `json:"index_template"`
			} `json:"index_templates"`
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		switch {
		case res.StatusCode == http.StatusNotFound:
		case res.IsError():
			return installed, fmt.Errorf("reading index template %s: %s", name, b)
		default:
			if err := json.Unmarshal(b, &got); err != nil {
				return installed, fmt.Errorf("reading index template %s: %w", name, err)
			}
			if len(got.IndexTemplates) == 1 && got.IndexTemplates[0].IndexTemplate.Version == want.Version &&
				got.IndexTemplates[0].IndexTemplate.Meta.Hash == want.Meta.Hash {
				continue
			}
		}
		res, err = es.Indices.PutIndexTemplate(name, bytes.NewReader(body), es.Indices.PutIndexTemplate.WithContext(ctx))
		if err != nil {
			return installed, fmt.Errorf("installing index template %s: %w", name, err)
		}
		b, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if res.IsError() {
			return installed, fmt.Errorf("installing index template %s: %s", name, b)
		}
		installed = append(installed, name)
	}
	return installed, nil
}

// addMissingFields puts on each existing index of indices the fields it lacks. A field it has keeps
// the mapping of the version that created the index: a later version may map it otherwise (an alias
// where it was a keyword, a keyword kept in _source only), and an existing field's type or
// parameters cannot change. Indices that lack nothing are left alone.
func addMissingFields(ctx context.Context, es *elasticsearch.Client, indices []string, fields []document.Field) error {
	res, err := es.Indices.GetMapping(es.Indices.GetMapping.WithContext(ctx), es.Indices.GetMapping.WithIndex(indices...),
		es.Indices.GetMapping.WithAllowNoIndices(true), es.Indices.GetMapping.WithIgnoreUnavailable(true))
	if err != nil {
		return fmt.Errorf("reading the mapping of %s: %w", indices, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil
	}
	if res.IsError() {
		return fmt.Errorf("reading the mapping of %s: %s", indices, b)
	}
	var got map[string]struct {
		Mappings mappingNode `json:"mappings"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		return fmt.Errorf("reading the mapping of %s: %w", indices, err)
	}
	for index, m := range got {
		var missing []document.Field
		for _, f := range fields {
			if !m.Mappings.has(f.Path) {
				missing = append(missing, f)
			}
		}
		if len(missing) == 0 {
			continue
		}
		if err := putMapping(ctx, es, []string{index}, document.Properties(missing)); err != nil {
			return err
		}
	}
	return nil
}

// mappingNode is an object of a mapping as _mapping returns it.
type mappingNode struct {
	Properties map[string]mappingNode `json:"properties"`
}

// has tells whether the mapping holds the dotted path (as a field, or as an object).
func (n mappingNode) has(path string) bool {
	head, rest, nested := strings.Cut(path, ".")
	child, ok := n.Properties[head]
	if !ok {
		return false
	}
	return !nested || len(child.Properties) == 0 || child.has(rest)
}

// putMapping adds the fields of mappings to existing indices; an index that does not exist yet
// will get them from its template.
func putMapping(ctx context.Context, es *elasticsearch.Client, indices []string, mappings string) error {
	res, err := es.Indices.PutMapping(indices, strings.NewReader(mappings), es.Indices.PutMapping.WithContext(ctx),
		es.Indices.PutMapping.WithAllowNoIndices(true), es.Indices.PutMapping.WithIgnoreUnavailable(true))
	if err != nil {
		return fmt.Errorf("updating the mapping of %s: %w", indices, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode == http.StatusNotFound || !res.IsError() {
		return nil
	}
	return fmt.Errorf("updating the mapping of %s: %s", indices, b)
}
