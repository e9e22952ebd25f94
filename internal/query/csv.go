// The CSV rendering of a stored event: fixed columns, canonical JSON cells, formulas neutralized.

package query

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
)

// CSVHeader is the fixed column order of CSV exports.
var CSVHeader = []string{
	"timestamp", "action", "action_description", "actor_type", "actor_id", "actor_email", "actor_name",
	"targets", "access_route", "remote_addr", "user_agent", "metadata",
}

// csvRow renders one stored document in CSVHeader's order. Targets and metadata are canonical JSON
// (keys sorted, numbers as stored), so exports are byte-for-byte stable.
func csvRow(hit document.Hit, catalog *audit.Catalog) ([]string, error) {
	d, err := document.Decode(hit)
	if err != nil {
		return nil, err
	}
	actor := d.ActorFields()
	targets := "[]"
	if t := canonicalJSON(d.Targets); t != "" {
		targets = t
	}
	var remote, ua string
	if d.RemoteAddr != nil {
		remote = *d.RemoteAddr
	}
	if d.UserAgent != nil {
		ua = *d.UserAgent
	}
	row := []string{
		d.Timestamp, d.Action, catalog.Description(d.Action), actor.Type, actor.ID, actor.Email, actor.Name,
		targets, strings.Join(d.AccessRouteList(), ", "), remote, ua, canonicalJSON(d.Metadata),
	}
	for i := range row {
		row[i] = NeutralizeFormula(row[i])
	}
	return row, nil
}

// AppendCSVRow appends one RFC 4180 record ending in CRLF (internal/importer reads it back). A cell
// is quoted when it holds a quote, a comma, CR or LF, or starts with a space; quotes are doubled;
// every other byte is kept as it is (a lone CR too, which encoding/csv drops when it writes CRLF
// lines).
func AppendCSVRow(b []byte, cells []string) []byte {
	for i, c := range cells {
		if i > 0 {
			b = append(b, ',')
		}
		if c == "" || (!strings.ContainsAny(c, "\",\r\n") && c[0] != ' ') {
			b = append(b, c...)
			continue
		}
		b = append(b, '"')
		for j := 0; j < len(c); j++ {
			if c[j] == '"' {
				b = append(b, '"')
			}
			b = append(b, c[j])
		}
		b = append(b, '"')
	}
	return append(b, '\r', '\n')
}

// canonicalJSON re-encodes JSON with object keys sorted, numbers kept exactly, and no HTML escaping.
func canonicalJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(raw)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSuffix(b.String(), "\n")
}

// NeutralizeFormula defuses a cell that a spreadsheet would run as a formula: one that starts with
// =, +, -, @, a tab or a carriage return, or their full-width forms ＝ ＋ － ＠ (which spreadsheets
// read as the ASCII ones), gets a leading apostrophe (OWASP's CSV injection advice).
func NeutralizeFormula(s string) string {
	r, _ := utf8.DecodeRuneInString(s)
	if s != "" && strings.ContainsRune(formulaStarts, r) {
		return "'" + s
	}
	return s
}

const formulaStarts = "=+-@\t\r＝＋－＠"
