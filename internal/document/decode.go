package document

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// Fields are the specification's fields, named alike in the stored document and in the API's
// event; objects and arrays are kept as stored.
type Fields struct {
	Action      string          `json:"action"`
	TeamID      string          `json:"team_id"`
	Actor       json.RawMessage `json:"actor"`
	Targets     json.RawMessage `json:"targets"`
	AccessRoute json.RawMessage `json:"access_route"`
	RemoteAddr  *string         `json:"remote_addr"`
	UserAgent   *string         `json:"user_agent"`
	Metadata    json.RawMessage `json:"metadata"`
}

// Stored is an event document as read back, every template version alike: its time, the
// specification's fields (unchanged since version 1) and the event's id, hash and ingest time.
type Stored struct {
	Timestamp string `json:"@timestamp"`
	Fields
	Event struct {
		ID       string `json:"id"`
		Hash     string `json:"hash"`
		Ingested string `json:"ingested"`
	} `json:"event"`
}

// Hit is an event document as a search returns it. Its _id carries the event id (layout.DocID),
// which the document holds in event.id only when the _id cannot (and before version 4 always).
type Hit struct {
	ID     string          `json:"_id"`
	Source json.RawMessage `json:"_source"`
}

// Decode reads one event document.
func Decode(h Hit) (Stored, error) {
	var d Stored
	if err := json.Unmarshal(h.Source, &d); err != nil {
		return Stored{}, fmt.Errorf("stored document: %w", err)
	}
	return d.WithDocID(h.ID), nil
}

// WithDocID completes a document decoded with the search answer that held it (as Decode does one
// hit): the event id from its _id where the document does not keep it.
func (d Stored) WithDocID(docID string) Stored {
	if d.Event.ID == "" {
		d.Event.ID = layout.EventIDOf(docID)
	}
	return d
}

// Expand returns an event document with every field version 3 wrote, whatever version stored it:
// what a reader of whole documents (auditctl tail, the ndjson export) prints, so that its output
// does not change with the template. A document that has them already is returned as it is; the
// others gain the event id from the _id, the values of the fields that became aliases, and the ones
// derived from the document and from catalog (event.kind, event.outcome, event.category, user.id,
// user.name, related.ip, related.user, audit.action_description).
func Expand(h Hit, catalog *audit.Catalog) ([]byte, error) {
	// One pass over the top level finds the members; only the few a derived field needs are
	// decoded, and every member is copied as written (metadata's numbers too).
	src := h.Source
	top, err := parseObject(src)
	if err != nil {
		return nil, err
	}
	event, err := optionalObject(top.raw("event"))
	if err != nil {
		return nil, err
	}
	if event.has("id") && event.has("action") { // written by version 3 or earlier
		return src, nil
	}
	var d Stored
	for _, f := range []struct {
		key string
		to  any
	}{{Action, &d.Action}, {TeamID, &d.TeamID}, {"actor", &d.Actor}, {"targets", &d.Targets}, {"access_route", &d.AccessRoute}, {"remote_addr", &d.RemoteAddr}} {
		if v := top.raw(f.key); v != nil {
			if err := json.Unmarshal(v, f.to); err != nil {
				return nil, fmt.Errorf("stored document: %s: %w", f.key, err)
			}
		}
	}
	var info audit.ActionInfo
	if catalog != nil {
		info, _ = catalog.Lookup(d.Action)
	}
	actor := d.ActorFields()
	isUser := actor.Type == string(audit.ActorUser) && actor.ID != ""

	out := make([]byte, 0, len(src)+256)
	out = append(out, '{')
	sep := func() {
		if len(out) > 1 {
			out = append(out, ',')
		}
	}
	hadUser := false
	for _, m := range top.ms {
		if m.key == "organization" || m.key == "related" {
			continue // derived below; no version 4 document holds them
		}
		sep()
		out = append(out, src[m.keyStart:m.start]...) // "key":
		v := src[m.start:m.end]
		switch m.key {
		case "event":
			out = appendMembers(out, v, func(b []byte) []byte {
				if !event.has("id") { // else the _id holds the id's hash
					b = appendMember(b, "id", layout.EventIDOf(h.ID))
				}
				b = appendMember(b, "action", d.Action)
				b = appendMember(b, "kind", "event")
				if info.Category != "" {
					b = appendMember(b, "category", info.Category)
				}
				return appendMember(b, "outcome", outcome(d.Action))
			})
		case "user":
			hadUser = true
			out = appendMembers(out, v, func(b []byte) []byte { return appendUser(b, actor, isUser) })
		case "audit":
			out = appendMembers(out, v, func(b []byte) []byte {
				if info.Description != "" {
					b = appendMember(b, "action_description", info.Description)
				}
				return b
			})
		default:
			out = append(out, v...)
		}
	}
	if !hadUser && isUser {
		sep()
		out = appendMembers(append(out, `"user":`...), []byte("{}"), func(b []byte) []byte { return appendUser(b, actor, isUser) })
	}
	sep()
	out = append(out, `"organization":{"id":`...)
	out = append(pjson.AppendString(out, d.TeamID), '}')

	relatedUsers := []string{}
	if isUser {
		relatedUsers = append(relatedUsers, actor.ID)
	}
	var targets []struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	_ = json.Unmarshal(d.Targets, &targets) // targets that are no list of objects name no user
	for _, t := range targets {
		if t.Type == "user" && t.ID != "" {
			relatedUsers = append(relatedUsers, t.ID)
		}
	}
	relatedIPs := []string{}
	for _, a := range d.AccessRouteList() {
		relatedIPs = appendIP(relatedIPs, a)
	}
	if d.RemoteAddr != nil {
		relatedIPs = appendIP(relatedIPs, *d.RemoteAddr)
	}
	out = append(out, `,"related":{"ip":`...)
	out = appendStrings(out, relatedIPs)
	out = append(out, `,"user":`...)
	out = appendStrings(out, relatedUsers)
	return append(out, `}}`...), nil
}

// appendUser adds a user actor's id and name to the user object (the email is stored).
func appendUser(b []byte, actor Actor, isUser bool) []byte {
	if !isUser {
		return b
	}
	b = appendMember(b, "id", actor.ID)
	if actor.Name != "" {
		b = appendMember(b, "name", actor.Name)
	}
	return b
}

// appendMembers appends the object obj with the members add appends after its own.
func appendMembers(b, obj []byte, add func([]byte) []byte) []byte {
	obj = bytes.TrimRight(obj, " \t\r\n")
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return append(b, obj...) // not an object: left as it is
	}
	inner := bytes.TrimSpace(obj[1 : len(obj)-1])
	b = append(append(b, '{'), inner...)
	mark := len(b)
	b = add(b)
	if len(inner) == 0 && len(b) > mark { // the first member written carries a comma of its own
		b = append(b[:mark], b[mark+1:]...)
	}
	return append(b, '}')
}

// appendMember appends ,"key":"value".
func appendMember(b []byte, key, value string) []byte {
	b = append(b, ',')
	b = pjson.AppendString(b, key)
	b = append(b, ':')
	return pjson.AppendString(b, value)
}

// member is one member of a JSON object: its key, where its "key": starts, and its value's span.
type member struct {
	key                  string
	keyStart, start, end int
}

// object is a JSON object's members, with the bytes they point into.
type object struct {
	src []byte
	ms  []member
}

func (o object) index(key string) int {
	for i, m := range o.ms {
		if m.key == key {
			return i
		}
	}
	return -1
}

func (o object) has(key string) bool { return o.index(key) >= 0 }

// raw is a member's value as written (nil for none).
func (o object) raw(key string) []byte {
	if i := o.index(key); i >= 0 {
		return o.src[o.ms[i].start:o.ms[i].end]
	}
	return nil
}

// parseObject reads a JSON object's members.
func parseObject(b []byte) (object, error) {
	ms, err := members(b)
	if err != nil {
		return object{}, fmt.Errorf("stored document: %w", err)
	}
	return object{src: b, ms: ms}, nil
}

// optionalObject is parseObject, with no members for an absent or null value.
func optionalObject(b []byte) (object, error) {
	if t := bytes.TrimSpace(b); len(t) == 0 || string(t) == "null" {
		return object{}, nil
	}
	return parseObject(b)
}

// members scans a JSON object's top level: each member's key and the span of its value. The values
// are checked for balance only; json.Valid checks the whole first.
func members(b []byte) ([]member, error) {
	if !json.Valid(b) {
		return nil, errors.New("not valid JSON")
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []member
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return out, nil
	}
	for i < len(b) {
		keyStart := i
		end := skipValue(b, i)
		if b[i] != '"' {
			return nil, errors.New("a member without a key")
		}
		key := string(b[i+1 : end-1])
		if bytes.IndexByte(b[i:end], '\\') >= 0 { // escaped: decode it
			if err := json.Unmarshal(b[i:end], &key); err != nil {
				return nil, err
			}
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, errors.New("a member without a colon")
		}
		i = skipSpace(b, i+1)
		start := i
		i = skipValue(b, i)
		out = append(out, member{key: key, keyStart: keyStart, start: start, end: i})
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		return out, nil
	}
	return nil, errors.New("an unterminated object")
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipValue returns the end of the valid JSON value starting at i.
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			depth--
			i++
		default:
			if depth == 0 {
				for i < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[i])) {
					i++
				}
				return i
			}
			i++
		}
		if depth == 0 {
			return i
		}
	}
	return i
}

// appendIP adds s to ips if it is an IP address not listed yet.
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

// outcome is an action's ECS event.outcome: a failure for the catalog's "_failed" actions.
func outcome(action string) string {
	if strings.HasSuffix(action, "_failed") {
		return "failure"
	}
	return "success"
}

// Actor is the part of a stored actor the CSV shows.
type Actor struct {
	Type, ID    string
	Email, Name string
}

// ActorFields reads the actor's type and id and its metadata's email and name (empty where the
// metadata is no object or lacks them).
func (d Stored) ActorFields() Actor {
	var a struct {
		Type     string          `json:"type"`
		ID       string          `json:"id"`
		Metadata json.RawMessage `json:"metadata"`
	}
	_ = json.Unmarshal(d.Actor, &a) // an actor that is no object has none of these
	var md struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	}
	if len(a.Metadata) > 0 {
		_ = json.Unmarshal(a.Metadata, &md)
	}
	return Actor{Type: a.Type, ID: a.ID, Email: md.Email, Name: md.Name}
}

// AccessRouteList is the access route as strings (nil when none or not a list of strings).
func (d Stored) AccessRouteList() []string {
	var out []string
	if json.Unmarshal(d.AccessRoute, &out) != nil {
		return nil
	}
	return out
}

// APIEvent is the customer-facing shape of a stored event, as the audit log API and the events
// export give it: the specification's fields, with the event id and its time (RFC 3339 with nine
// fractional digits). Internal fields (the hash, the ingest time, ECS copies) are left out; absent
// objects are null, absent lists empty.
type APIEvent struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	Fields
}

// TimestampLayout is RFC 3339 with nanoseconds, always nine digits, so that timestamps sort as text.
const TimestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// API renders the stored event in the API's shape.
func (d Stored) API() (APIEvent, error) {
	ts, err := time.Parse(time.RFC3339Nano, d.Timestamp)
	if err != nil {
		return APIEvent{}, fmt.Errorf("stored document: @timestamp: %w", err)
	}
	f := d.Fields
	f.Actor, f.Targets, f.AccessRoute, f.Metadata = orNull(f.Actor), orEmpty(f.Targets), orEmpty(f.AccessRoute), orNull(f.Metadata)
	return APIEvent{ID: d.Event.ID, Timestamp: ts.UTC().Format(TimestampLayout), Fields: f}, nil
}

// AppendJSON appends the event's JSON as encoding/json writes it (the same members, in the same
// order), without validating again what Decode read: the sealer's hot path.
func (e APIEvent) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = pjson.AppendString(b, e.ID)
	b = append(b, `,"timestamp":`...)
	b = pjson.AppendString(b, e.Timestamp)
	b = append(b, `,"action":`...)
	b = pjson.AppendString(b, e.Action)
	b = append(b, `,"team_id":`...)
	b = pjson.AppendString(b, e.TeamID)
	b = append(append(b, `,"actor":`...), orNull(e.Actor)...)
	b = append(append(b, `,"targets":`...), orNull(e.Targets)...)
	b = append(append(b, `,"access_route":`...), orNull(e.AccessRoute)...)
	b = appendOptString(append(b, `,"remote_addr":`...), e.RemoteAddr)
	b = appendOptString(append(b, `,"user_agent":`...), e.UserAgent)
	b = append(append(b, `,"metadata":`...), orNull(e.Metadata)...)
	return append(b, '}')
}

func appendOptString(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return pjson.AppendString(b, *s)
}

// ToAPI decodes an event document into the API's shape.
func ToAPI(h Hit) (APIEvent, error) {
	d, err := Decode(h)
	if err != nil {
		return APIEvent{}, err
	}
	return d.API()
}

func orNull(r json.RawMessage) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("null")
	}
	return r
}

func orEmpty(r json.RawMessage) json.RawMessage {
	if len(r) == 0 || string(r) == "null" {
		return json.RawMessage("[]")
	}
	return r
}

// EventRecord appends to ld the record an event document was encoded from, as a replay can take
// it again: the body is the canonical event (the specification's fields of the document), the event
// id an attribute, the time the document's, the service its resource's. A metadata value that was
// not a map comes back wrapped as {"value": …}, as it was indexed. A document that does not parse
// is kept whole as a string body. It returns the record and its resource and scope.
func EventRecord(ld plog.Logs, doc []byte, eventID string) (pcommon.Resource, pcommon.InstrumentationScope, plog.LogRecord) {
	rl := ld.ResourceLogs().AppendEmpty()
	sl := rl.ScopeLogs().AppendEmpty()
	lr := sl.LogRecords().AppendEmpty()
	lr.SetEventName(audit.EventName)
	lr.Attributes().PutStr(audit.AttrID, eventID)
	m := pcommon.NewMap()
	if err := pjson.DecodeMap(doc, m); err != nil {
		lr.Body().SetStr(string(doc))
		return rl.Resource(), sl.Scope(), lr
	}
	body := lr.Body().SetEmptyMap()
	for _, f := range audit.BodyFields {
		if v, ok := m.Get(f); ok {
			v.CopyTo(body.PutEmpty(f))
		}
	}
	if ts, err := time.Parse(time.RFC3339Nano, strField(m, Timestamp)); err == nil {
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	}
	if svc, ok := m.Get("service"); ok && svc.Type() == pcommon.ValueTypeMap {
		if name := strField(svc.Map(), "name"); name != "" {
			rl.Resource().Attributes().PutStr("service.name", name)
		}
	}
	return rl.Resource(), sl.Scope(), lr
}

// Quarantined is one quarantine document as read back, of any template version.
type Quarantined struct {
	ID        string `json:"-"` // the quarantine document's _id
	Timestamp string `json:"@timestamp"`
	Event     struct {
		ID       string `json:"id"`
		Ingested string `json:"ingested"`
	} `json:"event"`
	Quarantine struct {
		Stage       string   `json:"stage"`
		Reasons     []string `json:"reasons"`
		ErrorType   string   `json:"error_type"`
		ErrorReason string   `json:"error_reason"`
		TeamID      string   `json:"team_id"`
		Index       string   `json:"index"`
	} `json:"quarantine"`
	Record struct {
		EventName    string `json:"event_name"`
		TimeUnixNano string `json:"time_unix_nano"`
		ObservedNano string `json:"observed_time_unix_nano"`
		ScopeName    string `json:"scope_name"`
		Body         string `json:"body"`
		Attributes   string `json:"attributes"`
		Resource     string `json:"resource"`
		Truncated    bool   `json:"truncated"`
	} `json:"record"`
	Service struct {
		Name string `json:"name"`
	} `json:"service"`
}

// DecodeQuarantined reads one quarantine document's _source, with its _id.
func DecodeQuarantined(id string, src []byte) (Quarantined, error) {
	var q Quarantined
	if err := json.Unmarshal(src, &q); err != nil {
		return Quarantined{}, fmt.Errorf("quarantine document %s: %w", id, err)
	}
	q.ID = id
	return q, nil
}

// Rebuild appends the original log record of a quarantine document, with its resource and scope.
func (q Quarantined) Rebuild(ld plog.Logs) error {
	if q.Record.Truncated {
		return errors.New("the record was too large and only a preview of it was kept")
	}
	rl := ld.ResourceLogs().AppendEmpty()
	switch {
	case q.Record.Resource != "":
		if err := pjson.DecodeMap([]byte(q.Record.Resource), rl.Resource().Attributes()); err != nil {
			return fmt.Errorf("resource: %w", err)
		}
	case q.Service.Name != "": // quarantined before template version 2 kept only the service name
		rl.Resource().Attributes().PutStr("service.name", q.Service.Name)
	}
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(q.Record.ScopeName)
	lr := sl.LogRecords().AppendEmpty()
	lr.SetEventName(q.Record.EventName)
	for _, t := range []struct {
		s   string
		set func(pcommon.Timestamp)
	}{{q.Record.TimeUnixNano, lr.SetTimestamp}, {q.Record.ObservedNano, lr.SetObservedTimestamp}} {
		if t.s == "" {
			continue
		}
		n, err := strconv.ParseUint(t.s, 10, 64)
		if err != nil {
			return fmt.Errorf("timestamp %q: %w", t.s, err)
		}
		t.set(pcommon.Timestamp(n))
	}
	if q.Record.TimeUnixNano == "" && q.Timestamp != "" {
		// Quarantined before template version 2: @timestamp is the event's time (or its observed time).
		ts, err := time.Parse(time.RFC3339Nano, q.Timestamp)
		if err != nil {
			return fmt.Errorf("@timestamp %q: %w", q.Timestamp, err)
		}
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	}
	if err := pjson.DecodeValue([]byte(q.Record.Body), lr.Body()); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if err := pjson.DecodeMap([]byte(q.Record.Attributes), lr.Attributes()); err != nil {
		return fmt.Errorf("attributes: %w", err)
	}
	return nil
}
