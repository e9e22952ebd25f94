package auditlog

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

const seedSample = `{"action": "job_user_access_changed", "team_id": 191796, "actor": {"type": "user", "id": 445177, "metadata": {"email": "ann+oats@gem.com", "name": "Ann Samuelson"}}, "targets": [{"type": "job_user_access", "id": 107404, "metadata": {"job_id": 313520, "user_id": 506607, "access_level_id": 7349}}, {"type": "job", "id": 313520, "metadata": null}, {"type": "user", "id": 506607, "metadata": null}], "access_route": ["::1"], "remote_addr": "::1", "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36", "metadata": {"previous_access_level_id": 7347}}`

// otlpSink is an OTLP/HTTP logs endpoint that keeps what it receives.
type otlpSink struct {
	mu   sync.Mutex
	logs []plog.Logs
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.logs = append(s.logs, req.Logs())
	s.mu.Unlock()
	resp, _ := plogotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(resp)
}

// emitOverOTLP emits events through the real SDK and OTLP/HTTP exporter and returns what arrived.
func emitOverOTLP(t *testing.T, events ...audit.Event) ([]string, plog.Logs) {
	t.Helper()
	sink := &otlpSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	exp, err := otlploghttp.New(context.Background(), otlploghttp.WithEndpointURL(srv.URL+"/v1/logs"))
	require.NoError(t, err)
	provider := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
	al := New(provider)
	var ids []string
	for _, ev := range events {
		id, err := al.Emit(context.Background(), ev)
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.NoError(t, provider.Shutdown(context.Background()))
	out := plog.NewLogs()
	for _, ld := range sink.logs {
		ld.ResourceLogs().MoveAndAppendTo(out.ResourceLogs())
	}
	return ids, out
}

// normalize runs logs through the audit processor with its default configuration.
func normalize(t *testing.T, ld plog.Logs) plog.Logs {
	t.Helper()
	sink := new(consumertest.LogsSink)
	f := auditprocessor.NewFactory()
	p, err := f.CreateLogs(context.Background(), processortest.NewNopSettings(f.Type()), f.CreateDefaultConfig(), sink)
	require.NoError(t, err)
	require.NoError(t, p.ConsumeLogs(context.Background(), ld))
	return sink.AllLogs()[0]
}

func records(ld plog.Logs) []plog.LogRecord {
	var out []plog.LogRecord
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				out = append(out, lr)
			}
		}
	}
	return out
}

// seedEvent is the specification's sample, built with this package's helpers.
func seedEvent() audit.Event {
	ev := audit.SampleEvent()
	ev.Actor = User("445177", "ann+oats@gem.com", "Ann Samuelson")
	ev.Metadata = Changed(nil, "access_level_id", 7347, 7349)
	return ev
}

func TestEmittedSeedNormalizesLikeTheSpecificationsSample(t *testing.T) {
	ev := seedEvent()
	// The sample's metadata holds only the previous value; the new one is on the target.
	delete(ev.Metadata, "access_level_id")
	ev.Time = time.Date(2025, 8, 1, 21, 0, 0, 0, time.UTC)
	ids, ld := emitOverOTLP(t, ev)
	got := records(normalize(t, ld))
	require.Len(t, got, 1)
	lr := got[0]
	status, _ := lr.Attributes().Get(audit.AttrStatus)
	require.Equal(t, audit.StatusValid, status.Str())
	id, _ := lr.Attributes().Get(audit.AttrID)
	assert.Equal(t, ids[0], id.Str(), "the emitter's id is the event id")
	assert.Equal(t, "audit.job_user_access_changed", lr.EventName())
	assert.Equal(t, ev.Time, lr.Timestamp().AsTime())

	// The seed's JSON sample, normalized by the processor, is the same canonical body.
	ref := plog.NewLogs()
	rlr := ref.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	rlr.SetEventName("audit")
	rlr.SetTimestamp(pcommon.NewTimestampFromTime(ev.Time))
	rlr.Body().SetStr(seedSample)
	want := records(normalize(t, ref))[0]
	assert.Equal(t, string(pjson.AppendValue(nil, want.Body(), true)), string(pjson.AppendValue(nil, lr.Body(), true)))
}

func TestEmitAssignsUniqueIDsAndTimes(t *testing.T) {
	ev := seedEvent()
	ids, ld := emitOverOTLP(t, ev, ev, ev)
	require.Len(t, ids, 3)
	assert.NotEqual(t, ids[0], ids[1])
	assert.NotEqual(t, ids[1], ids[2])
	recs := records(ld)
	require.Len(t, recs, 3, "every emitted event reaches the collector")
	for i, lr := range recs {
		assert.NotZero(t, lr.Timestamp())
		id, _ := lr.Attributes().Get(audit.AttrID)
		assert.Equal(t, ids[i], id.Str(), "the returned id is the one sent")
	}
	ev.ID = "given-id"
	ids, _ = emitOverOTLP(t, ev)
	assert.Equal(t, []string{"given-id"}, ids)
}

func TestSystemActorAndMetadataShapes(t *testing.T) {
	ev := audit.Event{Action: audit.ActionDataExport, TeamID: "acme", Actor: System(), Metadata: map[string]any{
		"format": "csv", "rows": int64(12), "ratio": 0.5, "tags": []string{"a", "b"}, "nested": map[string]any{"ok": true}, "none": nil,
		"at": time.Date(2025, 8, 1, 0, 0, 0, 0, time.UTC),
	}}
	_, ld := emitOverOTLP(t, ev)
	lr := records(normalize(t, ld))[0]
	status, _ := lr.Attributes().Get(audit.AttrStatus)
	require.Equal(t, audit.StatusValid, status.Str())
	body := string(pjson.AppendValue(nil, lr.Body(), true))
	assert.Contains(t, body, `"actor":{"id":null,"metadata":null,"type":"system"}`)
	assert.Contains(t, body, `"metadata":{"at":"2025-08-01 00:00:00 +0000 UTC","format":"csv","nested":{"ok":true},"none":null,"ratio":0.5,"rows":12,"tags":["a","b"]}`)
}

func TestValidateRefusesWhatTheProcessorWould(t *testing.T) {
	cases := map[string]func(*audit.Event){
		"action":      func(e *audit.Event) { e.Action = "Job Created" },
		"team_id":     func(e *audit.Event) { e.TeamID = "acme,other" },
		"actor type":  func(e *audit.Event) { e.Actor.Type = "robot" },
		"needs an id": func(e *audit.Event) { e.Actor.ID = "" },
		"targets[0]":  func(e *audit.Event) { e.Targets[0].ID = "" },
		"time":        func(e *audit.Event) { e.Time = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) },
		"time 2":      func(e *audit.Event) { e.Time = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) },
		"id must be":  func(e *audit.Event) { e.ID = "\xff\xfe" },
	}
	for want, mutate := range cases {
		ev := seedEvent()
		mutate(&ev)
		_, err := New(sdklog.NewLoggerProvider()).Emit(context.Background(), ev)
		require.Error(t, err, want)
		assert.Contains(t, err.Error(), strings.TrimSuffix(want, " 2"))
	}
}

func TestFromRequest(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/jobs/313520/access", strings.NewReader(""))
	r.RemoteAddr = "[::1]:52144"
	r.Header.Set("User-Agent", "Mozilla/5.0")
	r.Header.Add("X-Forwarded-For", "203.0.113.7, 10.0.0.2")
	r.Header.Add("X-Forwarded-For", "10.0.0.3")
	var ev audit.Event
	FromRequest(&ev, r)
	assert.Equal(t, []string{"203.0.113.7", "10.0.0.2", "10.0.0.3", "::1"}, ev.AccessRoute)
	assert.Equal(t, "::1", ev.RemoteAddr)
	assert.Equal(t, "Mozilla/5.0", ev.UserAgent)

	r.Header.Del("X-Forwarded-For")
	FromRequest(&ev, r)
	assert.Equal(t, []string{"::1"}, ev.AccessRoute, "the specification's sample: route and remote address are the peer")
}

func TestChanged(t *testing.T) {
	assert.Equal(t, map[string]any{"access_level_id": 7349, "previous_access_level_id": 7347}, Changed(nil, "access_level_id", 7347, 7349))
	m := map[string]any{"job_id": 1}
	Changed(m, "status", "open", "closed")
	assert.Equal(t, map[string]any{"job_id": 1, "status": "closed", "previous_status": "open"}, m)
}
