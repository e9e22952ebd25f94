package kibana

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type savedObject struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Attributes map[string]any `json:"attributes"`
	References []struct {
		Name, Type, ID string
	} `json:"references"`
}

func parse(t *testing.T) []savedObject {
	t.Helper()
	var out []savedObject
	sc := bufio.NewScanner(bytes.NewReader(SavedObjects))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var o savedObject
		require.NoError(t, json.Unmarshal(sc.Bytes(), &o), sc.Text())
		out = append(out, o)
	}
	return out
}

// mappedFields flattens the team index mapping into field paths; flattened fields admit any subpath.
func mappedFields(t *testing.T) (fields map[string]bool, flattened []string) {
	var m struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	require.NoError(t, json.Unmarshal([]byte(document.EventMappings), &m))
	fields = map[string]bool{}
	var walk func(prefix string, props map[string]json.RawMessage)
	walk = func(prefix string, props map[string]json.RawMessage) {
		for name, raw := range props {
			var f struct {
				Type       string                     `json:"type"`
				Properties map[string]json.RawMessage `json:"properties"`
			}
			require.NoError(t, json.Unmarshal(raw, &f))
			path := prefix + name
			fields[path] = true
			if f.Type == "flattened" {
				flattened = append(flattened, path)
			}
			walk(path+".", f.Properties)
		}
	}
	walk("", m.Properties)
	return fields, flattened
}

var kqlField = regexp.MustCompile(`([a-z_@.]+)\s*:`)

// aggregatedFields lists the fields a visualization's aggregations name.
func aggregatedFields(t *testing.T, o savedObject) []string {
	vs, ok := o.Attributes["visState"].(string)
	if !ok {
		return nil
	}
	var v struct {
		Aggs []struct {
			Params map[string]any `json:"params"`
		} `json:"aggs"`
	}
	require.NoError(t, json.Unmarshal([]byte(vs), &v))
	var out []string
	for _, a := range v.Aggs {
		if f, ok := a.Params["field"].(string); ok {
			out = append(out, f)
		}
	}
	return out
}

// referencedFields lists every field a saved object names: columns, sort, aggregation fields and the
// fields of KQL queries.
func referencedFields(t *testing.T, o savedObject) []string {
	var out []string
	if cols, ok := o.Attributes["columns"].([]any); ok {
		for _, c := range cols {
			out = append(out, c.(string))
		}
	}
	if s, ok := o.Attributes["sort"].([]any); ok {
		for _, pair := range s {
			out = append(out, pair.([]any)[0].(string))
		}
	}
	if o.Attributes["timeFieldName"] != nil {
		out = append(out, o.Attributes["timeFieldName"].(string))
	}
	out = append(out, aggregatedFields(t, o)...)
	if meta, ok := o.Attributes["kibanaSavedObjectMeta"].(map[string]any); ok {
		var ss struct {
			Query struct {
				Query string `json:"query"`
			} `json:"query"`
		}
		require.NoError(t, json.Unmarshal([]byte(meta["searchSourceJSON"].(string)), &ss))
		for _, m := range kqlField.FindAllStringSubmatch(ss.Query.Query, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

func TestSavedObjectsReferenceOnlyMappedFields(t *testing.T) {
	objs := parse(t)
	fields, flattened := mappedFields(t)
	checked := 0
	for _, o := range objs {
		if o.ID == "auditpipe-audit-quarantine" {
			continue // the quarantine view has its own mapping; only its time field is named
		}
	nextField:
		for _, f := range referencedFields(t, o) {
			checked++
			if fields[f] {
				continue
			}
			for _, fl := range flattened {
				if strings.HasPrefix(f, fl+".") {
					continue nextField
				}
			}
			t.Errorf("%s %s names field %q, which the index template does not map", o.Type, o.ID, f)
		}
	}
	assert.Greater(t, checked, 20, "the test must actually look at fields")
}

func TestSavedObjectsAreComplete(t *testing.T) {
	objs := parse(t)
	ids := map[string]string{}
	for _, o := range objs {
		_, dup := ids[o.ID]
		require.False(t, dup, "duplicate id %s", o.ID)
		ids[o.ID] = o.Type
	}
	// Stable ids: re-importing overwrites instead of duplicating, and links keep working.
	var got []string
	for id := range ids {
		got = append(got, id)
	}
	sort.Strings(got)
	assert.Equal(t, []string{
		"auditpipe-audit-dashboard", "auditpipe-audit-events", "auditpipe-audit-quarantine", "auditpipe-audit-search",
		"auditpipe-events-over-time", "auditpipe-failed-logins", "auditpipe-permission-changes", "auditpipe-top-actors",
	}, got)
	for _, o := range objs {
		for _, r := range o.References {
			assert.Equal(t, r.Type, ids[r.ID], "%s references %s %s, which is not in the file", o.ID, r.Type, r.ID)
		}
	}
	dash := objs[len(objs)-1]
	require.Equal(t, "dashboard", dash.Type)
	var panels []map[string]any
	require.NoError(t, json.Unmarshal([]byte(dash.Attributes["panelsJSON"].(string)), &panels))
	assert.Len(t, panels, 4)
	assert.Equal(t, "audit-*,-audit-quarantine", objs[0].Attributes["title"])
}

func TestSavedObjectsAreGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator")
	}
	out := filepath.Join(t.TempDir(), "saved_objects.ndjson")
	cmd := exec.Command("go", "run", "./internal/gensaved", out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	again, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, string(SavedObjects), string(again), "saved_objects.ndjson is stale: run `go generate ./kibana`")
}

// TestImport checks the request Kibana's saved objects API expects, against a stand-in for Kibana
// (there is no Kibana on the build machines) that answers as Kibana does: it counts the objects of
// the NDJSON file it received, and reports an error for an object without a type or id.
func TestImport(t *testing.T) {
	var gotFile []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/api/saved_objects/_import", r.URL.Path)
		assert.Equal(t, "true", r.URL.Query().Get("overwrite"))
		assert.Equal(t, "true", r.Header.Get("kbn-xsrf"))
		assert.Equal(t, "ApiKey k3y", r.Header.Get("Authorization"))
		_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		require.NoError(t, err)
		part, err := multipart.NewReader(r.Body, params["boundary"]).NextPart()
		require.NoError(t, err)
		assert.Equal(t, "file", part.FormName())
		gotFile, _ = io.ReadAll(part)
		ok, bad := 0, []string{}
		for _, line := range bytes.Split(bytes.TrimSpace(gotFile), []byte("\n")) {
			var o struct{ Type, ID string }
			if json.Unmarshal(line, &o) != nil || o.Type == "" || o.ID == "" {
				bad = append(bad, `{"error":{"type":"unsupported"}}`)
				continue
			}
			ok++
		}
		fmt.Fprintf(w, `{"success":%t,"successCount":%d,"errors":[%s]}`, len(bad) == 0, ok, strings.Join(bad, ","))
	}))
	defer srv.Close()
	n, err := Import(context.Background(), srv.URL, Auth{APIKey: "k3y"}, SavedObjects)
	require.NoError(t, err)
	assert.Equal(t, SavedObjects, gotFile)
	want := bytes.Count(bytes.TrimSpace(SavedObjects), []byte("\n")) + 1
	assert.Equal(t, want, n, "every saved object imported")

	n, err = Import(context.Background(), srv.URL, Auth{APIKey: "k3y"}, append(bytes.Clone(SavedObjects), []byte("{\"attributes\":{}}\n")...))
	assert.ErrorContains(t, err, "with errors")
	assert.Equal(t, want, n)
}

func TestDiscoverURLFiltersOneTeam(t *testing.T) {
	u := DiscoverURL("http://127.0.0.1:5601/", "191796", 7)
	assert.True(t, strings.HasPrefix(u, "http://127.0.0.1:5601/app/discover#/view/"+SearchID+"?_a="), u)
	assert.Contains(t, u, "team_id+%3A+%22191796%22")
	assert.Contains(t, u, "now-7d")
}

// TestSavedObjectsFieldsResolveAcrossTemplateVersions: the data view spans partitions created by
// template version 3 and by version 4, which maps some fields otherwise (aliases, event.hash kept in
// _source only). Every field a saved object names is one type over both, searchable, and
// aggregatable where a visualization aggregates it; the top-actors panel counts both documents.
func TestSavedObjectsFieldsResolveAcrossTemplateVersions(t *testing.T) {
	base, prefix := estest.URL(t), estest.Prefix(t)
	v3mapping, err := os.ReadFile("../internal/document/testdata/event-mappings.v3.json")
	require.NoError(t, err)
	v3doc, err := os.ReadFile("../internal/document/testdata/event.v3.json")
	require.NoError(t, err)
	v4doc := `{"@timestamp":"2025-09-01T21:00:00Z","action":"job_user_access_changed","team_id":"191796",
		"actor":{"type":"user","id":"445177","metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"}},
		"targets":[{"type":"user","id":"107404"}],"access_route":["203.0.113.9"],"remote_addr":"::1","user_agent":"Mozilla/5.0",
		"metadata":{"previous_access_level_id":7347},"event":{"hash":"` + strings.Repeat("b", 64) + `","ingested":"2025-09-01T21:00:01Z"},
		"source":{"ip":"::1"},"user":{"email":"ann+oats@gem.com"},"service":{"name":"jobs-api"},"audit":{"action_known":true}}`
	for index, c := range map[string][2]string{
		prefix + "audit-shared.standard.2025-08": {string(v3mapping), string(v3doc)},
		prefix + "audit-shared.standard.2025-09": {document.EventMappings, v4doc},
	} {
		esRequest(t, http.MethodPut, base+"/"+index, `{"settings":{"number_of_replicas":0},"mappings":`+c[0]+`}`, nil)
		esRequest(t, http.MethodPut, base+"/"+index+"/_create/191796:x?routing=191796&refresh=true", c[1], nil)
	}

	aggregated := map[string]bool{}
	var fields []string
	for _, o := range parse(t) {
		if o.ID == "auditpipe-audit-quarantine" {
			continue
		}
		fields = append(fields, referencedFields(t, o)...)
		for _, f := range aggregatedFields(t, o) {
			aggregated[f] = true
		}
	}
	require.NotEmpty(t, aggregated)
	var caps struct {
		Fields map[string]map[string]struct {
			Searchable   bool     `json:"searchable"`
			Aggregatable bool     `json:"aggregatable"`
			Indices      []string `json:"indices"`
		} `json:"fields"`
	}
	esRequest(t, http.MethodGet, base+"/"+prefix+"audit-*/_field_caps?fields="+strings.Join(fields, ","), "", &caps)
	for _, f := range fields {
		types := caps.Fields[f]
		require.Len(t, types, 1, "field %s: %v", f, types)
		for typ, c := range types {
			assert.Empty(t, c.Indices, "field %s is %s in some indices only", f, typ)
			assert.True(t, c.Searchable, "field %s", f)
			if aggregated[f] {
				assert.True(t, c.Aggregatable, "field %s", f)
			}
		}
	}
	var res struct {
		Aggregations struct {
			Emails struct {
				Buckets []struct {
					Key      string `json:"key"`
					DocCount int    `json:"doc_count"`
				} `json:"buckets"`
			} `json:"emails"`
		} `json:"aggregations"`
	}
	esRequest(t, http.MethodPost, base+"/"+prefix+"audit-*/_search", `{"size":0,"query":{"term":{"organization.id":"191796"}},"aggs":{"emails":{"terms":{"field":"user.email"}}}}`, &res)
	require.Len(t, res.Aggregations.Emails.Buckets, 1)
	assert.Equal(t, 2, res.Aggregations.Emails.Buckets[0].DocCount, "a version 3 and a version 4 document")
}

func esRequest(t *testing.T, method, url, body string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	require.Less(t, res.StatusCode, 300, string(b))
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out))
	}
}
