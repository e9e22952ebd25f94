package tenantapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"

	"github.com/auditpipe/auditpipe/internal/query"
)

// cursor is what a next_cursor carries: the listing's filters, where it stands, the access event
// that recorded it, and how much it has served. It is signed with a key derived from the stored
// hash of the key it was issued to, so it is opaque to nobody but useless to anybody else: a changed
// byte or another key's cursor fails the signature. It reveals the listing's own filters and the
// sort values of an event the client has already read, nothing of another team.
type cursor struct {
	Version int             `json:"v"`
	KeyID   string          `json:"k"`
	Query   listing         `json:"q"`
	Pos     *query.Position `json:"p"`
	ReadID  string          `json:"r"` // the audit_log_read event of this listing
	Pages   int             `json:"n"` // pages served so far
	Events  int             `json:"e"` // events served so far
}

// cursorVersion changes when what a position holds does: version 2 sorts the events of one time by
// the order stored (_seq_no), no longer by event id. A cursor of another version is a bad cursor.
const cursorVersion = 2

// MaxCursor bounds a cursor parameter. A point in time's id grows with the partitions it spans
// (a few hundred bytes for a year of monthly partitions).
const MaxCursor = 16 << 10

var errBadCursor = errors.New("not a cursor of this key (tampered with, truncated, or issued to another key)")

// cursorMAC is the signing key of a key's cursors. The hash is the key's stored secret-derived value,
// which only the cluster and this server see.
func cursorMAC(k *Key) []byte {
	secret, _ := hex.DecodeString(k.Hash)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("auditapi cursor v1"))
	return m.Sum(nil)
}

// decodeCanonical decodes s only if it is the encoding of what it decodes to: Go's decoder skips
// line breaks and ignores a last character's unused bits, and no second string may pass for a
// cursor that was issued.
func decodeCanonical(s string) ([]byte, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return b, err == nil && base64.RawURLEncoding.EncodeToString(b) == s
}

func encodeCursor(k *Key, c cursor) string {
	c.Version, c.KeyID = cursorVersion, k.ID
	payload, _ := json.Marshal(c)
	m := hmac.New(sha256.New, cursorMAC(k))
	m.Write(payload)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// decodeCursor verifies a cursor against the key that presents it.
func decodeCursor(k *Key, s string) (cursor, error) {
	p, t, ok := strings.Cut(s, ".")
	if !ok {
		return cursor{}, errBadCursor
	}
	payload, ok1 := decodeCanonical(p)
	tag, ok2 := decodeCanonical(t)
	if !ok1 || !ok2 {
		return cursor{}, errBadCursor
	}
	m := hmac.New(sha256.New, cursorMAC(k))
	m.Write(payload)
	if !hmac.Equal(tag, m.Sum(nil)) {
		return cursor{}, errBadCursor
	}
	var c cursor
	if err := json.Unmarshal(payload, &c); err != nil || c.Version != cursorVersion || c.KeyID != k.ID || c.Pos == nil {
		return cursor{}, errBadCursor
	}
	return c, nil
}
