package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/internal/recorder"

	"github.com/google/uuid"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/tenantapi"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
)

// apiPrefix names the indices of auditproof api on its node.
const apiPrefix = "proof-api-"

// apiRun is one run of auditproof api: the node's indices, the pipeline that records into them, the
// keys minted and the API server.
type apiRun struct {
	env
	ctx      context.Context
	c        *query.Client
	rec      *recorder.Recorder
	keys     *tenantapi.Keys
	tokens   []teamKey
	base     string // the server's URL
	client   *http.Client
	problems []string
}

type teamKey struct{ team, token string }

// apiBench measures the audit log API on auditproof's node: it stores e.apiEvents events over
// e.teams teams through the in-process pipeline, mints keys for some of the teams, then for
// e.duration has e.clients clients page through random teams' logs with GET /v1/events (limit 100,
// following next_cursor to the end), measures what each step of a request costs the node, and
// exports whole team logs. Every page is checked to hold its key's team only, and every listing to
// be complete.
func apiBench(e env) bool {
	defer esinspect.DeleteAll(e.esURL, apiPrefix)
	r := &apiRun{env: e, ctx: context.Background()}
	var err error
	if r.c, err = query.New(query.Conn{URLs: []string{e.esURL}, IndexPrefix: apiPrefix + layout.DefaultPrefix,
		QuarantineIndex: apiPrefix + layout.DefaultQuarantine, InstallTemplates: true}); err != nil {
		return failed(e, err)
	}
	if r.rec, err = recorder.New(r.ctx, r.c, nil); err != nil {
		return failed(e, err)
	}
	defer r.rec.Close()
	if r.keys, err = tenantapi.NewKeys(r.c, apiPrefix+"keys"); err != nil {
		return failed(e, err)
	}
	if err := r.store(); err != nil {
		return failed(e, err)
	}
	if err := r.mint(min(e.teams, 200)); err != nil {
		return failed(e, err)
	}
	// The node merges what was just stored for a while: measure on a quiet node.
	if err := esinspect.WaitMerged(e.esURL, 10*time.Minute); err != nil {
		return failed(e, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return failed(e, err)
	}
	// No rate limit to speak of: the benchmark measures the server, not the limiter.
	srv := &http.Server{Handler: tenantapi.New(tenantapi.Config{Client: r.c, Keys: r.keys, Recorder: r.rec, RateLimit: 1e6})}
	go srv.Serve(ln)
	defer srv.Close()
	r.base = "http://" + ln.Addr().String()
	r.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: e.clients}}

	r.listings()
	if err := r.profile(); err != nil {
		return failed(e, err)
	}
	if err := r.steps(); err != nil {
		return failed(e, err)
	}
	r.exports()
	for _, p := range r.problems[:min(len(r.problems), 20)] {
		fmt.Fprintln(e.out, "PROBLEM:", p)
	}
	return len(r.problems) == 0
}

// store records the events: team t gets every teams-th event, spread over the last 60 days.
func (r *apiRun) store() error {
	start := time.Now()
	now := start.UTC()
	const batch = 5000
	evs := make([]audit.Event, 0, batch)
	for i := 0; i < r.apiEvents; i++ {
		evs = append(evs, audit.Event{
			ID: uuid.NewString(), Time: now.Add(-time.Duration(rand.Int64N(int64(60 * 24 * time.Hour)))),
			Action: audit.ActionJobUpdated, TeamID: fmt.Sprint(100000 + i%r.teams), Actor: auditlog.User(fmt.Sprint(1000+i%97), "user@example.com", "A User"),
			Targets:  []audit.Target{{Type: "job", ID: fmt.Sprint(i % 5000)}},
			Metadata: map[string]any{"field": "title", "from": "Senior Engineer", "to": "Staff Engineer", "seq": i},
		})
		if len(evs) == batch || i == r.apiEvents-1 {
			if _, err := r.rec.RecordAll(r.ctx, evs); err != nil {
				return err
			}
			evs = evs[:0]
			if (i+1)%100000 == 0 {
				fmt.Fprintf(r.out, "  stored %d events (%.0f/s)\n", i+1, float64(i+1)/time.Since(start).Seconds())
			}
		}
	}
	fmt.Fprintf(r.out, "stored %d events over %d teams in %s\n", r.apiEvents, r.teams, time.Since(start).Round(time.Second))
	return esinspect.Refresh(r.esURL, apiPrefix+layout.DefaultPrefix)
}

// mint creates keys for the first n teams, as `auditctl keys create` does, 16 at a time.
func (r *apiRun) mint(n int) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for t := 0; t < n; t++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			team := fmt.Sprint(100000 + t)
			token, _, err := r.keys.Create(r.ctx, r.rec, tenantapi.NewSpec{Team: team, Scopes: []string{tenantapi.ScopeRead, tenantapi.ScopeExport}, Operator: "auditproof"})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				r.tokens = append(r.tokens, teamKey{team, token})
			}
		}()
	}
	wg.Wait()
	if len(r.tokens) < n {
		return fmt.Errorf("minted %d of %d keys", len(r.tokens), n)
	}
	return esinspect.Refresh(r.esURL, apiPrefix+layout.DefaultPrefix)
}

// get sends an API request with a key.
func (r *apiRun) get(token, path string) ([]byte, int, error) {
	req, _ := http.NewRequest(http.MethodGet, r.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := r.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return b, res.StatusCode, err
}

// listings has each client page through random teams' whole logs for the run's duration, and prints
// requests/s, latency and CPU per request.
func (r *apiRun) listings() {
	perTeam := r.apiEvents / r.teams
	var first, next []time.Duration
	var listings int
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(r.duration)
	es0, self0 := r.esUsage(), selfCPU()
	began := time.Now()
	for w := 0; w < r.clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var f, n []time.Duration
			var done int
			var bad []string
			for time.Now().Before(deadline) {
				k := r.tokens[rand.IntN(len(r.tokens))]
				q := "/v1/events?action=job_updated&limit=100"
				seen := 0
				for page := 0; ; page++ {
					t0 := time.Now()
					b, status, err := r.get(k.token, q)
					d := time.Since(t0)
					if err != nil || status != http.StatusOK {
						bad = append(bad, fmt.Sprintf("team %s page %d: %d %v %.200s", k.team, page, status, err, b))
						break
					}
					var p struct {
						Data []struct {
							TeamID string `json:"team_id"`
						} `json:"data"`
						NextCursor *string `json:"next_cursor"`
					}
					if err := json.Unmarshal(b, &p); err != nil {
						bad = append(bad, err.Error())
						break
					}
					for _, ev := range p.Data {
						if ev.TeamID != k.team {
							bad = append(bad, fmt.Sprintf("key of team %s read an event of team %s", k.team, ev.TeamID))
						}
					}
					seen += len(p.Data)
					if page == 0 {
						f = append(f, d)
					} else {
						n = append(n, d)
					}
					if p.NextCursor == nil {
						if seen < perTeam {
							bad = append(bad, fmt.Sprintf("team %s: a listing of %d events, want at least %d", k.team, seen, perTeam))
						}
						done++
						break
					}
					q = "/v1/events?cursor=" + url.QueryEscape(*p.NextCursor)
				}
			}
			mu.Lock()
			first, next, listings, r.problems = append(first, f...), append(next, n...), listings+done, append(r.problems, bad...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	esCPU, ownCPU := r.esUsage()-es0, selfCPU()-self0
	all := append(slices.Clone(first), next...)
	fmt.Fprintf(r.out, "\nGET /v1/events?limit=100, %d clients for %s, %d events over %d teams (%d listings of ~%d events, each followed to its last page)\n",
		r.clients, r.duration, r.apiEvents, r.teams, listings, perTeam)
	fmt.Fprintf(r.out, "%-22s %10s %10s %10s %10s\n", "requests", "count", "req/s", "p50 ms", "p99 ms")
	for _, row := range []struct {
		name string
		ds   []time.Duration
	}{{"all pages", all}, {"first pages", first}, {"cursor pages", next}} {
		fmt.Fprintf(r.out, "%-22s %10d %10.1f %10.1f %10.1f\n", row.name, len(row.ds), float64(len(row.ds))/elapsed.Seconds(), ms(pct(row.ds, 50)), ms(pct(row.ds, 99)))
	}
	fmt.Fprintf(r.out, "CPU per request: Elasticsearch %.1f ms, auditproof (the API server and its clients) %.1f ms\n",
		ms(esCPU)/float64(max(len(all), 1)), ms(ownCPU)/float64(max(len(all), 1)))
}

// profile prints where the node's time goes in one page: the query (match and sort the team's
// events) or the fetch (read the page's documents).
func (r *apiRun) profile() error {
	var prof struct {
		Profile struct {
			Shards []struct {
				Searches []struct {
					Query []struct {
						Time int64 `json:"time_in_nanos"`
					} `json:"query"`
				} `json:"searches"`
				Fetch struct {
					Time int64 `json:"time_in_nanos"`
				} `json:"fetch"`
			} `json:"shards"`
		} `json:"profile"`
	}
	var queryNs, fetchNs int64
	for i := 0; i < 20; i++ {
		body := fmt.Sprintf(`{"size":101,"profile":true,"query":{"bool":{"filter":[{"term":{"team_id":"%d"}}]}},"sort":[{"@timestamp":"desc"},{"event.id":"desc"}]}`, 100000+i)
		if err := esDo(http.MethodPost, r.esURL+"/"+strings.Join(r.c.Layout().ReadIndices(), ",")+"/_search", body, &prof); err != nil {
			return err
		}
		for _, sh := range prof.Profile.Shards {
			for _, s := range sh.Searches {
				for _, q := range s.Query {
					queryNs += q.Time
				}
			}
			fetchNs += sh.Fetch.Time
		}
	}
	fmt.Fprintf(r.out, "one page of 100 on the node, profiled (mean of 20 teams): query %.1f ms, fetch %.1f ms, over %d shards\n",
		float64(queryNs)/20/1e6, float64(fetchNs)/20/1e6, len(prof.Profile.Shards))
	return nil
}

// steps prints the node's CPU for each step of a request, each alone, one at a time.
func (r *apiRun) steps() error {
	k := r.tokens[0]
	key, err := r.keys.Authenticate(r.ctx, k.token, time.Now())
	if err != nil {
		return err
	}
	_, pos, err := r.c.Page(r.ctx, query.Filter{Team: k.team}, query.Desc, 100, nil)
	if err != nil || pos == nil {
		return fmt.Errorf("a first page of team %s: %v", k.team, err)
	}
	defer r.c.ClosePosition(pos)
	const times = 200
	fmt.Fprintf(r.out, "the node's CPU per step, alone, %d times each\n", times)
	for _, step := range []struct {
		name string
		f    func() error
	}{
		{"check the key (get by id)", func() error { _, err := r.keys.Authenticate(r.ctx, k.token, time.Now()); return err }},
		{"a cursor page (search of 101 on the point in time)", func() error {
			_, _, err := r.c.Page(r.ctx, query.Filter{Team: k.team}, query.Desc, 100, pos)
			return err
		}},
		{"the smallest search (1 hit, no point in time)", func() error {
			return esDo(http.MethodPost, r.esURL+"/"+strings.Join(r.c.Layout().ReadIndices(), ",")+"/_search", fmt.Sprintf(`{"size":1,"query":{"term":{"team_id":%q}}}`, k.team), nil)
		}},
		{"record an access event", func() error {
			_, err := r.rec.Record(r.ctx, audit.Event{Action: audit.ActionAuditLogRead, TeamID: k.team, Actor: key.Actor()})
			return err
		}},
	} {
		es0 := r.esUsage()
		for i := 0; i < times; i++ {
			if err := step.f(); err != nil {
				return err
			}
		}
		fmt.Fprintf(r.out, "  %-52s %5.1f ms\n", step.name, ms(r.esUsage()-es0)/times)
	}
	return nil
}

// exports exports 20 whole team logs one after another, in each format, and prints events/s.
func (r *apiRun) exports() {
	fmt.Fprintf(r.out, "\nGET /v1/export, whole team logs one after another\n%-8s %8s %10s %12s\n", "format", "teams", "events", "events/s")
	for _, format := range []string{"csv", "ndjson"} {
		t0 := time.Now()
		events := 0
		n := min(20, len(r.tokens))
		for _, k := range r.tokens[:n] {
			b, status, err := r.get(k.token, "/v1/export?format="+format)
			if err != nil || status != http.StatusOK {
				r.problems = append(r.problems, fmt.Sprintf("export of team %s: %d %v", k.team, status, err))
				continue
			}
			events += bytes.Count(b, []byte("\n"))
			if format == "csv" {
				events-- // the header
			}
		}
		fmt.Fprintf(r.out, "%-8s %8d %10d %12.0f\n", format, n, events, float64(events)/time.Since(t0).Seconds())
	}
}

func failed(e env, err error) bool {
	fmt.Fprintln(e.out, "auditproof api:", err)
	return false
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
