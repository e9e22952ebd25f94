package auditelasticsearchexporter

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/canonical"
)

// Quarantine stages and the exporter's own quarantine reasons (the processor's problem codes are
// reasons too).
const (
	stageValidation = "validation"
	stageIndexing   = "indexing"

	reasonNotNormalized  = "not_normalized"     // audit.status=valid but the body is not a canonical event
	reasonDocumentTooBig = "document_too_large" // larger than max_document_bytes
	reasonRejected       = "rejected"           // Elasticsearch refused the document for its own fault
)

// source is the record a quarantine document keeps, with its resource and scope.
type source struct {
	res   pcommon.Resource
	scope pcommon.InstrumentationScope
	lr    plog.LogRecord
}

// toQuarantine makes it a quarantine document of src. Its _id is scoped by team and content
// (canonical.QuarantineID), so a redelivered bad record is quarantined once and no record can shadow
// another team's.
func (e *auditExporter) toQuarantine(it *item, q document.Quarantine, src source, ingested time.Time) {
	lr := src.lr
	if q.TeamID == "" {
		q.TeamID = canonical.QuarantineTeamID(lr)
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
	it.doc = document.AppendQuarantine(nil, eventID, &q, lr, src.res, src.scope, ingested, e.cfg.MaxDocumentBytes)
}

// quarantineRefused quarantines an event document that Elasticsearch refused for its own fault, or
// whose id is stored with other content. The queue holds documents, not records, so the record kept
// is rebuilt from the document (document.EventRecord).
func (e *auditExporter) quarantineRefused(it *item, q document.Quarantine, ingested time.Time) {
	q.TeamID = it.routing
	res, scope, lr := document.EventRecord(plog.NewLogs(), it.doc, it.eventID)
	e.toQuarantine(it, q, source{res, scope, lr}, ingested)
}
