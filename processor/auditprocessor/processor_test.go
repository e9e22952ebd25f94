package auditprocessor

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
	"github.com/auditpipe/auditpipe/processor/auditprocessor/internal/metadatatest"
)

var testTime = time.Date(2025, 8, 1, 21, 0, 0, 0, time.UTC)

// seedSampleCanonical is the seed document's sample record in canonical form: ids as strings.
const seedSampleCanonical = `{"access_route":["::1"],"action":"job_user_access_changed",` +
	`"actor":{"id":"445177","metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"},"type":"user"},` +
	`"metadata":{"previous_access_level_id":7347},"remote_addr":"::1",` +
	`"targets":[{"id":"107404","metadata":{"access_level_id":7349,"job_id":313520,"user_id":506607},"type":"job_user_access"},` +
	`{"id":"313520","metadata":null,"type":"job"},{"id":"506607","metadata":null,"type":"user"}],` +
	`"team_id":"191796","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36"}`

func seedJSON(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "seed_sample.json"))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// run passes one record, built by fill, through a processor with cfg and returns what came out.
func run(t *testing.T, cfg *Config, fill func(lr plog.LogRecord)) (plog.Logs, *consumertest.LogsSink) {
	t.Helper()
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "jobs-api")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(testTime))
	fill(lr)
	sink := new(consumertest.LogsSink)
	if cfg == nil {
		cfg = createDefaultConfig()
	}
	p, err := NewFactory().CreateLogs(context.Background(), metadatatest.NewSettings(componenttest.NewTelemetry()), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.ConsumeLogs(context.Background(), ld))
	return ld, sink
}

// only returns the single record that came out.
func only(t *testing.T, sink *consumertest.LogsSink) plog.LogRecord {
	t.Helper()
	require.Equal(t, 1, sink.LogRecordCount())
	return sink.AllLogs()[0].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
}

func attrStr(lr plog.LogRecord, k string) string {
	v, ok := lr.Attributes().Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

func attrList(lr plog.LogRecord, k string) []string {
	v, ok := lr.Attributes().Get(k)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range v.Slice().All() {
		out = append(out, e.Str())
	}
	return out
}

func bodyJSON(lr plog.LogRecord) string { return string(pjson.AppendValue(nil, lr.Body(), true)) }

// seedAsAttributes fills the attribute encoding of the seed sample.
func seedAsAttributes(lr plog.LogRecord) {
	a := lr.Attributes()
	a.PutStr(audit.AttrAction, "job_user_access_changed")
	a.PutInt(audit.AttrTeamID, 191796)
	a.PutStr(audit.AttrActorType, "user")
	a.PutInt(audit.AttrActorID, 445177)
	am := a.PutEmptyMap(audit.AttrActorMetadata)
	am.PutStr("email", "ann+oats@gem.com")
	am.PutStr("name", "Ann Samuelson")
	ts := a.PutEmptySlice(audit.AttrTargets)
	t0 := ts.AppendEmpty().SetEmptyMap()
	t0.PutStr("type", "job_user_access")
	t0.PutInt("id", 107404)
	m := t0.PutEmptyMap("metadata")
	m.PutInt("job_id", 313520)
	m.PutInt("user_id", 506607)
	m.PutInt("access_level_id", 7349)
	t1 := ts.AppendEmpty().SetEmptyMap()
	t1.PutStr("type", "job")
	t1.PutInt("id", 313520)
	t2 := ts.AppendEmpty().SetEmptyMap()
	t2.PutStr("type", "user")
	t2.PutStr("id", "506607")
	a.PutEmptySlice(attrForwardedFor).AppendEmpty().SetStr("::1")
	a.PutStr(attrClientAddress, "::1")
	a.PutStr(attrUserAgent, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36")
	a.PutEmptyMap(audit.AttrMetadata).PutInt("previous_access_level_id", 7347)
}

func TestSeedSampleInAllThreeEncodings(t *testing.T) {
	js := seedJSON(t)
	encodings := map[string]func(lr plog.LogRecord){
		"map body": func(lr plog.LogRecord) {
			require.NoError(t, pjson.DecodeMap([]byte(js), lr.Body().SetEmptyMap()))
			lr.SetEventName("audit")
		},
		"string body": func(lr plog.LogRecord) {
			lr.Body().SetStr(js)
			lr.SetEventName("audit.job_user_access_changed")
		},
		"attributes": func(lr plog.LogRecord) {
			lr.Body().SetStr("user 445177 changed job access")
			seedAsAttributes(lr)
		},
	}
	var ids []string
	for name, fill := range encodings {
		t.Run(name, func(t *testing.T) {
			_, sink := run(t, nil, fill)
			lr := only(t, sink)
			assert.Equal(t, audit.StatusValid, attrStr(lr, audit.AttrStatus))
			assert.Nil(t, attrList(lr, audit.AttrProblems))
			assert.Equal(t, []string{"missing_id: no audit.id or log.record.uid; the id is the content hash"}, attrList(lr, audit.AttrWarnings))
			assert.Equal(t, "true", attrStr(lr, audit.AttrKnown))
			assert.Equal(t, seedSampleCanonical, bodyJSON(lr))
			assert.Len(t, attrStr(lr, audit.AttrID), 64)
			assert.Equal(t, attrStr(lr, audit.AttrHash), attrStr(lr, audit.AttrID), "without a supplied id the id is the content hash")
			for _, k := range inputAttrs {
				_, has := lr.Attributes().Get(k)
				assert.False(t, has, "input attribute %s is consumed", k)
			}
			ids = append(ids, attrStr(lr, audit.AttrID))
		})
	}
	require.Len(t, ids, 3)
	assert.Equal(t, ids[0], ids[1])
	assert.Equal(t, ids[0], ids[2], "the same event in any encoding gets the same id")
}

func TestSuppliedIDsAndTimestamps(t *testing.T) {
	_, sink := run(t, nil, func(lr plog.LogRecord) {
		lr.Body().SetStr(seedJSON(t))
		lr.SetEventName("audit")
		lr.Attributes().PutStr(attrRecordUID, "01J9ZZ-from-uid")
	})
	lr := only(t, sink)
	assert.Equal(t, "01J9ZZ-from-uid", attrStr(lr, audit.AttrID))

	_, sink = run(t, nil, func(lr plog.LogRecord) {
		lr.Body().SetStr(seedJSON(t))
		lr.SetEventName("audit")
		lr.Attributes().PutStr(attrRecordUID, "from-uid")
		lr.Attributes().PutStr(audit.AttrID, "from-audit-id")
	})
	assert.Equal(t, "from-audit-id", attrStr(only(t, sink), audit.AttrID), "audit.id wins over log.record.uid")

	observed := testTime.Add(time.Minute)
	_, sink = run(t, nil, func(lr plog.LogRecord) {
		lr.Body().SetStr(seedJSON(t))
		lr.SetEventName("audit")
		lr.SetTimestamp(0)
		lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(observed))
	})
	lr = only(t, sink)
	assert.Equal(t, observed, lr.Timestamp().AsTime())

	_, sink = run(t, nil, func(lr plog.LogRecord) {
		lr.Body().SetStr(seedJSON(t))
		lr.SetEventName("audit")
		lr.SetTimestamp(0)
	})
	lr = only(t, sink)
	assert.NotZero(t, lr.Timestamp())
	assert.Equal(t, []string{"missing_timestamp: no timestamp or observed timestamp; processing time used",
		"missing_id: no audit.id or log.record.uid; the id is the content hash"}, attrList(lr, audit.AttrWarnings))

	// The same content at another time is another event.
	_, a := run(t, nil, func(lr plog.LogRecord) { lr.Body().SetStr(seedJSON(t)); lr.SetEventName("audit") })
	_, b := run(t, nil, func(lr plog.LogRecord) {
		lr.Body().SetStr(seedJSON(t))
		lr.SetEventName("audit")
		lr.SetTimestamp(pcommon.NewTimestampFromTime(testTime.Add(time.Nanosecond)))
	})
	assert.NotEqual(t, attrStr(only(t, a), audit.AttrID), attrStr(only(t, b), audit.AttrID))
}

func TestSystemActorAndMinimalEvent(t *testing.T) {
	_, sink := run(t, nil, func(lr plog.LogRecord) {
		lr.SetEventName("audit.data_export")
		b := lr.Body().SetEmptyMap()
		b.PutStr("team_id", "acme")
		b.PutEmptyMap("actor").PutStr("type", "system")
		b.PutStr("metadata", "nightly")
	})
	lr := only(t, sink)
	assert.Equal(t, audit.StatusValid, attrStr(lr, audit.AttrStatus))
	assert.Equal(t, `{"access_route":[],"action":"data_export","actor":{"id":null,"metadata":null,"type":"system"},`+
		`"metadata":"nightly","remote_addr":null,"targets":[],"team_id":"acme","user_agent":null}`, bodyJSON(lr))
}

func TestPrecedence(t *testing.T) {
	// audit.* attributes win over the body; the body wins over semantic-convention attributes.
	_, sink := run(t, nil, func(lr plog.LogRecord) {
		lr.SetEventName("audit")
		b := lr.Body().SetEmptyMap()
		b.PutStr("action", "job_created")
		b.PutInt("team_id", 7)
		actor := b.PutEmptyMap("actor")
		actor.PutStr("type", "user")
		actor.PutInt("id", 1)
		b.PutStr("remote_addr", "10.0.0.1")
		b.PutStr("user_agent", "body-agent")
		b.PutEmptyMap("metadata").PutStr("from", "body")
		b.PutEmptySlice("access_route").AppendEmpty().SetStr("10.0.0.2")
		a := lr.Attributes()
		a.PutInt(audit.AttrActorID, 2)
		a.PutEmptyMap(audit.AttrMetadata).PutStr("from", "attributes")
		a.PutStr(attrClientAddress, "192.0.2.1")
		a.PutStr(attrPeerAddress, "192.0.2.2")
		a.PutStr(attrUserAgent, "attr-agent")
		a.PutStr(attrForwardedFor, "192.0.2.3")
	})
	lr := only(t, sink)
	require.Equal(t, audit.StatusValid, attrStr(lr, audit.AttrStatus), attrList(lr, audit.AttrProblems))
	assert.Equal(t, `{"access_route":["10.0.0.2"],"action":"job_created","actor":{"id":"2","metadata":null,"type":"user"},`+
		`"metadata":{"from":"attributes"},"remote_addr":"10.0.0.1","targets":[],"team_id":"7","user_agent":"body-agent"}`, bodyJSON(lr))
	assert.Equal(t, "192.0.2.1", attrStr(lr, attrClientAddress), "semantic-convention attributes are kept")

	// Without the body's fields: client.address before network.peer.address; XFF splits on commas.
	_, sink = run(t, nil, func(lr plog.LogRecord) {
		a := lr.Attributes()
		a.PutStr(audit.AttrAction, "user_login_failed")
		a.PutStr(audit.AttrTeamID, "7")
		a.PutStr(audit.AttrActorType, "system")
		a.PutStr(attrPeerAddress, "192.0.2.2")
		a.PutStr(attrForwardedFor, "203.0.113.9, 10.1.1.1")
	})
	lr = only(t, sink)
	assert.Contains(t, bodyJSON(lr), `"access_route":["203.0.113.9","10.1.1.1"]`)
	assert.Contains(t, bodyJSON(lr), `"remote_addr":"192.0.2.2"`)
}

func TestValidationRules(t *testing.T) {
	valid := func(lr plog.LogRecord) pcommon.Map {
		lr.SetEventName("audit")
		b := lr.Body().SetEmptyMap()
		b.PutStr("action", "job_created")
		b.PutInt("team_id", 191796)
		actor := b.PutEmptyMap("actor")
		actor.PutStr("type", "user")
		actor.PutInt("id", 445177)
		return b
	}
	cases := []struct {
		name   string
		mutate func(lr plog.LogRecord, b pcommon.Map)
		want   []string // problem codes
	}{
		{"missing action", func(_ plog.LogRecord, b pcommon.Map) { b.Remove("action") }, []string{audit.ProblemMissingAction}},
		{"malformed action", func(_ plog.LogRecord, b pcommon.Map) { b.PutStr("action", "Job Created") }, []string{audit.ProblemMalformedAction}},
		{"action not a string", func(_ plog.LogRecord, b pcommon.Map) { b.PutInt("action", 3) }, []string{audit.ProblemMalformedField, audit.ProblemMissingAction}},
		{"missing team", func(_ plog.LogRecord, b pcommon.Map) { b.Remove("team_id") }, []string{audit.ProblemMissingTeamID}},
		{"team is a map", func(_ plog.LogRecord, b pcommon.Map) { b.PutEmptyMap("team_id") }, []string{audit.ProblemMalformedField, audit.ProblemMissingTeamID}},
		{"negative team", func(_ plog.LogRecord, b pcommon.Map) { b.PutInt("team_id", -5) }, []string{audit.ProblemInvalidTeamID}},
		{"fractional team", func(_ plog.LogRecord, b pcommon.Map) { b.PutDouble("team_id", 1.5) }, []string{audit.ProblemMalformedField, audit.ProblemMissingTeamID}},
		{"no actor", func(_ plog.LogRecord, b pcommon.Map) { b.Remove("actor") }, []string{audit.ProblemMissingActor}},
		{"actor is a string", func(_ plog.LogRecord, b pcommon.Map) { b.PutStr("actor", "ann") }, []string{audit.ProblemMalformedField, audit.ProblemMissingActor}},
		{"bad actor type", func(_ plog.LogRecord, b pcommon.Map) { m, _ := b.Get("actor"); m.Map().PutStr("type", "robot") }, []string{audit.ProblemInvalidActorType}},
		{"user without id", func(_ plog.LogRecord, b pcommon.Map) { m, _ := b.Get("actor"); m.Map().Remove("id") }, []string{audit.ProblemMissingActorID}},
		{"extra actor field", func(_ plog.LogRecord, b pcommon.Map) { m, _ := b.Get("actor"); m.Map().PutStr("email", "x") }, []string{audit.ProblemUnknownField}},
		{"targets not a list", func(_ plog.LogRecord, b pcommon.Map) { b.PutStr("targets", "job") }, []string{audit.ProblemMalformedTargets}},
		{"target not a map", func(_ plog.LogRecord, b pcommon.Map) { b.PutEmptySlice("targets").AppendEmpty().SetStr("job") }, []string{audit.ProblemMalformedTargets}},
		{"target without id", func(_ plog.LogRecord, b pcommon.Map) {
			b.PutEmptySlice("targets").AppendEmpty().SetEmptyMap().PutStr("type", "job")
		}, []string{audit.ProblemMalformedTargets}},
		{"target without type", func(_ plog.LogRecord, b pcommon.Map) {
			b.PutEmptySlice("targets").AppendEmpty().SetEmptyMap().PutInt("id", 1)
		}, []string{audit.ProblemMalformedTargets}},
		{"unknown top-level field", func(_ plog.LogRecord, b pcommon.Map) { b.PutStr("severity", "high") }, []string{audit.ProblemUnknownField}},
		{"access route of numbers", func(_ plog.LogRecord, b pcommon.Map) { b.PutEmptySlice("access_route").AppendEmpty().SetInt(1) }, []string{audit.ProblemMalformedField}},
		{"remote_addr a number", func(_ plog.LogRecord, b pcommon.Map) { b.PutInt("remote_addr", 1) }, []string{audit.ProblemMalformedField}},
		{"body is a number", func(lr plog.LogRecord, _ pcommon.Map) { lr.Body().SetInt(4) }, []string{audit.ProblemMalformedBody, audit.ProblemMissingAction, audit.ProblemMissingTeamID, audit.ProblemMissingActor}},
		{"body is bad JSON", func(lr plog.LogRecord, _ pcommon.Map) { lr.Body().SetStr(`{"action": "job_created",`) }, []string{audit.ProblemMalformedBody, audit.ProblemMissingAction, audit.ProblemMissingTeamID, audit.ProblemMissingActor}},
		{"action conflict", func(lr plog.LogRecord, _ pcommon.Map) { lr.SetEventName("audit.job_deleted") }, []string{audit.ProblemConflictingField}},
		{"team conflict", func(lr plog.LogRecord, _ pcommon.Map) { lr.Attributes().PutStr(audit.AttrTeamID, "191797") }, []string{audit.ProblemConflictingField}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var original string
			_, sink := run(t, nil, func(lr plog.LogRecord) {
				tc.mutate(lr, valid(lr))
				original = bodyJSON(lr)
			})
			lr := only(t, sink)
			assert.Equal(t, audit.StatusInvalid, attrStr(lr, audit.AttrStatus))
			var codes []string
			for _, p := range attrList(lr, audit.AttrProblems) {
				codes = append(codes, audit.ProblemCode(p))
				assert.NotEqual(t, audit.ProblemCode(p), p, "problem %q has a detail", p)
			}
			assert.Equal(t, tc.want, codes)
			assert.Equal(t, original, bodyJSON(lr), "an invalid record keeps its body as it came")
			assert.Len(t, attrStr(lr, audit.AttrID), 64, "an invalid record gets a stable id too")
			_, hasHash := lr.Attributes().Get(audit.AttrHash)
			assert.False(t, hasHash)
		})
	}
}

func TestHostileTeamIDs(t *testing.T) {
	for _, id := range []string{"", "*", "audit-*", "../191797", "191796,191797", "Acme", "acme corp", "_all", "0", "007",
		"a/b", "team\x00", strings.Repeat("a", 65), "-x", "191796 ", "\u0430cme"} {
		_, sink := run(t, nil, func(lr plog.LogRecord) {
			lr.SetEventName("audit.job_created")
			b := lr.Body().SetEmptyMap()
			b.PutStr("team_id", id)
			b.PutEmptyMap("actor").PutStr("type", "system")
		})
		lr := only(t, sink)
		assert.Equal(t, audit.StatusInvalid, attrStr(lr, audit.AttrStatus), "team id %q", id)
		want := audit.ProblemInvalidTeamID
		if id == "" {
			want = audit.ProblemMissingTeamID
		}
		assert.Equal(t, want, audit.ProblemCode(attrList(lr, audit.AttrProblems)[0]), "team id %q", id)
	}
}

func TestInvalidIPsWarnOnly(t *testing.T) {
	_, sink := run(t, nil, func(lr plog.LogRecord) {
		lr.SetEventName("audit.user_login_failed")
		b := lr.Body().SetEmptyMap()
		b.PutInt("team_id", 5)
		b.PutEmptyMap("actor").PutStr("type", "system")
		b.PutStr("remote_addr", "not-an-ip")
		r := b.PutEmptySlice("access_route")
		r.AppendEmpty().SetStr("203.0.113.7")
		r.AppendEmpty().SetStr("unknown")
	})
	lr := only(t, sink)
	assert.Equal(t, audit.StatusValid, attrStr(lr, audit.AttrStatus))
	assert.Equal(t, []string{
		`invalid_ip: access_route "unknown" is not an IP address; kept as text only`,
		`invalid_ip: remote_addr "not-an-ip" is not an IP address; kept as text only`,
		`missing_id: no audit.id or log.record.uid; the id is the content hash`,
	}, attrList(lr, audit.AttrWarnings))
	assert.Contains(t, bodyJSON(lr), `"access_route":["203.0.113.7","unknown"]`)
	assert.Contains(t, bodyJSON(lr), `"remote_addr":"not-an-ip"`)
}

func unknownAction(lr plog.LogRecord) {
	lr.SetEventName("audit.report_viewed")
	b := lr.Body().SetEmptyMap()
	b.PutInt("team_id", 5)
	b.PutEmptyMap("actor").PutStr("type", "system")
}

func TestUnknownActions(t *testing.T) {
	_, sink := run(t, nil, unknownAction)
	lr := only(t, sink)
	assert.Equal(t, audit.StatusValid, attrStr(lr, audit.AttrStatus))
	assert.Equal(t, "false", attrStr(lr, audit.AttrKnown))

	cfg := createDefaultConfig()
	cfg.UnknownActions = UnknownReject
	_, sink = run(t, cfg, unknownAction)
	lr = only(t, sink)
	assert.Equal(t, audit.StatusInvalid, attrStr(lr, audit.AttrStatus))
	assert.Equal(t, []string{`unknown_action: "report_viewed" is not in the action catalog`}, attrList(lr, audit.AttrProblems))
}

func TestRecognition(t *testing.T) {
	plain := func(lr plog.LogRecord) { lr.Body().SetStr("GET /health 200") }
	cases := []struct {
		name  string
		rules []Rule
		fill  func(lr plog.LogRecord)
		audit bool
	}{
		{"plain log", nil, plain, false},
		{"event name audit", nil, func(lr plog.LogRecord) { lr.SetEventName("audit") }, true},
		{"event name audit.x", nil, func(lr plog.LogRecord) { lr.SetEventName("audit.job_created") }, true},
		{"event name auditing", nil, func(lr plog.LogRecord) { lr.SetEventName("auditing") }, false},
		{"audit.action attribute", nil, func(lr plog.LogRecord) { lr.Attributes().PutStr(audit.AttrAction, "job_created") }, true},
		{"attribute rule", []Rule{{Attribute: "log.type", Value: "audit"}}, func(lr plog.LogRecord) { lr.Attributes().PutStr("log.type", "audit") }, true},
		{"attribute rule, other value", []Rule{{Attribute: "log.type", Value: "audit"}}, func(lr plog.LogRecord) { lr.Attributes().PutStr("log.type", "access") }, false},
		{"resource attribute rule", []Rule{{Attribute: "service.name", Value: "jobs-api"}}, plain, true},
		{"scope rule", []Rule{{ScopeName: "acme/audit"}}, plain, false},
	}
	for _, tc := range cases {
		for _, mode := range []string{NonAuditPass, NonAuditDrop} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				cfg := createDefaultConfig()
				cfg.Rules = tc.rules
				cfg.NonAudit = mode
				_, sink := run(t, cfg, func(lr plog.LogRecord) {
					plain(lr)
					tc.fill(lr)
					lr.Attributes().PutStr(audit.AttrStatus, "valid") // forged: only the processor sets it
				})
				if !tc.audit && mode == NonAuditDrop {
					assert.Equal(t, 0, sink.LogRecordCount())
					return
				}
				lr := only(t, sink)
				status := attrStr(lr, audit.AttrStatus)
				if tc.audit {
					assert.Contains(t, []string{audit.StatusValid, audit.StatusInvalid}, status)
					return
				}
				assert.Empty(t, status, "a passed-through record loses a forged audit.status")
				assert.Equal(t, "GET /health 200", lr.Body().Str())
			})
		}
	}
}

func TestScopeRuleAndDropKeepsStructure(t *testing.T) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	audited := rl.ScopeLogs().AppendEmpty()
	audited.Scope().SetName("acme/audit")
	lr := audited.LogRecords().AppendEmpty()
	lr.Body().SetStr(`{"action":"job_created","team_id":1,"actor":{"type":"system"}}`)
	other := rl.ScopeLogs().AppendEmpty()
	other.Scope().SetName("net/http")
	other.LogRecords().AppendEmpty().Body().SetStr("GET /")
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("noise")

	cfg := createDefaultConfig()
	cfg.NonAudit = NonAuditDrop
	cfg.Rules = []Rule{{ScopeName: "acme/audit"}}
	tel := componenttest.NewTelemetry()
	sink := new(consumertest.LogsSink)
	p, err := NewFactory().CreateLogs(context.Background(), metadatatest.NewSettings(tel), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.ConsumeLogs(context.Background(), ld))
	require.Equal(t, 1, sink.LogRecordCount())
	out := sink.AllLogs()[0]
	require.Equal(t, 1, out.ResourceLogs().Len(), "empty resources are removed")
	require.Equal(t, 1, out.ResourceLogs().At(0).ScopeLogs().Len(), "empty scopes are removed")
	assert.Equal(t, "acme/audit", out.ResourceLogs().At(0).ScopeLogs().At(0).Scope().Name())

	metadatatest.AssertEqualProcessorAuditRecords(t, tel, []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("outcome", "valid"))},
		{Value: 2, Attributes: attribute.NewSet(attribute.String("outcome", "non_audit_dropped"))},
	}, metricdatatest.IgnoreTimestamp())
	require.NoError(t, tel.Shutdown(context.Background()))
}

func TestTelemetryByReason(t *testing.T) {
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for _, body := range []string{
		`{"action":"job_created","team_id":1,"actor":{"type":"system"}}`,
		`{"action":"report_viewed","team_id":1,"actor":{"type":"system"}}`,
		`{"action":"job_created","team_id":"A*","actor":{"type":"robot"}}`,
		`{"action":"job_created","team_id":"../x","actor":{"type":"system"}}`,
	} {
		lr := lrs.AppendEmpty()
		lr.SetEventName("audit")
		lr.Body().SetStr(body)
	}
	lrs.AppendEmpty().Body().SetStr("not audit")
	tel := componenttest.NewTelemetry()
	p, err := NewFactory().CreateLogs(context.Background(), metadatatest.NewSettings(tel), createDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, p.ConsumeLogs(context.Background(), ld))
	opts := []metricdatatest.Option{metricdatatest.IgnoreTimestamp()}
	metadatatest.AssertEqualProcessorAuditRecords(t, tel, []metricdata.DataPoint[int64]{
		{Value: 2, Attributes: attribute.NewSet(attribute.String("outcome", "valid"))},
		{Value: 2, Attributes: attribute.NewSet(attribute.String("outcome", "invalid"))},
		{Value: 1, Attributes: attribute.NewSet(attribute.String("outcome", "non_audit_passed"))},
	}, opts...)
	metadatatest.AssertEqualProcessorAuditProblems(t, tel, []metricdata.DataPoint[int64]{
		{Value: 2, Attributes: attribute.NewSet(attribute.String("reason", "invalid_team_id"))},
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "invalid_actor_type"))},
	}, opts...)
	metadatatest.AssertEqualProcessorAuditUnknownActions(t, tel, []metricdata.DataPoint[int64]{{Value: 1}}, opts...)
	// No record has a timestamp; the two valid ones have no id either.
	metadatatest.AssertEqualProcessorAuditWarnings(t, tel, []metricdata.DataPoint[int64]{
		{Value: 4, Attributes: attribute.NewSet(attribute.String("reason", "missing_timestamp"))},
		{Value: 2, Attributes: attribute.NewSet(attribute.String("reason", "missing_id"))},
	}, opts...)
	require.NoError(t, tel.Shutdown(context.Background()))
}

// TestTimestampsOutOfRange: a time Elasticsearch's date_nanos cannot hold makes the event invalid, so
// that it is quarantined (timed at ingest) instead of refused everywhere.
func TestTimestampsOutOfRange(t *testing.T) {
	for _, ns := range []uint64{1 << 63, math.MaxUint64} {
		_, sink := run(t, nil, func(lr plog.LogRecord) {
			lr.Body().SetStr(seedJSON(t))
			lr.SetEventName("audit")
			lr.SetTimestamp(pcommon.Timestamp(ns))
		})
		lr := only(t, sink)
		assert.Equal(t, audit.StatusInvalid, attrStr(lr, audit.AttrStatus))
		assert.Equal(t, audit.ProblemTimestampOutOfRange, audit.ProblemCode(attrList(lr, audit.AttrProblems)[0]), "%d", ns)
		assert.Equal(t, "191796", attrStr(lr, audit.AttrQuarantineTeamID), "the team the record named")
	}
	_, sink := run(t, nil, func(lr plog.LogRecord) {
		lr.Body().SetStr(seedJSON(t))
		lr.SetEventName("audit")
		lr.SetTimestamp(0)
		lr.SetObservedTimestamp(pcommon.Timestamp(math.MaxUint64))
	})
	assert.Equal(t, audit.StatusInvalid, attrStr(only(t, sink), audit.AttrStatus), "an observed timestamp used as the time is checked too")
}

// TestInvalidUTF8ID: an id that is not valid UTF-8 is replaced by its hash, with a warning, so that
// the document id stays within Elasticsearch's 512 bytes and two such ids cannot merge.
func TestInvalidUTF8ID(t *testing.T) {
	ids := map[string]bool{}
	for _, raw := range []string{strings.Repeat("\xff", 200), strings.Repeat("\xfe", 200)} {
		_, sink := run(t, nil, func(lr plog.LogRecord) {
			lr.Body().SetStr(seedJSON(t))
			lr.SetEventName("audit")
			lr.Attributes().PutStr(audit.AttrID, raw)
		})
		lr := only(t, sink)
		assert.Equal(t, audit.StatusValid, attrStr(lr, audit.AttrStatus))
		id := attrStr(lr, audit.AttrID)
		want, _ := audit.SafeID(raw)
		assert.Equal(t, want, id)
		assert.True(t, utf8.ValidString(id) && len(id) <= audit.MaxIDBytes)
		assert.Equal(t, audit.WarningInvalidID, audit.ProblemCode(attrList(lr, audit.AttrWarnings)[0]))
		ids[id] = true
	}
	assert.Len(t, ids, 2)
}

// TestMissingIDIncludesObservedTime: without a sender id, two events identical but for when they
// were observed are two events; a redelivery (same observed time) keeps its id.
func TestMissingIDIncludesObservedTime(t *testing.T) {
	idAt := func(observed time.Time) string {
		_, sink := run(t, nil, func(lr plog.LogRecord) {
			lr.Body().SetStr(seedJSON(t))
			lr.SetEventName("audit")
			lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(observed))
		})
		lr := only(t, sink)
		assert.Contains(t, attrList(lr, audit.AttrWarnings), "missing_id: no audit.id or log.record.uid; the id is the content hash")
		return attrStr(lr, audit.AttrID)
	}
	first := idAt(testTime.Add(time.Millisecond))
	assert.Equal(t, first, idAt(testTime.Add(time.Millisecond)), "a redelivery keeps its id")
	assert.NotEqual(t, first, idAt(testTime.Add(2*time.Millisecond)), "a second real event gets its own id")
}

// TestInvalidRecordKeepsGivenTeamID: the quarantine learns the team id a record named, even an
// invalid one, as given.
func TestInvalidRecordKeepsGivenTeamID(t *testing.T) {
	_, sink := run(t, nil, func(lr plog.LogRecord) {
		lr.SetEventName("audit.job_created")
		b := lr.Body().SetEmptyMap()
		b.PutStr("team_id", "Team *7")
		b.PutEmptyMap("actor").PutStr("type", "system")
	})
	lr := only(t, sink)
	assert.Equal(t, audit.StatusInvalid, attrStr(lr, audit.AttrStatus))
	assert.Equal(t, "Team *7", attrStr(lr, audit.AttrQuarantineTeamID))
}

// The content hash of the canonical event is stored with every document and compared on every
// redelivery: a change in how the processor builds the body must not change it, or events sent
// again after an upgrade would be taken for id conflicts. These are the hashes of the first release.
func TestCanonicalHashesAreStable(t *testing.T) {
	for _, tc := range []struct {
		name string
		fill func(lr plog.LogRecord)
		want string
	}{
		{"seed sample, string body", func(lr plog.LogRecord) { lr.Body().SetStr(seedJSON(t)) }, "f829690cbb3a470ccf219498b296ead9cbc8c8798a573aaeba239eb5b132655e"},
		{"seed sample, map body", func(lr plog.LogRecord) {
			require.NoError(t, pjson.DecodeMap([]byte(seedJSON(t)), lr.Body().SetEmptyMap()))
		}, "f829690cbb3a470ccf219498b296ead9cbc8c8798a573aaeba239eb5b132655e"},
		{"attribute encoding", func(lr plog.LogRecord) {
			lr.Body().SetStr("Ann changed a role")
			a := lr.Attributes()
			a.PutStr(audit.AttrAction, "role_updated")
			a.PutInt(audit.AttrTeamID, 42)
			a.PutStr(audit.AttrActorType, "user")
			a.PutInt(audit.AttrActorID, 7)
			a.PutEmptyMap(audit.AttrActorMetadata).PutStr("email", "a@b.c")
			tg := a.PutEmptySlice(audit.AttrTargets).AppendEmpty().SetEmptyMap()
			tg.PutStr("type", "role")
			tg.PutDouble("id", 12)
			a.PutEmptyMap(audit.AttrMetadata).PutStr("name", "admin")
			a.PutStr("client.address", "203.0.113.9")
			a.PutStr("http.request.header.x-forwarded-for", "203.0.113.9, 10.0.0.1")
			a.PutStr("user_agent.original", "curl/8")
		}, "3bcd8fb23fb7a3bcd7c6298dbfdb1fdfde8242859063eb650df04be8024071c9"},
		{"map body with attribute overrides and no optional fields", func(lr plog.LogRecord) {
			b := lr.Body().SetEmptyMap()
			b.PutStr("action", "data_export")
			b.PutStr("team_id", "acme-corp")
			b.PutEmptyMap("actor").PutStr("type", "system")
			b.PutStr("access_route", " 198.51.100.1 ,198.51.100.2")
			lr.Attributes().PutStr(audit.AttrMetadata, "not a map")
		}, "a5fef0e11a6914f3a32eb2203dafa5d92d45b0fba2b675d3e68f3d7aca26f7ec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, sink := run(t, nil, func(lr plog.LogRecord) {
				lr.SetEventName(audit.EventName)
				tc.fill(lr)
			})
			lr := only(t, sink)
			require.Equal(t, audit.StatusValid, attrStr(lr, audit.AttrStatus), attrList(lr, audit.AttrProblems))
			assert.Equal(t, tc.want, attrStr(lr, audit.AttrHash))
			assert.Equal(t, tc.want, attrStr(lr, audit.AttrID), "without a supplied id, the id is the hash")
		})
	}
}
