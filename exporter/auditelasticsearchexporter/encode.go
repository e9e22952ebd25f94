package auditelasticsearchexporter

// The re-check stage: the exporter trusts no attribute. The document itself is encoded by
// internal/document.

import (
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/canonical"
)

// readEvent checks a record the processor marked valid, again: the exporter may run without the
// processor, and a record's attributes are input like any other. It returns what the document
// encoder needs of the event (document.Input, less the resource and the ingest time), or the
// quarantine reason when the record is not a routable canonical event.
func (e *auditExporter) readEvent(lr plog.LogRecord) (document.Input, string, string) {
	attrs := lr.Attributes()
	if lr.Body().Type() != pcommon.ValueTypeMap {
		return document.Input{}, reasonNotNormalized, "the body is not a map"
	}
	ev := document.Input{Body: lr.Body().Map(), Time: lr.Timestamp()}
	ev.TeamID = strField(ev.Body, audit.FieldTeamID)
	if err := audit.CheckTeamID(ev.TeamID); err != nil {
		return ev, audit.ProblemInvalidTeamID, "team_id " + err.Error()
	}
	ev.Action = strField(ev.Body, audit.FieldAction)
	if err := audit.CheckActionName(ev.Action); err != nil {
		return ev, audit.ProblemMalformedAction, "action " + err.Error()
	}
	actor, ok := ev.Body.Get(audit.FieldActor)
	if !ok || actor.Type() != pcommon.ValueTypeMap {
		return ev, audit.ProblemMissingActor, "no actor map"
	}
	ev.ActorType = strField(actor.Map(), audit.FieldType)
	if ev.ActorType != string(audit.ActorUser) && ev.ActorType != string(audit.ActorSystem) {
		return ev, audit.ProblemInvalidActorType, fmt.Sprintf("actor type %q", ev.ActorType)
	}
	if v, ok := ev.Body.Get(audit.FieldTargets); ok && v.Type() != pcommon.ValueTypeEmpty {
		if v.Type() != pcommon.ValueTypeSlice {
			return ev, audit.ProblemMalformedTargets, "targets is not a list"
		}
		for i, t := range v.Slice().All() {
			if t.Type() != pcommon.ValueTypeMap {
				return ev, audit.ProblemMalformedTargets, fmt.Sprintf("targets[%d] is not a map", i)
			}
		}
	}
	if v, ok := ev.Body.Get(audit.FieldAccessRoute); ok && v.Type() != pcommon.ValueTypeEmpty {
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
	ev.Hash = strField(attrs, audit.AttrHash)
	if len(ev.Hash) != 64 {
		ev.Hash = canonical.Hash(ev.Body, lr.Timestamp())
	}
	ev.ID, _ = audit.SafeID(strField(attrs, audit.AttrID))
	if ev.ID == "" {
		ev.ID = canonical.ID(ev.Body, lr.Timestamp(), lr.ObservedTimestamp(), ev.Hash)
	}
	if v, ok := attrs.Get(audit.AttrKnown); ok && v.Type() == pcommon.ValueTypeBool {
		ev.Known = v.Bool()
	} else {
		ev.Known = e.catalog.Known(ev.Action)
	}
	if v, ok := attrs.Get(audit.AttrWarnings); ok && v.Type() == pcommon.ValueTypeSlice {
		ev.Warnings, ev.HasWarnings = v.Slice(), true
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
