package tenantapi

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// TestALogSpanningTemplateVersions: one team's log spans last month's partition, created by template
// version 3 and holding documents version 3 wrote (testdata of internal/document) and one that
// version 4 wrote there in the month the template changed, and this month's partition, created by
// version 4. Every reader gives every event alike: the CSV, the ndjson export, the API's pages and
// its event by id, and `show`.
func TestALogSpanningTemplateVersions(t *testing.T) {
	e := newAPI(t, 1000)
	const team = "191796"
	ctx := context.Background()
	now := time.Now().UTC()
	lastMonth := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	old := e.c.Layout().Index(team, lastMonth)
	current := e.c.Layout().Index(team, now)
	require.NotEqual(t, old, current)

	mapping, err := os.ReadFile("../document/testdata/event-mappings.v3.json")
	require.NoError(t, err)
	esPut(t, e, "/"+old, fmt.Sprintf(`{"settings":{"number_of_replicas":0},"mappings":%s}`, mapping))
	v3, err := os.ReadFile("../document/testdata/event.v3.json")
	require.NoError(t, err)
	var want []string // event ids, oldest first
	for i := range 3 {
		var doc map[string]any
		require.NoError(t, json.Unmarshal(v3, &doc))
		id := fmt.Sprintf("v3-%d", i)
		doc["@timestamp"] = lastMonth.Add(time.Duration(i+1) * time.Hour).Format(time.RFC3339Nano)
		doc["event"].(map[string]any)["id"] = id
		delete(doc["audit"].(map[string]any), "warnings") // the recorder's events have none
		b, _ := json.Marshal(doc)
		esPut(t, e, "/"+old+"/_create/"+layout.DocID(team, id)+"?routing="+team, string(b))
		want = append(want, id)
	}
	event := func(at time.Time) audit.Event {
		return audit.Event{Time: at, Action: audit.ActionJobUserAccessChanged, TeamID: team,
			Actor:       auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson"),
			Targets:     []audit.Target{{Type: "user", ID: "107404", Metadata: map[string]any{"access_level_id": 7349}}},
			AccessRoute: []string{"203.0.113.9"}, RemoteAddr: "::1", UserAgent: "Mozilla/5.0",
			Metadata: map[string]any{"previous_access_level_id": 7347}}
	}
	recorded, err := e.rec.RecordAll(ctx, []audit.Event{event(lastMonth.Add(10 * time.Hour)), event(now.Add(-3 * time.Hour)), event(now.Add(-2 * time.Hour))})
	require.NoError(t, err)
	want = append(want, recorded...)
	e.refresh()

	var mappings map[string]struct {
		Mappings struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"mappings"`
	}
	esGetJSON(t, e, "/"+old+","+current+"/_mapping", &mappings)
	assert.Contains(t, string(mappings[old].Mappings.Properties["event"]), `"action":{"type":"keyword"`, "last month's partition keeps version 3's mapping")
	assert.Contains(t, string(mappings[current].Mappings.Properties["event"]), `"action":{"type":"alias"`, "this month's has version 4's")

	// The ndjson export: every field of version 3 on every line, and the same fields.
	var b bytes.Buffer
	n, err := e.c.Export(ctx, query.Filter{Team: team}, query.NDJSON, &b, nil)
	require.NoError(t, err)
	require.EqualValues(t, 6, n)
	var got []string
	var first []string
	for i, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var d map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &d))
		ev := d["event"].(map[string]any)
		got = append(got, ev["id"].(string))
		delete(ev, "ingested") // version 3's testdata and the recorder's events differ in that only
		leaves := leafPaths(d)
		if i == 0 {
			first = leaves
		}
		assert.Equal(t, first, leaves, "line %d has the fields of the first", i)
		assert.Equal(t, team, d["organization"].(map[string]any)["id"])
		assert.Equal(t, "job_user_access_changed", ev["action"])
		assert.Equal(t, "A user’s permissions were changed", d["audit"].(map[string]any)["action_description"])
		assert.Equal(t, "Ann Samuelson", d["user"].(map[string]any)["name"])
	}
	assert.Equal(t, want, got, "in time order, each once")

	// The CSV: one row per event, the same but for the time.
	b.Reset()
	_, err = e.c.Export(ctx, query.Filter{Team: team}, query.CSV, &b, nil)
	require.NoError(t, err)
	rows, err := csv.NewReader(&b).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 7)
	for _, row := range rows[2:] {
		assert.Equal(t, rows[1][1:], row[1:])
	}
	assert.Equal(t, "A user’s permissions were changed", rows[1][2])
	assert.Equal(t, "ann+oats@gem.com", rows[1][5])

	// The API: pages of two, following the cursor; each event by id; the same shape.
	token, _ := e.mint(team, time.Hour, "read")
	assert.Equal(t, want, e.listAll(token, "action=job_user_access_changed&order=asc&limit=2", nil))
	var apiEvents []string
	for _, id := range []string{want[0], want[3], want[5]} {
		status, _, body := e.get(token, "/v1/events/"+id)
		require.Equal(t, http.StatusOK, status, string(body))
		var ev map[string]any
		require.NoError(t, json.Unmarshal(body, &ev))
		assert.Equal(t, id, ev["id"])
		delete(ev, "id")
		delete(ev, "timestamp")
		s, _ := json.Marshal(ev)
		apiEvents = append(apiEvents, string(s))
	}
	assert.Equal(t, apiEvents[0], apiEvents[1])
	assert.Equal(t, apiEvents[0], apiEvents[2])

	// show, as auditctl prints it.
	for _, id := range []string{want[0], want[5]} {
		doc, err := e.c.Show(ctx, team, id)
		require.NoError(t, err)
		var d map[string]any
		require.NoError(t, json.Unmarshal(doc, &d))
		assert.Equal(t, id, d["event"].(map[string]any)["id"])
		assert.Equal(t, "event", d["event"].(map[string]any)["kind"])
	}
	// Another team reads none of it.
	_, err = e.c.Show(ctx, "7", want[0])
	assert.ErrorIs(t, err, query.ErrNoEvent)
}

// leafPaths lists a document's leaf fields, objects in lists walked as the mapping sees them.
func leafPaths(v any) []string {
	seen := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
		case []any:
			for _, e := range x {
				walk(prefix, e)
			}
		default:
			seen[prefix] = true
		}
	}
	walk("", v)
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func esPut(t *testing.T, e *apiEnv, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, e.c.Conn().URLs[0]+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	status, _, b := do(t, req)
	require.Less(t, status, 300, string(b))
}

func esGetJSON(t *testing.T, e *apiEnv, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.c.Conn().URLs[0]+path, nil)
	status, _, b := do(t, req)
	require.Equal(t, http.StatusOK, status, string(b))
	require.NoError(t, json.Unmarshal(b, out))
}
