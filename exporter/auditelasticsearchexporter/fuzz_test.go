package auditelasticsearchexporter

import (
	"encoding/json"
	"testing"
	"time"

	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// FuzzPrepare feeds records that claim to be normalized (audit.status=valid) with arbitrary bodies to
// the exporter, as a pipeline without the processor could: it must never panic, every record must
// become a document, an event document must be valid JSON in a safe team index, and anything else
// must go to quarantine.
func FuzzPrepare(f *testing.F) {
	f.Add(seedSample, "valid")
	f.Add(`{"action":"job_created","team_id":"7","actor":{"type":"system"},"targets":["x",{"type":1}],"access_route":[1,null]}`, "valid")
	f.Add(`{"action":"job_created","team_id":"quarantine","actor":{"type":"user","id":"1","metadata":"m"}}`, "valid")
	f.Add(`{"action":"job_created","team_id":"7","actor":{"type":"system"},"metadata":[{"a":1}],"user_agent":5}`, "invalid")
	// Canonical events (string ids, as the processor writes them) that must become event documents.
	f.Add(`{"action":"job_created","team_id":"7","actor":{"type":"system"},"targets":[],"access_route":[]}`, "valid")
	f.Add(`{"action":"user_login_failed","team_id":"acme-corp","actor":{"type":"user","id":"5","metadata":{"email":"a@b.c"}},"targets":[{"type":"user","id":"5","metadata":null}],"access_route":["203.0.113.9"],"remote_addr":"203.0.113.9","user_agent":"x","metadata":{"n":1}}`, "valid")
	cfg := createDefaultConfig()
	cfg.Endpoints = []string{"http://127.0.0.1:9"}
	e, err := newExporter(exportertest.NewNopSettings(NewFactory().Type()), cfg)
	if err != nil {
		f.Fatal(err)
	}
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	sl := rl.ScopeLogs().AppendEmpty()
	f.Fuzz(func(t *testing.T, body, status string) {
		lr := sl.LogRecords().AppendEmpty()
		defer sl.LogRecords().RemoveIf(func(plog.LogRecord) bool { return true })
		lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(1754085600, 0)))
		if err := pjson.DecodeMap([]byte(body), lr.Body().SetEmptyMap()); err != nil {
			lr.Body().SetStr(body)
		}
		lr.Attributes().PutStr(audit.AttrStatus, status)
		it := &item{}
		if ok, _ := e.prepare(it, source{rl.Resource(), sl.Scope(), lr}, time.Unix(1754085601, 0), nil); !ok {
			t.Fatal("an audit record produced no document")
		}
		if !json.Valid(it.doc) {
			t.Fatalf("document is not JSON: %s", it.doc)
		}
		if safe, _ := audit.SafeID(it.id); it.id == "" || safe != it.id {
			t.Fatalf("document id %q", it.id)
		}
		if status != audit.StatusValid && it.q == nil {
			t.Fatalf("a record with audit.status %q was not quarantined", status)
		}
		if it.q != nil {
			if it.index != cfg.QuarantineIndex {
				t.Fatalf("quarantine document in %s", it.index)
			}
			return
		}
		team := it.routing
		if err := audit.CheckTeamID(team); err != nil || it.index != e.layout.Index(team, lr.Timestamp().AsTime()) || it.id != layout.DocID(team, it.eventID) {
			t.Fatalf("event document of team %q routed to %q as %q", team, it.index, it.id)
		}
		d, err := document.Decode(document.Hit{ID: it.id, Source: it.doc})
		if err != nil || d.TeamID != team || d.Event.ID != it.eventID {
			t.Fatalf("document of team %q, event %q routed to %s as %s (%v)", d.TeamID, d.Event.ID, it.index, it.id, err)
		}
	})
}
