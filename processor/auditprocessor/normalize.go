package auditprocessor

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/canonical"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// Semantic-convention attributes the processor reads when the body lacks the field.
const (
	attrClientAddress = "client.address"
	attrPeerAddress   = "network.peer.address"
	attrUserAgent     = "user_agent.original"
	attrForwardedFor  = "http.request.header.x-forwarded-for"
	attrRecordUID     = "log.record.uid"
)

// inputAttrs are the audit.* attributes of the attribute encoding; they are consumed into the body.
var inputAttrs = [...]string{
	audit.AttrAction, audit.AttrTeamID, audit.AttrActorType, audit.AttrActorID,
	audit.AttrActorMetadata, audit.AttrTargets, audit.AttrMetadata,
}

// outputAttrs are set by the processor; a record that arrives with them has them replaced or removed.
var outputAttrs = [...]string{audit.AttrStatus, audit.AttrProblems, audit.AttrWarnings, audit.AttrHash, audit.AttrKnown, audit.AttrQuarantineTeamID}

// canonicalFields are the top-level fields of the canonical body.
var canonicalFields = func() map[string]bool {
	m := make(map[string]bool, len(audit.BodyFields))
	for _, f := range audit.BodyFields {
		m[f] = true
	}
	return m
}()

// result is what normalizing one record found.
type result struct {
	problems []string
	warnings []string
	known    bool // the action is in the catalog
	unknown  bool // the action is well formed but not in the catalog
}

func (r *result) problem(code, format string, args ...any) {
	r.problems = append(r.problems, audit.FormatProblem(code, fmt.Sprintf(format, args...)))
}

func (r *result) warn(code, format string, args ...any) {
	r.warnings = append(r.warnings, audit.FormatProblem(code, fmt.Sprintf(format, args...)))
}

// normalizer turns one audit record into the canonical event. It reads every source first and only
// rewrites the record when the event is valid, so an invalid record leaves with its body and
// attributes exactly as they came, for the exporter's quarantine.
type normalizer struct {
	catalog       *audit.Catalog
	rejectUnknown bool
	now           func() time.Time
}

// fields is what the read pass gathered: the winning source of each canonical field.
type fields struct {
	action, teamID        string
	actorType, actorID    string
	actorMeta             optValue
	targets               optValue
	accessRoute           []string
	remoteAddr, userAgent string
	metadata              optValue
}

// optValue is a value that may be absent; attr tells it is an attribute's, not the body's.
type optValue struct {
	pcommon.Value
	ok, attr bool
}

func (n *normalizer) normalize(lr plog.LogRecord) result {
	var res result
	attrs := lr.Attributes()

	// The body: a map in the seed's shape, a string holding that JSON, or nothing useful.
	body := lr.Body()
	var src pcommon.Map
	parsed := false
	switch body.Type() {
	case pcommon.ValueTypeMap:
		src = body.Map()
	case pcommon.ValueTypeStr:
		if s := strings.TrimSpace(body.Str()); strings.HasPrefix(s, "{") {
			src = pcommon.NewMap()
			parsed = true
			if err := pjson.DecodeMap([]byte(s), src); err != nil {
				res.problem(audit.ProblemMalformedBody, "string body: %v", err)
				src = pcommon.NewMap() // nothing of a half-parsed body counts
			}
		}
		// Any other string is a human-readable message; the event then comes from attributes.
	case pcommon.ValueTypeEmpty:
	default:
		res.problem(audit.ProblemMalformedBody, "body is a %s, want a map or a JSON object string", strings.ToLower(body.Type().String()))
	}
	if src == (pcommon.Map{}) {
		src = pcommon.NewMap()
	}
	for k := range src.All() {
		if !canonicalFields[k] {
			res.problem(audit.ProblemUnknownField, "body field %q is not part of the audit event", k)
		}
	}

	f := n.read(src, attrs, lr.EventName(), &res)
	checkTimes(lr, &res)

	if len(res.problems) > 0 {
		n.setTimestamp(lr, &res)
		// The team id as the record gave it, valid or not, for the quarantine.
		markInvalid(lr, first(givenString(attrs, audit.AttrTeamID), givenString(src, audit.FieldTeamID)), &res)
		return res
	}

	// Valid: src becomes the canonical body in place; values taken from attributes are moved in.
	canonicalize(src, &f)
	if parsed || body.Type() != pcommon.ValueTypeMap {
		src.MoveTo(body.SetEmptyMap())
	}

	for _, k := range inputAttrs {
		attrs.Remove(k)
	}
	n.setTimestamp(lr, &res)
	id := eventID(attrs, &res)
	hash := canonical.Hash(body.Map(), lr.Timestamp())
	if id == "" {
		id = canonical.ID(body.Map(), lr.Timestamp(), lr.ObservedTimestamp(), hash)
		res.warn(audit.WarningMissingID, "no audit.id or log.record.uid; the id is the content hash")
	}
	attrs.PutStr(audit.AttrID, id)
	attrs.PutStr(audit.AttrStatus, audit.StatusValid)
	attrs.PutStr(audit.AttrHash, hash)
	attrs.PutBool(audit.AttrKnown, res.known)
	attrs.Remove(audit.AttrProblems)
	attrs.Remove(audit.AttrQuarantineTeamID)
	putList(attrs, audit.AttrWarnings, res.warnings)
	return res
}

// read gathers every canonical field from the body map, the audit.* attributes, the event name and
// the semantic-convention attributes, by the documented precedence, and validates each.
func (n *normalizer) read(src, attrs pcommon.Map, eventName string, res *result) fields {
	var f fields

	// action and team_id: every source that carries one must agree.
	var fromName string
	if strings.HasPrefix(eventName, audit.EventNamePrefix) {
		fromName = eventName[len(audit.EventNamePrefix):]
	}
	var conflict bool
	f.action, conflict = agree(res, "action", stringField(res, attrs, audit.AttrAction), stringField(res, src, audit.FieldAction), fromName)
	switch {
	case conflict:
	case f.action == "":
		res.problem(audit.ProblemMissingAction, "no action in body, audit.action or event name")
	default:
		if err := audit.CheckActionName(f.action); err != nil {
			res.problem(audit.ProblemMalformedAction, "action %v", err)
		} else {
			res.known = n.catalog.Known(f.action)
			res.unknown = !res.known
			if res.unknown && n.rejectUnknown {
				res.problem(audit.ProblemUnknownAction, "%q is not in the action catalog", f.action)
			}
		}
	}

	f.teamID, conflict = agree(res, "team_id", idField(res, attrs, audit.AttrTeamID), idField(res, src, audit.FieldTeamID))
	switch {
	case conflict:
	case f.teamID == "":
		res.problem(audit.ProblemMissingTeamID, "no team_id in body or audit.team_id")
	default:
		if err := audit.CheckTeamID(f.teamID); err != nil {
			res.problem(audit.ProblemInvalidTeamID, "team_id %v", err)
		}
	}

	// actor: audit.actor.* attributes win over the body's actor, field by field.
	var bodyActor pcommon.Map
	if v, ok := src.Get(audit.FieldActor); ok {
		switch v.Type() {
		case pcommon.ValueTypeMap:
			bodyActor = v.Map()
		case pcommon.ValueTypeEmpty:
		default:
			res.problem(audit.ProblemMalformedField, "actor is a %s, want a map", typeName(v))
		}
	}
	if bodyActor == (pcommon.Map{}) {
		bodyActor = pcommon.NewMap()
	}
	f.actorType = first(stringField(res, attrs, audit.AttrActorType), stringField(res, bodyActor, audit.FieldType))
	f.actorID = first(idField(res, attrs, audit.AttrActorID), idField(res, bodyActor, audit.FieldID))
	f.actorMeta = firstValue(attrs, audit.AttrActorMetadata, bodyActor, audit.FieldMetadata)
	switch audit.ActorType(f.actorType) {
	case audit.ActorUser:
		if f.actorID == "" {
			res.problem(audit.ProblemMissingActorID, "a user actor needs an id")
		}
	case audit.ActorSystem:
	case "":
		res.problem(audit.ProblemMissingActor, "no actor type in body actor.type or audit.actor.type")
	default:
		res.problem(audit.ProblemInvalidActorType, "actor type %q is not %q or %q", f.actorType, audit.ActorUser, audit.ActorSystem)
	}
	for k := range bodyActor.All() {
		if k != audit.FieldType && k != audit.FieldID && k != audit.FieldMetadata {
			res.problem(audit.ProblemUnknownField, "actor field %q is not part of the audit event", k)
		}
	}

	// targets: a list of {type, id, metadata}.
	f.targets = firstValue(attrs, audit.AttrTargets, src, audit.FieldTargets)
	checkTargets(f.targets, res)

	// access_route: the body's list, else the X-Forwarded-For request header.
	if v, ok := src.Get(audit.FieldAccessRoute); ok && v.Type() != pcommon.ValueTypeEmpty {
		f.accessRoute = addressList(v, audit.FieldAccessRoute, res)
	} else if v, ok := attrs.Get(attrForwardedFor); ok {
		f.accessRoute = addressList(v, attrForwardedFor, res)
	}
	f.remoteAddr = first(stringField(res, src, audit.FieldRemoteAddr), stringField(res, attrs, attrClientAddress), stringField(res, attrs, attrPeerAddress))
	if f.remoteAddr != "" {
		checkIP(f.remoteAddr, audit.FieldRemoteAddr, res)
	}
	f.userAgent = first(stringField(res, src, audit.FieldUserAgent), stringField(res, attrs, attrUserAgent))
	f.metadata = firstValue(attrs, audit.AttrMetadata, src, audit.FieldMetadata)
	return f
}

func checkTargets(v optValue, res *result) {
	if !v.ok || v.Type() == pcommon.ValueTypeEmpty {
		return
	}
	if v.Type() != pcommon.ValueTypeSlice {
		res.problem(audit.ProblemMalformedTargets, "targets is a %s, want a list", typeName(v.Value))
		return
	}
	s := v.Slice()
	for i := 0; i < s.Len(); i++ {
		t := s.At(i)
		if t.Type() != pcommon.ValueTypeMap {
			res.problem(audit.ProblemMalformedTargets, "targets[%d] is a %s, want a map", i, typeName(t))
			continue
		}
		m := t.Map()
		typ, ok := m.Get(audit.FieldType)
		if !ok || typ.Type() != pcommon.ValueTypeStr || typ.Str() == "" {
			res.problem(audit.ProblemMalformedTargets, "targets[%d].type must be a non-empty string", i)
		}
		if id, ok := m.Get(audit.FieldID); !ok || !nonEmptyID(id) {
			res.problem(audit.ProblemMalformedTargets, "targets[%d].id must be a string or an integer", i)
		}
		for k := range m.All() {
			if k != audit.FieldType && k != audit.FieldID && k != audit.FieldMetadata {
				res.problem(audit.ProblemMalformedTargets, "targets[%d] field %q is not part of a target", i, k)
			}
		}
	}
}

// addressList reads a list of addresses: a list of strings, or one comma-separated string as an
// X-Forwarded-For header carries it. Entries that are not IPs are kept, with a warning.
func addressList(v pcommon.Value, field string, res *result) []string {
	var out []string
	add := func(s string) {
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				checkIP(p, field, res)
				out = append(out, p)
			}
		}
	}
	switch v.Type() {
	case pcommon.ValueTypeStr:
		add(v.Str())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		for i := 0; i < s.Len(); i++ {
			e := s.At(i)
			if e.Type() != pcommon.ValueTypeStr {
				res.problem(audit.ProblemMalformedField, "%s[%d] is a %s, want a string", field, i, typeName(e))
				continue
			}
			add(e.Str())
		}
	default:
		res.problem(audit.ProblemMalformedField, "%s is a %s, want a list of strings", field, typeName(v))
	}
	return out
}

func checkIP(s, field string, res *result) {
	if _, err := netip.ParseAddr(s); err != nil {
		res.warn(audit.WarningInvalidIP, "%s %q is not an IP address; kept as text only", field, s)
	}
}

// stringField returns m[k] when it is a string; a value of another type is a problem.
func stringField(res *result, m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok || v.Type() == pcommon.ValueTypeEmpty {
		return ""
	}
	if v.Type() != pcommon.ValueTypeStr {
		res.problem(audit.ProblemMalformedField, "%s is a %s, want a string", k, typeName(v))
		return ""
	}
	return v.Str()
}

// idField returns m[k] as a canonical id string; see idString.
func idField(res *result, m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok || v.Type() == pcommon.ValueTypeEmpty {
		return ""
	}
	s, good := idString(v)
	if !good {
		res.problem(audit.ProblemMalformedField, "%s is a %s, want a string or an integer", k, typeName(v))
	}
	return s
}

// idString renders an id canonically: strings as they are, integers in decimal, and doubles that hold
// an integer exactly (JSON numbers parsed as floats upstream) as that integer.
func idString(v pcommon.Value) (string, bool) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return v.Str(), true
	case pcommon.ValueTypeInt:
		return strconv.FormatInt(v.Int(), 10), true
	case pcommon.ValueTypeDouble:
		d := v.Double()
		if d == math.Trunc(d) && math.Abs(d) < 1<<53 {
			return strconv.FormatInt(int64(d), 10), true
		}
	}
	return "", false
}

func nonEmptyID(v pcommon.Value) bool {
	s, ok := idString(v)
	return ok && s != ""
}

// agree returns the one value the non-empty sources give; if two differ it records a conflict.
func agree(res *result, field string, vals ...string) (string, bool) {
	out := ""
	for _, v := range vals {
		if v == "" {
			continue
		}
		if out != "" && v != out {
			res.problem(audit.ProblemConflictingField, "%s: sources disagree (%q and %q)", field, out, v)
			return "", true
		}
		out = v
	}
	return out, false
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// firstValue returns a[ka] if present and not empty, else b[kb] if present, else nothing.
func firstValue(a pcommon.Map, ka string, b pcommon.Map, kb string) optValue {
	if v, ok := a.Get(ka); ok && v.Type() != pcommon.ValueTypeEmpty {
		return optValue{v, true, true}
	}
	v, ok := b.Get(kb)
	return optValue{v, ok, false}
}

// canonicalize makes m, the body the fields were read from, the canonical body: every field of the
// specification present (null when absent), ids as strings, values that came from attributes moved
// in. What is canonical already is left as it is, so a body in the specification's shape costs
// lookups, not allocations. Values read from m are not used after m grows (growing may move them).
func canonicalize(m pcommon.Map, f *fields) {
	setStr(m, audit.FieldAction, f.action)
	setStr(m, audit.FieldTeamID, f.teamID)
	var actor pcommon.Map
	if v, ok := m.Get(audit.FieldActor); ok && v.Type() == pcommon.ValueTypeMap {
		actor = v.Map()
	} else {
		actor = m.PutEmptyMap(audit.FieldActor)
	}
	setStr(actor, audit.FieldType, f.actorType)
	setStrOrNull(actor, audit.FieldID, f.actorID)
	setValue(actor, audit.FieldMetadata, f.actorMeta)

	setValue(m, audit.FieldTargets, f.targets)
	if v, _ := m.Get(audit.FieldTargets); v.Type() != pcommon.ValueTypeSlice {
		m.PutEmptySlice(audit.FieldTargets)
	} else {
		for _, t := range v.Slice().All() {
			tm := t.Map()
			if id, _ := tm.Get(audit.FieldID); id.Type() != pcommon.ValueTypeStr {
				s, _ := idString(id)
				tm.PutStr(audit.FieldID, s)
			}
			if _, ok := tm.Get(audit.FieldMetadata); !ok {
				tm.PutEmpty(audit.FieldMetadata)
			}
		}
	}

	if v, ok := m.Get(audit.FieldAccessRoute); !ok || !isStrings(v, f.accessRoute) {
		route := m.PutEmptySlice(audit.FieldAccessRoute)
		route.EnsureCapacity(len(f.accessRoute))
		for _, a := range f.accessRoute {
			route.AppendEmpty().SetStr(a)
		}
	}
	setStrOrNull(m, audit.FieldRemoteAddr, f.remoteAddr)
	setStrOrNull(m, audit.FieldUserAgent, f.userAgent)
	setValue(m, audit.FieldMetadata, f.metadata)
}

func setStr(m pcommon.Map, k, v string) {
	if cur, ok := m.Get(k); ok && cur.Type() == pcommon.ValueTypeStr && cur.Str() == v {
		return
	}
	m.PutStr(k, v)
}

func setStrOrNull(m pcommon.Map, k, v string) {
	if v != "" {
		setStr(m, k, v)
		return
	}
	if cur, ok := m.Get(k); !ok || cur.Type() != pcommon.ValueTypeEmpty {
		m.PutEmpty(k)
	}
}

// setValue makes m[k] the value read for it: moved in from an attribute, kept when it is m's own
// (metadata of any shape is kept as given), null when there was none.
func setValue(m pcommon.Map, k string, v optValue) {
	switch {
	case v.attr:
		v.MoveTo(m.PutEmpty(k))
	case !v.ok:
		if _, ok := m.Get(k); !ok {
			m.PutEmpty(k)
		}
	}
}

// isStrings tells whether v is a list holding exactly want.
func isStrings(v pcommon.Value, want []string) bool {
	if v.Type() != pcommon.ValueTypeSlice || v.Slice().Len() != len(want) {
		return false
	}
	for i, e := range v.Slice().All() {
		if e.Type() != pcommon.ValueTypeStr || e.Str() != want[i] {
			return false
		}
	}
	return true
}

func putList(m pcommon.Map, k string, vals []string) {
	if len(vals) == 0 {
		m.Remove(k)
		return
	}
	s := m.PutEmptySlice(k)
	s.EnsureCapacity(len(vals))
	for _, v := range vals {
		s.AppendEmpty().SetStr(v)
	}
}

func typeName(v pcommon.Value) string { return strings.ToLower(v.Type().String()) }

// eventID is the id the sender supplied: audit.id, else log.record.uid. An id that is not valid UTF-8
// or is longer than Elasticsearch allows is replaced by its hash, with a warning.
func eventID(attrs pcommon.Map, res *result) string {
	for _, k := range []string{audit.AttrID, attrRecordUID} {
		if v, ok := attrs.Get(k); ok {
			if s, good := idString(v); good && s != "" {
				safe, repaired := audit.SafeID(s)
				if repaired {
					res.warn(audit.WarningInvalidID, "%s is %d bytes and not valid UTF-8 of at most %d bytes; replaced by %s", k, len(s), audit.MaxIDBytes, safe)
				}
				return safe
			}
		}
	}
	return ""
}

// givenString renders m[k] as text whatever its type, for reporting what a record said.
func givenString(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok || v.Type() == pcommon.ValueTypeEmpty {
		return ""
	}
	if s, good := idString(v); good {
		return s
	}
	return v.AsString()
}

// checkTimes refuses a timestamp (or, without one, an observed timestamp) that Elasticsearch cannot
// store: such an event could be stored nowhere.
func checkTimes(lr plog.LogRecord, res *result) {
	name, ts := "timestamp", lr.Timestamp()
	if ts == 0 {
		name, ts = "observed timestamp", lr.ObservedTimestamp()
	}
	if ts == 0 {
		return
	}
	if err := audit.CheckTimestamp(uint64(ts)); err != nil {
		res.problem(audit.ProblemTimestampOutOfRange, "%s %v", name, err)
	}
}

// setTimestamp makes the record's timestamp the event time: its own, else the observed one, else now.
func (n *normalizer) setTimestamp(lr plog.LogRecord, res *result) {
	if lr.Timestamp() != 0 {
		return
	}
	if ts := lr.ObservedTimestamp(); ts != 0 {
		lr.SetTimestamp(ts)
		return
	}
	res.warn(audit.WarningMissingTimestamp, "no timestamp or observed timestamp; processing time used")
	lr.SetTimestamp(pcommon.NewTimestampFromTime(n.now()))
}

// markInvalid labels a record that failed validation, leaving body and attributes as they came, and
// notes the team id it named for the quarantine.
func markInvalid(lr plog.LogRecord, givenTeamID string, res *result) {
	attrs := lr.Attributes()
	id := eventID(attrs, res)
	if id == "" {
		for _, k := range outputAttrs {
			attrs.Remove(k)
		}
		id = canonical.RecordHash(lr.Body(), attrs, lr.Timestamp())
	}
	attrs.PutStr(audit.AttrID, id)
	attrs.PutStr(audit.AttrStatus, audit.StatusInvalid)
	putList(attrs, audit.AttrProblems, res.problems)
	putList(attrs, audit.AttrWarnings, res.warnings)
	attrs.Remove(audit.AttrHash)
	attrs.Remove(audit.AttrKnown)
	if givenTeamID != "" {
		attrs.PutStr(audit.AttrQuarantineTeamID, audit.Truncate(givenTeamID, audit.MaxGivenTeamIDBytes))
	} else {
		attrs.Remove(audit.AttrQuarantineTeamID)
	}
}
