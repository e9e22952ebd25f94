package auditelasticsearchexporter

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

	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// templateVersion is the version of the mappings below. Raise it whenever they change; the exporter
// then reinstalls the templates at its next start. Other settings changes are caught by a hash.
// Version 2 added the quarantine's hashes and the whole original record (timestamps, resource, scope)
// for replay; the exporter adds those fields to an existing quarantine index too. Version 3 is the
// partitioned layout: the team is the required _routing of every event.
//
// A template applies to the indices created after it, so a new mapping applies from the next
// partition. Added fields reach the existing partitions too (installTemplates puts them); a changed
// field type must wait for the next partition, and every reader keeps reading older partitions.
const templateVersion = 3

const keyword = `{"type":"keyword","ignore_above":1024}`

// EventMappings is the partitions' mapping (exported for tools that check field references, such as
// the Kibana saved objects test). dynamic:strict keeps every document to this exact shape;
// metadata of any shape lives in flattened fields, which cannot conflict. _routing is required: a
// shared partition holds many teams, each on the shard its id routes to.
const EventMappings = `{
  "dynamic": "strict",
  "_routing": {"required": true},
  "properties": ` + eventFields + `
}`

// EventProperties is EventMappings without _routing, which an existing index cannot change (the
// side-by-side benchmark also gives it to the indices of contrib's exporter, which does not route).
func EventProperties() string { return `{"dynamic":"strict","properties":` + eventFields + `}` }

const eventFields = `{
    "@timestamp": {"type": "date_nanos"},
    "action": ` + keyword + `,
    "team_id": ` + keyword + `,
    "actor": {"properties": {
      "type": ` + keyword + `,
      "id": ` + keyword + `,
      "metadata": {"type": "flattened", "ignore_above": 8191}
    }},
    "targets": {"properties": {
      "type": ` + keyword + `,
      "id": ` + keyword + `,
      "metadata": {"type": "flattened", "ignore_above": 8191}
    }},
    "access_route": ` + keyword + `,
    "remote_addr": ` + keyword + `,
    "user_agent": ` + keyword + `,
    "metadata": {"type": "flattened", "ignore_above": 8191},
    "event": {"properties": {
      "id": ` + keyword + `,
      "action": ` + keyword + `,
      "kind": ` + keyword + `,
      "category": ` + keyword + `,
      "outcome": ` + keyword + `,
      "hash": ` + keyword + `,
      "ingested": {"type": "date_nanos"}
    }},
    "organization": {"properties": {"id": ` + keyword + `}},
    "source": {"properties": {"ip": {"type": "ip"}}},
    "user": {"properties": {"id": ` + keyword + `, "email": ` + keyword + `, "name": ` + keyword + `}},
    "related": {"properties": {"ip": {"type": "ip"}, "user": ` + keyword + `}},
    "service": {"properties": {"name": ` + keyword + `}},
    "audit": {"properties": {
      "action_known": {"type": "boolean"},
      "action_description": {"type": "keyword", "index": false, "doc_values": false},
      "warnings": {"type": "keyword", "ignore_above": 1024}
    }}
  }`

// QuarantineMappings is the quarantine index mapping. It keeps the original record as unindexed text, so no input can break the mapping.
const QuarantineMappings = `{
  "dynamic": "strict",
  "properties": {
    "@timestamp": {"type": "date_nanos"},
    "event": {"properties": {"id": ` + keyword + `, "ingested": {"type": "date_nanos"}}},
    "quarantine": {"properties": {
      "stage": ` + keyword + `,
      "reasons": {"type": "keyword", "ignore_above": 2048},
      "error_type": ` + keyword + `,
      "error_reason": {"type": "text"},
      "team_id": ` + keyword + `,
      "index": ` + keyword + `,
      "hash": ` + keyword + `,
      "stored_hash": ` + keyword + `
    }},
    "record": {"properties": {
      "event_name": ` + keyword + `,
      "time_unix_nano": ` + keyword + `,
      "observed_time_unix_nano": ` + keyword + `,
      "scope_name": ` + keyword + `,
      "body": {"type": "text", "index": false},
      "attributes": {"type": "text", "index": false},
      "resource": {"type": "text", "index": false},
      "size": {"type": "long"},
      "truncated": {"type": "boolean"}
    }},
    "service": {"properties": {"name": ` + keyword + `}}
  }
}`

// templates returns the two index templates: one for the partitions (prefix*) and one, of higher
// priority, for the quarantine index, which the partitions' pattern may also match.
func (c *Config) templates(lay *layout.Layout) map[string][]byte {
	settings := fmt.Sprintf(`{"number_of_shards":%d,"number_of_replicas":%d,"refresh_interval":%q`,
		c.Template.Shards, c.Template.Replicas, c.Template.RefreshInterval)
	teamSettings := settings
	if c.Template.ILMPolicy != "" {
		teamSettings += fmt.Sprintf(`,"lifecycle":{"name":%q}`, c.Template.ILMPolicy)
	}
	build := func(pattern string, priority int, settings, mappings string) []byte {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s|%d|%s|%s", pattern, priority, settings, mappings))
		// The hash in _meta tells a changed template from the installed one without comparing JSON.
		return fmt.Appendf(nil, `{"index_patterns":[%q],"priority":%d,"version":%d,"_meta":{"managed_by":"auditpipe","hash":%q},"template":{"settings":{"index":%s},"mappings":%s}}`,
			pattern, priority, templateVersion, hex.EncodeToString(sum[:8]), settings+"}", mappings)
	}
	return map[string][]byte{
		c.IndexPrefix + "events":     build(lay.TemplatePattern(), 200, teamSettings, EventMappings),
		c.QuarantineIndex + "-index": build(c.QuarantineIndex, 300, settings, QuarantineMappings),
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
