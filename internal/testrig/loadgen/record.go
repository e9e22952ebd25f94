package loadgen

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/auditpipe/auditpipe/audit"
)

type sdklogRecord = log.Record

func malformedRecord(id, body string) log.Record {
	var r log.Record
	r.SetEventName(audit.EventName)
	r.SetTimestamp(time.Now())
	r.SetBody(attribute.StringValue(body))
	r.AddAttributes(attribute.String(audit.AttrID, id))
	return r
}
