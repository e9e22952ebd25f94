package auditelasticsearchexporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

const seedSample = `{"action": "job_user_access_changed", "team_id": 191796, "actor": {"type": "user", "id": 445177, "metadata": {"email": "ann+oats@gem.com", "name": "Ann Samuelson"}}, "targets": [{"type": "job_user_access", "id": 107404, "metadata": {"job_id": 313520, "user_id": 506607, "access_level_id": 7349}}, {"type": "job", "id": 313520, "metadata": null}, {"type": "user", "id": 506607, "metadata": null}], "access_route": ["::1"], "remote_addr": "::1", "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36", "metadata": {"previous_access_level_id": 7347}}`

// baseTime is an hour ago: test events are within every retention class.
var baseTime = time.Now().UTC().Truncate(time.Second).Add(-time.Hour)

// testConfig is an exporter configuration writing under a prefix unique to the test, to url (the
// real node, or a proxy in front of it), with fast item retries.
func testConfig(tb testing.TB, url string) *Config {
	tb.Helper()
	base := estest.URL(tb)
	prefix := estest.Prefix(tb)
	if url == "" {
		url = base
	}
	cfg := createDefaultConfig()
	cfg.Endpoints = []string{url}
	cfg.IndexPrefix = prefix + layout.DefaultPrefix
	cfg.QuarantineIndex = prefix + layout.DefaultQuarantine
	cfg.Template.Replicas = 0
	cfg.ItemRetry.InitialInterval = 10 * time.Millisecond
	cfg.ItemRetry.MaxInterval = 50 * time.Millisecond
	return cfg
}

// startExporter validates cfg and starts an exporter on it, shut down when the test ends.
func startExporter(tb testing.TB, cfg *Config) *auditExporter {
	tb.Helper()
	require.NoError(tb, cfg.Validate())
	e, err := newExporter(exportertest.NewNopSettings(NewFactory().Type()), cfg)
	require.NoError(tb, err)
	require.NoError(tb, e.start(context.Background(), componenttest.NewNopHost()))
	tb.Cleanup(func() {
		require.NoError(tb, e.shutdown(context.Background()))
		http.DefaultClient.CloseIdleConnections()
	})
	return e
}

// testExporter starts an exporter on testConfig, changed by mutate.
func testExporter(t *testing.T, url string, mutate func(*Config)) (*auditExporter, *Config) {
	t.Helper()
	cfg := testConfig(t, url)
	if mutate != nil {
		mutate(cfg)
	}
	return startExporter(t, cfg), cfg
}

// normalized runs raw records through the real audit processor.
func normalized(t testing.TB, bodies ...string) plog.Logs {
	t.Helper()
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "jobs-api")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i, b := range bodies {
		lr := lrs.AppendEmpty()
		lr.SetEventName("audit")
		lr.SetTimestamp(pcommon.NewTimestampFromTime(baseTime.Add(time.Duration(i) * time.Second)))
		lr.Body().SetStr(b)
	}
	return processed(t, ld)
}

// processed runs records through the real audit processor.
func processed(t testing.TB, ld plog.Logs) plog.Logs {
	t.Helper()
	sink := new(consumertest.LogsSink)
	f := auditprocessor.NewFactory()
	p, err := f.CreateLogs(context.Background(), processortest.NewNopSettings(f.Type()), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, p.ConsumeLogs(context.Background(), ld))
	return sink.AllLogs()[0]
}

func rawEvent(team any, action string, extra string) string {
	teamJSON, _ := json.Marshal(team)
	return fmt.Sprintf(`{"action":%q,"team_id":%s,"actor":{"type":"system"}%s}`, action, teamJSON, extra)
}

// esGet does a GET against the node and decodes the JSON answer.
func esGet(t *testing.T, path string, out any) int {
	t.Helper()
	res, err := http.Get(estest.URL(t) + path)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode == 200 {
		require.NoError(t, json.Unmarshal(b, out), string(b))
	}
	return res.StatusCode
}

func refresh(t *testing.T, prefix string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, estest.URL(t)+"/"+prefix+"*/_refresh?expand_wildcards=all", nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
}

// teamCounts returns the number of stored events of every team, and the number of quarantine
// documents under the quarantine index's name. It checks the layout on the way: each event is in the
// index the layout gives for its team and time, routed by its team, under its team-scoped _id.
func teamCounts(t *testing.T, cfg *Config) map[string]int {
	t.Helper()
	refresh(t, cfg.IndexPrefix)
	lay, err := cfg.layout()
	require.NoError(t, err)
	out := map[string]int{}
	for _, h := range searchBody(t, strings.Join(lay.ReadIndices(), ","), `{"size":10000,"_source":["team_id","@timestamp","event.id"]}`) {
		team, _ := h.Source["team_id"].(string)
		ts, err := time.Parse(time.RFC3339Nano, h.Source["@timestamp"].(string))
		require.NoError(t, err)
		assert.Equal(t, lay.Index(team, ts), h.Index, "event %s of team %s", h.ID, team)
		assert.Equal(t, team, h.Routing, "event %s", h.ID)
		// The _id is the team's: it carries the event id, which the document holds only when it cannot.
		id := layout.EventIDOf(h.ID)
		if ev, ok := h.Source["event"].(map[string]any); ok && ev["id"] != nil {
			id = ev["id"].(string)
		}
		assert.Equal(t, layout.DocID(team, id), h.ID)
		assert.True(t, strings.HasPrefix(h.ID, team+":"), "event %s of team %s", h.ID, team)
		out[team]++
	}
	if n := len(search(t, cfg.QuarantineIndex)); n > 0 {
		out[cfg.QuarantineIndex] = n
	}
	return out
}

type hit struct {
	Index   string         `json:"_index"`
	Routing string         `json:"_routing"`
	ID      string         `json:"_id"`
	Source  map[string]any `json:"_source"`
}

func search(t *testing.T, index string) []hit {
	t.Helper()
	return searchBody(t, index, `{"size":10000,"sort":["@timestamp"]}`)
}

// searchTeam returns a team's events, wherever the layout put them, in time order.
func searchTeam(t *testing.T, cfg *Config, team string) []hit {
	t.Helper()
	lay, err := cfg.layout()
	require.NoError(t, err)
	return searchBody(t, strings.Join(lay.ReadIndices(), ","), fmt.Sprintf(`{"size":10000,"sort":["@timestamp"],"query":{"term":{"team_id":%q}}}`, team))
}

func searchBody(t *testing.T, indices, body string) []hit {
	t.Helper()
	refresh(t, strings.Split(indices, ",")[0])
	res, err := http.Post(estest.URL(t)+"/"+indices+"/_search?ignore_unavailable=true&allow_no_indices=true", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	var out struct {
		Hits struct {
			Hits []hit `json:"hits"`
		} `json:"hits"`
	}
	b, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusOK, res.StatusCode, string(b))
	require.NoError(t, json.Unmarshal(b, &out))
	return out.Hits.Hits
}

func TestTeamsLandInExactlyTheirOwnIndices(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	ld := normalized(t,
		seedSample,
		rawEvent(191796, "user_login_complete", ""),
		rawEvent(7, "job_created", ""),
		rawEvent("acme-corp", "data_export", `,"metadata":{"format":"csv"}`),
		rawEvent("acme-corp", "team_settings_changed", `,"metadata":{"setting":"captcha_protection_level","previous":"low","current":"high"}`),
	)
	require.NoError(t, e.pushLogs(context.Background(), ld))
	assert.Equal(t, map[string]int{
		"191796":    2,
		"7":         1,
		"acme-corp": 2,
	}, teamCounts(t, cfg))
	for _, h := range searchTeam(t, cfg, "acme-corp") {
		assert.Equal(t, "acme-corp", h.Source["team_id"])
	}
}

// A shared partition lies on disk by team, then newest first: a page of one team's events is read
// from a few compressed blocks. The quarantine is not sorted.
func TestPartitionsLieOnDiskByTeamThenNewestFirst(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	teams := []string{"t-3", "t-1", "t-2"}
	var bodies []string
	for i := range 12 { // interleaved as they arrive: t-3, t-1, t-2, t-3, …
		bodies = append(bodies, rawEvent(teams[i%3], "job_created", fmt.Sprintf(`,"metadata":{"n":%d}`, i)))
	}
	require.NoError(t, e.pushLogs(context.Background(), normalized(t, bodies...)))
	require.NoError(t, e.pushLogs(context.Background(), normalized(t, `{"action":"job_created","actor":{"type":"system"}}`))) // no team: quarantined

	hits := searchTeam(t, cfg, "t-1")
	require.Len(t, hits, 4)
	index := hits[0].Index
	var settings map[string]struct {
		Settings map[string]any `json:"settings"`
	}
	require.Equal(t, http.StatusOK, esGet(t, "/"+index+","+cfg.QuarantineIndex+"/_settings?flat_settings=true", &settings))
	assert.Equal(t, "best_compression", settings[index].Settings["index.codec"])
	assert.Equal(t, []any{document.TeamID, document.Timestamp}, settings[index].Settings["index.sort.field"])
	assert.Equal(t, []any{"asc", "desc"}, settings[index].Settings["index.sort.order"])
	assert.NotContains(t, settings[cfg.QuarantineIndex].Settings, "index.sort.field")

	// In the order of the documents on disk (_doc), after a merge to one segment.
	req, _ := http.NewRequest(http.MethodPost, estest.URL(t)+"/"+index+"/_forcemerge?max_num_segments=1", nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	var got []string
	for _, h := range searchBody(t, index, `{"size":100,"sort":["_doc"]}`) {
		got = append(got, fmt.Sprintf("%s %v", h.Source["team_id"], h.Source["metadata"].(map[string]any)["n"]))
	}
	assert.Equal(t, []string{"t-1 10", "t-1 7", "t-1 4", "t-1 1", "t-2 11", "t-2 8", "t-2 5", "t-2 2", "t-3 9", "t-3 6", "t-3 3", "t-3 0"}, got)
}

func TestSeedSampleDocument(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	ld := normalized(t, seedSample)
	id, _ := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes().Get(audit.AttrID)
	require.NoError(t, e.pushLogs(context.Background(), ld))
	hits := searchTeam(t, cfg, "191796")
	require.Len(t, hits, 1)
	assert.Equal(t, "191796:"+id.Str(), hits[0].ID)
	doc := hits[0].Source
	ingested := doc["event"].(map[string]any)["ingested"]
	assert.NotEmpty(t, ingested)
	delete(doc["event"].(map[string]any), "ingested")
	spec := `"@timestamp":"` + baseTime.Format(time.RFC3339) + `","action":"job_user_access_changed","team_id":"191796",
	"actor":{"type":"user","id":"445177","metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"}},
	"targets":[{"type":"job_user_access","id":"107404","metadata":{"job_id":313520,"user_id":506607,"access_level_id":7349}},{"type":"job","id":"313520"},{"type":"user","id":"506607"}],
	"access_route":["::1"],"remote_addr":"::1","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36",
	"metadata":{"previous_access_level_id":7347},`
	// Stored (version 4): the specification's fields, the hash, the ECS fields that are not copies.
	want := `{` + spec + `"event":{"hash":"` + id.Str() + `"},"source":{"ip":"::1"},"user":{"email":"ann+oats@gem.com"},"service":{"name":"jobs-api"},
	"audit":{"action_known":true,"warnings":["missing_id: no audit.id or log.record.uid; the id is the content hash"]}}`
	var wantDoc map[string]any
	require.NoError(t, json.Unmarshal([]byte(want), &wantDoc))
	assert.Equal(t, wantDoc, doc)

	// Read (document.Expand): every field version 3 stored.
	raw, err := json.Marshal(hits[0].Source)
	require.NoError(t, err)
	expanded, err := document.Expand(document.Hit{ID: hits[0].ID, Source: raw}, audit.DefaultCatalog())
	require.NoError(t, err)
	wantExpanded := `{` + spec + `"event":{"id":"` + id.Str() + `","action":"job_user_access_changed","kind":"event","category":"job","outcome":"success","hash":"` + id.Str() + `"},
	"organization":{"id":"191796"},"source":{"ip":"::1"},"user":{"id":"445177","email":"ann+oats@gem.com","name":"Ann Samuelson"},
	"related":{"ip":["::1"],"user":["445177","506607"]},"service":{"name":"jobs-api"},
	"audit":{"action_known":true,"action_description":"A user’s permissions were changed","warnings":["missing_id: no audit.id or log.record.uid; the id is the content hash"]}}`
	assert.JSONEq(t, wantExpanded, string(expanded))

	// The document is findable by the fields engineers use, the aliases among them.
	found := searchBody(t, hits[0].Index, `{"query":{"query_string":{"query":"team_id:191796 AND targets.id:506607 AND user.email:\"ann+oats@gem.com\" AND metadata.previous_access_level_id:7347 AND organization.id:191796 AND event.action:job_user_access_changed AND user.id:445177"}}}`)
	assert.Len(t, found, 1)
}

func TestHostileTeamIDsCreateNoIndexAndAreQuarantined(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	// Through the processor: invalid, quarantined at validation.
	ld := normalized(t, rawEvent("*", "job_created", ""), rawEvent("../191796", "job_created", ""), rawEvent("191796,7", "job_created", ""), rawEvent("Acme", "job_created", ""))
	// Forged: records marked valid by someone other than the processor, with hostile team ids.
	lrs := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	for i, team := range []string{"_all", "audit-*", "quarantine", "x/../../y", ""} {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(baseTime.Add(time.Duration(i) * time.Minute)))
		lr.Attributes().PutStr(audit.AttrStatus, audit.StatusValid)
		lr.Attributes().PutStr(audit.AttrID, fmt.Sprintf("forged-%d", i))
		b := lr.Body().SetEmptyMap()
		b.PutStr("action", "job_created")
		b.PutStr("team_id", team)
		b.PutEmptyMap("actor").PutStr("type", "system")
	}
	require.NoError(t, e.pushLogs(context.Background(), ld))
	counts := teamCounts(t, cfg)
	// "quarantine" is a valid team id: its events go to a partition like any team's, never to the
	// quarantine index.
	assert.Equal(t, map[string]int{cfg.QuarantineIndex: 8, "quarantine": 1}, counts)
	reasons := map[string]int{}
	for _, h := range search(t, cfg.QuarantineIndex) {
		q := h.Source["quarantine"].(map[string]any)
		assert.Equal(t, "validation", q["stage"])
		for _, r := range q["reasons"].([]any) {
			reasons[audit.ProblemCode(r.(string))]++
		}
		assert.NotEmpty(t, h.Source["record"].(map[string]any)["body"])
	}
	assert.Equal(t, map[string]int{"invalid_team_id": 8}, reasons)
}

func TestSameBatchTwiceIsStoredOnce(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	ld := normalized(t, seedSample, rawEvent(7, "job_created", ""), rawEvent("*", "job_created", ""))
	again := plog.NewLogs()
	ld.CopyTo(again)
	require.NoError(t, e.pushLogs(context.Background(), ld))
	require.NoError(t, e.pushLogs(context.Background(), again))
	assert.Equal(t, map[string]int{"191796": 1, "7": 1, cfg.QuarantineIndex: 1}, teamCounts(t, cfg))
}

func TestConflictingMetadataTypesAndInvalidIPsIndex(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	ld := normalized(t,
		rawEvent(7, "job_updated", `,"metadata":{"field":42}`),
		rawEvent(7, "job_updated", `,"metadata":{"field":{"nested":true}}`),
		rawEvent(7, "job_updated", `,"metadata":{"field":"text"}`),
		rawEvent(7, "job_updated", `,"metadata":{"field":[1,"two",{"three":3}]}`),
		rawEvent(7, "job_updated", `,"metadata":"just a string"`),
		rawEvent(7, "job_updated", `,"metadata":[1,2,3]`),
		rawEvent(7, "job_updated", `,"targets":[{"type":"job","id":1,"metadata":"free text"}]`),
		rawEvent(7, "user_login_failed", `,"remote_addr":"not-an-ip","access_route":["unknown","203.0.113.5"]`),
	)
	require.NoError(t, e.pushLogs(context.Background(), ld))
	assert.Equal(t, map[string]int{"7": 8}, teamCounts(t, cfg))
	hits := searchTeam(t, cfg, "7")
	last := hits[len(hits)-1]
	assert.Equal(t, "not-an-ip", last.Source["remote_addr"])
	assert.Nil(t, last.Source["source"], "an invalid IP never reaches an ip field")
	raw, err := json.Marshal(last.Source)
	require.NoError(t, err)
	expanded, err := document.Expand(document.Hit{ID: last.ID, Source: raw}, nil)
	require.NoError(t, err)
	var read map[string]any
	require.NoError(t, json.Unmarshal(expanded, &read))
	assert.Equal(t, []any{"203.0.113.5"}, read["related"].(map[string]any)["ip"], "nor a related IP")
	assert.Equal(t, "failure", read["event"].(map[string]any)["outcome"])
	assert.Equal(t, map[string]any{"value": "just a string"}, hits[4].Source["metadata"])
}

func TestOversizedDocumentIsQuarantinedAndItsBatchMatesIndex(t *testing.T) {
	e, cfg := testExporter(t, "", func(c *Config) { c.MaxDocumentBytes = 64 << 10 })
	huge := strings.Repeat("x", 200<<10)
	ld := normalized(t, rawEvent(7, "job_created", ""), rawEvent(7, "job_updated", `,"metadata":{"blob":"`+huge+`"}`), rawEvent(8, "job_created", ""))
	require.NoError(t, e.pushLogs(context.Background(), ld))
	assert.Equal(t, map[string]int{"7": 1, "8": 1, cfg.QuarantineIndex: 1}, teamCounts(t, cfg))
	q := search(t, cfg.QuarantineIndex)[0].Source
	reasons := q["quarantine"].(map[string]any)["reasons"].([]any)
	require.Len(t, reasons, 1)
	assert.True(t, strings.HasPrefix(reasons[0].(string), "document_too_large: the document is "), reasons[0])
	assert.Equal(t, true, q["record"].(map[string]any)["truncated"])
	assert.Equal(t, searchTeam(t, cfg, "7")[0].Index, q["quarantine"].(map[string]any)["index"])
}

func TestRejectedDocumentIsQuarantinedWithElasticsearchsReason(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	// An actor metadata value longer than Lucene's term limit is ignored (ignore_above), not rejected;
	// a nesting deeper than the index's depth limit is rejected by Elasticsearch itself.
	deep := strings.Repeat(`{"a":`, 25) + "1" + strings.Repeat("}", 25)
	ld := normalized(t, rawEvent(7, "job_created", ""), rawEvent(7, "job_updated", `,"metadata":{"x":`+deep+`}`))
	require.NoError(t, e.pushLogs(context.Background(), ld))
	counts := teamCounts(t, cfg)
	assert.Equal(t, 1, counts["7"], "the shallow event is indexed")
	q := quarantined(t, cfg)
	require.Len(t, q, 1, "the deep one is quarantined")
	meta := q[0].Source["quarantine"].(map[string]any)
	assert.Equal(t, "indexing", meta["stage"])
	assert.Equal(t, []string{"rejected"}, reasonsOf(q[0]))
	assert.Equal(t, "document_parsing_exception", meta["error_type"])
	assert.Contains(t, meta["error_reason"], "failed to parse field [metadata] of type [flattened]")
	assert.Equal(t, searchTeam(t, cfg, "7")[0].Index, meta["index"])
}

func TestTemplateInstalledOnceAndOnVersionChange(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	ctx := context.Background()
	installed, err := ensureTemplates(ctx, e.es, cfg.templates(e.layout))
	require.NoError(t, err)
	assert.Empty(t, installed, "start already installed them; a second run changes nothing")

	var got struct {
		IndexTemplates []struct {
			IndexTemplate struct {
				Version int `json:"version"`
			} `json:"index_template"`
		} `json:"index_templates"`
	}
	require.Equal(t, 200, esGet(t, "/_index_template/"+cfg.IndexPrefix+"events", &got))
	assert.Equal(t, document.TemplateVersion, got.IndexTemplates[0].IndexTemplate.Version)

	// An older version in the cluster is replaced.
	old := bytes.Replace(cfg.templates(e.layout)[cfg.IndexPrefix+"events"], []byte(fmt.Sprintf(`"version":%d`, document.TemplateVersion)), []byte(`"version":0`), 1)
	res, err := e.es.Indices.PutIndexTemplate(cfg.IndexPrefix+"events", bytes.NewReader(old))
	require.NoError(t, err)
	res.Body.Close()
	installed, err = ensureTemplates(ctx, e.es, cfg.templates(e.layout))
	require.NoError(t, err)
	assert.Equal(t, []string{cfg.IndexPrefix + "events"}, installed)

	// A settings change is a new template too.
	cfg.Template.RefreshInterval = "5s"
	installed, err = ensureTemplates(ctx, e.es, cfg.templates(e.layout))
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{cfg.IndexPrefix + "events", cfg.QuarantineIndex + "-index"}, installed)
}
