package document

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
)

// TestRebuild: a quarantine document gives back its record, whole (template version 2) or from what a
// version 1 document kept (@timestamp and the service name), and a truncated one is refused.
func TestRebuild(t *testing.T) {
	for name, tc := range map[string]struct {
		doc     string
		ts, obs time.Time
		service string
	}{
		"version 2": {
			doc: `{"@timestamp":"2025-08-01T21:00:00Z","record":{"event_name":"audit.job_created","time_unix_nano":"1754082000000000001","observed_time_unix_nano":"1754082000000000002",
				"scope_name":"jobs","body":"\"{\\\"team_id\\\":7}\"","attributes":"{\"audit.id\":\"x\",\"n\":1}","resource":"{\"service.name\":\"jobs-api\",\"host\":\"h\"}","truncated":false}}`,
			ts: time.Unix(0, 1754082000000000001), obs: time.Unix(0, 1754082000000000002), service: "jobs-api",
		},
		"version 1": {
			doc: `{"@timestamp":"2025-08-01T21:00:00.5Z","record":{"event_name":"audit","body":"\"{\\\"team_id\\\":7}\"","attributes":"{\"audit.id\":\"x\",\"n\":1}","size":10,"truncated":false},"service":{"name":"jobs-api"}}`,
			ts:  time.Date(2025, 8, 1, 21, 0, 0, 5e8, time.UTC), service: "jobs-api",
		},
	} {
		t.Run(name, func(t *testing.T) {
			var q Quarantined
			require.NoError(t, json.Unmarshal([]byte(tc.doc), &q))
			ld := plog.NewLogs()
			require.NoError(t, q.Rebuild(ld))
			rl := ld.ResourceLogs().At(0)
			svc, _ := rl.Resource().Attributes().Get("service.name")
			assert.Equal(t, tc.service, svc.Str())
			lr := rl.ScopeLogs().At(0).LogRecords().At(0)
			assert.Equal(t, tc.ts.UnixNano(), lr.Timestamp().AsTime().UnixNano())
			if !tc.obs.IsZero() {
				assert.Equal(t, tc.obs.UnixNano(), lr.ObservedTimestamp().AsTime().UnixNano())
			}
			assert.Equal(t, `{"team_id":7}`, lr.Body().Str())
			id, _ := lr.Attributes().Get("audit.id")
			n, _ := lr.Attributes().Get("n")
			assert.Equal(t, "x", id.Str())
			assert.Equal(t, int64(1), n.Int())
		})
	}
	var q Quarantined
	require.NoError(t, json.Unmarshal([]byte(`{"record":{"body":"\"x\"","attributes":"{}","truncated":true}}`), &q))
	assert.ErrorContains(t, q.Rebuild(plog.NewLogs()), "too large")
}

// FuzzExpand reads arbitrary documents as a whole-document reader does: no panic; an expanded
// document is valid JSON holding every member of the stored one, and the event id.
func FuzzExpand(f *testing.F) {
	f.Add([]byte(`{"@timestamp":"2025-08-01T21:00:00Z","action":"job_created","team_id":"7","actor":{"type":"user","id":"1","metadata":{"name":"A"}},"targets":[{"type":"user","id":"2"}],"access_route":["::1"],"remote_addr":"::1","event":{"hash":"h","ingested":"2025-08-01T21:00:01Z"},"user":{"email":"a@b"},"audit":{"action_known":true}}`))
	f.Add([]byte(`{"action":"x_failed","event":{}}`))
	f.Add([]byte(`{"event":{"id":"a","action":"b"}}`))
	f.Add([]byte(`{"a\"b":1, "event" : null ,"user":[1],"audit":"x"}`))
	f.Add([]byte(`{"targets":"x","actor":7,"access_route":{"a":1}}`))
	f.Add([]byte(`[1,2]`))
	catalog := audit.DefaultCatalog()
	f.Fuzz(func(t *testing.T, src []byte) {
		out, err := Expand(Hit{ID: "7:ev", Source: src}, catalog)
		if err != nil {
			return
		}
		var in, got map[string]json.RawMessage
		if json.Unmarshal(src, &in) != nil {
			t.Fatalf("expanded a document that is no object: %q", src)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("expanded %q to invalid JSON %q: %v", src, out, err)
		}
		for k := range in {
			if _, ok := got[k]; !ok {
				t.Fatalf("member %q of %q lost in %q", k, src, out)
			}
		}
		// An event object that had no id gains the one the _id carries.
		var inEvent, gotEvent map[string]json.RawMessage
		if json.Unmarshal(in["event"], &inEvent) == nil && inEvent != nil && inEvent["id"] == nil {
			if json.Unmarshal(got["event"], &gotEvent) != nil || string(gotEvent["id"]) != `"ev"` {
				t.Fatalf("no event id from the _id in %q", out)
			}
		}
	})
}

// TestAppendJSONIsEncodingJSONs: the sealer hashes AppendJSON's bytes; they are the API's JSON.
func TestAppendJSONIsEncodingJSONs(t *testing.T) {
	src, err := os.ReadFile("testdata/event.v3.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range [][]byte{src, []byte(`{"@timestamp":"2025-08-01T21:00:00.123Z","action":"a","team_id":"7","event":{"id":"x\u2028<>&"}}`)} {
		ev, err := ToAPI(Hit{ID: "7:x", Source: doc})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(ev)
		var a, b any
		json.Unmarshal(want, &a)
		if err := json.Unmarshal(ev.AppendJSON(nil), &b); err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("AppendJSON %s, encoding/json %s", ev.AppendJSON(nil), want)
		}
	}
}
