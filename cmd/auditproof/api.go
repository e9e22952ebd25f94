package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/auditquery"
	"github.com/auditpipe/auditpipe/internal/esinspect"
	"github.com/auditpipe/auditpipe/internal/layout"
	"github.com/auditpipe/auditpipe/internal/tenantapi"
)

// apiBench measures the audit log API on auditproof's node: it stores e.apiEvents events over
// e.teams teams through the in-process pipeline, mints keys for some of the teams, then for
// e.duration has e.clients clients page through random teams' logs with GET /v1/events (limit 100,
// following next_cursor to the end), and exports whole team logs. Every page is checked to hold
// its key's team only, and every listing to be complete.
func apiBench(e env) bool {
	ctx := context.Background()
	const prefix = "proof-api-"
	defer esinspect.DeleteAll(e.esURL, prefix)
	c, err := auditquery.New(auditquery.Conn{URLs: []string{e.esURL}, IndexPrefix: prefix + layout.DefaultPrefix,
		QuarantineIndex: prefix + layout.DefaultQuarantine, InstallTemplates: true})
	if err != nil {
		return failed(e, err)
	}
	rec, err := c.NewRecorder(ctx, nil)
	if err != nil {
		return failed(e, err)
	}
	defer rec.Close()

	// Store the events: team t gets every teams-th event, spread over the last 60 days.
	teams, total := e.teams, e.apiEvents
	start := time.Now()
	now := start.UTC()
	const batch = 5000
	evs := make([]audit.Event, 0, batch)
	for i := 0; i < total; i++ {
		team := fmt.Sprint(100000 + i%teams)
		evs = append(evs, audit.Event{
			ID: uuid.NewString(), Time: now.Add(-time.Duration(rand.Int64N(int64(60 * 24 * time.Hour)))),
			Action: audit.ActionJobUpdated, TeamID: team, Actor: auditlog.User(fmt.Sprint(1000+i%97), "user@example.com", "A User"),
			Targets:  []audit.Target{{Type: "job", ID: fmt.Sprint(i % 5000)}},
			Metadata: map[string]any{"field": "title", "from": "Senior Engineer", "to": "Staff Engineer", "seq": i},
		})
		if len(evs) == batch || i == total-1 {
			if _, err := rec.RecordAll(ctx, evs); err != nil {
				return failed(e, err)
			}
			evs = evs[:0]
			if (i+1)%100000 == 0 {
				fmt.Fprintf(e.out, "  stored %d events (%.0f/s)\n", i+1, float64(i+1)/time.Since(start).Seconds())
			}
		}
	}
	if err := esinspect.Refresh(e.esURL, prefix+layout.DefaultPrefix); err != nil {
		return failed(e, err)
	}
	fmt.Fprintf(e.out, "stored %d events over %d teams in %s\n", total, teams, time.Since(start).Round(time.Second))

	// Keys for up to 200 teams, minted as `auditctl keys create` mints them.
	keys, err := tenantapi.NewKeys(c, prefix+"keys")
	if err != nil {
		return failed(e, err)
	}
	type teamKey struct{ team, token string }
	var tokens []teamKey
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for t := 0; t < min(teams, 200); t++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			team := fmt.Sprint(100000 + t)
			token, _, err := keys.Create(ctx, rec, tenantapi.NewSpec{Team: team, Scopes: []string{tenantapi.ScopeRead, tenantapi.ScopeExport}, Operator: "auditproof"})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				tokens = append(tokens, teamKey{team, token})
			}
		}()
	}
	wg.Wait()
	if len(tokens) < min(teams, 200) {
		return failed(e, fmt.Errorf("minted %d of %d keys", len(tokens), min(teams, 200)))
	}
	esinspect.Refresh(e.esURL, prefix+layout.DefaultPrefix)
	// The node merges what was just stored for a while: measure on a quiet node.
	if err := esinspect.WaitMerged(e.esURL, 10*time.Minute); err != nil {
		return failed(e, err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return failed(e, err)
	}
	// No rate limit to speak of: the benchmark measures the server, not the limiter.
	srv := &http.Server{Handler: tenantapi.New(tenantapi.Config{Client: c, Keys: keys, Recorder: rec, RateLimit: 1e6})}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: e.clients}}

	get := func(token, path string) ([]byte, int, error) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return b, res.StatusCode, err
	}

	// Listings: each client pages through random teams' whole logs.
	perTeam := total / teams
	var first, next []time.Duration
	var listings int
	var problems []string
	deadline := time.Now().Add(e.duration)
	es0, self0 := e.esUsage(), selfCPU()
	began := time.Now()
	for w := 0; w < e.clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var f, n []time.Duration
			var done int
			var bad []string
			for time.Now().Before(deadline) {
				k := tokens[rand.IntN(len(tokens))]
				q := "/v1/events?action=job_updated&limit=100"
				seen := 0
				for page := 0; ; page++ {
					t0 := time.Now()
					b, status, err := get(k.token, q)
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
			first, next, listings, problems = append(first, f...), append(next, n...), listings+done, append(problems, bad...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	esCPU, ownCPU := e.esUsage()-es0, selfCPU()-self0
	all := append(slices.Clone(first), next...)
	fmt.Fprintf(e.out, "\nGET /v1/events?limit=100, %d clients for %s, %d events over %d teams (%d listings of ~%d events, each followed to its last page)\n",
		e.clients, e.duration, total, teams, listings, perTeam)
	fmt.Fprintf(e.out, "%-22s %10s %10s %10s %10s\n", "requests", "count", "req/s", "p50 ms", "p99 ms")
	for _, r := range []struct {
		name string
		ds   []time.Duration
	}{{"all pages", all}, {"first pages", first}, {"cursor pages", next}} {
		fmt.Fprintf(e.out, "%-22s %10d %10.1f %10.1f %10.1f\n", r.name, len(r.ds), float64(len(r.ds))/elapsed.Seconds(), ms(pct(r.ds, 50)), ms(pct(r.ds, 99)))
	}
	fmt.Fprintf(e.out, "CPU per request: Elasticsearch %.1f ms, auditproof (the API server and its clients) %.1f ms\n",
		ms(esCPU)/float64(max(len(all), 1)), ms(ownCPU)/float64(max(len(all), 1)))

	// Where the node's time goes in one page: the query (match and sort the team's events) or the
	// fetch (read the page's documents).
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
		if err := esDo(http.MethodPost, e.esURL+"/"+prefix+layout.DefaultPrefix+"*/_search", body, &prof); err != nil {
			return failed(e, err)
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
	fmt.Fprintf(e.out, "one page of 100 on the node, profiled (mean of 20 teams): query %.1f ms, fetch %.1f ms, over %d shards\n",
		float64(queryNs)/20/1e6, float64(fetchNs)/20/1e6, len(prof.Profile.Shards))

	// The node's CPU per step of a request, each step alone, one at a time.
	k := tokens[0]
	key, err := keys.Authenticate(ctx, k.token, time.Now())
	if err != nil {
		return failed(e, err)
	}
	_, pos, err := c.Page(ctx, auditquery.Filter{Team: k.team}, auditquery.Desc, 100, nil)
	if err != nil || pos == nil {
		return failed(e, fmt.Errorf("a first page of team %s: %v", k.team, err))
	}
	fmt.Fprintf(e.out, "the node's CPU per step, alone, %d times each\n", 200)
	for _, step := range []struct {
		name string
		f    func() error
	}{
		{"check the key (get by id)", func() error { _, err := keys.Authenticate(ctx, k.token, time.Now()); return err }},
		{"a cursor page (search of 101 on the point in time)", func() error {
			_, _, err := c.Page(ctx, auditquery.Filter{Team: k.team}, auditquery.Desc, 100, pos)
			return err
		}},
		{"the smallest search (1 hit, no point in time)", func() error {
			return esDo(http.MethodPost, e.esURL+"/"+prefix+layout.DefaultPrefix+"*/_search", fmt.Sprintf(`{"size":1,"query":{"term":{"team_id":%q}}}`, k.team), nil)
		}},
		{"record an access event", func() error {
			_, err := rec.Record(ctx, audit.Event{Action: audit.ActionAuditLogRead, TeamID: k.team, Actor: key.Actor()})
			return err
		}},
	} {
		es0 := e.esUsage()
		for i := 0; i < 200; i++ {
			if err := step.f(); err != nil {
				return failed(e, err)
			}
		}
		fmt.Fprintf(e.out, "  %-52s %5.1f ms\n", step.name, ms(e.esUsage()-es0)/200)
	}
	c.ClosePosition(pos)

	// Exports: whole team logs, one at a time, in each format.
	fmt.Fprintf(e.out, "\nGET /v1/export, whole team logs one after another\n%-8s %8s %10s %12s\n", "format", "teams", "events", "events/s")
	for _, format := range []string{"csv", "ndjson"} {
		t0 := time.Now()
		var events int
		n := min(20, len(tokens))
		for _, k := range tokens[:n] {
			b, status, err := get(k.token, "/v1/export?format="+format)
			if err != nil || status != http.StatusOK {
				problems = append(problems, fmt.Sprintf("export of team %s: %d %v", k.team, status, err))
				continue
			}
			lines := 0
			for _, c := range b {
				if c == '\n' {
					lines++
				}
			}
			if format == "csv" {
				lines-- // the header
			}
			events += lines
		}
		fmt.Fprintf(e.out, "%-8s %8d %10d %12.0f\n", format, n, events, float64(events)/time.Since(t0).Seconds())
	}
	for _, p := range problems[:min(len(problems), 20)] {
		fmt.Fprintln(e.out, "PROBLEM:", p)
	}
	return len(problems) == 0
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
