package importer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// The fields a CSV column can fill: the columns of auditctl export, and an event id and a team id.
const (
	fTimestamp   = "timestamp"
	fAction      = "action"
	fDescription = "action_description" // derived from the catalog: read and not used
	fActorType   = "actor_type"
	fActorID     = "actor_id"
	fActorEmail  = "actor_email"
	fActorName   = "actor_name"
	fTargets     = "targets"
	fAccessRoute = "access_route"
	fRemoteAddr  = "remote_addr"
	fUserAgent   = "user_agent"
	fMetadata    = "metadata"
	fTeamID      = "team_id"
	fID          = "id"
	fIgnore      = "-" // --column NAME=- reads a column and leaves it out
)

// Fields are the names --column maps to.
func Fields() []string {
	return append(append([]string(nil), query.CSVHeader...), fTeamID, fID, fIgnore)
}

// isField tells whether a column may give f (one of Fields).
func isField(f string) bool { return slices.Contains(Fields(), f) }

// row is one event as the file gives it, before the pipeline checks it.
type row struct {
	line   int
	id     string // "" when the file has none: the pipeline's content hash is the id
	teamID string
	at     time.Time
	body   pcommon.Map // the event body, as the processor takes a map body
	key    []byte      // what the row says, to route it (routeOf) when it has no id
}

// columns maps a CSV header to fields: the file's names (case-insensitively), renamed by --column.
type columns struct {
	index map[string]int // field → column
	n     int
}

// newColumns checks a header: every column is a known field (or renamed to one), none twice, and the
// needed ones are there. team is --team: without it the file needs a team_id column.
func newColumns(header []string, rename map[string]string, team string) (*columns, error) {
	c := &columns{index: map[string]int{}, n: len(header)}
	var unknown []string
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		if to, ok := rename[name]; ok {
			name = to
		}
		if !isField(name) {
			unknown = append(unknown, fmt.Sprintf("%q", h))
			continue
		}
		if name == fIgnore {
			continue
		}
		if _, dup := c.index[name]; dup {
			return nil, fmt.Errorf("two columns give %s", name)
		}
		c.index[name] = i
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown column %s: map it with --column NAME=FIELD (FIELD one of %s; - to leave it out)", strings.Join(unknown, ", "), strings.Join(Fields(), ", "))
	}
	var missing []string
	for _, f := range []string{fTimestamp, fAction, fActorType} {
		if _, ok := c.index[f]; !ok {
			missing = append(missing, f)
		}
	}
	if _, ok := c.index[fTeamID]; !ok && team == "" {
		missing = append(missing, "team_id (or --team)")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the file has no column for %s: name them in the header, or map them with --column NAME=FIELD", strings.Join(missing, ", "))
	}
	return c, nil
}

func (c *columns) get(cells []string, f string) string {
	if i, ok := c.index[f]; ok && i < len(cells) {
		return cells[i]
	}
	return ""
}

// undoFormula takes back the apostrophe auditctl export puts before a cell a spreadsheet would run
// (query.NeutralizeFormula). A cell of the file that began with an apostrophe and such a character
// itself cannot be told apart, and loses its apostrophe too (docs/import.md).
func undoFormula(s string) string {
	if rest, ok := strings.CutPrefix(s, "'"); ok && query.NeutralizeFormula(rest) != rest {
		return rest
	}
	return s
}

// rowError is why a row could not be made into an event: it is quarantined with this reason.
type rowError struct{ field, msg string }

func (e *rowError) Error() string { return e.field + ": " + e.msg }

// Reasons of rows that are not events (the quarantine's reasons, as the processor's problems are).
const (
	problemMalformedRow  = "malformed_row"  // a cell or a line does not parse (a JSON cell, a time, a JSON line)
	problemMalformedFile = "malformed_file" // a record that is not RFC 4180 CSV, or too long a line
)

// csvRow makes a row of a CSV file an event body. team is --team, which a team_id column overrides.
func (c *columns) row(cells []string, line int, team string) (row, error) {
	r := row{line: line, teamID: team}
	if len(cells) != c.n {
		return r, &rowError{"row", fmt.Sprintf("%d cells for %d columns", len(cells), c.n)}
	}
	get := func(f string) string { return undoFormula(c.get(cells, f)) }
	if t := get(fTeamID); t != "" {
		r.teamID = t
	}
	r.id = get(fID)
	ts := get(fTimestamp)
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return r, &rowError{fTimestamp, fmt.Sprintf("%q is not an RFC 3339 time", audit.Truncate(ts, 64))}
	}
	r.at = at
	r.key = []byte(strings.Join(cells, "\x00"))
	body := pcommon.NewMap()
	body.PutStr(audit.FieldAction, get(fAction))
	body.PutStr(audit.FieldTeamID, r.teamID)
	actor := body.PutEmptyMap(audit.FieldActor)
	actor.PutStr(audit.FieldType, get(fActorType))
	if id := get(fActorID); id != "" {
		actor.PutStr(audit.FieldID, id)
	}
	if email, name := get(fActorEmail), get(fActorName); email != "" || name != "" {
		md := actor.PutEmptyMap(audit.FieldMetadata)
		if email != "" {
			md.PutStr("email", email)
		}
		if name != "" {
			md.PutStr("name", name)
		}
	}
	for _, f := range []string{fTargets, fMetadata} {
		cell := strings.TrimSpace(c.get(cells, f)) // JSON cells are never neutralized
		if cell == "" {
			continue
		}
		if err := pjson.DecodeValue([]byte(cell), body.PutEmpty(f)); err != nil {
			return r, &rowError{f, "not JSON: " + err.Error()}
		}
	}
	if route := get(fAccessRoute); route != "" {
		list := body.PutEmptySlice(audit.FieldAccessRoute)
		for _, a := range strings.Split(route, ", ") {
			list.AppendEmpty().SetStr(a)
		}
	}
	for _, f := range []string{fRemoteAddr, fUserAgent} {
		if v := get(f); v != "" {
			body.PutStr(f, v)
		}
	}
	r.body = body
	return r, nil
}

// ndjsonRow makes a line of an NDJSON file an event body: the API's event shape (id, timestamp,
// the specification's fields) or a stored document as auditctl export --format ndjson writes it
// (@timestamp, the specification's fields, event.id). team is --team, which the line's team_id
// overrides.
func ndjsonRow(line []byte, n int, team string) (row, error) {
	r := row{line: n, teamID: team}
	var probe struct {
		Timestamp *string `json:"timestamp"`
		ID        string  `json:"id"`
	}
	if err := json.Unmarshal(line, &probe); err != nil {
		return r, &rowError{"line", "not a JSON object"}
	}
	var f document.Fields
	var ts string
	if probe.Timestamp != nil { // the API's shape
		var ev document.APIEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return r, &rowError{"line", err.Error()}
		}
		f, ts, r.id = ev.Fields, ev.Timestamp, ev.ID
	} else { // a stored document, as the ndjson export writes it (with event.id)
		d, err := document.Decode(document.Hit{Source: line})
		if err != nil {
			return r, &rowError{"line", err.Error()}
		}
		f, ts, r.id = d.Fields, d.Timestamp, d.Event.ID
	}
	if f.TeamID != "" {
		r.teamID = f.TeamID
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return r, &rowError{fTimestamp, fmt.Sprintf("%q is not an RFC 3339 time", audit.Truncate(ts, 64))}
	}
	r.at = at
	r.key = line
	// Only the specification's fields go on: the processor refuses a field the event does not
	// have, and a stored document's ECS copies are the exporter's to write.
	body := pcommon.NewMap()
	body.PutStr(audit.FieldAction, f.Action)
	body.PutStr(audit.FieldTeamID, r.teamID)
	for _, kv := range []struct {
		k string
		v json.RawMessage
	}{{audit.FieldActor, f.Actor}, {audit.FieldTargets, f.Targets}, {audit.FieldAccessRoute, f.AccessRoute}, {audit.FieldMetadata, f.Metadata}} {
		if len(kv.v) == 0 || string(kv.v) == "null" {
			continue
		}
		if err := pjson.DecodeValue(kv.v, body.PutEmpty(kv.k)); err != nil {
			return r, &rowError{kv.k, err.Error()}
		}
	}
	for k, v := range map[string]*string{audit.FieldRemoteAddr: f.RemoteAddr, audit.FieldUserAgent: f.UserAgent} {
		if v != nil && *v != "" {
			body.PutStr(k, *v)
		}
	}
	r.body = body
	return r, nil
}

// rawRow is what the quarantine keeps of a row that is not an event: its cells by column, or its
// text.
func rawRow(header, cells []string, text string) []byte {
	if cells == nil {
		if !utf8.ValidString(text) {
			text = strings.ToValidUTF8(text, "\uFFFD")
		}
		b, _ := json.Marshal(text)
		return b
	}
	m := map[string]string{}
	for i, c := range cells {
		name := fmt.Sprintf("column_%d", i+1)
		if i < len(header) {
			name = header[i]
		}
		m[name] = strings.ToValidUTF8(c, "\uFFFD")
	}
	b, _ := json.Marshal(m)
	return b
}

var errNoHeader = errors.New("the file is empty: a CSV file starts with its header")
