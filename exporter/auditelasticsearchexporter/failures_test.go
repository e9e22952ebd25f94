package auditelasticsearchexporter

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
)

// The failure paths of the exporter against the real node: every record ends stored, a verified
// duplicate, or quarantined, whatever the input or the cluster's condition.

// esDo sends a request with a JSON body to the node and fails the test on an error answer.
func esDo(t *testing.T, method, path, body string) {
	t.Helper()
	req, err := http.NewRequest(method, estest.URL(t)+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Less(t, res.StatusCode, 300, "%s %s: %s", method, path, res.Status)
}

// quarantined returns the quarantine documents, refreshed.
func quarantined(t *testing.T, cfg *Config) []hit {
	t.Helper()
	if esGet(t, "/"+cfg.QuarantineIndex, nil) == http.StatusNotFound {
		return nil
	}
	return search(t, cfg.QuarantineIndex)
}

func reasonsOf(h hit) []string {
	var out []string
	for _, r := range h.Source["quarantine"].(map[string]any)["reasons"].([]any) {
		out = append(out, audit.ProblemCode(r.(string)))
	}
	return out
}

// retryingExporter is the exporter as the collector runs it: exporterhelper's retry, no queue, so
// ConsumeLogs returns once every record has reached its end.
func retryingExporter(t *testing.T, cfg *Config) func(plog.Logs) error {
	cfg.ItemRetry = ItemRetryConfig{MaxAttempts: 2, InitialInterval: 50 * time.Millisecond, MaxInterval: 200 * time.Millisecond}
	cfg.BackOffConfig.InitialInterval = 100 * time.Millisecond
	cfg.BackOffConfig.MaxInterval = 500 * time.Millisecond
	cfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	require.NoError(t, cfg.Validate())
	f := NewFactory()
	exp, err := f.CreateLogs(context.Background(), exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, exp.Shutdown(context.Background())) })
	return func(ld plog.Logs) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return exp.ConsumeLogs(ctx, ld)
	}
}

func TestRealTimestampsOutOfRangeAreQuarantinedAtIngestTime(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for _, ns := range []uint64{math.MaxUint64, 1 << 63} {
		lr := lrs.AppendEmpty()
		lr.SetEventName("audit")
		lr.SetTimestamp(pcommon.Timestamp(ns))
		lr.Body().SetStr(rawEvent(7, "job_created", ""))
	}
	ld = processed(t, ld)
	before := time.Now().Add(-time.Second)
	require.NoError(t, e.pushLogs(context.Background(), ld))
	q := quarantined(t, cfg)
	require.Len(t, q, 2)
	for _, h := range q {
		assert.Equal(t, []string{audit.ProblemTimestampOutOfRange}, reasonsOf(h))
		assert.Equal(t, "7", h.Source["quarantine"].(map[string]any)["team_id"])
		ts, err := time.Parse(time.RFC3339Nano, h.Source["@timestamp"].(string))
		require.NoError(t, err)
		assert.True(t, ts.After(before), "timed at ingest: %s", ts)
	}
	assert.Empty(t, teamCounts(t, cfg)["7"])
}

// TestRealQuarantineUnavailableIsRetried: a quarantine index that is write-blocked, closed, or
// missing where automatic creation is refused holds its records back until it takes them; the
// other teams' events are stored meanwhile and nothing is dropped.
func TestRealQuarantineUnavailableIsRetried(t *testing.T) {
	for _, tc := range []struct {
		name           string
		block, unblock func(t *testing.T, index string)
		deletes        bool
	}{
		{"write block",
			func(t *testing.T, index string) {
				esDo(t, "PUT", "/"+index+"/_settings", `{"index.blocks.write":true}`)
			},
			func(t *testing.T, index string) {
				esDo(t, "PUT", "/"+index+"/_settings", `{"index.blocks.write":null}`)
			}, false},
		{"closed",
			func(t *testing.T, index string) { esDo(t, "POST", "/"+index+"/_close", ``) },
			func(t *testing.T, index string) { esDo(t, "POST", "/"+index+"/_open", ``) }, false},
		{"missing, auto-create refused",
			func(t *testing.T, index string) {
				esDo(t, "DELETE", "/"+index, ``)
				esDo(t, "PUT", "/_cluster/settings", fmt.Sprintf(`{"persistent":{"action.auto_create_index":"-%s,+*"}}`, index))
			},
			func(t *testing.T, index string) {
				esDo(t, "PUT", "/_cluster/settings", `{"persistent":{"action.auto_create_index":null}}`)
			}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "")
			consume := retryingExporter(t, cfg)
			require.NoError(t, consume(normalized(t, rawEvent("*", "job_created", `,"metadata":{"n":0}`))))
			require.Len(t, quarantined(t, cfg), 1)

			tc.block(t, cfg.QuarantineIndex)
			unblocked := make(chan struct{})
			t.Cleanup(func() { <-unblocked })
			go func() {
				defer close(unblocked)
				time.Sleep(3 * time.Second)
				tc.unblock(t, cfg.QuarantineIndex)
			}()
			began := time.Now()
			require.NoError(t, consume(normalized(t, rawEvent("*", "job_created", `,"metadata":{"n":1}`), rawEvent(9, "job_created", ""))))
			took := time.Since(began)
			<-unblocked
			if tc.deletes {
				// The exporter creates the missing index itself; the template applies as usual.
				assert.Less(t, took, 3*time.Second, "the exporter should create the missing quarantine index")
			} else {
				assert.GreaterOrEqual(t, took, 3*time.Second, "the export waited for the quarantine")
			}
			want := 2
			if tc.deletes {
				want = 1 // the first went with the deleted index
			}
			assert.Len(t, quarantined(t, cfg), want, "each bad record quarantined once")
			assert.Equal(t, 1, teamCounts(t, cfg)["9"])
		})
	}
}

// TestRealReusedIDs: one team's two different events under one id keep both (the second as an
// id_conflict); two teams' bad records under one client id are two quarantine documents.
func TestRealReusedIDs(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	for i := 1; i <= 2; i++ {
		ld := normalized(t, rawEvent(7, "job_created", fmt.Sprintf(`,"metadata":{"n":%d}`, i)))
		ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes().PutStr(audit.AttrID, "reused")
		require.NoError(t, e.pushLogs(context.Background(), ld))
		require.NoError(t, e.pushLogs(context.Background(), ld), "a redelivery of either changes nothing")
	}
	assert.Equal(t, 1, teamCounts(t, cfg)["7"])
	q := quarantined(t, cfg)
	require.Len(t, q, 1)
	assert.Equal(t, []string{audit.ProblemIDConflict}, reasonsOf(q[0]))
	meta := q[0].Source["quarantine"].(map[string]any)
	assert.NotEqual(t, meta["hash"], meta["stored_hash"])
	stored := searchTeam(t, cfg, "7")[0].Source["event"].(map[string]any)["hash"]
	assert.Equal(t, stored, meta["stored_hash"])

	ld := normalized(t, rawEvent(11, "Not An Action", ""), rawEvent(12, "Not An Action", ""))
	for _, lr := range ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().All() {
		lr.Attributes().PutStr(audit.AttrID, "client-1")
	}
	require.NoError(t, e.pushLogs(context.Background(), ld))
	teams := map[any]int{}
	for _, h := range quarantined(t, cfg) {
		teams[h.Source["quarantine"].(map[string]any)["team_id"]]++
	}
	assert.Equal(t, map[any]int{"7": 1, "11": 1, "12": 1}, teams)
}

// TestRealEventsApartByObservedTime: two failed logins identical but for when they were observed,
// without ids, are two events.
func TestRealEventsApartByObservedTime(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for i := 0; i < 2; i++ {
		lr := lrs.AppendEmpty()
		lr.SetEventName("audit")
		lr.SetTimestamp(pcommon.NewTimestampFromTime(baseTime))
		lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(baseTime.Add(time.Duration(i+1) * time.Millisecond)))
		lr.Body().SetStr(rawEvent(7, "user_login_failed", ""))
	}
	ld = processed(t, ld)
	require.NoError(t, e.pushLogs(context.Background(), ld))
	require.NoError(t, e.pushLogs(context.Background(), ld), "redelivered: same ids")
	assert.Equal(t, 2, teamCounts(t, cfg)["7"])
}

// TestRealPoisonIDAmongOtherTeams: an id of 200 bytes of invalid UTF-8 (as OTLP/protobuf can carry)
// in a batch with 20 other teams' events: every event is stored, the poison one under its id's hash.
func TestRealPoisonIDAmongOtherTeams(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	var bodies []string
	for i := 1; i <= 21; i++ {
		bodies = append(bodies, rawEvent(i, "job_created", ""))
	}
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for i, b := range bodies {
		lr := lrs.AppendEmpty()
		lr.SetEventName("audit")
		lr.SetTimestamp(pcommon.NewTimestampFromTime(baseTime))
		lr.Body().SetStr(b)
		if i == 10 {
			lr.Attributes().PutStr(audit.AttrID, strings.Repeat("\xff", 200))
		}
	}
	require.NoError(t, e.pushLogs(context.Background(), processed(t, ld)))
	counts := teamCounts(t, cfg)
	for i := 1; i <= 21; i++ {
		assert.Equal(t, 1, counts[strconv.Itoa(i)], "team %d", i)
	}
	want, _ := audit.SafeID(strings.Repeat("\xff", 200))
	assert.Equal(t, "11:"+want, searchTeam(t, cfg, "11")[0].ID)
	assert.Empty(t, quarantined(t, cfg))
}

// TestRealWholeRequest400IsBisected: a document that fails a whole bulk request on the real node (an
// _id over 512 bytes, which the exporter itself never sends) is found by bisection and quarantined
// alone; the other 20 teams' events are stored.
func TestRealWholeRequest400IsBisected(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	var bodies []string
	for i := 1; i <= 21; i++ {
		bodies = append(bodies, rawEvent(i, "job_created", ""))
	}
	ld := normalized(t, bodies...)
	rl := ld.ResourceLogs().At(0)
	sl := rl.ScopeLogs().At(0)
	var items []*item
	for i, lr := range sl.LogRecords().All() {
		it := &item{}
		e.prepare(it, source{rl.Resource(), sl.Scope(), lr}, time.Now(), nil)
		if i == 10 {
			it.id = strings.Repeat("a", 600) // bypasses SafeID, as a bug or another writer might
		}
		items = append(items, it)
	}
	failed, err := e.deliver(context.Background(), items, time.Now())
	require.NoError(t, err)
	require.Empty(t, failed)
	counts := teamCounts(t, cfg)
	for i := 1; i <= 21; i++ {
		want := 1
		if i == 11 {
			want = 0
		}
		assert.Equal(t, want, counts[strconv.Itoa(i)], "team %d", i)
	}
	q := quarantined(t, cfg)
	require.Len(t, q, 1)
	assert.Equal(t, "action_request_validation_exception", q[0].Source["quarantine"].(map[string]any)["error_type"])
	assert.Equal(t, "11", q[0].Source["quarantine"].(map[string]any)["team_id"])
}

// TestRealQuarantineIndexOfAnEarlierVersionGainsTheNewFields: a quarantine index created with the
// version 1 mapping (strict, without the whole record's fields) takes version 2 documents once the
// exporter has started: a template alone would only apply to new indices.
func TestRealQuarantineIndexOfAnEarlierVersionGainsTheNewFields(t *testing.T) {
	cfg := testConfig(t, "")
	// The quarantine mapping of template version 1.
	kw := `{"type":"keyword","ignore_above":1024}`
	v1 := `{"dynamic":"strict","properties":{"@timestamp":{"type":"date_nanos"},
	  "event":{"properties":{"id":` + kw + `,"ingested":{"type":"date_nanos"}}},
	  "quarantine":{"properties":{"stage":` + kw + `,"reasons":{"type":"keyword","ignore_above":2048},"error_type":` + kw + `,
	    "error_reason":{"type":"text"},"team_id":` + kw + `,"index":` + kw + `}},
	  "record":{"properties":{"event_name":` + kw + `,"body":{"type":"text","index":false},"attributes":{"type":"text","index":false},
	    "size":{"type":"long"},"truncated":{"type":"boolean"}}},
	  "service":{"properties":{"name":` + kw + `}}}}`
	esDo(t, "PUT", "/"+cfg.QuarantineIndex, `{"settings":{"number_of_replicas":0},"mappings":`+v1+`}`)

	e := startExporter(t, cfg)
	require.NoError(t, e.pushLogs(context.Background(), normalized(t, rawEvent("*", "job_created", ""))))
	q := quarantined(t, cfg)
	require.Len(t, q, 1)
	assert.NotEmpty(t, q[0].Source["record"].(map[string]any)["time_unix_nano"])
}
