package auditelasticsearchexporter

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/canonical"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// event is what the exporter reads from one normalized record.
type event struct {
	body        pcommon.Map
	id          string
	hash        string
	teamID      string
	action      string
	actorType   string
	known       bool
	warnings    pcommon.Slice
	hasWarnings bool
}

// readEvent checks a record the processor marked valid, again: the exporter may run without the
// processor, and a record's attributes are input like any other. It returns the quarantine reason
// when the record is not a routable canonical event.
func (e *auditExporter) readEvent(lr plog.LogRecord) (event, string, string) {
	attrs := lr.Attributes()
	if lr.Body().Type() != pcommon.ValueTypeMap {
		return event{}, reasonNotNormalized, "the body is not a map"
	}
	ev := event{body: lr.Body().Map()}
	ev.teamID = strField(ev.body, audit.FieldTeamID)
	if err := audit.CheckTeamID(ev.teamID); err != nil {
		return ev, audit.ProblemInvalidTeamID, "team_id " + err.Error()
	}
	ev.action = strField(ev.body, audit.FieldAction)
	if err := audit.CheckActionName(ev.action); err != nil {
		return ev, audit.ProblemMalformedAction, "action " + err.Error()
	}
	actor, ok := ev.body.Get(audit.FieldActor)
	if !ok || actor.Type() != pcommon.ValueTypeMap {
		return ev, audit.ProblemMissingActor, "no actor map"
	}
	ev.actorType = strField(actor.Map(), audit.FieldType)
	if ev.actorType != string(audit.ActorUser) && ev.actorType != string(audit.ActorSystem) {
		return ev, audit.ProblemInvalidActorType, fmt.Sprintf("actor type %q", ev.actorType)
	}
	if v, ok := ev.body.Get(audit.FieldTargets); ok && v.Type() != pcommon.ValueTypeEmpty {
		if v.Type() != pcommon.ValueTypeSlice {
			return ev, audit.ProblemMalformedTargets, "targets is not a list"
		}
		for i, t := range v.Slice().All() {
			if t.Type() != pcommon.ValueTypeMap {
				return ev, audit.ProblemMalformedTargets, fmt.Sprintf("targets[%d] is not a map", i)
			}
		}
	}
	if v, ok := ev.body.Get(audit.FieldAccessRoute); ok && v.Type() != pcommon.ValueTypeEmpty {
		if v.Type() != pcommon.ValueTypeSlice {
			return ev, audit.ProblemMalformedField, "access_route is not a list"
		}
		for i, a := range v.Slice().All() {
			if a.Type() != pcommon.ValueTypeStr {
				return ev, audit.ProblemMalformedField, fmt.Sprintf("access_route[%d] is not a string", i)
			}
		}
	}
	if err := audit.CheckTimestamp(uint64(lr.Timestamp())); err != nil {
		return ev, audit.ProblemTimestampOutOfRange, "timestamp " + err.Error()
	}
	ev.hash = strField(attrs, audit.AttrHash)
	if len(ev.hash) != 64 {
		ev.hash = canonical.Hash(ev.body, lr.Timestamp())
	}
	ev.id, _ = audit.SafeID(strField(attrs, audit.AttrID))
	if ev.id == "" {
		ev.id = canonical.ID(ev.body, lr.Timestamp(), lr.ObservedTimestamp(), ev.hash)
	}
	if v, ok := attrs.Get(audit.AttrKnown); ok && v.Type() == pcommon.ValueTypeBool {
		ev.known = v.Bool()
	} else {
		ev.known = e.catalog.Known(ev.action)
	}
	if v, ok := attrs.Get(audit.AttrWarnings); ok && v.Type() == pcommon.ValueTypeSlice {
		ev.warnings, ev.hasWarnings = v.Slice(), true
	}
	return ev, "", ""
}

func strField(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok || v.Type() != pcommon.ValueTypeStr {
		return ""
	}
	return v.Str()
}

// appendEventDoc encodes the Elasticsearch document of a valid event. The specification's field names
// come first, unchanged, then the ECS fields that Kibana users rely on (see docs/document.md).
func (e *auditExporter) appendEventDoc(b []byte, ev event, lr plog.LogRecord, res pcommon.Resource, ingested time.Time) []byte {
	body := ev.body
	b = append(b, `{"@timestamp":`...)
	b = appendTime(b, lr.Timestamp().AsTime())
	b = append(b, `,"action":`...)
	b = pjson.AppendString(b, ev.action)
	b = append(b, `,"team_id":`...)
	b = pjson.AppendString(b, ev.teamID)

	actorV, _ := body.Get(audit.FieldActor)
	actor := actorV.Map()
	actorID := strField(actor, audit.FieldID)
	b = append(b, `,"actor":{"type":`...)
	b = pjson.AppendString(b, ev.actorType)
	if actorID != "" {
		b = append(b, `,"id":`...)
		b = pjson.AppendString(b, actorID)
	}
	actorMeta, hasActorMeta := actor.Get(audit.FieldMetadata)
	b = appendFlattened(b, `,"metadata":`, actorMeta, hasActorMeta)
	b = append(b, '}')

	relatedUsers := make([]string, 0, 4)
	if ev.actorType == string(audit.ActorUser) && actorID != "" {
		relatedUsers = append(relatedUsers, actorID)
	}
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
			if typ == "user" && id != "" {
				relatedUsers = append(relatedUsers, id)
			}
		}
	}
	b = append(b, ']')

	var ips [8]string
	relatedIPs := ips[:0]
	b = append(b, `,"access_route":[`...)
	if rv, ok := body.Get(audit.FieldAccessRoute); ok && rv.Type() == pcommon.ValueTypeSlice {
		for i, a := range rv.Slice().All() {
			if i > 0 {
				b = append(b, ',')
			}
			b = pjson.AppendString(b, a.Str())
			relatedIPs = appendIP(relatedIPs, a.Str())
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

	// ECS
	b = append(b, `,"event":{"id":`...)
	b = pjson.AppendString(b, ev.id)
	b = append(b, `,"action":`...)
	b = pjson.AppendString(b, ev.action)
	b = append(b, `,"kind":"event"`...)
	info, _ := e.catalog.Lookup(ev.action)
	if info.Category != "" {
		b = append(b, `,"category":`...)
		b = pjson.AppendString(b, info.Category)
	}
	b = append(b, `,"outcome":`...)
	if strings.HasSuffix(ev.action, "_failed") {
		b = append(b, `"failure"`...)
	} else {
		b = append(b, `"success"`...)
	}
	b = append(b, `,"hash":`...)
	b = pjson.AppendString(b, ev.hash)
	b = append(b, `,"ingested":`...)
	b = appendTime(b, ingested)
	b = append(b, `},"organization":{"id":`...)
	b = pjson.AppendString(b, ev.teamID)
	b = append(b, '}')
	if remote != "" {
		if _, err := netip.ParseAddr(remote); err == nil {
			b = append(b, `,"source":{"ip":`...)
			b = pjson.AppendString(b, remote)
			b = append(b, '}')
			relatedIPs = appendIP(relatedIPs, remote)
		}
	}
	if ev.actorType == string(audit.ActorUser) && actorID != "" {
		b = append(b, `,"user":{"id":`...)
		b = pjson.AppendString(b, actorID)
		if hasActorMeta && actorMeta.Type() == pcommon.ValueTypeMap {
			if email := strField(actorMeta.Map(), "email"); email != "" {
				b = append(b, `,"email":`...)
				b = pjson.AppendString(b, email)
			}
			if name := strField(actorMeta.Map(), "name"); name != "" {
				b = append(b, `,"name":`...)
				b = pjson.AppendString(b, name)
			}
		}
		b = append(b, '}')
	}
	b = append(b, `,"related":{"ip":`...)
	b = appendStrings(b, relatedIPs)
	b = append(b, `,"user":`...)
	b = appendStrings(b, relatedUsers)
	b = append(b, '}')
	if svc := strField(res.Attributes(), "service.name"); svc != "" {
		b = append(b, `,"service":{"name":`...)
		b = pjson.AppendString(b, svc)
		b = append(b, '}')
	}
	b = append(b, `,"audit":{"action_known":`...)
	if ev.known {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	if info.Description != "" {
		b = append(b, `,"action_description":`...)
		b = pjson.AppendString(b, info.Description)
	}
	if ev.hasWarnings && ev.warnings.Len() > 0 {
		b = append(b, `,"warnings":`...)
		b = pjson.AppendSlice(b, ev.warnings, false)
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

func appendIP(ips []string, s string) []string {
	if _, err := netip.ParseAddr(s); err != nil {
		return ips
	}
	for _, have := range ips {
		if have == s {
			return ips
		}
	}
	return append(ips, s)
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
