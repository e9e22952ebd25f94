package tenantapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/document"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/query"
)

// TestPagingReturnsEveryEventOnceWhileEventsArrive pages through 2,500 events of a team, 100 at a
// time, in both orders, while new events and late ones (timestamps among those being paged) keep
// arriving and becoming searchable. Every event of the log as it was at the first page comes back
// exactly once, and nothing else: neither arrivals nor the other team's events.
func TestPagingReturnsEveryEventOnceWhileEventsArrive(t *testing.T) {
	e := newAPI(t, 1000)
	initial := events("301", 2500, "initial")
	e.load(initial)
	e.load(events("302", 300, "other"))
	token, _ := e.mint("301", 0, ScopeRead)
	e.refresh()
	want := ids(initial)

	for _, order := range []string{"desc", "asc"} {
		t.Run(order, func(t *testing.T) {
			stop := make(chan struct{})
			var arrived sync.WaitGroup
			var late []audit.Event
			start := func() {
				arrived.Add(1)
				go func() {
					defer arrived.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						batch := events("301", 40, "arrival") // the same 40 days: late events among the pages
						for j := range batch[:20] {
							batch[j].Time = time.Now() // and new ones
						}
						_, err := e.rec.RecordAll(context.Background(), batch)
						if !assert.NoError(t, err) {
							return
						}
						late = append(late, batch...)
						e.refresh()
					}
				}()
			}
			got := e.listAll(token, "action=job_updated&limit=100&order="+order, func(page int, _ *string) {
				if page == 0 {
					start() // after the first page: the listing's point in time is open
				}
				if page == 3 {
					// Events searchable meanwhile, to prove the arrivals are visible to a new listing.
					time.Sleep(200 * time.Millisecond)
				}
			})
			close(stop)
			arrived.Wait()

			seen := map[string]bool{}
			for _, id := range got {
				require.False(t, seen[id], "event %s returned twice", id)
				seen[id] = true
			}
			assert.Len(t, got, len(want))
			assert.Equal(t, want, seen, "exactly the log as it was at the first page")
			require.NotEmpty(t, late)
			for _, ev := range late {
				want[ev.ID] = true // in the log of the next order's first page
			}
			// A new listing sees the arrivals, late ones included: they were there to be missed.
			again := e.listAll(token, "action=job_updated&limit=1000&order="+order, nil)
			all := map[string]bool{}
			for _, id := range again {
				all[id] = true
			}
			for _, ev := range late {
				assert.True(t, all[ev.ID], "arrival %s is in the next listing", ev.ID)
			}
			// The order is the one asked for, by time, and events of the same time come in the order
			// stored: the same in every listing, and reversed by the other order.
			p := e.page(token, "action=job_updated&limit=1000&order="+order)
			for i := 1; i < len(p.Data); i++ {
				a, b := p.Data[i-1], p.Data[i]
				if order == "asc" {
					a, b = b, a
				}
				assert.True(t, a.Timestamp >= b.Timestamp, "%s then %s", p.Data[i-1].Timestamp, p.Data[i].Timestamp)
			}
			listing := e.listAll(token, "action=job_updated&limit=1000&order="+order, nil)
			assert.Equal(t, listing, e.listAll(token, "action=job_updated&limit=1000&order="+order, nil), "one order")
			other := "asc"
			if order == "asc" {
				other = "desc"
			}
			reversed := e.listAll(token, "action=job_updated&limit=1000&order="+other, nil)
			slices.Reverse(reversed)
			assert.Equal(t, listing, reversed, "the other order is its reverse")
		})
	}
}

// TestPagingSurvivesAnExpiredPointInTime: a client that pauses past the point in time's life still
// gets every event once; the listing goes on from its last sort values.
func TestPagingSurvivesAnExpiredPointInTime(t *testing.T) {
	e := newAPI(t, 1000)
	initial := events("311", 700, "initial")
	e.load(initial)
	token, key := e.mint("311", 0, ScopeRead)
	got := e.listAll(token, "action=job_updated&limit=100", func(page int, next *string) {
		if page == 2 {
			// End the listing's point in time the way its expiry would.
			c, err := decodeCursor(&key, *next)
			require.NoError(t, err)
			e.c.ClosePosition(c.Pos)
		}
	})
	seen := map[string]bool{}
	for _, id := range got {
		require.False(t, seen[id], "event %s returned twice", id)
		seen[id] = true
	}
	assert.Equal(t, ids(initial), seen)
}

// TestAKeyReadsItsOwnTeamOnly tries every way of naming another team's data: parameters, ids,
// wildcards, another key's cursor, a tampered cursor, headers.
func TestAKeyReadsItsOwnTeamOnly(t *testing.T) {
	e := newAPI(t, 1000)
	a, b := events("321", 150, "a"), events("322", 150, "b")
	b[0].Actor.ID = a[0].Actor.ID // the same actor id in both teams
	e.load(append(a, b...))
	tokA, keyA := e.mint("321", 0, ScopeRead, ScopeExport)
	tokB, _ := e.mint("322", 0, ScopeRead, ScopeExport)

	onlyA := func(evs []document.APIEvent) {
		t.Helper()
		for _, ev := range evs {
			require.Equal(t, "321", ev.TeamID)
		}
	}
	for _, q := range []string{"", "action=*", "action=%2A%2A", "action=job_*", "actor_id=" + a[0].Actor.ID, "target_id=5000"} {
		p := e.page(tokA, q+"&limit=1000")
		require.NotEmpty(t, p.Data, q)
		onlyA(p.Data)
	}
	// No parameter names a team.
	for _, q := range []string{"team_id=322", "team=322", "index=" + url.QueryEscape(e.c.Layout().Prefix()+"*"), "routing=322", "q=team_id:322"} {
		status, _, body := e.get(tokA, "/v1/events?"+q)
		assert.Equal(t, http.StatusBadRequest, status, q)
		code, msg := apiErr(t, body)
		assert.Equal(t, "invalid_parameter", code)
		assert.Contains(t, msg, "unknown parameter", q)
	}
	// Headers select nothing either.
	req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/events?limit=1000", nil)
	req.Header.Set("Authorization", "Bearer "+tokA)
	for _, h := range []string{"X-Team-Id", "X-Tenant", "X-Forwarded-Host", "Elastic-Api-Version"} {
		req.Header.Set(h, "322")
	}
	status, _, body := do(t, req)
	require.Equal(t, http.StatusOK, status)
	var p eventsPage
	require.NoError(t, json.Unmarshal(body, &p))
	onlyA(p.Data)

	// Another team's event id is not found; so is anything that is not an id.
	status, _, _ = e.get(tokA, "/v1/events/"+url.PathEscape(b[0].ID))
	assert.Equal(t, http.StatusNotFound, status)
	status, _, body = e.get(tokA, "/v1/events/"+url.PathEscape(a[0].ID))
	require.Equal(t, http.StatusOK, status, "%s", body)
	for _, id := range []string{"*", b[0].ID + "*", "..%2F" + b[0].ID, url.PathEscape(`"` + b[0].ID + `" OR team_id:322`)} {
		status, _, _ = e.get(tokA, "/v1/events/"+id)
		assert.Contains(t, []int{http.StatusNotFound, http.StatusBadRequest}, status, id)
	}
	status, _, body = e.get(tokA, "/v1/events/"+strings.Repeat("x", 600))
	assert.Equal(t, http.StatusBadRequest, status)
	_, msg := apiErr(t, body)
	assert.Contains(t, msg, `"id"`)

	// B's cursor is not A's, even for the same filters.
	pb := e.page(tokB, "limit=10")
	status, _, body = e.get(tokA, "/v1/events?cursor="+url.QueryEscape(*pb.NextCursor))
	assert.Equal(t, http.StatusBadRequest, status)
	code, msg := apiErr(t, body)
	assert.Equal(t, "invalid_parameter", code)
	assert.Contains(t, msg, `"cursor"`)
	// A's cursor with its payload rewritten (another key's id, another team's filters) fails its signature.
	pa := e.page(tokA, "limit=10")
	payload, sig, _ := strings.Cut(*pa.NextCursor, ".")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	require.NoError(t, err)
	for _, forged := range [][]byte{
		bytes.Replace(raw, []byte(keyA.ID), []byte(strings.Repeat("0", len(keyA.ID))), 1),
		bytes.Replace(raw, []byte(`"q":{}`), []byte(`"q":{"actor_id":"x"}`), 1),
		append(raw[:len(raw)-1:len(raw)-1], ' ', '}'),
	} {
		c := base64.RawURLEncoding.EncodeToString(forged) + "." + sig
		status, _, _ = e.get(tokA, "/v1/events?cursor="+url.QueryEscape(c))
		assert.Equal(t, http.StatusBadRequest, status, "%s", forged)
	}
	for _, c := range []string{"x", ".", "..", payload, *pa.NextCursor + "A", strings.Repeat("A", MaxCursor+1)} {
		status, _, _ = e.get(tokA, "/v1/events?cursor="+url.QueryEscape(c))
		assert.Equal(t, http.StatusBadRequest, status, audit.Abbreviate(c, 40))
	}
	// A cursor stays bound to its filters.
	status, _, body = e.get(tokA, "/v1/events?limit=10&action=job_*&cursor="+url.QueryEscape(*pa.NextCursor))
	assert.Equal(t, http.StatusBadRequest, status)
	_, msg = apiErr(t, body)
	assert.Contains(t, msg, "other filters")

	// The export holds A's events and nothing of B's.
	status, _, body = e.get(tokA, "/v1/export?format=ndjson&action=*")
	require.Equal(t, http.StatusOK, status)
	n := 0
	for line := range bytes.Lines(body) {
		var ev document.APIEvent
		require.NoError(t, json.Unmarshal(line, &ev))
		require.Equal(t, "321", ev.TeamID)
		n++
	}
	assert.GreaterOrEqual(t, n, len(a))
	assert.NotContains(t, string(body), b[1].ID)
}

// TestKeysRevocationExpiryAndScopes: what a key can do, and when it stops.
func TestKeysRevocationExpiryAndScopes(t *testing.T) {
	e := newAPI(t, 1000)
	e.load(events("331", 5, "x"))
	read, _ := e.mint("331", 0, ScopeRead)
	export, _ := e.mint("331", 0, ScopeExport)
	short, _ := e.mint("331", time.Hour, ScopeRead)
	revoked, rkey := e.mint("331", 0, ScopeRead)

	expect := func(token, path string, status int, code string) {
		t.Helper()
		got, h, body := e.get(token, path)
		require.Equal(t, status, got, "%s %s", path, body)
		if status >= 400 {
			c, _ := apiErr(t, body)
			assert.Equal(t, code, c)
		}
		if status == http.StatusUnauthorized {
			assert.NotEmpty(t, h.Get("WWW-Authenticate"))
		}
	}
	expect(read, "/v1/events", 200, "")
	expect(read, "/v1/actions", 200, "")
	expect(read, "/v1/export", 403, "forbidden")
	expect(export, "/v1/export", 200, "")
	expect(export, "/v1/events", 403, "forbidden")
	expect("", "/v1/events", 401, "unauthorized")
	expect("", "/v1/openapi.json", 200, "")
	expect("apk_nope", "/v1/events", 401, "unauthorized")
	// A well-formed token with the right id and a wrong secret.
	wrong := read[:len(read)-4] + "AAAA"
	if wrong == read {
		wrong = read[:len(read)-4] + "BBBB"
	}
	expect(wrong, "/v1/events", 401, "unauthorized")
	expect(strings.ToUpper(read), "/v1/events", 401, "unauthorized")

	// Other schemes and repeated headers are refused.
	for _, h := range [][]string{{"Basic " + base64.StdEncoding.EncodeToString([]byte("a:"+read))}, {"Bearer " + read, "Bearer " + export}, {read}} {
		req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/events", nil)
		for _, v := range h {
			req.Header.Add("Authorization", v)
		}
		status, _, _ := do(t, req)
		assert.Equal(t, http.StatusUnauthorized, status, h)
	}

	expect(revoked, "/v1/events", 200, "")
	_, err := e.keys.Revoke(context.Background(), e.rec, "331", rkey.ID, "operator@example.com")
	require.NoError(t, err)
	expect(revoked, "/v1/events", 401, "unauthorized")
	_, err = e.keys.Revoke(context.Background(), e.rec, "332", rkey.ID, "operator@example.com")
	assert.ErrorContains(t, err, "team 332 has no key", "a key is revoked by its own team only")

	expect(short, "/v1/events", 200, "")
	e.advance(61 * time.Minute)
	expect(short, "/v1/events", 401, "unauthorized")
	expect(read, "/v1/events", 200, "")

	// The key list shows what happened, never a secret or its hash.
	keys, err := e.keys.List(context.Background(), "331")
	require.NoError(t, err)
	require.Len(t, keys, 4)
	assert.NotNil(t, keys[3].RevokedAt)
	// Key events are in the team's log.
	log := e.teamLog("331", audit.ActionAuditAPIKeyCreated, audit.ActionAuditAPIKeyRevoked)
	require.Len(t, log, 5)
	assert.Equal(t, audit.ActionAuditAPIKeyRevoked, log[4].Action)
	assert.Contains(t, string(log[4].Targets), rkey.ID)
}

// TestRateLimit: a key gets its rate with bursts of twice that, then 429 with Retry-After; another
// key is not affected.
func TestRateLimit(t *testing.T) {
	e := newAPI(t, 2)
	e.load(events("341", 1, "x"))
	tok, _ := e.mint("341", 0, ScopeRead)
	other, _ := e.mint("341", 0, ScopeRead)
	e.freeze() // no token comes back until the clock moves
	ok := 0
	var last http.Header
	var status int
	for i := 0; i < 10; i++ {
		status, last, _ = e.get(tok, "/v1/actions")
		if status != http.StatusOK {
			break
		}
		ok++
	}
	assert.Equal(t, 4, ok, "a burst of twice the rate")
	require.Equal(t, http.StatusTooManyRequests, status)
	assert.Equal(t, "1", last.Get("Retry-After"))
	status, _, _ = e.get(other, "/v1/actions")
	assert.Equal(t, http.StatusOK, status)
	e.advance(time.Second)
	status, _, _ = e.get(tok, "/v1/actions")
	assert.Equal(t, http.StatusOK, status, "tokens come back at the rate")
}

// TestBadInputIsA400NamingTheParameter.
func TestBadInputIsA400NamingTheParameter(t *testing.T) {
	e := newAPI(t, 1000)
	e.load(events("351", 1, "x"))
	tok, _ := e.mint("351", 0, ScopeRead, ScopeExport)
	for _, c := range []struct{ path, param string }{
		{"/v1/events?since=yesterday", "since"},
		{"/v1/events?since=2025-08-01", "since"},
		{"/v1/events?until=2025-13-01T00:00:00Z", "until"},
		{"/v1/events?since=2025-08-02T00:00:00Z&until=2025-08-01T00:00:00Z", "until"},
		{"/v1/events?since=2025-08-01T00:00:00Z&until=2025-08-01T00:00:00Z", "until"},
		{"/v1/events?order=sideways", "order"},
		{"/v1/events?order=asc&order=desc", "order"},
		{"/v1/events?limit=0", "limit"},
		{"/v1/events?limit=1001", "limit"},
		{"/v1/events?limit=-5", "limit"},
		{"/v1/events?limit=ten", "limit"},
		{"/v1/events?limit=", "limit"},
		{"/v1/events?actor=1", "actor"},
		{"/v1/events?action=Job_Created", "action"},
		{"/v1/events?action=job%20created", "action"},
		{"/v1/events?action=" + strings.Repeat("a", 129), "action"},
		{"/v1/events?" + strings.Repeat("action=a&", 21), "action"},
		{"/v1/events?actor_id=" + strings.Repeat("1", 257), "actor_id"},
		{"/v1/events?target_id=%00", "target_id"},
		{"/v1/events?target_type=%ff", "target_type"},
		{"/v1/events?cursor=abc", "cursor"},
		{"/v1/events/x?limit=1", "limit"},
		{"/v1/actions?x=1", "x"},
		{"/v1/export?format=xml", "format"},
		{"/v1/export?order=asc", "order"},
		{"/v1/export?since=1754006400", "since"},
	} {
		status, _, body := e.get(tok, c.path)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", c.path, body)
		code, msg := apiErr(t, body)
		assert.Equal(t, "invalid_parameter", code, c.path)
		assert.Contains(t, msg, fmt.Sprintf("%q", c.param), c.path)
	}
	status, _, body := e.get(tok, "/v1/events?%zz")
	assert.Equal(t, http.StatusBadRequest, status, "%s", body)

	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/events", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+tok)
	status, h, _ := do(t, req)
	assert.Equal(t, http.StatusMethodNotAllowed, status)
	assert.Equal(t, "GET", h.Get("Allow"))
	status, _, body = e.get(tok, "/v2/events")
	assert.Equal(t, http.StatusNotFound, status)
	code, _ := apiErr(t, body)
	assert.Equal(t, "not_found", code)
}

// TestEveryAccessIsInTheTeamsLog: a listing of several pages is one audit_log_read event with its
// filters, a single event read is one, an export is two data_export events; the key is the actor.
func TestEveryAccessIsInTheTeamsLog(t *testing.T) {
	e := newAPI(t, 1000)
	evs := events("361", 250, "x")
	e.load(evs)
	tok, key := e.mint("361", 0, ScopeRead, ScopeExport)

	pages := 0
	got := e.listAll(tok, "action=job_updated&limit=100&since="+url.QueryEscape(evs[249].Time.Format(time.RFC3339Nano)), func(int, *string) { pages++ })
	require.Len(t, got, 250)
	require.Equal(t, 3, pages)
	status, _, _ := e.get(tok, "/v1/events/"+evs[7].ID)
	require.Equal(t, http.StatusOK, status)
	status, h, body := e.get(tok, "/v1/export?format=csv&actor_id=1000")
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "text/csv; charset=utf-8", h.Get("Content-Type"))
	assert.Equal(t, "complete", h.Get("X-Export-Status"))
	rows := strings.Count(string(body), "\r\n") - 1
	assert.Equal(t, "36", h.Get("X-Export-Events"))
	assert.Equal(t, 36, rows) // actor 1000 is every seventh event

	require.Len(t, e.listAll(tok, "action=job_updated&limit=1000", nil), 250) // one page

	reads := e.teamLog("361", audit.ActionAuditLogRead)
	require.Len(t, reads, 4, "a listing of 3 pages: its start and its end, not one per page; an event read; a listing of one page")
	for _, r := range reads {
		var actor audit.Actor
		require.NoError(t, json.Unmarshal(r.Actor, &actor))
		assert.Equal(t, key.ID, actor.ID)
		assert.Equal(t, audit.ActorSystem, actor.Type)
		require.NotNil(t, r.RemoteAddr)
		assert.Equal(t, "127.0.0.1", *r.RemoteAddr)
	}
	var md map[string]any
	require.NoError(t, json.Unmarshal(reads[0].Metadata, &md))
	assert.Equal(t, "/v1/events", md["endpoint"])
	assert.Equal(t, []any{"job_updated"}, md["filters"].(map[string]any)["action"])
	assert.Nil(t, md["state"])
	require.NoError(t, json.Unmarshal(reads[1].Metadata, &md))
	assert.Equal(t, "completed", md["state"])
	assert.EqualValues(t, 3, md["pages"])
	assert.EqualValues(t, 250, md["events"])
	assert.Equal(t, reads[0].ID, md["started_event_id"])
	assert.Equal(t, []any{"job_updated"}, md["filters"].(map[string]any)["action"])
	require.NoError(t, json.Unmarshal(reads[2].Metadata, &md))
	assert.Equal(t, evs[7].ID, md["event_id"])
	require.NoError(t, json.Unmarshal(reads[3].Metadata, &md))
	assert.EqualValues(t, 1000, md["limit"])

	exports := e.teamLog("361", audit.ActionDataExport)
	require.Len(t, exports, 2)
	require.NoError(t, json.Unmarshal(exports[1].Metadata, &md))
	assert.Equal(t, "completed", md["state"])
	assert.EqualValues(t, 36, md["events"])
	assert.Equal(t, "csv", md["format"])
	assert.Equal(t, "1000", md["filters"].(map[string]any)["actor_id"])
}

// TestExportIsTheSameCSVAsAuditctlAndStopsWithItsClient: the API's CSV is byte for byte auditctl's;
// a client that goes away mid-export ends it and its point in time.
func TestExportIsTheSameCSVAsAuditctlAndStopsWithItsClient(t *testing.T) {
	e := newAPI(t, 1000)
	const n = 20000 // ~12 MB of NDJSON: more than the sockets between server and client can hold
	e.load(events("371", n, "x"))
	tok, _ := e.mint("371", 0, ScopeExport)

	f := query.Filter{Team: "371", Actions: []string{"job_*"}}
	var want bytes.Buffer
	_, err := e.c.Export(context.Background(), f, query.CSV, &want, nil)
	require.NoError(t, err)
	status, _, body := e.get(tok, "/v1/export?action=job_*")
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, want.String(), string(body))

	base := openContexts(t, e)
	req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/export?format=ndjson", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	// A client of its own, with a small receive buffer, that reads one line and goes away.
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	res, err := client.Do(req)
	require.NoError(t, err)
	_, err = bufio.NewReader(res.Body).ReadString('\n') // the export has begun: its point in time is open
	require.NoError(t, err)
	assert.Greater(t, openContexts(t, e), base)
	res.Body.Close()
	require.Eventually(t, func() bool { return openContexts(t, e) <= base }, 30*time.Second, 100*time.Millisecond,
		"the export's point in time is closed when its client goes away")
	// And the team's log says the export failed part-way.
	require.Eventually(t, func() bool { return len(e.teamLog("371", audit.ActionDataExport)) == 4 }, 30*time.Second, 200*time.Millisecond)
	var md map[string]any
	require.NoError(t, json.Unmarshal(e.teamLog("371", audit.ActionDataExport)[3].Metadata, &md))
	assert.Equal(t, "failed", md["state"])
	assert.Less(t, md["events"], float64(n))
}

// openContexts counts the search contexts open on this test's indices (a point in time holds one
// per shard); other tests on the node do not change it.
func openContexts(t *testing.T, e *apiEnv) int {
	t.Helper()
	res, err := http.Get(e.c.Conn().URLs[0] + "/" + e.c.Layout().Prefix() + "*/_stats/search")
	require.NoError(t, err)
	defer res.Body.Close()
	var s struct {
		All struct {
			Total struct {
				Search struct {
					OpenContexts int `json:"open_contexts"`
				} `json:"search"`
			} `json:"total"`
		} `json:"_all"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&s))
	return s.All.Total.Search.OpenContexts
}

// TestHostileHeadersAreRecordedWithinBounds: no header makes an access unrecordable (and so the read
// refused), and none is recorded beyond its bounds.
func TestHostileHeadersAreRecordedWithinBounds(t *testing.T) {
	e := newAPI(t, 1000)
	e.load(events("391", 3, "x"))
	tok, _ := e.mint("391", 0, ScopeRead)
	req, _ := http.NewRequest(http.MethodGet, e.url+"/v1/events?action=job_updated", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	// Invalid UTF-8 and a tab: what HTTP lets through to the handler (it refuses other control bytes).
	req.Header.Set("User-Agent", "evil\xff\xfe\t"+strings.Repeat("é", 5000))
	for i := 0; i < 100; i++ {
		req.Header.Add("X-Forwarded-For", fmt.Sprintf("10.0.0.%d, \xff%s", i, strings.Repeat("x", 200)))
	}
	status, _, body := do(t, req)
	require.Equal(t, http.StatusOK, status, "%s", body)
	reads := e.teamLog("391", audit.ActionAuditLogRead)
	require.Len(t, reads, 1)
	require.NotNil(t, reads[0].UserAgent)
	ua := *reads[0].UserAgent
	assert.LessOrEqual(t, len(ua), 512)
	assert.True(t, strings.HasPrefix(ua, "evil\uFFFDé"), ua[:20])
	var route []string
	require.NoError(t, json.Unmarshal(reads[0].AccessRoute, &route))
	assert.Len(t, route, 10)
	assert.Equal(t, "127.0.0.1", route[9], "the peer, last")
	for _, a := range route {
		assert.LessOrEqual(t, len(a), 64)
	}
}
