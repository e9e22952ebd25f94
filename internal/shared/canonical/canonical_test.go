package canonical

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// TestHashFollowsTheDocumentedEncoding pins the definition: integrity checks outside this code base
// recompute it from the stored document.
func TestHashFollowsTheDocumentedEncoding(t *testing.T) {
	body := pcommon.NewMap()
	body.PutStr("team_id", "191796")
	body.PutStr("action", "job_created")
	body.PutEmptyMap("actor").PutStr("type", "system")
	ts := pcommon.NewTimestampFromTime(time.Date(2025, 8, 1, 21, 0, 0, 5, time.UTC))
	want := sha256.Sum256([]byte(`{"event":{"action":"job_created","actor":{"type":"system"},"team_id":"191796"},"timestamp":"2025-08-01T21:00:00.000000005Z"}`))
	if got := Hash(body, ts); got != hex.EncodeToString(want[:]) {
		t.Fatalf("Hash = %s, want %s", got, hex.EncodeToString(want[:]))
	}
	if Hash(body, ts+1) == Hash(body, ts) {
		t.Fatal("the timestamp is part of the hash")
	}
	attrs := pcommon.NewMap()
	attrs.PutStr("audit.action", "x")
	rec := sha256.Sum256([]byte(`{"event":{"attributes":{"audit.action":"x"},"body":"raw"},"timestamp":"2025-08-01T21:00:00.000000005Z"}`))
	if got := RecordHash(pcommon.NewValueStr("raw"), attrs, ts); got != hex.EncodeToString(rec[:]) {
		t.Fatalf("RecordHash = %s", got)
	}
}
