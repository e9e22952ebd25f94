// Package canonical defines the content hashes of the pipeline, each written once here:
//
//   - Hash, the event.hash stored with every document, so integrity can be verified later and a
//     reused id told from a redelivery;
//   - ID, the event id when the sender supplied none;
//   - QuarantineID, the _id of a quarantine document.
//
// Hash is the lowercase hex SHA-256 of the bytes
//
//	{"event":<body>,"timestamp":"<RFC 3339 UTC, nanoseconds>"}
//
// where <body> is the canonical event body encoded by pjson with object keys sorted byte-wise, no
// insignificant white space, integers in decimal and strings escaped as pjson does.
package canonical

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Hash returns the content hash of an event body at a timestamp.
func Hash(body pcommon.Map, ts pcommon.Timestamp) string {
	return hashOf(func(b []byte) []byte { return pjson.AppendMap(b, body, true) }, ts)
}

// ID is the event id of an event whose sender supplied none: Hash, with the record's observed
// timestamp added when it has one,
//
//	{"event":<body>,"observed":"<RFC 3339>","timestamp":"<RFC 3339>"}
//
// An SDK that retries an export resends the same observed timestamp, so a redelivery keeps its id; two
// real events identical but for when they were observed (two failed logins in one second) do not
// merge. Without an observed timestamp ID equals Hash: a caller that has Hash(body, ts) already
// passes it as hash, so that it is not computed twice ("" when it has not).
func ID(body pcommon.Map, ts, observed pcommon.Timestamp, hash string) string {
	if observed == 0 {
		if hash != "" {
			return hash
		}
		return Hash(body, ts)
	}
	return hashOf(func(b []byte) []byte {
		b = pjson.AppendMap(b, body, true)
		b = append(b, `,"observed":"`...)
		b = observed.AsTime().UTC().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"')
	}, ts)
}

// QuarantineID is the _id of a quarantine document: "q-" and the SHA-256 of the team id the record
// named (QuarantineTeamID), its event name, both timestamps and the RecordHash encoding of body and
// attributes. It is scoped by team and content, so a redelivered record is quarantined once and one
// team's record (or a reused client id) can never shadow another's.
func QuarantineID(lr plog.LogRecord) string {
	sum := sha256.New()
	fmt.Fprintf(sum, "%q\x00%q\x00%d\x00%d\x00", QuarantineTeamID(lr), lr.EventName(), uint64(lr.Timestamp()), uint64(lr.ObservedTimestamp()))
	sum.Write([]byte(RecordHash(lr.Body(), lr.Attributes(), 0)))
	return "q-" + hex.EncodeToString(sum.Sum(nil))
}

// QuarantineTeamID is the team id a record named, valid or not, as the quarantine keeps it: the
// processor's note on an invalid record (audit.quarantine.team_id), else the body's team_id, else
// the audit.team_id attribute; at most audit.MaxGivenTeamIDBytes.
func QuarantineTeamID(lr plog.LogRecord) string {
	attrs := lr.Attributes()
	if v, ok := attrs.Get(audit.AttrQuarantineTeamID); ok && v.Type() == pcommon.ValueTypeStr && v.Str() != "" {
		return v.Str()
	}
	if lr.Body().Type() == pcommon.ValueTypeMap {
		if v, ok := lr.Body().Map().Get(audit.FieldTeamID); ok && v.Type() != pcommon.ValueTypeEmpty {
			return audit.Truncate(v.AsString(), audit.MaxGivenTeamIDBytes)
		}
	}
	if v, ok := attrs.Get(audit.AttrTeamID); ok && v.Type() != pcommon.ValueTypeEmpty {
		return audit.Truncate(v.AsString(), audit.MaxGivenTeamIDBytes)
	}
	return ""
}

// RecordHash hashes a record that could not be normalized: its whole body, whatever its type, and its
// attributes. It gives quarantined records a stable id too.
func RecordHash(body pcommon.Value, attrs pcommon.Map, ts pcommon.Timestamp) string {
	return hashOf(func(b []byte) []byte {
		b = append(b, `{"attributes":`...)
		b = pjson.AppendMap(b, attrs, true)
		b = append(b, `,"body":`...)
		b = pjson.AppendValue(b, body, true)
		return append(b, '}')
	}, ts)
}

func hashOf(encode func([]byte) []byte, ts pcommon.Timestamp) string {
	bp := bufs.Get().(*[]byte)
	b := append((*bp)[:0], `{"event":`...)
	b = encode(b)
	b = append(b, `,"timestamp":"`...)
	b = ts.AsTime().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	sum := sha256.Sum256(b)
	*bp = b
	bufs.Put(bp)
	return hex.EncodeToString(sum[:])
}
