package query

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/auditpipe/auditpipe/audit"
)

// Filter selects events of one team.
type Filter struct {
	Team    string
	Since   time.Time // inclusive; zero: from the start
	Until   time.Time // exclusive; zero: to the end
	Actions []string  // action names or patterns with * and ?; any matches
	ActorID string
	// TargetType and TargetID keep events with a target of that type and a target of that id. The
	// targets are mapped as plain objects, so with both given the two may be different targets
	// of one event.
	TargetType, TargetID string
}

var actionPattern = regexp.MustCompile(`^[a-z0-9_*?]{1,128}$`)

// CheckActionPattern accepts an action name or a pattern with the documented wildcards (* and ?),
// so that nothing else reaches a query.
func CheckActionPattern(a string) error {
	if !actionPattern.MatchString(a) {
		return fmt.Errorf("action %q: use lowercase action names, with * and ? as wildcards", a)
	}
	return nil
}

// query renders the filter as an Elasticsearch query. Action patterns are checked so that nothing but
// the documented wildcards reaches the query.
func (f Filter) query() (map[string]any, error) {
	team, err := teamFilter(f.Team)
	if err != nil {
		return nil, err
	}
	filters := []any{team}
	if r := timeRange("@timestamp", f.Since, f.Until); r != nil {
		filters = append(filters, r)
	}
	if len(f.Actions) > 0 {
		var should []any
		for _, a := range f.Actions {
			if err := CheckActionPattern(a); err != nil {
				return nil, err
			}
			if strings.ContainsAny(a, "*?") {
				should = append(should, map[string]any{"wildcard": map[string]any{"action": map[string]any{"value": a}}})
			} else {
				should = append(should, map[string]any{"term": map[string]any{"action": a}})
			}
		}
		filters = append(filters, map[string]any{"bool": map[string]any{"should": should, "minimum_should_match": 1}})
	}
	for field, v := range map[string]string{"actor.id": f.ActorID, "targets.type": f.TargetType, "targets.id": f.TargetID} {
		if v != "" {
			filters = append(filters, map[string]any{"term": map[string]any{field: v}})
		}
	}
	return map[string]any{"bool": map[string]any{"filter": filters}}, nil
}

// timeRange is a range query on a date field, since inclusive, until exclusive (zero: open); nil
// when both are open.
func timeRange(field string, since, until time.Time) map[string]any {
	if since.IsZero() && until.IsZero() {
		return nil
	}
	r := map[string]any{"format": "strict_date_optional_time_nanos"}
	if !since.IsZero() {
		r["gte"] = since.UTC().Format(time.RFC3339Nano)
	}
	if !until.IsZero() {
		r["lt"] = until.UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{"range": map[string]any{field: r}}
}

// Format of an export.
type Format string

// Export formats.
const (
	CSV    Format = "csv"
	NDJSON Format = "ndjson" // the stored documents
	Events Format = "events" // NDJSON of Event, the customer-facing shape
)

// Check says whether f is a format Export writes.
func (f Format) Check() error {
	if f != CSV && f != NDJSON && f != Events {
		return fmt.Errorf("format %q: use csv, ndjson or events", string(f))
	}
	return nil
}

// CSVHeader is the fixed column order of CSV exports.
var CSVHeader = []string{
	"timestamp", "action", "action_description", "actor_type", "actor_id", "actor_email", "actor_name",
	"targets", "access_route", "remote_addr", "user_agent", "metadata",
}

// Progress is told the total once, then how many events were written so far.
type Progress interface {
	Total(n int64)
	Done(n int64)
}

// PageSize is how many events one search returns; memory use does not grow with the export's size.
const PageSize = 1000

// Export streams every event of the filter's team in time order (then event id) to w, and returns how
// many it wrote. It pages with a point in time and search_after, so it sees one consistent view of the
// index and holds one page in memory however large the log.
func (c *Client) Export(ctx context.Context, f Filter, format Format, w io.Writer, progress Progress) (int64, error) {
	if err := format.Check(); err != nil {
		return 0, err
	}
	q, err := f.query()
	if err != nil {
		return 0, err
	}
	if progress != nil {
		cnt, err := c.count(ctx, q)
		if err != nil {
			return 0, err
		}
		progress.Total(cnt)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var row []byte
	if format == CSV {
		row = appendCSVRow(row[:0], CSVHeader)
		if _, err := bw.Write(row); err != nil {
			return 0, err
		}
	}
	catalog := c.Catalog()
	var written int64
	var pos *Position
	defer func() { c.ClosePosition(pos) }() // an export that stops early frees its point in time
	for {
		// A slow reader may outlive the point in time: Page goes on from the last event written.
		docs, next, err := c.Page(ctx, f, Asc, PageSize, pos)
		if err != nil {
			return written, err
		}
		pos = next
		for _, src := range docs {
			switch format {
			case NDJSON:
				bw.Write(src)
				bw.WriteByte('\n')
			case Events:
				ev, err := ToEvent(src)
				if err != nil {
					return written, err
				}
				b, _ := json.Marshal(ev) // raw fields are the stored JSON
				bw.Write(b)
				bw.WriteByte('\n')
			default:
				cells, err := csvRow(src, catalog)
				if err != nil {
					return written, err
				}
				row = appendCSVRow(row[:0], cells)
				if _, err := bw.Write(row); err != nil {
					return written, err
				}
			}
			written++
		}
		if progress != nil {
			progress.Done(written)
		}
		if err := bw.Flush(); err != nil { // a page at a time, so a client going away ends the export
			return written, err
		}
		if next == nil {
			return written, nil
		}
		if testHooks.page != nil {
			testHooks.page(next.PIT)
		}
	}
}

// pitKeepAlive is how long a point in time lives between two pages of a listing or an export.
const pitKeepAlive = "2m"

// testHooks let a test end an export's point in time after a page, and learn that Page reopened it.
var testHooks struct {
	page     func(pit string)
	reopened func()
}

// openPIT opens a point in time over every index that may hold team events.
func (c *Client) openPIT(ctx context.Context) (string, error) {
	var pit struct {
		ID string `json:"id"`
	}
	yes := true
	err := c.do(ctx, esapi.OpenPointInTimeRequest{Index: c.layout.ReadIndices(), KeepAlive: pitKeepAlive, IgnoreUnavailable: &yes}, &pit)
	return pit.ID, err
}

// count counts the events a query matches.
func (c *Client) count(ctx context.Context, q map[string]any) (int64, error) {
	var cnt struct{ Count int64 }
	body, _ := json.Marshal(map[string]any{"query": q})
	yes := true
	err := c.do(ctx, esapi.CountRequest{Index: c.layout.ReadIndices(), Body: bytes.NewReader(body), IgnoreUnavailable: &yes, AllowNoIndices: &yes}, &cnt)
	return cnt.Count, err
}

// isExpiredPIT tells the answer to a search on a point in time that is gone.
func isExpiredPIT(err error) bool {
	var he *httpError
	return errors.As(err, &he) && he.status == http.StatusNotFound && strings.Contains(he.msg, "search_context_missing_exception")
}

// appendCSVRow appends one RFC 4180 record ending in CRLF. A cell is quoted when it holds a quote, a
// comma, CR or LF, or starts with a space; quotes are doubled; every other byte is kept as it is (a
// lone CR too, which encoding/csv drops when it writes CRLF lines).
func appendCSVRow(b []byte, cells []string) []byte {
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

// page is one page of search hits.
type page struct {
	PitID string `json:"pit_id"`
	Hits  struct {
		Hits []struct {
			Source json.RawMessage   `json:"_source"`
			Sort   []json.RawMessage `json:"sort"`
		} `json:"hits"`
	} `json:"hits"`
}

// search runs one search and decodes its answer into out: over every index that may hold team events
// (layout.ReadIndices), or over the point in time the request names.
func (c *Client) search(ctx context.Context, req map[string]any, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	sr := esapi.SearchRequest{Body: bytes.NewReader(body)}
	if _, ok := req["pit"]; !ok {
		yes := true
		sr.Index, sr.IgnoreUnavailable, sr.AllowNoIndices = c.layout.ReadIndices(), &yes, &yes
	}
	return c.do(ctx, sr, out)
}

// storedDoc is the part of a stored document the CSV shows.
type storedDoc struct {
	Timestamp string `json:"@timestamp"`
	Action    string `json:"action"`
	Actor     struct {
		Type     string          `json:"type"`
		ID       string          `json:"id"`
		Metadata json.RawMessage `json:"metadata"`
	} `json:"actor"`
	Targets     []json.RawMessage `json:"targets"`
	AccessRoute []string          `json:"access_route"`
	RemoteAddr  string            `json:"remote_addr"`
	UserAgent   string            `json:"user_agent"`
	Metadata    json.RawMessage   `json:"metadata"`
}

// csvRow renders one stored document in CSVHeader's order. Targets and metadata are canonical JSON
// (keys sorted, numbers as stored), so exports are byte-for-byte stable.
func csvRow(src json.RawMessage, catalog *audit.Catalog) ([]string, error) {
	var d storedDoc
	if err := json.Unmarshal(src, &d); err != nil {
		return nil, fmt.Errorf("stored document: %w", err)
	}
	var actorMeta struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	}
	if len(d.Actor.Metadata) > 0 {
		_ = json.Unmarshal(d.Actor.Metadata, &actorMeta) // a non-object metadata has no email or name
	}
	targets := "[]"
	if len(d.Targets) > 0 {
		targets = canonicalJSON(mustMarshal(d.Targets))
	}
	row := []string{
		d.Timestamp, d.Action, catalog.Description(d.Action), d.Actor.Type, d.Actor.ID, actorMeta.Email, actorMeta.Name,
		targets, strings.Join(d.AccessRoute, ", "), d.RemoteAddr, d.UserAgent, canonicalJSON(d.Metadata),
	}
	for i := range row {
		row[i] = NeutralizeFormula(row[i])
	}
	return row, nil
}

func mustMarshal(v any) []byte {
	b, _ := json.Marshal(v)
	return b
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
