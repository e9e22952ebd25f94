package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Problem codes: why an event is invalid or was quarantined. They are metric attribute values and
// quarantine reasons, so they are stable identifiers.
const (
	ProblemMalformedBody    = "malformed_body"
	ProblemMissingAction    = "missing_action"
	ProblemMalformedAction  = "malformed_action"
	ProblemUnknownAction    = "unknown_action"
	ProblemMissingTeamID    = "missing_team_id"
	ProblemInvalidTeamID    = "invalid_team_id"
	ProblemMissingActor     = "missing_actor"
	ProblemInvalidActorType = "invalid_actor_type"
	ProblemMissingActorID   = "missing_actor_id"
	ProblemMalformedField   = "malformed_field"
	ProblemMalformedTargets = "malformed_targets"

	// Warnings: kept on the event, never make it invalid.
	WarningInvalidIP = "invalid_ip"
)

// MaxActionLen bounds an action name.
const MaxActionLen = 128

// CheckActionName accepts a well-formed action name: a lowercase letter, then lowercase letters, digits
// and underscores, at most MaxActionLen bytes (the catalog's style, e.g. job_user_access_changed).
func CheckActionName(s string) error {
	if s == "" {
		return fmt.Errorf("is empty")
	}
	if len(s) > MaxActionLen {
		return fmt.Errorf("is %d bytes long, the limit is %d", len(s), MaxActionLen)
	}
	if s[0] < 'a' || s[0] > 'z' {
		return fmt.Errorf("%q must start with a lowercase letter", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return fmt.Errorf("%q may hold only lowercase letters, digits and underscores", s)
		}
	}
	return nil
}

// MaxTeamIDLen bounds a team id (the slug form; a decimal integer is shorter anyway).
const MaxTeamIDLen = 64

// CheckTeamID accepts a safe tenant key, from which index names are derived: either a positive
// decimal integer without leading zeros (the product's numeric team ids), or a lowercase slug
// [a-z0-9][a-z0-9_-]{0,63} that is not all digits. Everything else is refused: uppercase, wildcards,
// commas, dots, slashes, whitespace, the empty string and anything longer than 64 bytes. All-digit
// strings must be canonical so that "007" and "7" can never name two different tenants.
func CheckTeamID(s string) error {
	if s == "" {
		return fmt.Errorf("is empty")
	}
	if len(s) > MaxTeamIDLen {
		return fmt.Errorf("is %d bytes long, the limit is %d", len(s), MaxTeamIDLen)
	}
	digits := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z':
			digits = false
		case (c == '_' || c == '-') && i > 0:
			digits = false
		default:
			return fmt.Errorf("%s is not a positive integer or a lowercase slug [a-z0-9][a-z0-9_-]{0,63}", quoteShort(s))
		}
	}
	if digits && s[0] == '0' {
		return fmt.Errorf("%q: a numeric team id is a positive integer without leading zeros", s)
	}
	return nil
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// FormatProblem renders a problem code and its detail the way they are stored and reported.
func FormatProblem(code, detail string) string {
	if detail == "" {
		return code
	}
	return code + ": " + detail
}

// ProblemCode returns the code of a problem rendered by FormatProblem.
func ProblemCode(p string) string {
	if i := strings.Index(p, ": "); i >= 0 {
		return p[:i]
	}
	return p
}

// More problem codes.
const (
	ProblemConflictingField = "conflicting_field" // two sources (body, attributes, event name) disagree on action or team_id
	ProblemUnknownField     = "unknown_field"     // the body has a top-level field the canonical event does not
	WarningMissingTimestamp = "missing_timestamp" // neither timestamp nor observed timestamp: processing time used
)

// Problem and warning codes of the failure paths: a timestamp Elasticsearch cannot store, an id reused
// for a different event, and ids the processor had to make up or repair.
const (
	ProblemTimestampOutOfRange = "timestamp_out_of_range" // before 1970-01-01 or after 2262-04-11 (date_nanos)
	ProblemIDConflict          = "id_conflict"            // the id is stored already, for an event with another hash
	WarningMissingID           = "missing_id"             // no id from the sender: a content hash is the id
	WarningInvalidID           = "invalid_id"             // the id was not valid UTF-8 or too long: its hash is the id
)

// MaxTime is the last instant Elasticsearch's date_nanos can hold (2262-04-11T23:47:16.854775807Z);
// the first is the Unix epoch. An event outside that range can be stored nowhere, quarantine included.
var MaxTime = time.Unix(0, math.MaxInt64).UTC()

// CheckTime accepts an event time Elasticsearch can store: from 1970-01-01 to MaxTime.
func CheckTime(t time.Time) error {
	if t.Before(time.Unix(0, 0)) || t.After(MaxTime) {
		return fmt.Errorf("%s is outside 1970-01-01..2262-04-11", t.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// CheckTimestamp is CheckTime for a log record's nanoseconds since the epoch (0 means unset and is
// refused too): values of 2^63 and more wrap to before 1970.
func CheckTimestamp(ns uint64) error {
	if ns == 0 {
		return errors.New("is not set")
	}
	if ns > math.MaxInt64 {
		return fmt.Errorf("%d ns is after 2262-04-11", ns)
	}
	return nil
}

// MaxIDBytes is Elasticsearch's limit on a document _id, in encoded bytes.
const MaxIDBytes = 512

// SafeID returns an event id that Elasticsearch stores as given: id itself when it is valid UTF-8 of
// at most MaxIDBytes bytes, else "sha256-" and the hex SHA-256 of its bytes, which identifies the same
// event on every redelivery. repaired says the id was replaced. Invalid UTF-8 must not reach JSON,
// where each bad byte would become a three-byte U+FFFD and distinct ids could collide.
func SafeID(id string) (safe string, repaired bool) {
	if len(id) <= MaxIDBytes && utf8.ValidString(id) {
		return id, false
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256-" + hex.EncodeToString(sum[:]), true
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// Abbreviate is Truncate with "…" appended when s was cut, for messages and logs.
func Abbreviate(s string, n int) string {
	if t := Truncate(s, n); len(t) < len(s) {
		return t + "…"
	}
	return s
}

// MaxGivenTeamIDBytes bounds the team id a bad record named, as the quarantine keeps it.
const MaxGivenTeamIDBytes = 256
