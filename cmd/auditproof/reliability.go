package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/faultproxy"
	"github.com/auditpipe/auditpipe/internal/testrig/loadgen"
)

// httpc bounds every request of the proof: a hung node fails a scenario instead of hanging it.
var httpc = &http.Client{Timeout: time.Minute}

// result is one line of the reliability table.
type result struct {
	scenario string
	v        verdict
	fault    string // what happened, as measured
	err      error  // the run could not be verified, or its fault did not happen
}

func (r result) ok() bool { return r.err == nil && r.v.ok() }

// settle waits until the stored documents account for every acknowledged record (at most three
// minutes), stops the collector, and checks the documents id by id.
func (r *run) settle(res loadgen.Result) (verdict, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		// Errors are expected while a node comes back; only the final inventory counts.
		events, quarantined, err := esinspect.Total(r.esURL, r.env.Layout())
		if err == nil && events+quarantined >= len(res.Acked) {
			break
		}
		time.Sleep(time.Second)
	}
	if r.proc != nil && !r.proc.Exited() {
		if err := r.proc.Stop(); err != nil {
			return verdict{}, fmt.Errorf("stopping the collector: %w", err)
		}
	}
	defer esinspect.DeleteAll(r.esURL, r.env.Prefix)
	docs, err := esinspect.Inventory(r.esURL, r.env.Layout())
	if err != nil {
		return verdict{}, fmt.Errorf("reading back the stored documents: %w", err)
	}
	return check(res.Acked, docs, r.env.Layout()), nil
}

func (e env) loadConfig(endpoint string) loadgen.Config {
	c := loadgen.Config{Endpoint: endpoint, Rate: 500, Duration: 90 * time.Second, Teams: 20, Batch: 200, Deadline: 10 * time.Minute}
	if e.short {
		c.Rate, c.Duration, c.Deadline = 200, 20*time.Second, 5*time.Minute
	}
	return c
}

// faultWindow is how long a fault lasts: an outage, a block.
func (e env) faultWindow() time.Duration {
	if e.short {
		return 10 * time.Second
	}
	return 30 * time.Second
}

// at runs fault at the given fraction of d; the channel yields its evidence (or error) when it is over.
func at(d time.Duration, frac float64, fault func() (string, error)) <-chan result {
	done := make(chan result, 1)
	go func() {
		time.Sleep(time.Duration(float64(d) * frac))
		note, err := fault()
		done <- result{fault: note, err: err}
	}()
	return done
}

// prober polls url and measures when it stopped answering and when it answered again.
type prober struct {
	mu                   sync.Mutex
	firstFail, firstBack time.Time
	stop                 chan struct{}
	done                 chan struct{}
}

// probe starts polling; healthy decides whether an answer counts as up.
func probe(url string, healthy func(*http.Response) bool) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	c := http.Client{Timeout: time.Second}
	go func() {
		defer close(p.done)
		for {
			res, err := c.Get(url)
			up := err == nil && healthy(res)
			if err == nil {
				res.Body.Close()
			}
			now := time.Now()
			p.mu.Lock()
			if !up && p.firstFail.IsZero() {
				p.firstFail = now
			}
			if up && !p.firstFail.IsZero() && p.firstBack.IsZero() {
				p.firstBack = now
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return p
}

// end stops probing and returns the measured outage; an error when there was none, or no recovery.
func (p *prober) end() (time.Duration, error) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.firstFail.IsZero():
		return 0, errors.New("the fault never showed: every probe succeeded")
	case p.firstBack.IsZero():
		return 0, errors.New("no recovery was observed")
	}
	return p.firstBack.Sub(p.firstFail), nil
}

func answers(res *http.Response) bool { return res.StatusCode == http.StatusOK }

// nodesAtLeast is a health probe that is up while the cluster has n nodes.
func nodesAtLeast(n int) func(*http.Response) bool {
	return func(res *http.Response) bool {
		var h struct {
			Nodes int `json:"number_of_nodes"`
		}
		return res.StatusCode == http.StatusOK && json.NewDecoder(res.Body).Decode(&h) == nil && h.Nodes >= n
	}
}

// metric sums every series of a counter on the collector's Prometheus endpoint.
func (r *run) metric(name string) (float64, error) {
	v, _, err := r.env.Metric(name)
	return v, err
}

// esPut sends a JSON PUT to the node and fails on an error answer.
// blocked runs a block for the fault window between set and unset, and shows it happened: the
// collector's exporter retried documents while it lasted.
func (r *run) blocked(window time.Duration, what string, set, unset func() error) (string, error) {
	before, err := r.metric("otelcol_exporter_audit_retried")
	if err != nil {
		return "", fmt.Errorf("reading the collector's metrics: %w", err)
	}
	if err := set(); err != nil {
		return "", fmt.Errorf("setting the block: %w", err)
	}
	began := time.Now()
	time.Sleep(window)
	after, _ := r.metric("otelcol_exporter_audit_retried")
	if err := unset(); err != nil {
		return "", fmt.Errorf("lifting the block: %w", err)
	}
	note := fmt.Sprintf("%s for %s; %.0f documents retried by the exporter meanwhile", what, time.Since(began).Round(100*time.Millisecond), after-before)
	if after <= before {
		return note, errors.New("the block never showed: the exporter retried nothing")
	}
	return note, nil
}

// waitFor polls cond every 200 ms until it holds, or fails after d.
func waitFor(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// scenario is one fault: it starts its collectors and load, injects the fault, and settles.
type scenario struct {
	name string
	run  func(e env) result
}

// steady runs the standard load against one collector with a fault at frac of its duration.
func (e env) steady(name, esURL string, cfg func(*loadgen.Config), frac float64, fault func(r *run, d time.Duration) (string, error), extraEnv ...string) result {
	r, err := e.newRun(name, esURL, extraEnv...)
	if err != nil {
		return result{scenario: name, err: err}
	}
	lc := e.loadConfig(r.env.GRPC)
	lc.PoisonHTTP = r.env.HTTP
	if cfg != nil {
		cfg(&lc)
	}
	var faultDone <-chan result
	if fault != nil {
		faultDone = at(lc.Duration, frac, func() (string, error) { return fault(r, lc.Duration) })
	}
	res, loadErr := loadgen.Run(context.Background(), lc)
	out := result{scenario: name}
	if faultDone != nil {
		f := <-faultDone
		out.fault, out.err = f.fault, f.err
	}
	v, err := r.settle(res)
	out.v = v
	out.err = errors.Join(out.err, err, loadErr)
	if out.fault == "" {
		out.fault = fmt.Sprintf("%d acknowledged (%d bad), %d OTLP retries", len(res.Acked), res.Malformed, res.Retries)
	}
	if res.FirstErr != nil {
		out.fault += fmt.Sprintf(" (first OTLP error: %v)", res.FirstErr)
	}
	return out
}

func scenarios() []scenario {
	return []scenario{
		{"es-outage", func(e env) result { // the node stopped in the middle of a steady stream
			return e.steady("es-outage", e.esURL, nil, 0.3, func(r *run, _ time.Duration) (string, error) {
				pid, err := e.script(nil, "pid", "0")
				if err != nil {
					return "", fmt.Errorf("the node was not started by the script, so it cannot be stopped: %w", err)
				}
				p := probe(e.esURL+"/_cluster/health", answers)
				if err := e.es("stop"); err != nil {
					return "", err
				}
				if n, _ := strconv.Atoi(pid); n <= 0 || syscall.Kill(n, 0) == nil {
					return "", fmt.Errorf("Elasticsearch pid %s still runs after stop", pid)
				}
				time.Sleep(e.faultWindow())
				if err := e.es("start"); err != nil {
					return "", err
				}
				down, err := p.end()
				return fmt.Sprintf("Elasticsearch (pid %s) stopped; measured outage %s (first failed to first successful health request)", pid, down.Round(100*time.Millisecond)), err
			})
		}},
		{"collector-kill", func(e env) result { // SIGKILL mid-stream, restart on the same queue
			return e.steady("collector-kill", e.esURL, nil, 0.4, func(r *run, _ time.Duration) (string, error) {
				pid := r.proc.Cmd.Process.Pid
				r.proc.Kill()
				if !r.proc.Exited() {
					return "", fmt.Errorf("collector pid %d survived SIGKILL", pid)
				}
				time.Sleep(2 * time.Second)
				if err := r.start(); err != nil {
					return "", fmt.Errorf("restart: %w", err)
				}
				return fmt.Sprintf("collector pid %d killed with SIGKILL, restarted as pid %d on the same persistent queue", pid, r.proc.Cmd.Process.Pid), nil
			})
		}},
		{"faulty-proxy", func(e env) result { // 429 items, 503s, dropped connections, answers lost after a store
			proxy, err := faultproxy.New(e.esURL)
			if err != nil {
				return result{scenario: "faulty-proxy", err: err}
			}
			srv := httptest.NewServer(proxy)
			defer srv.Close()
			var begin time.Time
			var dur time.Duration
			active := func() bool { el := time.Since(begin); return el > dur/4 && el < dur*3/4 }
			proxy.RequestFault = func(n int) string {
				switch {
				case !active():
				case n%5 == 0:
					return "503"
				case n%11 == 0:
					return "drop"
				case n%7 == 0:
					return "drop-answer"
				}
				return ""
			}
			proxy.ItemFault = func(_, i int, _ []byte) int {
				if active() && i%4 == 0 {
					return http.StatusTooManyRequests
				}
				return 0
			}
			out := e.steady("faulty-proxy", srv.URL, func(c *loadgen.Config) { begin, dur = time.Now(), c.Duration }, 0, nil)
			stats := proxy.Stats()
			out.fault = fmt.Sprintf("faults injected: %v", stats)
			for _, k := range []string{"503", "dropped connection", "429 item", "answer dropped after store"} {
				if stats[k] == 0 {
					out.err = errors.Join(out.err, fmt.Errorf("the proxy never injected %q", k))
				}
			}
			return out
		}},
		{"malformed-input", func(e env) result { // bad records mixed into the stream
			out := e.steady("malformed-input", e.esURL, func(c *loadgen.Config) { c.Bad = 25 }, 0, nil)
			if out.v.quarantined == 0 {
				out.err = errors.Join(out.err, errors.New("no bad record was quarantined"))
			}
			out.fault = fmt.Sprintf("1 in 25 bad (bad JSON, missing team, hostile team ids, bad actor, 1.5 MB metadata): %d quarantined", out.v.quarantined)
			return out
		}},
		{"poison-id", func(e env) result { // ids of invalid UTF-8 among 20 teams' events
			out := e.steady("poison-id", e.esURL, func(c *loadgen.Config) { c.Poison = 50 }, 0, nil)
			out.fault = "1 event in 50 has an audit.id of 200 bytes of invalid UTF-8 (OTLP/protobuf); stored under sha256-<hex>, other teams unaffected"
			return out
		}},
		{"quarantine-blocked", func(e env) result { // the quarantine index write-blocked
			return e.steady("quarantine-blocked", e.esURL, func(c *loadgen.Config) { c.Bad = 25 }, 0.3, func(r *run, _ time.Duration) (string, error) {
				index := e.esURL + "/" + r.env.Layout().Quarantine()
				if err := waitFor(time.Minute, "the quarantine index", func() bool {
					res, err := httpc.Head(index)
					if err == nil {
						res.Body.Close()
					}
					return err == nil && res.StatusCode == http.StatusOK
				}); err != nil {
					return "", err
				}
				return r.blocked(e.faultWindow(), "quarantine index write-blocked",
					func() error { return esPut(index+"/_settings", `{"index.blocks.write":true}`) },
					func() error { return esPut(index+"/_settings", `{"index.blocks.write":null}`) })
			})
		}},
		{"cluster-read-only", func(e env) result { // every index read-only
			return e.steady("cluster-read-only", e.esURL, func(c *loadgen.Config) { c.Bad = 50 }, 0.3, func(r *run, _ time.Duration) (string, error) {
				return r.blocked(e.faultWindow(), "cluster read-only (cluster.blocks.read_only)",
					func() error {
						return esPut(e.esURL+"/_cluster/settings", `{"persistent":{"cluster.blocks.read_only":true}}`)
					},
					func() error {
						return esPut(e.esURL+"/_cluster/settings", `{"persistent":{"cluster.blocks.read_only":null}}`)
					})
			})
		}},
		{"shard-limit", func(e env) result { // the node's shard budget full: no new index can be created
			return e.steady("shard-limit", e.esURL, func(c *loadgen.Config) { c.Bad = 50 }, 0, func(r *run, _ time.Duration) (string, error) {
				var h struct {
					Active     int `json:"active_shards"`
					Unassigned int `json:"unassigned_shards"`
				}
				res, err := httpc.Get(e.esURL + "/_cluster/health")
				if err != nil {
					return "", err
				}
				err = json.NewDecoder(res.Body).Decode(&h)
				res.Body.Close()
				if err != nil {
					return "", err
				}
				full := h.Active + h.Unassigned
				return r.blocked(e.faultWindow(), fmt.Sprintf("cluster.max_shards_per_node at the %d shards open", full),
					func() error {
						return esPut(e.esURL+"/_cluster/settings", fmt.Sprintf(`{"persistent":{"cluster.max_shards_per_node":%d}}`, max(full, 1)))
					},
					func() error {
						return esPut(e.esURL+"/_cluster/settings", `{"persistent":{"cluster.max_shards_per_node":null}}`)
					})
			})
		}},
		{"backpressure", func(e env) result { // the node slower than the input
			proxy, err := faultproxy.New(e.esURL)
			if err != nil {
				return result{scenario: "backpressure", err: err}
			}
			proxy.Delay = 2 * time.Second
			srv := httptest.NewServer(proxy)
			defer srv.Close()
			var usage string
			out := e.steady("backpressure", srv.URL, func(c *loadgen.Config) { c.Rate = 0; c.Duration /= 2 }, 0.9, func(r *run, _ time.Duration) (string, error) {
				u, err := r.proc.ReadUsage()
				usage = fmt.Sprintf("collector peak RSS %d MiB", u.PeakRSS>>20)
				return "", err
			})
			proxy.Delay = 0
			out.fault = fmt.Sprintf("every bulk answer delayed 2s (%d requests); %s", proxy.Stats()["delayed"], usage)
			if proxy.Stats()["delayed"] == 0 {
				out.err = errors.Join(out.err, errors.New("no bulk answer was delayed"))
			}
			return out
		}},
		{"two-collectors", func(e env) result { return e.twoCollectors() }},
		{"cluster-node-kill", func(e env) result { return e.clusterNodeKill() }},
	}
}

func reliability(e env) bool {
	// A run cut short in the middle of a fault may have left the node blocked or limited: start clean.
	if err := esPut(e.esURL+"/_cluster/settings", `{"persistent":{"cluster.blocks.read_only":null,"cluster.max_shards_per_node":null,"action.auto_create_index":null}}`); err != nil {
		fmt.Fprintln(os.Stderr, "auditproof: resetting the node's cluster settings:", err)
		return false
	}
	var results []result
	for _, s := range scenarios() {
		if e.only != "" && !strings.Contains(","+e.only+",", ","+s.name+",") {
			continue
		}
		fmt.Fprintf(os.Stderr, "auditproof: %s…\n", s.name)
		r := s.run(e)
		fmt.Fprintf(os.Stderr, "auditproof: %s done: ok=%v sent=%d stored=%d quarantined=%d lost=%d err=%v\n",
			s.name, r.ok(), r.v.sent, r.v.stored, r.v.quarantined, r.v.lost, r.err)
		results = append(results, r)
	}
	tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsent\tstored\tquarantined\tlost\tduplicated\tmisrouted\tunexpected\tresult\t")
	passed := 0
	for _, r := range results {
		res := "ok"
		if !r.ok() {
			res = "FAILED"
		} else {
			passed++
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", r.scenario, r.v.sent, r.v.stored, r.v.quarantined, r.v.lost, r.v.duplicated, r.v.misrouted, r.v.unexpected, res)
	}
	tw.Flush()
	for _, r := range results {
		fmt.Fprintf(e.out, "  %s: %s\n", r.scenario, r.fault)
		if r.err != nil {
			fmt.Fprintf(e.out, "    ERROR: %v\n", r.err)
		}
		if d := r.v.describe(); d != "" {
			fmt.Fprintf(e.out, "    %s\n", d)
		}
	}
	fmt.Fprintf(e.out, "reliability: %d passed, %d failed\n", passed, len(results)-passed)
	return passed == len(results)
}

// twoCollectors: a client sends every batch to collector A and every third one to collector B too,
// as one that failed over after losing A's answer would; both write the same indices.
func (e env) twoCollectors() result {
	const name = "two-collectors"
	a, err := e.newRun(name, e.esURL)
	if err != nil {
		return result{scenario: name, err: err}
	}
	b, err := e.newRunSharing(name+"-b", a)
	if err != nil {
		a.proc.Stop()
		return result{scenario: name, err: err}
	}
	lc := e.loadConfig(a.env.GRPC)
	lc.Resend, lc.ResendEvery = b.env.GRPC, 3
	res, loadErr := loadgen.Run(context.Background(), lc)
	out := result{scenario: name}
	// B must have handled every record it was given before it stops (its persistent queue would keep
	// the rest): its exporter counts each as indexed or as a verified duplicate.
	var handled float64
	waitErr := waitFor(3*time.Minute, "collector B to handle the resent records", func() bool {
		handled, _ = b.metric("otelcol_exporter_audit_documents")
		return handled >= float64(res.Resent)
	})
	stopErr := b.proc.Stop()
	v, err := a.settle(res)
	out.v = v
	out.err = errors.Join(loadErr, waitErr, stopErr, err)
	out.fault = fmt.Sprintf("%d records sent to both collectors; collector B handled %.0f", res.Resent, handled)
	if res.Resent == 0 {
		out.err = errors.Join(out.err, errors.New("nothing was resent"))
	}
	return out
}

// clusterNodeKill: a three-node cluster on 127.0.0.1 (replicas 1); one data node that the collector
// does not talk to is killed with SIGKILL mid-stream and started again.
func (e env) clusterNodeKill() result {
	const name = "cluster-node-kill"
	port, _ := strconv.Atoi(e.esPort)
	// Ports clear of the single node's (HTTP es-port, transport es-port+100).
	cluster := []string{"ES_NODES=3", "ES_FRESH=1", "ES_HEAP=512m", "ES_PORT=" + strconv.Itoa(port+200)}
	url := "http://127.0.0.1:" + strconv.Itoa(port+200)
	if _, err := e.script(cluster, "start"); err != nil {
		return result{scenario: name, err: err}
	}
	defer e.script(cluster, "stop")
	out := e.steady(name, url, nil, 0.3, func(r *run, _ time.Duration) (string, error) {
		pid, err := e.script(cluster, "pid", "1")
		if err != nil {
			return "", err
		}
		p := probe(url+"/_cluster/health", nodesAtLeast(3))
		if _, err := e.script(cluster, "kill-node", "1"); err != nil {
			return "", err
		}
		if n, _ := strconv.Atoi(pid); n <= 0 || syscall.Kill(n, 0) == nil {
			return "", fmt.Errorf("node 1 (pid %s) still runs after SIGKILL", pid)
		}
		time.Sleep(e.faultWindow())
		if _, err := e.script(cluster, "start-node", "1"); err != nil {
			return "", err
		}
		degraded, err := p.end()
		return fmt.Sprintf("3 nodes, replicas 1; node 1 (pid %s) killed with SIGKILL and restarted; cluster below 3 nodes for %s", pid, degraded.Round(100*time.Millisecond)), err
	}, "AUDIT_REPLICAS=1")
	out.scenario = name
	return out
}
