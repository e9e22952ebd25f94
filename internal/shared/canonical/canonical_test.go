package canonical

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
)

// TestHashFollowsTheDocumentedEncoding pins the definition: integrity checks outside this code base
// recompute it from the stored document.
func TestHashFollowsTheDocumentedEncoding(t *testing.T) {
	body := pcommon.NewMap()
	body.PutStr("team_id", "191796")
	body.PutStr("action", "job_created")
	body.PutEmptyMap("actor").PutStr("type", "system")
	ts := pcommon.NewTimestampFromTime(time.Date(2025, 8, 1, 21, 0, 0, 5, time.UTC))
	want := sha256.Sum256([]byte(`{"event":{"action":"job_created","actor":{"type":"system"},"team_id":"191796"},"timestamp":"2025-08-01T21:00:00.000000005Z"}`))
	if got := Hash(body, ts); got != hex.EncodeToString(want[:]) {
		t.Fatalf("Hash = %s, want %s", got, hex.EncodeToString(want[:]))
	}
	if Hash(body, ts+1) == Hash(body, ts) {
		t.Fatal("the timestamp is part of the hash")
	}
	attrs := pcommon.NewMap()
	attrs.PutStr("audit.action", "x")
	rec := sha256.Sum256([]byte(`{"event":{"attributes":{"audit.action":"x"},"body":"raw"},"timestamp":"2025-08-01T21:00:00.000000005Z"}`))
	if got := RecordHash(pcommon.NewValueStr("raw"), attrs, ts); got != hex.EncodeToString(rec[:]) {
		t.Fatalf("RecordHash = %s", got)
	}
}

// TestHashCoversEveryField pins the hash of a body with every field of the canonical event, so that
// a field left out of the encoding (or encoded differently) fails here, not only in the processor's
// golden hashes.
func TestHashCoversEveryField(t *testing.T) {
	body := pcommon.NewMap()
	body.PutStr("action", "job_user_access_changed")
	body.PutStr("team_id", "191796")
	actor := body.PutEmptyMap("actor")
	actor.PutStr("type", "user")
	actor.PutStr("id", "445177")
	am := actor.PutEmptyMap("metadata")
	am.PutStr("email", "ann+oats@gem.com")
	am.PutStr("name", "Ann Samuelson")
	target := body.PutEmptySlice("targets").AppendEmpty().SetEmptyMap()
	target.PutStr("type", "job_user_access")
	target.PutStr("id", "107404")
	tm := target.PutEmptyMap("metadata")
	tm.PutInt("job_id", 313520)
	tm.PutInt("access_level_id", 7349)
	route := body.PutEmptySlice("access_route")
	route.AppendEmpty().SetStr("203.0.113.9")
	route.AppendEmpty().SetStr("::1")
	body.PutStr("remote_addr", "::1")
	body.PutStr("user_agent", "Mozilla/5.0 \"quoted\" <tag>")
	body.PutEmptyMap("metadata").PutInt("previous_access_level_id", 7347)
	for _, f := range audit.BodyFields {
		if _, ok := body.Get(f); !ok {
			t.Fatalf("the body lacks %s: pin a body with every field", f)
		}
	}
	ts := pcommon.NewTimestampFromTime(time.Date(2025, 8, 1, 21, 0, 0, 5, time.UTC))
	want := sha256.Sum256([]byte(`{"event":{"access_route":["203.0.113.9","::1"],"action":"job_user_access_changed",` +
		`"actor":{"id":"445177","metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"},"type":"user"},` +
		`"metadata":{"previous_access_level_id":7347},"remote_addr":"::1",` +
		`"targets":[{"id":"107404","metadata":{"access_level_id":7349,"job_id":313520},"type":"job_user_access"}],` +
		`"team_id":"191796","user_agent":"Mozilla/5.0 \"quoted\" <tag>"},"timestamp":"2025-08-01T21:00:00.000000005Z"}`))
	if got := Hash(body, ts); got != hex.EncodeToString(want[:]) {
		t.Fatalf("Hash = %s, want %s", got, hex.EncodeToString(want[:]))
	}
}

// TestQuarantineIDIsScopedByTeam: two records alike but for the team they name, however they name
// it (a map body, an attribute, the processor's note, which is how a JSON-string body names it), have different quarantine
// ids; the same record has the same id; and the id follows its documented encoding, team first.
func TestQuarantineIDIsScopedByTeam(t *testing.T) {
	ts := pcommon.NewTimestampFromTime(time.Date(2025, 8, 1, 21, 0, 0, 0, time.UTC))
	for name, build := range map[string]func(lr plog.LogRecord, team string){
		"map body": func(lr plog.LogRecord, team string) {
			m := lr.Body().SetEmptyMap()
			m.PutStr("action", "Bad Action")
			m.PutStr("team_id", team)
			m.PutEmptyMap("actor").PutStr("type", "system")
		},
		"attribute": func(lr plog.LogRecord, team string) {
			lr.Body().SetEmptyMap().PutStr("action", "Bad Action")
			lr.Attributes().PutStr(audit.AttrTeamID, team)
		},
		"processor's note": func(lr plog.LogRecord, team string) {
			lr.Body().SetEmptyMap().PutStr("action", "Bad Action")
			lr.Attributes().PutStr(audit.AttrQuarantineTeamID, team)
		},
	} {
		t.Run(name, func(t *testing.T) {
			record := func(team string) plog.LogRecord {
				lr := plog.NewLogRecord()
				lr.SetEventName("audit")
				lr.SetTimestamp(ts)
				lr.Attributes().PutStr(audit.AttrID, "client-1")
				build(lr, team)
				return lr
			}
			a, b := record("7"), record("8")
			if QuarantineTeamID(a) != "7" || QuarantineTeamID(b) != "8" {
				t.Fatalf("QuarantineTeamID = %q, %q", QuarantineTeamID(a), QuarantineTeamID(b))
			}
			if QuarantineID(a) == QuarantineID(b) {
				t.Fatal("two teams' records share a quarantine id")
			}
			if QuarantineID(a) != QuarantineID(record("7")) {
				t.Fatal("the same record has two quarantine ids")
			}
			sum := sha256.New()
			fmt.Fprintf(sum, "%q\x00%q\x00%d\x00%d\x00", "7", "audit", uint64(ts), uint64(0))
			sum.Write([]byte(RecordHash(a.Body(), a.Attributes(), 0)))
			if want := "q-" + hex.EncodeToString(sum.Sum(nil)); QuarantineID(a) != want {
				t.Fatalf("QuarantineID = %s, want %s (team, event name, timestamps, record hash)", QuarantineID(a), want)
			}
		})
	}
}
