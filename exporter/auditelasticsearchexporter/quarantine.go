package auditelasticsearchexporter

import (
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/canonical"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// Quarantine stages and the exporter's own quarantine reasons (the processor's problem codes are
// reasons too).
const (
	stageValidation = "validation"
	stageIndexing   = "indexing"

	reasonNotNormalized   = "not_normalized"     // audit.status=valid but the body is not a canonical event
	reasonDocumentTooBig  = "document_too_large" // larger than max_document_bytes
	reasonRejected        = "rejected"           // Elasticsearch refused the document for its own fault
	quarantinePreviewSize = 64 << 10             // how much of an oversized record the quarantine keeps
)

// quarantine describes why a record goes to the quarantine index.
type quarantine struct {
	stage       string
	reasons     []string
	errorType   string
	errorReason string
	teamID      string // the team id the record named, as given
	index       string // the team index the event was meant for
	// on an id_conflict: this event's hash and the hash stored under its id
	hash, storedHash string
}

// source is the record a quarantine document keeps, with its resource and scope.
type source struct {
	res   pcommon.Resource
	scope pcommon.InstrumentationScope
	lr    plog.LogRecord
}

// toQuarantine makes it a quarantine document of src. Its _id is scoped by team and content
// (canonical.QuarantineID), so a redelivered bad record is quarantined once and no record can shadow
// another team's.
func (e *auditExporter) toQuarantine(it *item, q quarantine, src source, ingested time.Time) {
	lr := src.lr
	if q.teamID == "" {
		q.teamID = canonical.QuarantineTeamID(lr)
	}
	eventID := it.eventID
	if eventID == "" {
		eventID, _ = audit.SafeID(strField(lr.Attributes(), audit.AttrID))
	}
	if eventID == "" {
		eventID = canonical.RecordHash(lr.Body(), lr.Attributes(), lr.Timestamp())
	}
	it.id = canonical.QuarantineID(lr)
	it.index, it.routing = e.cfg.QuarantineIndex, ""
	it.q = &q
	it.doc = appendQuarantineDoc(nil, eventID, q, lr, src.res, src.scope, ingested, e.cfg.MaxDocumentBytes)
}

// quarantineRefused quarantines an event document that Elasticsearch refused for its own fault, or
// whose id is stored with other content. The queue holds documents, not records, so the record kept
// is rebuilt from the document (docRecord).
func (e *auditExporter) quarantineRefused(it *item, q quarantine, ingested time.Time) {
	q.teamID = it.routing
	e.toQuarantine(it, q, docRecord(it), ingested)
}

// docRecord rebuilds the record an event document was encoded from, as a replay can take it again:
// the body is the canonical event (the specification's fields of the document), the event id an
// attribute, the time the document's. A metadata value that was not a map comes back wrapped as
// {"value": …}, as it was indexed. A document that does not parse is kept whole as a string body.
func docRecord(it *item) source {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	sl := rl.ScopeLogs().AppendEmpty()
	lr := sl.LogRecords().AppendEmpty()
	lr.SetEventName(audit.EventName)
	lr.Attributes().PutStr(audit.AttrID, it.eventID)
	src := source{rl.Resource(), sl.Scope(), lr}
	doc := pcommon.NewMap()
	if err := pjson.DecodeMap(it.doc, doc); err != nil {
		lr.Body().SetStr(string(it.doc))
		return src
	}
	body := lr.Body().SetEmptyMap()
	for _, f := range audit.BodyFields {
		if v, ok := doc.Get(f); ok {
			v.CopyTo(body.PutEmpty(f))
		}
	}
	if ts, err := time.Parse(time.RFC3339Nano, strField(doc, "@timestamp")); err == nil {
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	}
	if svc, ok := doc.Get("service"); ok && svc.Type() == pcommon.ValueTypeMap {
		if name := strField(svc.Map(), "name"); name != "" {
			rl.Resource().Attributes().PutStr("service.name", name)
		}
	}
	return src
}

// appendQuarantineDoc encodes the quarantine document of a record: the reasons and the whole
// original record (body, attributes, resource attributes, timestamps), so that it can be replayed, cut
// to a preview when it is too large to store.
func appendQuarantineDoc(b []byte, eventID string, q quarantine, lr plog.LogRecord, res pcommon.Resource, scope pcommon.InstrumentationScope, ingested time.Time, maxBytes int) []byte {
	body := pjson.AppendValue(nil, lr.Body(), false)
	attrs := pjson.AppendMap(nil, lr.Attributes(), false)
	resource := pjson.AppendMap(nil, res.Attributes(), false)
	size := len(body) + len(attrs) + len(resource)
	truncated := false
	if size > maxBytes/2 {
		truncated = true
		body = truncateUTF8(body, quarantinePreviewSize)
		attrs = truncateUTF8(attrs, quarantinePreviewSize)
		resource = truncateUTF8(resource, quarantinePreviewSize)
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
	b = pjson.AppendString(b, q.stage)
	b = append(b, `,"reasons":`...)
	b = appendStrings(b, q.reasons)
	for _, f := range [][2]string{
		{"error_type", q.errorType}, {"error_reason", q.errorReason}, {"team_id", q.teamID}, {"index", q.index},
		{"hash", q.hash}, {"stored_hash", q.storedHash},
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
