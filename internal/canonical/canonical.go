// Package canonical defines the content hash of an audit event: the event id when the sender supplied
// none (so a redelivered event gets the same id) and the event.hash stored with every document (so
// integrity can be verified later without reindexing).
//
// The hash is the lowercase hex SHA-256 of the bytes
//
//	{"event":<body>,"timestamp":"<RFC 3339 UTC, nanoseconds>"}
//
// where <body> is the canonical event body encoded by pjson with object keys sorted byte-wise, no
// insignificant white space, integers in decimal and strings escaped as pjson does.
package canonical

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/auditpipe/auditpipe/internal/pjson"
)

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Hash returns the content hash of an event body at a timestamp.
func Hash(body pcommon.Map, ts pcommon.Timestamp) string {
	return hashOf(func(b []byte) []byte { return pjson.AppendMap(b, body, true) }, ts)
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
