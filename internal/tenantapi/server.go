package tenantapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/seal"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the API's OpenAPI 3.1 document.
func OpenAPI() []byte { return openAPI }

// Config is what a Server needs.
type Config struct {
	Client    *query.Client
	Keys      *Keys
	Recorder  *recorder.Recorder // records every access in the team's log
	RateLimit float64            // requests a second per key, bursts of twice that; default 10
	Logger    *slog.Logger       // default: discard
	// Timeout bounds each Elasticsearch request of a request (default 30 s); WriteTimeout each
	// write to a client (default 60 s): a client that stops reading an export loses it, and its
	// point in time is closed.
	Timeout, WriteTimeout time.Duration
	Now                   func() time.Time // default time.Now; tests move the clock past an expiry
	// VerifierKeys are the keys that sign the teams' Merkle log checkpoints, served to anyone at
	// GET /v1/verifier-keys (merkle.VerifierKeys' form; none: 404).
	VerifierKeys []string
	// Seal serves the teams' signed logs (GET /v1/checkpoint, proofs, bundles); nil: those answer 404.
	Seal *seal.Log
}

// Server serves the audit log API.
type Server struct {
	cfg     Config
	limiter *limiter
	mux     *http.ServeMux
	log     *slog.Logger
}

// New builds a Server.
func New(cfg Config) *Server {
	if cfg.RateLimit <= 0 {
		cfg.RateLimit = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, limiter: newLimiter(cfg.RateLimit), mux: http.NewServeMux(), log: cfg.Logger}
	for _, rt := range s.routes() {
		s.mux.HandleFunc(rt.pattern, s.get(rt))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: 404, code: "not_found", msg: "no such endpoint; see /v1/openapi.json"})
	})
	return s
}

// route is one GET endpoint: its path pattern, the scope its key needs ("" for no key), the query
// parameters it accepts and its handler. The OpenAPI document is checked against this table.
type route struct {
	pattern string
	scope   string
	params  []param
	h       handler
}

func (s *Server) routes() []route {
	return []route{
		{"/v1/events", ScopeRead, eventsParams, s.events},
		{"/v1/events/{id}", ScopeRead, nil, s.event},
		{"/v1/events/{id}/proof", ScopeRead, nil, s.proof},
		{"/v1/checkpoint", ScopeRead, nil, s.checkpoint},
		{"/v1/checkpoint/consistency", ScopeRead, consistencyParams, s.consistency},
		{"/v1/export", ScopeExport, exportParams, s.export},
		{"/v1/actions", ScopeRead, nil, s.actions},
		{"/v1/verifier-keys", "", nil, s.verifierKeys},
		{"/v1/openapi.json", "", nil, func(w http.ResponseWriter, _ *http.Request, _ url.Values, _ *Key) *apiError {
			w.Header().Set("Content-Type", "application/json")
			w.Write(openAPI)
			return nil
		}},
	}
}

// verifierKeys answers GET /v1/verifier-keys: text/plain, one key a line, for customers to pin.
func (s *Server) verifierKeys(w http.ResponseWriter, _ *http.Request, _ url.Values, _ *Key) *apiError {
	if len(s.cfg.VerifierKeys) == 0 {
		return &apiError{status: 404, code: "not_found", msg: "this server signs no logs: it has no verifier keys"}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(strings.Join(s.cfg.VerifierKeys, "\n") + "\n"))
	return nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w, status: 200}
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(rw, r)
	// The query string is logged (filters and cursors are no secret) but for a token a client put in
	// it by mistake; the Authorization header never.
	s.log.Info("request", "method", r.Method, "path", r.URL.Path, "query", redactTokens(audit.Abbreviate(r.URL.RawQuery, 512)), "status", rw.status,
		"key", rw.keyID, "access_event", rw.accessID, "duration", time.Since(start).Round(time.Microsecond).String())
}

// statusWriter notes, for the request log, the status, the key and the team-log event that records
// the access (for a cursor page, the event that recorded its listing).
type statusWriter struct {
	http.ResponseWriter
	status          int
	keyID, accessID string
}

// noteAccess puts the access event's id in the request's log line.
func noteAccess(w http.ResponseWriter, id string) {
	if sw, ok := w.(*statusWriter); ok {
		sw.accessID = id
	}
}

func (w *statusWriter) WriteHeader(code int)        { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter } // for ResponseController

// apiError is an error answer: {"error": {"code": ..., "message": ...}}.
type apiError struct {
	status     int
	code, msg  string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="audit log"`)
	}
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.retryAfter.Seconds()))))
	}
	w.WriteHeader(e.status)
	encode(w, map[string]any{"error": map[string]string{"code": e.code, "message": e.msg}})
}

// encode writes v as JSON, without HTML escaping (an API, not a page).
func encode(w http.ResponseWriter, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// unavailable is the answer when the cluster fails; the detail goes to the server's log only (it
// may name indices and nodes).
func (s *Server) unavailable(what string, err error) *apiError {
	s.log.Error(what, "error", err)
	return &apiError{status: 503, code: "unavailable", msg: what + " failed; try again later", retryAfter: 5 * time.Second}
}

// handler serves a request with its checked query parameters and its key (nil without a scope).
type handler func(w http.ResponseWriter, r *http.Request, v url.Values, key *Key) *apiError

// get wraps a GET endpoint: the method, then (for a scope) the key, its rate and its scope, then the
// query parameters.
func (s *Server) get(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeError(w, &apiError{status: 405, code: "method_not_allowed", msg: r.Method + " is not allowed here; use GET"})
			return
		}
		var key *Key
		if rt.scope != "" {
			k, e := s.authenticate(r)
			if e != nil {
				writeError(w, e)
				return
			}
			if sw, ok := w.(*statusWriter); ok {
				sw.keyID = k.ID
			}
			if ok, wait := s.limiter.allow(k.ID, s.cfg.Now()); !ok {
				writeError(w, &apiError{status: 429, code: "rate_limited", msg: fmt.Sprintf("more than %g requests a second with this key", s.cfg.RateLimit), retryAfter: wait})
				return
			}
			if !k.Has(rt.scope) {
				writeError(w, &apiError{status: 403, code: "forbidden", msg: fmt.Sprintf("this key lacks the %s scope", rt.scope)})
				return
			}
			key = &k
		}
		v, e := parseParams(r.URL, rt.params)
		if e == nil {
			e = rt.h(w, r, v, key)
		}
		if e != nil {
			writeError(w, e)
		}
	}
}

func (s *Server) authenticate(r *http.Request) (Key, *apiError) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return Key{}, &apiError{status: 401, code: "unauthorized", msg: ErrNoToken.Error()}
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if len(vals) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") {
		return Key{}, &apiError{status: 401, code: "unauthorized", msg: "give one header Authorization: Bearer <key>"}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	k, err := s.cfg.Keys.Authenticate(ctx, strings.TrimSpace(token), s.cfg.Now())
	switch {
	case errors.Is(err, ErrUnknownToken), errors.Is(err, ErrRevoked), errors.Is(err, ErrExpired):
		return Key{}, &apiError{status: 401, code: "unauthorized", msg: err.Error()}
	case err != nil:
		return Key{}, s.unavailable("checking the key", err)
	}
	return k, nil
}

// recordAccess writes an access event into the key's team log before anything is read: a read that
// cannot be recorded does not happen.
func (s *Server) recordAccess(r *http.Request, key *Key, action string, md map[string]any) (string, *apiError) {
	md["kind"] = "audit_log_api" // as auditctl's events say "auditctl"
	md["endpoint"] = r.URL.Path
	ev := audit.Event{Action: action, TeamID: key.TeamID, Actor: key.Actor(), Targets: []audit.Target{{Type: "audit_log", ID: key.TeamID}}, Metadata: md}
	auditlog.FromRequest(&ev, r)
	// What the client sends is recorded, within bounds it cannot push past.
	if len(ev.AccessRoute) > 10 {
		ev.AccessRoute = ev.AccessRoute[len(ev.AccessRoute)-10:]
	}
	for i, a := range ev.AccessRoute {
		ev.AccessRoute[i] = clean(a, 64)
	}
	ev.UserAgent = clean(ev.UserAgent, 512)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.Timeout)
	defer cancel()
	id, err := s.cfg.Recorder.Record(ctx, ev)
	if err != nil {
		return "", s.unavailable("recording this access in the team's log", err)
	}
	return id, nil
}

// clean makes header text recordable: valid UTF-8, no control characters, at most n bytes.
func clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return audit.Truncate(s, n)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	encode(w, v)
}

// actions: GET /v1/actions, the catalog.
func (s *Server) actions(w http.ResponseWriter, _ *http.Request, _ url.Values, _ *Key) *apiError {
	type action struct {
		Name        string `json:"name"`
		Category    string `json:"category"`
		Description string `json:"description"`
	}
	var out []action
	for _, a := range s.cfg.Client.Catalog().Actions() {
		out = append(out, action{a.Name, a.Category, a.Description})
	}
	writeJSON(w, map[string]any{"data": out})
	return nil
}

// eventsPage is the answer of GET /v1/events.
type eventsPage struct {
	Data       []document.APIEvent `json:"data"`
	NextCursor *string             `json:"next_cursor"`
}

// events: GET /v1/events. A listing is recorded as an audit_log_read event when its first page is
// asked for, with its filters; its cursor carries that event's id and counts the pages and events
// served, and a listing of several pages is recorded once more when its last page is served, with
// those counts. Paging through a log of any length adds at most two events to it, not one per page.
func (s *Server) events(w http.ResponseWriter, r *http.Request, v url.Values, key *Key) *apiError {
	l, e := parseListing(v)
	if e != nil {
		return e
	}
	limit, e := parseLimit(v.Get("limit"))
	if e != nil {
		return e
	}
	var cur cursor
	if c := v.Get("cursor"); c != "" {
		var err error
		if cur, err = decodeCursor(key, c); err != nil {
			return badParam("cursor", "%v", err)
		}
		if !l.empty() && !l.equal(cur.Query) {
			return badParam("cursor", "was issued for other filters or another order: give the first page's parameters, or the cursor alone")
		}
	} else {
		md := map[string]any{"filters": l.metadata(), "limit": limit}
		id, e := s.recordAccess(r, key, audit.ActionAuditLogRead, md)
		if e != nil {
			return e
		}
		cur = cursor{Query: l, ReadID: id}
	}
	noteAccess(w, cur.ReadID)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	docs, next, err := s.cfg.Client.Page(ctx, cur.Query.filter(key.TeamID), cur.Query.order(), limit, cur.Pos)
	if err != nil {
		return s.unavailable("reading the log", err)
	}
	page := eventsPage{Data: make([]document.APIEvent, 0, len(docs))}
	for _, d := range docs {
		ev, err := document.ToAPI(d)
		if err != nil {
			return s.unavailable("reading the log", err)
		}
		page.Data = append(page.Data, ev)
	}
	cur.Pages++
	cur.Events += len(docs)
	if next != nil {
		cur.Pos = next
		c := encodeCursor(key, cur)
		page.NextCursor = &c
	} else if cur.Pages > 1 {
		md := map[string]any{"filters": cur.Query.metadata(), "state": "completed", "pages": cur.Pages, "events": cur.Events, "started_event_id": cur.ReadID}
		if _, e := s.recordAccess(r, key, audit.ActionAuditLogRead, md); e != nil {
			return e // the last page is not served unrecorded
		}
	}
	writeJSON(w, page)
	return nil
}

// event: GET /v1/events/{id}. Each is recorded as an audit_log_read event naming the id.
func (s *Server) event(w http.ResponseWriter, r *http.Request, _ url.Values, key *Key) *apiError {
	id := r.PathValue("id")
	if len(id) > audit.MaxIDBytes || !utf8.ValidString(id) || hasControl(id) {
		return badParam("id", "an event id is UTF-8 text of at most %d bytes", audit.MaxIDBytes)
	}
	readID, e := s.recordAccess(r, key, audit.ActionAuditLogRead, map[string]any{"event_id": id})
	if e != nil {
		return e
	}
	noteAccess(w, readID)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	hit, err := s.cfg.Client.Get(ctx, key.TeamID, id)
	if errors.Is(err, query.ErrNoEvent) {
		return &apiError{status: 404, code: "not_found", msg: "this team has no event with this id"}
	}
	if err != nil {
		return s.unavailable("reading the event", err)
	}
	ev, err := document.ToAPI(hit)
	if err != nil {
		return s.unavailable("reading the event", err)
	}
	writeJSON(w, ev)
	return nil
}

// export: GET /v1/export, the whole log (or the filters' part of it) in time order, streamed. It is
// recorded like auditctl's exports, as a data_export event before the first row and one after the
// last; the trailers X-Export-Events and X-Export-Status tell the client whether it got everything.
func (s *Server) export(w http.ResponseWriter, r *http.Request, v url.Values, key *Key) *apiError {
	l, e := parseListing(v)
	if e != nil {
		return e
	}
	name, format, contentType := "csv", query.CSV, "text/csv; charset=utf-8"
	switch v.Get("format") {
	case "", "csv":
	case "ndjson":
		name, format, contentType = "ndjson", query.Events, "application/x-ndjson"
	case "bundle":
		return s.exportBundle(w, r, l, key)
	default:
		return badParam("format", "%q: use csv, ndjson or bundle", v.Get("format"))
	}
	h := w.Header()
	x := recorder.Export{
		Client: s.cfg.Client, Filter: l.filter(key.TeamID), Format: format,
		Metadata: map[string]any{"format": name, "filters": l.metadata()},
		Record:   s.recordExport(r, key),
		Started: func(startID string) {
			noteAccess(w, startID)
			h.Set("Content-Type", contentType)
			h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="team-%s-auditlog.%s"`, key.TeamID, name))
			h.Set("Trailer", "X-Export-Events, X-Export-Status")
			w.WriteHeader(http.StatusOK)
		},
	}
	return s.runExport(w, r, key, x)
}

// recordExport records an export's data_export events as the request's accesses.
func (s *Server) recordExport(r *http.Request, key *Key) func(context.Context, map[string]any) (string, error) {
	return func(_ context.Context, md map[string]any) (string, error) {
		id, e := s.recordAccess(r, key, audit.ActionDataExport, md)
		if e != nil {
			return "", e
		}
		return id, nil
	}
}

// runExport runs a recorded export to the client, and says in the trailers whether it is whole.
func (s *Server) runExport(w http.ResponseWriter, r *http.Request, key *Key, x recorder.Export) *apiError {
	h := w.Header()
	res, err := x.Run(r.Context(), &deadlineWriter{w: w, rc: http.NewResponseController(w), d: s.cfg.WriteTimeout}, nil)
	var notRecorded *apiError
	if errors.As(err, &notRecorded) && res.StartID == "" {
		return notRecorded // nothing was exported
	}
	h.Set("X-Export-Events", strconv.FormatInt(res.Events, 10))
	h.Set("X-Export-Status", "complete")
	if err != nil {
		h.Set("X-Export-Status", "incomplete")
		s.log.Warn("export ended early", "key", key.ID, "events", res.Events, "error", err)
	}
	if res.RecordErr != nil {
		s.log.Error("recording the end of an export failed", "key", key.ID, "started_event_id", res.StartID)
	}
	return nil
}

// deadlineWriter gives each write to the client its own deadline: a slow reader may take as long
// as it likes in total, but one that stops reading is cut off.
type deadlineWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.d))
	n, err := d.w.Write(p)
	if err == nil {
		err = d.rc.Flush()
	}
	return n, err
}
