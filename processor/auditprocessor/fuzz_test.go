package auditprocessor

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// FuzzNormalize feeds arbitrary bodies, event names and team attributes through the processor. Every
// audit record must come out valid, or invalid with reasons; a valid one must be canonical, safe to
// route, and normalize to itself again (same body, same id); the same input normalized afresh (a
// redelivery) must get the same id. The seed corpus is in testdata/fuzz.
func FuzzNormalize(f *testing.F) {
	f.Add(`{"action": "job_user_access_changed", "team_id": 191796, "actor": {"type": "user", "id": 445177, "metadata": {"email": "ann+oats@gem.com", "name": "Ann Samuelson"}}, "targets": [{"type": "job_user_access", "id": 107404, "metadata": {"job_id": 313520, "user_id": 506607, "access_level_id": 7349}}, {"type": "job", "id": 313520, "metadata": null}, {"type": "user", "id": 506607, "metadata": null}], "access_route": ["::1"], "remote_addr": "::1", "user_agent": "Mozilla/5.0", "metadata": {"previous_access_level_id": 7347}}`, "audit", "")
	f.Add(`{"team_id":"acme","actor":{"type":"system"},"metadata":[1,{"a":null}]}`, "audit.data_export", "")
	f.Add(`{"action":"job_created","team_id":"../x","actor":{"type":"user","id":1.5}}`, "audit", "acme")
	f.Add(`not json`, "audit.job_created", "7")
	f.Add(`{"targets":"x","access_route":"1.2.3.4, bogus"}`, "audit", "")
	n := normalizer{catalog: audit.DefaultCatalog(), now: time.Now}
	f.Fuzz(func(t *testing.T, body, eventName, team string) {
		input := func() plog.LogRecord {
			lr := plog.NewLogRecord()
			lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(1754085600, 0)))
			lr.SetEventName(eventName)
			lr.Body().SetStr(body)
			if team != "" {
				lr.Attributes().PutStr(audit.AttrTeamID, team)
			}
			return lr
		}
		lr := input()
		r := n.normalize(lr)
		// A redelivery of the same input, normalized from scratch, must get the same id: this is what
		// makes retries idempotent.
		redelivered := input()
		n.normalize(redelivered)
		if a, b := attrString(lr, audit.AttrID), attrString(redelivered, audit.AttrID); a != b {
			t.Fatalf("the same record got two ids: %s and %s", a, b)
		}
		status, _ := lr.Attributes().Get(audit.AttrStatus)
		id, _ := lr.Attributes().Get(audit.AttrID)
		if id.Str() == "" {
			t.Fatal("no audit.id")
		}
		switch status.Str() {
		case audit.StatusInvalid:
			if len(r.problems) == 0 {
				t.Fatal("invalid without a reason")
			}
			if lr.Body().Str() != body {
				t.Fatal("an invalid record's body was changed")
			}
			return
		case audit.StatusValid:
		default:
			t.Fatalf("status %q", status.Str())
		}
		b := lr.Body().Map()
		tv, _ := b.Get(audit.FieldTeamID)
		if err := audit.CheckTeamID(tv.Str()); err != nil {
			t.Fatalf("valid event with unsafe team id: %v", err)
		}
		av, _ := b.Get(audit.FieldAction)
		if err := audit.CheckActionName(av.Str()); err != nil {
			t.Fatalf("valid event with bad action: %v", err)
		}
		first := string(pjson.AppendMap(nil, b, true))
		firstID := id.Str()
		// Idempotent: normalizing the normalized record changes nothing.
		n.normalize(lr)
		if again := string(pjson.AppendMap(nil, lr.Body().Map(), true)); again != first {
			t.Fatalf("not idempotent:\n%s\n%s", first, again)
		}
		if id2, _ := lr.Attributes().Get(audit.AttrID); id2.Str() != firstID {
			t.Fatalf("id changed on a second pass: %s then %s", firstID, id2.Str())
		}
	})
}

func attrString(lr plog.LogRecord, k string) string {
	v, _ := lr.Attributes().Get(k)
	return v.AsString()
}
