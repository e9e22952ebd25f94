package document

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// Input is what AppendEvent needs of one event: its canonical body, checked by the exporter, and
// what the exporter established about it.
type Input struct {
	Body        pcommon.Map // the canonical body: audit.BodyFields
	Time        pcommon.Timestamp
	ID, Hash    string // event.id and event.hash
	TeamID      string
	Action      string
	ActorType   string
	Known       bool // the action is in the operator's catalog
	Warnings    pcommon.Slice
	HasWarnings bool
	Service     string    // the resource's service.name
	Ingested    time.Time // when the exporter took the record
}

// Quarantine says why a record is kept in the quarantine instead of its team's log.
type Quarantine struct {
	Stage       string // validation or indexing
	Reasons     []string
	ErrorType   string
	ErrorReason string
	TeamID      string // the team id the record named, as given
	Index       string // the partition the event was meant for
	// on an id_conflict: this event's hash and the hash stored under its id
	Hash, StoredHash string
}

// PreviewSize is how much of each part of an oversized record the quarantine keeps.
const PreviewSize = 64 << 10

// AppendEvent encodes the event document of a checked event. The specification's field names come
// first, unchanged, then the ECS fields that Kibana users rely on (see docs/document.md); every
// field is a row of eventFields.
func AppendEvent(b []byte, ev *Input) []byte {
	body := ev.Body
	b = append(b, `{"@timestamp":`...)
	b = appendTime(b, ev.Time.AsTime())
	b = append(b, `,"action":`...)
	b = pjson.AppendString(b, ev.Action)
	b = append(b, `,"team_id":`...)
	b = pjson.AppendString(b, ev.TeamID)

	actorV, _ := body.Get(audit.FieldActor)
	actor := actorV.Map()
	actorID := strField(actor, audit.FieldID)
	b = append(b, `,"actor":{"type":`...)
	b = pjson.AppendString(b, ev.ActorType)
	if actorID != "" {
		b = append(b, `,"id":`...)
		b = pjson.AppendString(b, actorID)
	}
	actorMeta, hasActorMeta := actor.Get(audit.FieldMetadata)
	b = appendFlattened(b, `,"metadata":`, actorMeta, hasActorMeta)
	b = append(b, '}')

	b = append(b, `,"targets":[`...)
	if tv, ok := body.Get(audit.FieldTargets); ok && tv.Type() == pcommon.ValueTypeSlice {
		for i, t := range tv.Slice().All() {
			if i > 0 {
				b = append(b, ',')
			}
			tm := t.Map()
			typ, id := strField(tm, audit.FieldType), strField(tm, audit.FieldID)
			b = append(b, `{"type":`...)
			b = pjson.AppendString(b, typ)
			b = append(b, `,"id":`...)
			b = pjson.AppendString(b, id)
			meta, ok := tm.Get(audit.FieldMetadata)
			b = appendFlattened(b, `,"metadata":`, meta, ok)
			b = append(b, '}')
		}
	}
	b = append(b, ']')

	b = append(b, `,"access_route":[`...)
	if rv, ok := body.Get(audit.FieldAccessRoute); ok && rv.Type() == pcommon.ValueTypeSlice {
		for i, a := range rv.Slice().All() {
			if i > 0 {
				b = append(b, ',')
			}
			b = pjson.AppendString(b, a.Str())
		}
	}
	b = append(b, ']')
	remote := strField(body, audit.FieldRemoteAddr)
	if remote != "" {
		b = append(b, `,"remote_addr":`...)
		b = pjson.AppendString(b, remote)
	}
	if ua := strField(body, audit.FieldUserAgent); ua != "" {
		b = append(b, `,"user_agent":`...)
		b = pjson.AppendString(b, ua)
	}
	meta, hasMeta := body.Get(audit.FieldMetadata)
	b = appendFlattened(b, `,"metadata":`, meta, hasMeta)

	// ECS fields that are not aliases of the above or derived when read (Expand).
	b = append(b, `,"event":{`...)
	if !layout.DocIDCarries(ev.TeamID, ev.ID) {
		b = append(b, `"id":`...)
		b = pjson.AppendString(b, ev.ID)
		b = append(b, ',')
	}
	b = append(b, `"hash":`...)
	b = pjson.AppendString(b, ev.Hash)
	b = append(b, `,"ingested":`...)
	b = appendTime(b, ev.Ingested)
	b = append(b, '}')
	if remote != "" {
		if _, err := netip.ParseAddr(remote); err == nil {
			b = append(b, `,"source":{"ip":`...)
			b = pjson.AppendString(b, remote)
			b = append(b, '}')
		}
	}
	if ev.ActorType == string(audit.ActorUser) && hasActorMeta && actorMeta.Type() == pcommon.ValueTypeMap {
		// Kept, not derived: Kibana's panels aggregate on it, and no alias reaches into a flattened field.
		if email := strField(actorMeta.Map(), "email"); email != "" {
			b = append(b, `,"user":{"email":`...)
			b = pjson.AppendString(b, email)
			b = append(b, '}')
		}
	}
	if svc := ev.Service; svc != "" {
		b = append(b, `,"service":{"name":`...)
		b = pjson.AppendString(b, svc)
		b = append(b, '}')
	}
	b = append(b, `,"audit":{"action_known":`...)
	if ev.Known {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	if ev.HasWarnings && ev.Warnings.Len() > 0 {
		b = append(b, `,"warnings":`...)
		b = pjson.AppendSlice(b, ev.Warnings, false)
	}
	return append(b, `}}`...)
}

// appendFlattened writes a metadata value for a flattened field, which takes objects only: a map as
// it is, null or absent as nothing, and any other shape (a string, a number, a list) wrapped as
// {"value": …} so that it indexes instead of being rejected.
func appendFlattened(b []byte, key string, v pcommon.Value, present bool) []byte {
	if !present {
		return b
	}
	switch v.Type() {
	case pcommon.ValueTypeEmpty:
		return b
	case pcommon.ValueTypeMap:
		b = append(b, key...)
		return pjson.AppendMap(b, v.Map(), false)
	default:
		b = append(b, key...)
		b = append(b, `{"value":`...)
		b = pjson.AppendValue(b, v, false)
		return append(b, '}')
	}
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = pjson.AppendString(b, s)
	}
	return append(b, ']')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func truncateUTF8(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return []byte(audit.Truncate(string(b), n))
}

func strField(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok || v.Type() != pcommon.ValueTypeStr {
		return ""
	}
	return v.Str()
}

// AppendQuarantine encodes the quarantine document of a record: the reasons and the whole
// original record (body, attributes, resource attributes, timestamps), so that it can be replayed, cut
// to a preview when it is too large to store.
func AppendQuarantine(b []byte, eventID string, q *Quarantine, lr plog.LogRecord, res pcommon.Resource, scope pcommon.InstrumentationScope, ingested time.Time, maxBytes int) []byte {
	body := pjson.AppendValue(nil, lr.Body(), false)
	attrs := pjson.AppendMap(nil, lr.Attributes(), false)
	resource := pjson.AppendMap(nil, res.Attributes(), false)
	size := len(body) + len(attrs) + len(resource)
	truncated := false
	if size > maxBytes/2 {
		truncated = true
		body = truncateUTF8(body, PreviewSize)
		attrs = truncateUTF8(attrs, PreviewSize)
		resource = truncateUTF8(resource, PreviewSize)
	}
	// The document is timed at the event when Elasticsearch can store that time, else at ingest.
	ts := lr.Timestamp()
	if audit.CheckTimestamp(uint64(ts)) != nil {
		ts = lr.ObservedTimestamp()
	}
	if audit.CheckTimestamp(uint64(ts)) != nil {
		ts = pcommon.NewTimestampFromTime(ingested)
	}
	b = append(b, `{"@timestamp":`...)
	b = appendTime(b, ts.AsTime())
	b = append(b, `,"event":{"id":`...)
	b = pjson.AppendString(b, eventID)
	b = append(b, `,"ingested":`...)
	b = appendTime(b, ingested)
	b = append(b, `},"quarantine":{"stage":`...)
	b = pjson.AppendString(b, q.Stage)
	b = append(b, `,"reasons":`...)
	b = appendStrings(b, q.Reasons)
	for _, f := range [][2]string{
		{"error_type", q.ErrorType}, {"error_reason", q.ErrorReason}, {"team_id", q.TeamID}, {"index", q.Index},
		{"hash", q.Hash}, {"stored_hash", q.StoredHash},
	} {
		if f[1] != "" {
			b = append(b, ',')
			b = pjson.AppendString(b, f[0])
			b = append(b, ':')
			b = pjson.AppendString(b, audit.Truncate(f[1], 4096))
		}
	}
	b = append(b, `},"record":{"event_name":`...)
	b = pjson.AppendString(b, lr.EventName())
	b = append(b, `,"time_unix_nano":`...)
	b = pjson.AppendString(b, strconv.FormatUint(uint64(lr.Timestamp()), 10))
	b = append(b, `,"observed_time_unix_nano":`...)
	b = pjson.AppendString(b, strconv.FormatUint(uint64(lr.ObservedTimestamp()), 10))
	if scope.Name() != "" {
		b = append(b, `,"scope_name":`...)
		b = pjson.AppendString(b, scope.Name())
	}
	b = append(b, `,"body":`...)
	b = pjson.AppendString(b, string(body))
	b = append(b, `,"attributes":`...)
	b = pjson.AppendString(b, string(attrs))
	b = append(b, `,"resource":`...)
	b = pjson.AppendString(b, string(resource))
	b = fmt.Appendf(b, `,"size":%d,"truncated":%t}`, size, truncated)
	if svc := strField(res.Attributes(), "service.name"); svc != "" {
		b = append(b, `,"service":{"name":`...)
		b = pjson.AppendString(b, svc)
		b = append(b, '}')
	}
	return append(b, '}')
}
