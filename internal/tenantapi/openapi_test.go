package tenantapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
)

// TestOpenAPIDocumentMatchesTheServer checks the OpenAPI document against the server: the same
// paths, parameters and security as the route table, and every answer the real server gives to a
// set of good and bad requests is documented, with a body valid under the documented schema.
func TestOpenAPIDocumentMatchesTheServer(t *testing.T) {
	var doc map[string]any
	require.NoError(t, json.Unmarshal(OpenAPI(), &doc))
	require.Equal(t, "3.1.0", doc["openapi"])
	paths := doc["paths"].(map[string]any)

	// The route table and the document name the same endpoints, parameters and scopes.
	s := New(Config{})
	var routePaths []string
	for _, rt := range s.routes() {
		routePaths = append(routePaths, rt.pattern)
		op := operation(t, doc, rt.pattern)
		var want []string
		for _, p := range rt.params {
			want = append(want, p.name)
		}
		got := map[string]map[string]any{}
		params, _ := op["parameters"].([]any)
		for _, p := range params {
			p = resolve(doc, p)
			pm := p.(map[string]any)
			if pm["in"] == "query" {
				got[pm["name"].(string)] = pm
			}
		}
		assert.ElementsMatch(t, want, keys(got), "%s: the query parameters", rt.pattern)
		for _, p := range rt.params {
			if pm, ok := got[p.name]; ok {
				sch := resolve(doc, pm["schema"]).(map[string]any)
				if items, ok := sch["items"].(map[string]any); ok {
					assert.EqualValues(t, p.times, sch["maxItems"], "%s %s: how many times", rt.pattern, p.name)
					sch = items
				} else {
					assert.Equal(t, 1, p.times, "%s %s: given once", rt.pattern, p.name)
				}
				if max, ok := sch["maxLength"]; ok {
					assert.EqualValues(t, p.max, max, "%s %s: the longest value", rt.pattern, p.name)
				}
			}
		}
		sec, hasSec := op["security"]
		assert.Equal(t, rt.scope == "", hasSec && len(sec.([]any)) == 0, "%s: a key is needed exactly when the route has a scope", rt.pattern)
		if rt.scope != "" {
			assert.Contains(t, op["description"], "the "+rt.scope+" scope", "%s: the description names the scope", rt.pattern)
		}
	}
	id := resolve(doc, operation(t, doc, "/v1/events/{id}")["parameters"].([]any)[0]).(map[string]any)
	assert.EqualValues(t, audit.MaxIDBytes, id["schema"].(map[string]any)["maxLength"], "the longest event id")
	var docPaths []string
	for p := range paths {
		docPaths = append(docPaths, p)
	}
	assert.ElementsMatch(t, routePaths, docPaths)

	// Real answers, each checked against the document.
	e := newAPI(t, 3)
	evs := events("381", 30, "x")
	e.load(evs)
	e.load(events("382", 3, "y"))
	both, _ := e.mint("381", 0, ScopeRead, ScopeExport)
	read, _ := e.mint("381", 0, ScopeRead)
	export, _ := e.mint("381", 0, ScopeExport)
	p := e.page(both, "limit=5")
	cursor := url.QueryEscape(*p.NextCursor)
	status, h, body := e.get(read, "/v1/checkpoint")
	require.Equal(t, 404, status, "%s", body) // not sealed yet
	checkAnswer(t, doc, "/v1/checkpoint", status, h, body)
	e.seal()
	checks := []struct {
		token, path, pattern string
		status               int
	}{
		{"", "/v1/openapi.json", "/v1/openapi.json", 200},
		{"", "/v1/openapi.json?x=1", "/v1/openapi.json", 400},
		{both, "/v1/events", "/v1/events", 200},
		{both, "/v1/events?order=asc&limit=1000&action=job_*&action=job_updated&actor_id=1000&target_type=job&target_id=5000&since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00Z", "/v1/events", 200},
		{both, "/v1/events?limit=5&cursor=" + cursor, "/v1/events", 200},
		{both, "/v1/events?limit=1001", "/v1/events", 400},
		{both, "/v1/events?cursor=x", "/v1/events", 400},
		{"", "/v1/events", "/v1/events", 401},
		{export, "/v1/events", "/v1/events", 403},
		{read, "/v1/events/" + evs[3].ID, "/v1/events/{id}", 200},
		{read, "/v1/events/nope", "/v1/events/{id}", 404},
		{read, "/v1/events/" + strings.Repeat("x", 513), "/v1/events/{id}", 400},
		{"", "/v1/events/x", "/v1/events/{id}", 401},
		{export, "/v1/events/x", "/v1/events/{id}", 403},
		{export, "/v1/export", "/v1/export", 200},
		{export, "/v1/export?format=ndjson&action=job_*", "/v1/export", 200},
		{export, "/v1/export?format=pdf", "/v1/export", 400},
		{read, "/v1/export", "/v1/export", 403},
		{"apk_x", "/v1/export", "/v1/export", 401},
		{read, "/v1/checkpoint", "/v1/checkpoint", 200},
		{export, "/v1/checkpoint", "/v1/checkpoint", 403},
		{read, "/v1/checkpoint?x=1", "/v1/checkpoint", 400},
		{read, "/v1/events/" + evs[3].ID + "/proof", "/v1/events/{id}/proof", 200},
		{read, "/v1/events/nope/proof", "/v1/events/{id}/proof", 404},
		{read, "/v1/checkpoint/consistency?from=3", "/v1/checkpoint/consistency", 200},
		{read, "/v1/checkpoint/consistency?from=0", "/v1/checkpoint/consistency", 400},
		{read, "/v1/checkpoint/consistency?from=100000", "/v1/checkpoint/consistency", 400},
		{export, "/v1/export?format=bundle", "/v1/export", 200},
		{export, "/v1/export?format=bundle&action=job_*", "/v1/export", 400},
		{read, "/v1/actions", "/v1/actions", 200},
		{export, "/v1/actions", "/v1/actions", 403},
		{read, "/v1/actions?limit=1", "/v1/actions", 400},
		{"", "/v1/actions", "/v1/actions", 401},
	}
	for _, c := range checks {
		e.advance(time.Second) // within each key's rate
		status, h, body := e.get(c.token, c.path)
		require.Equal(t, c.status, status, "%s: %s", c.path, body)
		checkAnswer(t, doc, c.pattern, status, h, body)
	}
	// Beyond its rate a key gets 429, documented with its Retry-After.
	e.freeze()
	for i := 0; ; i++ {
		status, h, body := e.get(read, "/v1/actions")
		if status == http.StatusTooManyRequests {
			checkAnswer(t, doc, "/v1/actions", status, h, body)
			break
		}
		require.Less(t, i, 20, "no 429")
	}
	// The documented limits are the server's: the largest limit passes, one more does not, and each
	// documented enum value is served.
	e.advance(time.Hour)
	limit := resolve(doc, parameter(t, doc, "/v1/events", "limit")["schema"]).(map[string]any)
	status, _, _ = e.get(both, "/v1/events?limit="+fmt.Sprint(limit["maximum"]))
	assert.Equal(t, 200, status)
	for _, c := range []struct{ path, param string }{{"/v1/events", "order"}, {"/v1/export", "format"}} {
		for _, v := range resolve(doc, parameter(t, doc, c.path, c.param)["schema"]).(map[string]any)["enum"].([]any) {
			e.advance(time.Hour)
			status, _, body := e.get(both, c.path+"?"+c.param+"="+v.(string))
			assert.Equal(t, 200, status, "%s=%s: %s", c.param, v, body)
		}
	}
}

// checkAnswer checks a response against the document's responses of the operation.
func checkAnswer(t *testing.T, doc map[string]any, pattern string, status int, h http.Header, body []byte) {
	t.Helper()
	responses := operation(t, doc, pattern)["responses"].(map[string]any)
	r, ok := responses[strconv.Itoa(status)]
	require.True(t, ok, "%s answered %d, which the document does not list", pattern, status)
	resp := resolve(doc, r).(map[string]any)
	headers, _ := resp["headers"].(map[string]any)
	for name := range headers {
		if name != "Content-Disposition" || status == 200 {
			assert.NotEmpty(t, h.Get(name), "%s %d: header %s", pattern, status, name)
		}
	}
	ct, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	content := resp["content"].(map[string]any)
	media, ok := content[ct].(map[string]any)
	require.True(t, ok, "%s %d: content type %q is not documented", pattern, status, ct)
	schema := media["schema"]
	switch ct {
	case "application/json":
		var v any
		require.NoError(t, json.Unmarshal(body, &v))
		for _, err := range validate(doc, schema, v, "$") {
			t.Errorf("%s %d: %s", pattern, status, err)
		}
	case "application/x-ndjson":
		for line := range bytes.Lines(body) {
			var v any
			require.NoError(t, json.Unmarshal(line, &v))
			for _, err := range validate(doc, schema, v, "$") {
				t.Errorf("%s %d: %s", pattern, status, err)
			}
		}
	}
}

func operation(t *testing.T, doc map[string]any, pattern string) map[string]any {
	t.Helper()
	item, ok := doc["paths"].(map[string]any)[pattern].(map[string]any)
	require.True(t, ok, "the document has no path %s", pattern)
	require.Len(t, item, 1, "%s: GET only", pattern)
	return item["get"].(map[string]any)
}

func parameter(t *testing.T, doc map[string]any, pattern, name string) map[string]any {
	t.Helper()
	for _, p := range operation(t, doc, pattern)["parameters"].([]any) {
		if pm := resolve(doc, p).(map[string]any); pm["name"] == name {
			return pm
		}
	}
	t.Fatalf("%s has no parameter %s", pattern, name)
	return nil
}

// resolve follows a local $ref.
func resolve(doc map[string]any, v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	ref, ok := m["$ref"].(string)
	if !ok {
		return v
	}
	var cur any = doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		cur = cur.(map[string]any)[part]
	}
	return resolve(doc, cur)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// validate checks v against the JSON Schema subset the document uses: type (one or a list), enum,
// properties, required, additionalProperties false, items, maxItems, format date-time.
func validate(doc map[string]any, schema, v any, at string) []string {
	s := resolve(doc, schema).(map[string]any)
	var errs []string
	if typ, ok := s["type"]; ok {
		var types []string
		switch tt := typ.(type) {
		case string:
			types = []string{tt}
		case []any:
			for _, x := range tt {
				types = append(types, x.(string))
			}
		}
		if !slices.Contains(types, jsonType(v)) && !(jsonType(v) == "integer" && slices.Contains(types, "number")) {
			return []string{fmt.Sprintf("%s: a %s, the schema says %v", at, jsonType(v), types)}
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
	}
	if s["format"] == "date-time" {
		if str, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not a date-time", at, str))
			}
		}
	}
	switch val := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		required, _ := s["required"].([]any)
		for _, r := range required {
			if _, ok := val[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: %s is required", at, r))
			}
		}
		for k, x := range val {
			if ps, ok := props[k]; ok {
				errs = append(errs, validate(doc, ps, x, at+"."+k)...)
			} else if s["additionalProperties"] == false {
				errs = append(errs, fmt.Sprintf("%s: %s is not in the schema", at, k))
			}
		}
	case []any:
		if max, ok := s["maxItems"].(float64); ok && len(val) > int(max) {
			errs = append(errs, fmt.Sprintf("%s: %d items, at most %v", at, len(val), max))
		}
		if items, ok := s["items"]; ok {
			for i, x := range val {
				errs = append(errs, validate(doc, items, x, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	return errs
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if x == float64(int64(x)) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

// TestValidateCatchesMismatches makes sure the schema check above can fail.
func TestValidateCatchesMismatches(t *testing.T) {
	var doc map[string]any
	require.NoError(t, json.Unmarshal(OpenAPI(), &doc))
	ev := map[string]any{"id": "a", "timestamp": "2025-08-01T00:00:00.000000000Z", "action": "x", "team_id": "1", "actor": map[string]any{"type": "user"},
		"targets": []any{}, "access_route": []any{}, "remote_addr": nil, "user_agent": nil, "metadata": nil}
	ref := map[string]any{"$ref": "#/components/schemas/Event"}
	assert.Empty(t, validate(doc, ref, ev, "$"))
	for name, mutate := range map[string]func(m map[string]any){
		"missing":    func(m map[string]any) { delete(m, "id") },
		"extra":      func(m map[string]any) { m["event"] = map[string]any{} },
		"type":       func(m map[string]any) { m["team_id"] = 1.0 },
		"enum":       func(m map[string]any) { m["actor"] = map[string]any{"type": "robot"} },
		"date-time":  func(m map[string]any) { m["timestamp"] = "yesterday" },
		"items":      func(m map[string]any) { m["access_route"] = []any{1.0} },
		"null where": func(m map[string]any) { m["targets"] = nil },
	} {
		m := map[string]any{}
		for k, v := range ev {
			m[k] = v
		}
		mutate(m)
		assert.NotEmpty(t, validate(doc, ref, m, "$"), name)
	}
}
