package tenantapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/recorder"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/seal"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
)

// apiEnv is the API served over real HTTP by httptest, reading and writing the real test node under
// a prefix of its own.
type apiEnv struct {
	t    *testing.T
	c    *query.Client
	keys *Keys
	rec  *recorder.Recorder
	url  string
	// The teams' signed logs: a sealer with its own key, run by seal().
	sealer   *seal.Sealer
	verifier string

	mu     sync.Mutex
	frozen time.Time     // when set, the server's clock stands here (plus offset)
	offset time.Duration // the server's clock runs this far ahead
}

func newAPI(t *testing.T, rate float64) *apiEnv {
	t.Helper()
	prefix := estest.Prefix(t)
	c, err := query.New(query.Conn{URLs: []string{estest.URL(t)}, IndexPrefix: prefix + layout.DefaultPrefix,
		QuarantineIndex: prefix + layout.DefaultQuarantine, InstallTemplates: true})
	require.NoError(t, err)
	keys, err := NewKeys(c, prefix+"keys") // under the test's prefix, so its cleanup deletes it
	require.NoError(t, err)
	rec, err := recorder.New(context.Background(), c, nil)
	require.NoError(t, err)
	t.Cleanup(rec.Close)
	e := &apiEnv{t: t, c: c, keys: keys, rec: rec}
	store, err := seal.NewStore(c, prefix+"seal")
	require.NoError(t, err)
	skey, vkey, err := merkle.GenerateKey("audit.test")
	require.NoError(t, err)
	signers, err := seal.Signers([]byte(skey))
	require.NoError(t, err)
	e.sealer, err = seal.New(seal.Config{Store: store, Origin: "audit.test", Signers: signers})
	require.NoError(t, err)
	e.verifier = vkey
	srv := httptest.NewServer(New(Config{Client: c, Keys: keys, Recorder: rec, RateLimit: rate, Now: e.now, Seal: seal.NewLog(store), VerifierKeys: []string{vkey}}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// seal runs the sealer until every stored event is sealed.
func (e *apiEnv) seal() {
	e.t.Helper()
	for {
		st, err := e.sealer.Round(context.Background())
		require.NoError(e.t, err)
		if !st.More {
			return
		}
	}
}

func (e *apiEnv) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.frozen.IsZero() {
		return e.frozen.Add(e.offset)
	}
	return time.Now().Add(e.offset)
}

func (e *apiEnv) freeze() {
	e.mu.Lock()
	e.frozen = time.Now()
	e.mu.Unlock()
}

func (e *apiEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.offset += d
	e.mu.Unlock()
}

// mint creates a key as `auditctl keys create` does.
func (e *apiEnv) mint(team string, expires time.Duration, scopes ...string) (string, Key) {
	e.t.Helper()
	token, key, err := e.keys.Create(context.Background(), e.rec, NewSpec{Team: team, Scopes: scopes, Expires: expires, Name: "test", Operator: "operator@example.com"})
	require.NoError(e.t, err)
	return token, key
}

// get sends GET path (with its query) with a bearer token ("" for none).
func (e *apiEnv) get(token, path string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.url+path, nil)
	require.NoError(e.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(e.t, req)
}

func do(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	for k, v := range res.Trailer { // set once the body is read
		res.Header[k] = v
	}
	return res.StatusCode, res.Header, body
}

// page gets one page of GET /v1/events and fails the test unless it is a 200.
func (e *apiEnv) page(token, query string) eventsPage {
	e.t.Helper()
	status, _, body := e.get(token, "/v1/events?"+query)
	require.Equal(e.t, http.StatusOK, status, "%s", body)
	var p eventsPage
	require.NoError(e.t, json.Unmarshal(body, &p))
	return p
}

// listAll pages through a listing, and returns the ids in the order served. between is told each
// page's number and next cursor.
func (e *apiEnv) listAll(token, query string, between func(page int, next *string)) []string {
	e.t.Helper()
	var ids []string
	q := query
	for n := 0; ; n++ {
		p := e.page(token, q)
		for _, ev := range p.Data {
			ids = append(ids, ev.ID)
		}
		if between != nil {
			between(n, p.NextCursor)
		}
		if p.NextCursor == nil {
			return ids
		}
		q = "cursor=" + url.QueryEscape(*p.NextCursor)
	}
}

// events builds n job events of a team, spread over the last 40 days (two monthly partitions or
// more), every tenth sharing the previous one's timestamp so that time alone cannot order them.
func events(team string, n int, mark string) []audit.Event {
	end := time.Now().UTC().Add(-time.Hour)
	evs := make([]audit.Event, n)
	for i := range evs {
		at := end.Add(-time.Duration(i) * 40 * 24 * time.Hour / time.Duration(n+1)).Truncate(time.Millisecond)
		if i%10 == 9 {
			at = evs[i-1].Time
		}
		evs[i] = audit.Event{
			ID: uuid.NewString(), Time: at, Action: audit.ActionJobUpdated, TeamID: team,
			Actor:    auditlog.User(fmt.Sprint(1000+i%7), "", ""),
			Targets:  []audit.Target{{Type: "job", ID: fmt.Sprint(5000 + i%13)}},
			Metadata: map[string]any{"seq": i, "mark": mark},
		}
	}
	return evs
}

// load stores events through the in-process pipeline, as the collector would.
func (e *apiEnv) load(evs []audit.Event) {
	e.t.Helper()
	for start := 0; start < len(evs); start += 500 {
		_, err := e.rec.RecordAll(context.Background(), evs[start:min(start+500, len(evs))])
		require.NoError(e.t, err)
	}
	e.refresh()
}

func (e *apiEnv) refresh() {
	e.t.Helper()
	require.NoError(e.t, esinspect.Refresh(e.c.Conn().URLs[0], e.c.Layout().Prefix()))
}

func ids(evs []audit.Event) map[string]bool {
	m := make(map[string]bool, len(evs))
	for _, ev := range evs {
		m[ev.ID] = true
	}
	return m
}

// teamLog returns a team's stored events of some actions, oldest first.
func (e *apiEnv) teamLog(team string, actions ...string) []document.APIEvent {
	e.t.Helper()
	e.refresh()
	var out []document.APIEvent
	var pos *query.Position
	for {
		docs, next, err := e.c.Page(context.Background(), query.Filter{Team: team, Actions: actions}, query.Asc, 1000, pos)
		require.NoError(e.t, err)
		for _, d := range docs {
			ev, err := document.ToAPI(d)
			require.NoError(e.t, err)
			out = append(out, ev)
		}
		if next == nil {
			return out
		}
		pos = next
	}
}

// apiErr decodes an error answer.
func apiErr(t *testing.T, body []byte) (code, msg string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e), "%s", body)
	return e.Error.Code, e.Error.Message
}
