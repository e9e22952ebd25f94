// Command gensaved writes kibana/saved_objects.ndjson. The saved objects embed JSON inside JSON
// strings (visState, searchSourceJSON, panelsJSON), which is unreadable to edit by hand; here they are
// Go values. Run through `go generate ./kibana`.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/auditpipe/auditpipe/internal/document"

	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/kibana"
)

const (
	dataView       = kibana.DataViewID
	quarantineView = "auditpipe-audit-quarantine"
	searchID       = kibana.SearchID
)

func js(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return string(bytes.TrimSpace(b.Bytes()))
}

type obj map[string]any

func searchSource(query string) string {
	return js(obj{
		"query":        obj{"query": query, "language": "kuery"},
		"filter":       []any{},
		"indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
	})
}

func indexRef(id string) []obj {
	return []obj{{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": id}}
}

// vis is a classic (aggregation-based) visualization over the audit data view.
func vis(id, title, typ, query string, params obj, aggs []obj) obj {
	return obj{
		"id": id, "type": "visualization",
		"attributes": obj{
			"title":                 title,
			"description":           "",
			"visState":              js(obj{"title": title, "type": typ, "params": params, "aggs": aggs}),
			"uiStateJSON":           "{}",
			"version":               1,
			"kibanaSavedObjectMeta": obj{"searchSourceJSON": searchSource(query)},
		},
		"references": indexRef(dataView),
	}
}

func count() obj {
	return obj{"id": "1", "enabled": true, "type": "count", "schema": "metric", "params": obj{}}
}

func terms(id, schema, field string, size int) obj {
	return obj{"id": id, "enabled": true, "type": "terms", "schema": schema, "params": obj{
		"field": field, "size": size, "order": "desc", "orderBy": "1", "otherBucket": false, "missingBucket": false,
	}}
}

func histogram(id string) obj {
	return obj{"id": id, "enabled": true, "type": "date_histogram", "schema": "segment", "params": obj{
		"field": "@timestamp", "interval": "auto", "min_doc_count": 1, "extended_bounds": obj{},
	}}
}

var barParams = obj{"type": "histogram", "addLegend": true, "legendPosition": "right", "addTooltip": true}
var tableParams = obj{"perPage": 10, "showPartialRows": false, "showMetricsAtAllLevels": false, "showTotal": false}

func main() {
	out := "saved_objects.ndjson"
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	panels := []struct {
		vis  obj
		w, h int
	}{
		{vis("auditpipe-events-over-time", "Audit events over time by action", "histogram", "", barParams,
			[]obj{count(), histogram("2"), terms("3", "group", "action", 10)}), 48, 15},
		{vis("auditpipe-top-actors", "Top actors", "table", "", tableParams,
			[]obj{count(), terms("2", "bucket", "actor.id", 20), terms("3", "bucket", "user.email", 1)}), 24, 15},
		{vis("auditpipe-failed-logins", "Failed logins", "histogram", "action : \"user_login_failed\"", barParams,
			[]obj{count(), histogram("2"), terms("3", "group", "team_id", 10)}), 24, 15},
		{vis("auditpipe-permission-changes", "Changes to permissions, API keys and SAML", "table",
			"action : (user_access_changed or admin_action or job_user_access_* or team_api_key_* or saml_config_*)", tableParams,
			[]obj{count(), terms("2", "bucket", "action", 20), terms("3", "bucket", "team_id", 50), terms("4", "bucket", "actor.id", 20)}), 48, 15},
	}
	// The data views cover what the layout's readers read: every partition of both tiers (and the
	// previous per-team indices) but the quarantine. Engineers work per team with a team_id filter
	// (auditctl kibana --team prints the link); see docs/layout.md for why not per-team aliases.
	lay, err := layout.New(layout.DefaultPrefix, layout.DefaultQuarantine, layout.NewDefaultConfig())
	if err != nil {
		panic(err)
	}
	objects := []obj{
		{"id": dataView, "type": "index-pattern", "attributes": obj{
			"title": lay.DataViewTitle(), "name": "Audit events", "timeFieldName": document.Timestamp,
		}, "references": []obj{}},
		{"id": quarantineView, "type": "index-pattern", "attributes": obj{
			"title": lay.Quarantine(), "name": "Audit quarantine", "timeFieldName": document.Timestamp,
		}, "references": []obj{}},
		{"id": searchID, "type": "search", "attributes": obj{
			"title":                 "Audit events",
			"description":           "Every audit event with the columns on-call engineers export",
			"columns":               stored(document.TeamID, document.Action, "actor.type", document.ActorID, "user.email", document.TargetType, document.TargetID, "remote_addr", "user_agent"),
			"sort":                  [][]string{{document.Timestamp, "desc"}},
			"kibanaSavedObjectMeta": obj{"searchSourceJSON": searchSource("")},
		}, "references": indexRef(dataView)},
	}
	var panelsJSON []obj
	var refs []obj
	x, y := 0, 0
	for i, p := range panels {
		objects = append(objects, p.vis)
		name := fmt.Sprintf("panel_%d", i)
		if x+p.w > 48 {
			x, y = 0, y+p.h
		}
		panelsJSON = append(panelsJSON, obj{
			"panelIndex": fmt.Sprint(i + 1), "panelRefName": name, "embeddableConfig": obj{},
			"gridData": obj{"x": x, "y": y, "w": p.w, "h": p.h, "i": fmt.Sprint(i + 1)},
		})
		refs = append(refs, obj{"name": name, "type": "visualization", "id": p.vis["id"]})
		x += p.w
	}
	objects = append(objects, obj{"id": "auditpipe-audit-dashboard", "type": "dashboard", "attributes": obj{
		"title":                 "Audit log",
		"description":           "Events over time by action, top actors, failed logins, changes to permissions, API keys and SAML",
		"panelsJSON":            js(panelsJSON),
		"optionsJSON":           js(obj{"useMargins": true, "hidePanelTitles": false}),
		"timeRestore":           false,
		"kibanaSavedObjectMeta": obj{"searchSourceJSON": js(obj{"query": obj{"query": "", "language": "kuery"}, "filter": []any{}})},
	}, "references": refs})

	var b bytes.Buffer
	for _, o := range objects {
		b.WriteString(js(o))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// stored returns the fields, each of which must be a field of the stored document: a saved object
// naming another would show an empty column.
func stored(fields ...string) []string {
	known := map[string]bool{}
	for _, f := range document.EventFields() {
		known[f.Path] = true
	}
	for _, f := range fields {
		if !known[f] {
			panic("not a field of the stored document: " + f)
		}
	}
	return fields
}
