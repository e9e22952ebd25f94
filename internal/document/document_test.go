package document

import (
	"bytes"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
)

// TestMappingsAreVersion4: the mappings rendered from the field lists are the ones template
// version 4 installs (testdata). A change here needs a new TemplateVersion and a new file; the
// files of earlier versions stay, as the partitions they created stay.
func TestMappingsAreVersion4(t *testing.T) {
	require.Equal(t, 4, TemplateVersion)
	for file, got := range map[string]string{"event-mappings.v4.json": EventMappings, "quarantine-mappings.v4.json": QuarantineMappings} {
		want, err := os.ReadFile("testdata/" + file)
		require.NoError(t, err)
		assert.JSONEq(t, string(want), got, file)
	}
	var props map[string]any
	require.NoError(t, json.Unmarshal([]byte(EventProperties), &props))
	assert.NotContains(t, props, "_routing")
}

// TestReadersFieldsAreListed: every field a reader queries is a field of the list.
func TestReadersFieldsAreListed(t *testing.T) {
	has := func(fields []Field, path string) bool {
		for _, f := range fields {
			if f.Path == path {
				return true
			}
		}
		return false
	}
	for _, f := range []string{Timestamp, Action, TeamID, ActorID, TargetType, TargetID, EventID, EventHash, EventIngested} {
		assert.True(t, has(eventFields, f), f)
	}
	for _, f := range []string{Timestamp, EventID, QuarantineTeamID, QuarantineReason} {
		assert.True(t, has(quarantineFields, f), f)
	}
}

// leaves lists the dotted paths of a document's leaf values (objects inside flattened fields and
// arrays of objects are walked as the mapping sees them).
func leaves(t *testing.T, doc []byte, fields []Field) []string {
	var m map[string]any
	require.NoError(t, json.Unmarshal(doc, &m), string(doc))
	flat := map[string]bool{}
	for _, f := range fields {
		if strings.Contains(f.Mapping, "flattened") {
			flat[f.Path] = true
		}
	}
	seen := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if flat[prefix] {
				seen[prefix] = true
				return
			}
			for k, e := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, e)
			}
		case []any:
			for _, e := range x {
				walk(prefix, e)
			}
			if len(x) == 0 {
				seen[prefix] = true
			}
		default:
			seen[prefix] = true
		}
	}
	walk("", m)
	var out []string
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func paths(fields []Field) []string {
	var out []string
	for _, f := range fields {
		out = append(out, f.Path)
	}
	sort.Strings(out)
	return out
}

// fullInput is an event with every field set.
func fullInput() *Input {
	body := pcommon.NewMap()
	body.PutStr("action", "job_user_access_changed")
	body.PutStr("team_id", "191796")
	actor := body.PutEmptyMap("actor")
	actor.PutStr("type", "user")
	actor.PutStr("id", "445177")
	am := actor.PutEmptyMap("metadata")
	am.PutStr("email", "ann+oats@gem.com")
	am.PutStr("name", "Ann Samuelson")
	tg := body.PutEmptySlice("targets").AppendEmpty().SetEmptyMap()
	tg.PutStr("type", "user")
	tg.PutStr("id", "107404")
	tg.PutEmptyMap("metadata").PutInt("access_level_id", 7349)
	body.PutEmptySlice("access_route").AppendEmpty().SetStr("203.0.113.9")
	body.PutStr("remote_addr", "::1")
	body.PutStr("user_agent", "Mozilla/5.0")
	body.PutEmptyMap("metadata").PutInt("previous_access_level_id", 7347)
	warnings := pcommon.NewSlice()
	warnings.AppendEmpty().SetStr("missing_id: none given")
	return &Input{
		Body: body, Time: pcommon.NewTimestampFromTime(time.Date(2025, 8, 1, 21, 0, 0, 0, time.UTC)),
		ID: "ev-1", Hash: strings.Repeat("a", 64), TeamID: "191796", Action: "job_user_access_changed", ActorType: "user",
		Known:    true,
		Warnings: warnings, HasWarnings: true, Service: "jobs-api", Ingested: time.Date(2025, 8, 1, 21, 0, 1, 0, time.UTC),
	}
}

// TestAnEventDocumentHasExactlyTheListedFields: an event with every field encodes to a document
// whose fields are the list but its aliases, no more, no fewer: the list is the one definition.
// event.id is among them only when the _id cannot carry the id.
func TestAnEventDocumentHasExactlyTheListedFields(t *testing.T) {
	var written []Field
	for _, f := range eventFields {
		if !f.Alias() {
			written = append(written, f)
		}
	}
	in := fullInput()
	in.ID = strings.Repeat("x", audit.MaxIDBytes)
	assert.Equal(t, paths(written), leaves(t, AppendEvent(nil, in), eventFields), "an id the _id cannot carry")

	var withoutID []Field
	for _, f := range written {
		if f.Path != EventID {
			withoutID = append(withoutID, f)
		}
	}
	assert.Equal(t, paths(withoutID), leaves(t, AppendEvent(nil, fullInput()), eventFields), "an id the _id carries")
}

// TestAQuarantineDocumentHasExactlyTheListedFields: likewise for the quarantine.
func TestAQuarantineDocumentHasExactlyTheListedFields(t *testing.T) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "jobs-api")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("jobs")
	lr := sl.LogRecords().AppendEmpty()
	lr.SetEventName("audit")
	lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Date(2025, 8, 1, 21, 0, 0, 0, time.UTC)))
	lr.Body().SetStr(`{"action":"Bad"}`)
	q := &Quarantine{Stage: "indexing", Reasons: []string{"id_conflict: x"}, ErrorType: "t", ErrorReason: "r", TeamID: "7", Index: "audit-shared.standard.2025-08", Hash: "h", StoredHash: "s"}
	doc := AppendQuarantine(nil, "ev-1", q, lr, rl.Resource(), sl.Scope(), time.Now(), 1<<20)
	assert.Equal(t, paths(quarantineFields), leaves(t, doc, quarantineFields))
}

// TestDecodeGivesTheAPIShape: a stored document read back in the API's shape, and the parts the
// CSV shows; the event id comes from the _id.
func TestDecodeGivesTheAPIShape(t *testing.T) {
	doc := AppendEvent(nil, fullInput())
	d, err := Decode(Hit{ID: "191796:ev-1", Source: doc})
	require.NoError(t, err)
	assert.Equal(t, "ev-1", d.Event.ID)
	assert.Equal(t, strings.Repeat("a", 64), d.Event.Hash)
	assert.Equal(t, Actor{Type: "user", ID: "445177", Email: "ann+oats@gem.com", Name: "Ann Samuelson"}, d.ActorFields())
	assert.Equal(t, []string{"203.0.113.9"}, d.AccessRouteList())
	ev, err := d.API()
	require.NoError(t, err)
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"ev-1","timestamp":"2025-08-01T21:00:00.000000000Z","action":"job_user_access_changed","team_id":"191796",
		"actor":{"type":"user","id":"445177","metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"}},
		"targets":[{"type":"user","id":"107404","metadata":{"access_level_id":7349}}],"access_route":["203.0.113.9"],
		"remote_addr":"::1","user_agent":"Mozilla/5.0","metadata":{"previous_access_level_id":7347}}`, string(b))

	// A long id is kept in the document, whose _id holds its hash.
	in := fullInput()
	in.ID = strings.Repeat("x", audit.MaxIDBytes)
	d, err = Decode(Hit{ID: "191796:sha256-00", Source: AppendEvent(nil, in)})
	require.NoError(t, err)
	assert.Equal(t, in.ID, d.Event.ID)

	// The least a stored event has (the previous per-team layout wrote such documents too).
	ev, err = ToAPI(Hit{ID: "legacy-1", Source: []byte(`{"@timestamp":"2025-08-01T21:00:00Z","action":"job_created","team_id":"big","actor":{"type":"system"},"event":{"id":"legacy-1"}}`)})
	require.NoError(t, err)
	b, _ = json.Marshal(ev)
	assert.JSONEq(t, `{"id":"legacy-1","timestamp":"2025-08-01T21:00:00.000000000Z","action":"job_created","team_id":"big","actor":{"type":"system"},
		"targets":[],"access_route":[],"remote_addr":null,"user_agent":null,"metadata":null}`, string(b))
}

// TestEventRecordIsTheCanonicalEvent: the record rebuilt from a refused document holds the
// specification's fields, the event id and time, and the service.
func TestEventRecordIsTheCanonicalEvent(t *testing.T) {
	in := fullInput()
	res, _, lr := EventRecord(plog.NewLogs(), AppendEvent(nil, in), in.ID)
	assert.Equal(t, in.Time, lr.Timestamp())
	id, _ := lr.Attributes().Get(audit.AttrID)
	assert.Equal(t, "ev-1", id.Str())
	svc, _ := res.Attributes().Get("service.name")
	assert.Equal(t, "jobs-api", svc.Str())
	assert.Equal(t, in.Body.AsRaw(), lr.Body().Map().AsRaw())

	_, _, lr = EventRecord(plog.NewLogs(), []byte("not json"), "x")
	assert.Equal(t, "not json", lr.Body().Str(), "kept whole")
}

// TestExpandGivesTheVersion3Document: a version 4 document expanded is, field for field, the document
// version 3 wrote for the same event (testdata/event.v3.json, written by that version's encoder);
// a version 3 document is returned as it is.
func TestExpandGivesTheVersion3Document(t *testing.T) {
	v3, err := os.ReadFile("testdata/event.v3.json")
	require.NoError(t, err)
	v4 := AppendEvent(nil, fullInput())
	assert.Less(t, len(v4), len(v3)*3/4, "the lighter document")
	got, err := Expand(Hit{ID: "191796:ev-1", Source: v4}, audit.DefaultCatalog())
	require.NoError(t, err)
	assert.JSONEq(t, string(v3), string(got))

	got, err = Expand(Hit{ID: "191796:ev-1", Source: v3}, audit.DefaultCatalog())
	require.NoError(t, err)
	assert.Equal(t, string(bytes.TrimSpace(v3)), string(bytes.TrimSpace(got)))

	// Without a catalog, or for an action it does not know, there is no category or description.
	got, err = Expand(Hit{ID: "191796:ev-1", Source: v4}, nil)
	require.NoError(t, err)
	assert.NotContains(t, string(got), "category")
	assert.NotContains(t, string(got), "action_description")

	_, err = Expand(Hit{ID: "1:x", Source: []byte("not json")}, nil)
	assert.Error(t, err)
}

// BenchmarkExpand: what the ndjson export and tail spend per version 4 document.
func BenchmarkExpand(b *testing.B) {
	doc := AppendEvent(nil, fullInput())
	catalog := audit.DefaultCatalog()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Expand(Hit{ID: "191796:ev-1", Source: doc}, catalog); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkToAPI: what the API and the events export spend per document, for scale.
func BenchmarkToAPI(b *testing.B) {
	doc := AppendEvent(nil, fullInput())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ToAPI(Hit{ID: "191796:ev-1", Source: doc}); err != nil {
			b.Fatal(err)
		}
	}
}
