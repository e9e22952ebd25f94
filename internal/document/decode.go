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
	if d.Event.ID == "" {
		d.Event.ID = layout.EventIDOf(h.ID)
	}
	return d, nil
}

// Expand returns an event document with every field version 3 wrote, whatever version stored it:
// what a reader of whole documents (auditctl tail, the ndjson export) prints, so that its output
// does not change with the template. A document that has them already is returned as it is; the
// others gain the event id from the _id, the values of the fields that became aliases, and the ones
// derived from the document and from catalog (event.kind, event.outcome, event.category, user.id,
// user.name, related.ip, related.user, audit.action_description).
func Expand(h Hit, catalog *audit.Catalog) ([]byte, error) {
	var probe struct {
		Event struct {
			ID     *string `json:"id"`
			Action *string `json:"action"`
		} `json:"event"`
	}
	if err := json.Unmarshal(h.Source, &probe); err != nil {
		return nil, fmt.Errorf("stored document: %w", err)
	}
	if probe.Event.ID != nil && probe.Event.Action != nil {
		return h.Source, nil
	}
	d, err := Decode(h)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(h.Source))
	dec.UseNumber() // numbers in metadata as stored
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("stored document: %w", err)
	}
	obj := func(k string) map[string]any {
		m, ok := doc[k].(map[string]any)
		if !ok {
			m = map[string]any{}
			doc[k] = m
		}
		return m
	}
	var info audit.ActionInfo
	if catalog != nil {
		info, _ = catalog.Lookup(d.Action)
	}
	event := obj("event")
	event["id"], event["action"], event["kind"], event["outcome"] = d.Event.ID, d.Action, "event", Outcome(d.Action)
	if info.Category != "" {
		event["category"] = info.Category
	}
	obj("organization")["id"] = d.TeamID
	actor := d.ActorFields()
	relatedUsers := []string{}
	if actor.Type == string(audit.ActorUser) && actor.ID != "" {
		user := obj("user")
		user["id"] = actor.ID
		if actor.Name != "" {
			user["name"] = actor.Name
		}
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
	doc["related"] = map[string]any{"ip": relatedIPs, "user": relatedUsers}
	if info.Description != "" {
		obj("audit")["action_description"] = info.Description
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
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

// Outcome is an action's ECS event.outcome: a failure for the catalog's "_failed" actions.
func Outcome(action string) string {
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
