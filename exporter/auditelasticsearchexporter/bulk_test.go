package auditelasticsearchexporter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
)

func TestClassifyItem(t *testing.T) {
	for _, tc := range []struct {
		status  int
		errType string
		want    itemOutcome
	}{
		{201, "", itemStored},
		{200, "", itemStored},
		{409, "version_conflict_engine_exception", itemConflict},
		{429, "es_rejected_execution_exception", itemRetry},
		{429, "circuit_breaking_exception", itemRetry},
		{500, "", itemRetry},
		{503, "unavailable_shards_exception", itemRetry},
		{403, "cluster_block_exception", itemRetry}, // read-only, flood stage
		{400, "index_closed_exception", itemRetry},
		{404, "index_not_found_exception", itemRetry},
		{400, "validation_exception", itemRetry}, // the shard limit
		{401, "security_exception", itemRetry},
		{403, "security_exception", itemRetry},
		{403, "", itemRetry},
		{408, "", itemRetry},
		{400, "document_parsing_exception", itemReject},
		{400, "mapper_parsing_exception", itemReject},
		{400, "strict_dynamic_mapping_exception", itemReject},
		{400, "illegal_argument_exception", itemReject},
		{413, "", itemReject},
		{0, "", itemRetry}, // an answer not understood drops nothing
		{302, "", itemRetry},
	} {
		assert.Equal(t, tc.want, classifyItem(tc.status, tc.errType), "%d %s", tc.status, tc.errType)
	}
}

func TestClassifyResponse(t *testing.T) {
	for status, want := range map[int]requestOutcome{
		200: requestItems, 400: requestSplit, 413: requestSplit,
		401: requestRetry, 403: requestRetry, 404: requestRetry, 429: requestRetry,
		500: requestRetry, 502: requestRetry, 503: requestRetry, 504: requestRetry,
	} {
		assert.Equal(t, want, classifyResponse(status), "%d", status)
	}
}

// fakeES is a scripted stand-in for Elasticsearch's _bulk and _mget, for the unit tests of the
// exporter's decisions (the real node is tested in integration_test.go). It stores what it is given
// like `create` does, unless a script says otherwise.
type fakeES struct {
	mu     sync.Mutex
	docs   map[string]map[string]any // index/id → source
	calls  int
	script func(call int, items []fakeItem) fakeAnswer
	srv    *httptest.Server
}

type fakeItem struct {
	Index, ID, Routing string
	Doc                map[string]any
	Raw                []byte
}

// fakeAnswer is a scripted answer: a whole-request status (with a body and Retry-After), or per item
// a status and error type (0 for the default: store it).
type fakeAnswer struct {
	Status     int
	Body       string
	RetryAfter string
	Items      map[int]fakeItemAnswer
}

type fakeItemAnswer struct {
	Status int
	Type   string
}

func newFakeES(t *testing.T) *fakeES {
	f := &fakeES{docs: map[string]map[string]any{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeES) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	body, _ := io.ReadAll(r.Body)
	switch {
	case strings.HasSuffix(r.URL.Path, "/_bulk"):
		f.bulk(w, body)
	case strings.HasSuffix(r.URL.Path, "/_mget"):
		f.mget(w, body)
	case strings.Contains(r.URL.Path, "/_index_template/") && r.Method == http.MethodGet:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{}`)
	case strings.HasSuffix(r.URL.Path, "/_mapping"):
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"type":"index_not_found_exception"},"status":404}`)
	default:
		io.WriteString(w, `{"acknowledged":true}`)
	}
}

func (f *fakeES) bulk(w http.ResponseWriter, body []byte) {
	var items []fakeItem
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var action struct {
			Create struct {
				Index   string `json:"_index"`
				ID      string `json:"_id"`
				Routing string `json:"routing"`
			} `json:"create"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil {
			http.Error(w, `{"error":{"type":"x_content_parse_exception"},"status":400}`, http.StatusBadRequest)
			return
		}
		if !sc.Scan() {
			http.Error(w, `{"error":{"type":"illegal_argument_exception"},"status":400}`, http.StatusBadRequest)
			return
		}
		it := fakeItem{Index: action.Create.Index, ID: action.Create.ID, Routing: action.Create.Routing, Raw: append([]byte(nil), sc.Bytes()...)}
		json.Unmarshal(it.Raw, &it.Doc)
		items = append(items, it)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	var a fakeAnswer
	if f.script != nil {
		a = f.script(f.calls, items)
	}
	if a.Status != 0 && a.Status != http.StatusOK {
		if a.RetryAfter != "" {
			w.Header().Set("Retry-After", a.RetryAfter)
		}
		w.WriteHeader(a.Status)
		io.WriteString(w, a.Body)
		return
	}
	var out []string
	for i, it := range items {
		if ia, ok := a.Items[i]; ok && ia.Status != 0 {
			out = append(out, fmt.Sprintf(`{"create":{"status":%d,"error":{"type":%q,"reason":"scripted"}}}`, ia.Status, ia.Type))
			continue
		}
		if it.Routing == "" && !strings.HasSuffix(it.Index, "quarantine") {
			// The partitions' mapping requires _routing.
			out = append(out, `{"create":{"status":400,"error":{"type":"routing_missing_exception","reason":"routing is required"}}}`)
			continue
		}
		key := it.Index + "/" + it.Routing + "/" + it.ID
		if _, ok := f.docs[key]; ok {
			out = append(out, `{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}}`)
			continue
		}
		f.docs[key] = it.Doc
		out = append(out, `{"create":{"status":201}}`)
	}
	fmt.Fprintf(w, `{"errors":true,"items":[%s]}`, strings.Join(out, ","))
}

func (f *fakeES) mget(w http.ResponseWriter, body []byte) {
	var req struct {
		Docs []struct {
			Index   string `json:"_index"`
			ID      string `json:"_id"`
			Routing string `json:"routing"`
		} `json:"docs"`
	}
	json.Unmarshal(body, &req)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []any
	for _, d := range req.Docs {
		src, ok := f.docs[d.Index+"/"+d.Routing+"/"+d.ID]
		if !ok {
			out = append(out, map[string]any{"found": false})
			continue
		}
		out = append(out, map[string]any{"found": true, "_source": map[string]any{"event": map[string]any{"hash": src["event"].(map[string]any)["hash"]}}})
	}
	json.NewEncoder(w).Encode(map[string]any{"docs": out})
}

// stored returns the stored events of a team, or with "quarantine" the quarantine documents.
func (f *fakeES) stored(team string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for k, d := range f.docs {
		quarantine := strings.HasSuffix(k[:strings.IndexByte(k, '/')], "quarantine")
		if team == "quarantine" && quarantine || !quarantine && d["team_id"] == team {
			out = append(out, d)
		}
	}
	return out
}

// fakeExporter starts an exporter against a fake node, with fast retries.
func fakeExporter(t *testing.T, f *fakeES) *auditExporter {
	cfg := createDefaultConfig()
	cfg.Endpoints = []string{f.srv.URL}
	cfg.ItemRetry = ItemRetryConfig{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}
	return startExporter(t, cfg)
}

// pushLogs exports a batch as exporterhelper does without a queue: convert, then push.
func (e *auditExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	req, err := e.convert(ctx, ld)
	if err != nil {
		return err
	}
	return e.push(ctx, req)
}

// retried is what exporterhelper retries after err: the documents the export left waiting.
func retried(t *testing.T, err error) *docsRequest {
	t.Helper()
	ns, ok := errors.AsType[*notStored](err)
	require.True(t, ok, "not a notStored error: %v", err)
	return newDocsRequest(ns.items)
}

// mustNotDrop fails the test when err would make the collector drop data.
func mustNotDrop(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		assert.False(t, consumererror.IsPermanent(err), "a permanent error drops data: %v", err)
	}
}

func quarantineReasons(docs []map[string]any) []string {
	var out []string
	for _, d := range docs {
		for _, r := range d["quarantine"].(map[string]any)["reasons"].([]any) {
			out = append(out, audit.ProblemCode(r.(string)))
		}
	}
	return out
}

func TestFakeRedeliveryIsADuplicate(t *testing.T) {
	f := newFakeES(t)
	e := fakeExporter(t, f)
	ld := normalized(t, rawEvent(7, "job_created", ""), rawEvent(8, "job_created", ""))
	require.NoError(t, e.pushLogs(context.Background(), ld))
	require.NoError(t, e.pushLogs(context.Background(), ld))
	assert.Len(t, f.stored("7"), 1)
	assert.Len(t, f.stored("8"), 1)
	assert.Empty(t, f.stored("quarantine"), "a redelivery is a verified duplicate, not a conflict")
}

func TestFakeReusedIDIsQuarantinedAsConflict(t *testing.T) {
	f := newFakeES(t)
	e := fakeExporter(t, f)
	first := normalized(t, rawEvent(7, "job_created", `,"metadata":{"n":1}`))
	second := normalized(t, rawEvent(7, "job_created", `,"metadata":{"n":2}`))
	for _, ld := range []plog.Logs{first, second} {
		ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes().PutStr(audit.AttrID, "reused")
		require.NoError(t, e.pushLogs(context.Background(), ld))
	}
	assert.Len(t, f.stored("7"), 1)
	q := f.stored("quarantine")
	require.Len(t, q, 1, "the second event is kept, in quarantine")
	assert.Equal(t, []string{audit.ProblemIDConflict}, quarantineReasons(q))
	qd := q[0]["quarantine"].(map[string]any)
	assert.Len(t, qd["hash"], 64)
	assert.Len(t, qd["stored_hash"], 64)
	assert.NotEqual(t, qd["hash"], qd["stored_hash"])
	assert.Equal(t, "7", qd["team_id"])
	assert.Equal(t, "reused", q[0]["event"].(map[string]any)["id"])
}

// TestFakeTransientItemErrorsAreRetried: conditions of the cluster are never the document's fault.
func TestFakeTransientItemErrorsAreRetried(t *testing.T) {
	for errType, status := range map[string]int{
		"cluster_block_exception": 403, "index_closed_exception": 400, "index_not_found_exception": 404,
		"validation_exception": 400, "unavailable_shards_exception": 503, "es_rejected_execution_exception": 429,
		"circuit_breaking_exception": 429, "security_exception": 401,
	} {
		t.Run(errType, func(t *testing.T) {
			f := newFakeES(t)
			f.script = func(call int, items []fakeItem) fakeAnswer {
				if call <= 2 {
					return fakeAnswer{Items: map[int]fakeItemAnswer{0: {status, errType}}}
				}
				return fakeAnswer{}
			}
			e := fakeExporter(t, f)
			err := e.pushLogs(context.Background(), normalized(t, rawEvent(7, "job_created", ""), rawEvent(8, "job_created", "")))
			require.NoError(t, err)
			assert.Len(t, f.stored("7"), 1)
			assert.Len(t, f.stored("8"), 1)
			assert.Empty(t, f.stored("quarantine"))
		})
	}
}

// TestFakeQuarantineThatWaitsIsRetried: a quarantine index that is blocked (a condition of the
// cluster) or refuses a document (the quarantine is the last stop) keeps exactly those records back,
// in a retryable error, never a permanent one; the other teams' events are stored meanwhile, and
// exporterhelper's retry stores the record once the quarantine takes it.
func TestFakeQuarantineThatWaitsIsRetried(t *testing.T) {
	for name, answer := range map[string]fakeItemAnswer{
		"blocked": {403, "cluster_block_exception"},
		"refused": {400, "strict_dynamic_mapping_exception"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeES(t)
			f.script = func(_ int, items []fakeItem) fakeAnswer {
				a := fakeAnswer{Items: map[int]fakeItemAnswer{}}
				for i, it := range items {
					if strings.HasSuffix(it.Index, "quarantine") {
						a.Items[i] = answer
					}
				}
				return a
			}
			e := fakeExporter(t, f)
			err := e.pushLogs(context.Background(), normalized(t, rawEvent(7, "job_created", ""), rawEvent("*", "job_created", "")))
			require.Error(t, err)
			mustNotDrop(t, err)
			failed := retried(t, err)
			assert.Equal(t, 1, failed.ItemsCount(), "only the quarantine record waits")
			assert.Len(t, f.stored("7"), 1)
			f.script = nil
			require.NoError(t, e.push(context.Background(), failed))
			assert.Len(t, f.stored("quarantine"), 1)
		})
	}
}

func TestFakeDocumentFaultIsQuarantined(t *testing.T) {
	f := newFakeES(t)
	f.script = func(_ int, items []fakeItem) fakeAnswer {
		if strings.HasSuffix(items[0].Index, "quarantine") {
			return fakeAnswer{}
		}
		return fakeAnswer{Items: map[int]fakeItemAnswer{1: {400, "document_parsing_exception"}}}
	}
	e := fakeExporter(t, f)
	require.NoError(t, e.pushLogs(context.Background(), normalized(t, rawEvent(7, "job_created", ""), rawEvent(8, "job_created", ""))))
	assert.Len(t, f.stored("7"), 1)
	assert.Empty(t, f.stored("8"))
	q := f.stored("quarantine")
	require.Len(t, q, 1)
	assert.Equal(t, "document_parsing_exception", q[0]["quarantine"].(map[string]any)["error_type"])
	assert.Equal(t, "8", q[0]["quarantine"].(map[string]any)["team_id"])
}

// TestFakeWholeRequest400Bisects: one poison document that fails the whole request is found by
// bisection and quarantined alone; every other team's event is stored.
func TestFakeWholeRequest400Bisects(t *testing.T) {
	f := newFakeES(t)
	f.script = func(_ int, items []fakeItem) fakeAnswer {
		for _, it := range items {
			if it.Doc["team_id"] == "13" && !strings.HasSuffix(it.Index, "quarantine") {
				return fakeAnswer{Status: 400, Body: `{"error":{"type":"action_request_validation_exception","reason":"Validation Failed: 1: id is too long"},"status":400}`}
			}
		}
		return fakeAnswer{}
	}
	e := fakeExporter(t, f)
	var bodies []string
	for i := 0; i < 21; i++ {
		bodies = append(bodies, rawEvent(i+1, "job_created", ""))
	}
	require.NoError(t, e.pushLogs(context.Background(), normalized(t, bodies...)))
	for i := 0; i < 21; i++ {
		want := 1
		if i+1 == 13 {
			want = 0
		}
		assert.Len(t, f.stored(strconv.Itoa(i+1)), want, "team %d", i+1)
	}
	q := f.stored("quarantine")
	require.Len(t, q, 1)
	assert.Equal(t, "action_request_validation_exception", q[0]["quarantine"].(map[string]any)["error_type"])
}

func TestFake413Splits(t *testing.T) {
	f := newFakeES(t)
	f.script = func(_ int, items []fakeItem) fakeAnswer {
		if len(items) > 2 {
			return fakeAnswer{Status: 413, Body: `{"error":"too large"}`}
		}
		return fakeAnswer{}
	}
	e := fakeExporter(t, f)
	var bodies []string
	for i := 0; i < 9; i++ {
		bodies = append(bodies, rawEvent(7, "job_created", fmt.Sprintf(`,"metadata":{"n":%d}`, i)))
	}
	require.NoError(t, e.pushLogs(context.Background(), normalized(t, bodies...)))
	assert.Len(t, f.stored("7"), 9)
	assert.Empty(t, f.stored("quarantine"))
}

// TestFakeThrottleHonoursRetryAfter: a whole-request 429 or 503 with Retry-After is retried after at
// least that long, and exporterhelper is told the delay when the condition lasts.
func TestFakeThrottleHonoursRetryAfter(t *testing.T) {
	f := newFakeES(t)
	var times []time.Time
	f.script = func(call int, _ []fakeItem) fakeAnswer {
		times = append(times, time.Now())
		if call == 1 {
			return fakeAnswer{Status: 429, RetryAfter: "1", Body: `{"error":"busy"}`}
		}
		return fakeAnswer{}
	}
	e := fakeExporter(t, f)
	require.NoError(t, e.pushLogs(context.Background(), normalized(t, rawEvent(7, "job_created", ""))))
	require.Len(t, times, 2)
	assert.GreaterOrEqual(t, times[1].Sub(times[0]), time.Second, "Retry-After honoured")

	f.script = func(int, []fakeItem) fakeAnswer {
		return fakeAnswer{Status: 503, RetryAfter: "1", Body: `{"error":"unavailable"}`}
	}
	err := e.pushLogs(context.Background(), normalized(t, rawEvent(8, "job_created", "")))
	require.Error(t, err)
	mustNotDrop(t, err)
	assert.Contains(t, err.Error(), "Throttle (1s)", "exporterhelper learns the delay")
}

// TestFakeQuarantineIDsAreScopedByTeam: two teams' invalid records with one client id are two
// quarantine documents, each under its team; the same record twice is one. Bodies come as JSON
// strings and as maps (which name the team in the map, not in the processor's parse).
func TestFakeQuarantineIDsAreScopedByTeam(t *testing.T) {
	for name, records := range map[string]func() plog.Logs{
		"JSON string bodies": func() plog.Logs {
			return normalized(t, rawEvent(7, "Bad Action", ""), rawEvent(8, "Bad Action", ""))
		},
		"map bodies": func() plog.Logs {
			ld := plog.NewLogs()
			lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
			for _, team := range []string{"7", "8"} {
				lr := lrs.AppendEmpty()
				lr.SetEventName("audit")
				body := lr.Body().SetEmptyMap()
				body.PutStr("action", "Bad Action")
				body.PutStr("team_id", team)
				body.PutEmptyMap("actor").PutStr("type", "system")
			}
			return processed(t, ld)
		},
		"identical map bodies, the team in an attribute": func() plog.Logs {
			ld := plog.NewLogs()
			lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
			for _, team := range []string{"7", "8"} {
				lr := lrs.AppendEmpty()
				lr.SetEventName("audit")
				lr.Attributes().PutStr(audit.AttrTeamID, team)
				body := lr.Body().SetEmptyMap()
				body.PutStr("action", "Bad Action")
				body.PutEmptyMap("actor").PutStr("type", "system")
			}
			return processed(t, ld)
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeES(t)
			e := fakeExporter(t, f)
			ld := records()
			for _, lr := range ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().All() {
				lr.Attributes().PutStr(audit.AttrID, "client-1")
				lr.SetTimestamp(pcommon.NewTimestampFromTime(baseTime))
			}
			require.NoError(t, e.pushLogs(context.Background(), ld))
			require.NoError(t, e.pushLogs(context.Background(), ld))
			q := f.stored("quarantine")
			require.Len(t, q, 2)
			teams := map[any]bool{}
			for _, d := range q {
				teams[d["quarantine"].(map[string]any)["team_id"]] = true
				assert.Equal(t, "client-1", d["event"].(map[string]any)["id"])
			}
			assert.Equal(t, map[any]bool{"7": true, "8": true}, teams)
		})
	}
}

// TestFakeItemThrottledPastMaxAttemptsIsHandedBack: "no permanent error drops data", without a
// node. One team's event is answered 429 on every attempt, past item_retry.max_attempts: the
// export fails with a retryable error that hands exactly that record back to exporterhelper (the
// other team's event is stored meanwhile), and once the cluster takes it the retry stores it.
func TestFakeItemThrottledPastMaxAttemptsIsHandedBack(t *testing.T) {
	f := newFakeES(t)
	attempts := 0
	f.script = func(_ int, items []fakeItem) fakeAnswer {
		a := fakeAnswer{Items: map[int]fakeItemAnswer{}}
		for i, it := range items {
			if it.Routing == "8" {
				attempts++
				a.Items[i] = fakeItemAnswer{429, "es_rejected_execution_exception"}
			}
		}
		return a
	}
	e := fakeExporter(t, f)
	err := e.pushLogs(context.Background(), normalized(t, rawEvent(7, "job_created", ""), rawEvent(8, "job_created", "")))
	require.Error(t, err)
	mustNotDrop(t, err)
	assert.Equal(t, e.cfg.ItemRetry.MaxAttempts, attempts, "retried inside the export up to max_attempts")
	failed := retried(t, err)
	require.Equal(t, 1, failed.ItemsCount(), "exactly the throttled record is handed back")
	assert.Equal(t, "8", failed.items[0].routing)
	assert.Len(t, f.stored("7"), 1)
	assert.Empty(t, f.stored("8"))
	assert.Empty(t, f.stored("quarantine"), "a throttled record is no fault of its own")

	f.script = nil
	require.NoError(t, e.push(context.Background(), failed))
	assert.Len(t, f.stored("8"), 1)
}
