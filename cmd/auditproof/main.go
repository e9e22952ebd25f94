// Command auditproof proves the pipeline's promises with the real collector binary and a real
// Elasticsearch node of its own (started on -es-port through scripts/elasticsearch.sh):
//
//	auditproof reliability [-short]   fault scenarios; prints sent, stored, duplicates, quarantined, lost
//	auditproof load [-short]          sustained throughput, collector CPU per event and peak memory
//
// It exits non-zero when an event is lost or duplicated. `make reliability` and `make load` run it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/auditpipe/auditpipe/internal/collectorproc"
	"github.com/auditpipe/auditpipe/internal/esinspect"
	"github.com/auditpipe/auditpipe/internal/faultproxy"
	"github.com/auditpipe/auditpipe/internal/loadgen"
)

type env struct {
	short  bool
	bin    string
	config string
	esPort string
	esURL  string
	work   string
	// load shape override
	teams, metadata int
	out             io.Writer
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "reliability" && os.Args[1] != "load") {
		fmt.Fprintln(os.Stderr, "usage: auditproof reliability|load [-short] [-es-port 9250]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("auditproof "+os.Args[1], flag.ExitOnError)
	e := env{out: os.Stdout}
	fs.BoolVar(&e.short, "short", false, "short version (as CI runs it)")
	fs.StringVar(&e.bin, "bin", "_build/otelcol-audit", "the collector distribution")
	fs.StringVar(&e.config, "config", "config.example.yaml", "the collector configuration")
	fs.StringVar(&e.esPort, "es-port", "9250", "port of the Elasticsearch node auditproof starts and stops")
	fs.IntVar(&e.teams, "teams", 0, "load: only this team count (with -metadata)")
	fs.IntVar(&e.metadata, "metadata", 200, "load: metadata bytes per event, with -teams")
	fs.Parse(os.Args[2:])
	e.esURL = "http://127.0.0.1:" + e.esPort
	var err error
	if e.work, err = os.MkdirTemp("", "auditproof-"); err != nil {
		fail(err)
	}
	if err := e.es("start"); err != nil {
		fail(err)
	}
	defer e.es("stop")
	ok := true
	switch os.Args[1] {
	case "reliability":
		ok = reliability(e)
	case "load":
		ok = load(e)
	}
	if !ok {
		e.es("stop")
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "auditproof:", err)
	os.Exit(1)
}

// es runs scripts/elasticsearch.sh on auditproof's own port.
func (e env) es(verb string) error {
	cmd := exec.Command("scripts/elasticsearch.sh", verb)
	// A 2 GiB heap: the load shapes open up to 10,000 team indices on this one node.
	cmd.Env = append(os.Environ(), "ES_PORT="+e.esPort, "ES_HEAP=2g")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	return cmd.Run()
}

// run is one scenario's setting: a collector writing under its own prefix.
type run struct {
	name string
	env  collectorproc.Env
	proc *collectorproc.Proc
	logs int
	e    env
}

func (e env) newRun(name, esURL string) (*run, error) {
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ce, err := collectorproc.NewEnv(esURL, fmt.Sprintf("proof-%d-%s-", os.Getpid(), name), dir)
	if err != nil {
		return nil, err
	}
	r := &run{name: name, env: ce, e: e}
	return r, r.start()
}

func (r *run) start() error {
	r.logs++
	p, err := collectorproc.Start(r.e.bin, r.e.config, r.env, filepath.Join(r.env.StorageDir, fmt.Sprintf("collector-%d.log", r.logs)))
	r.proc = p
	return err
}

// row is one line of the reliability table.
type row struct {
	scenario                                    string
	sent, stored, duplicates, quarantined, lost int64
	expectedQuarantine                          int64
	note                                        string
	err                                         error
}

// settle waits until the stored documents account for everything acknowledged, then stops the
// collector and fills in the counts.
func (r *run) settle(res loadgen.Result, extraQuarantine int64) row {
	out := row{scenario: r.name, sent: res.Sent + res.Malformed, expectedQuarantine: res.Malformed + extraQuarantine}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		// Only the last look counts: the node may be coming back from an outage.
		counts, err := esinspect.Counts(r.e.esURL, r.env.Prefix)
		out.err = err
		out.stored, out.quarantined = 0, 0
		for idx, n := range counts {
			if idx == "audit-quarantine" {
				out.quarantined = int64(n)
			} else {
				out.stored += int64(n)
			}
		}
		if err == nil && out.stored+out.quarantined >= out.sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if r.proc != nil && !r.proc.Exited() {
		if err := r.proc.Stop(); err != nil && out.err == nil {
			out.err = err
		}
	}
	dups, err := esinspect.DuplicateIDs(r.e.esURL, r.env.Prefix)
	if err != nil && out.err == nil {
		out.err = err
	}
	out.duplicates = int64(dups)
	out.lost = out.sent - out.stored - out.quarantined
	esinspect.DeleteAll(r.e.esURL, r.env.Prefix)
	return out
}

func (e env) loadConfig(endpoint string) loadgen.Config {
	c := loadgen.Config{Endpoint: endpoint, Rate: 500, Duration: 90 * time.Second, Teams: 20, Batch: 200}
	if e.short {
		c.Rate, c.Duration = 200, 20*time.Second
	}
	return c
}

// during runs fault at the given fraction of the load's duration; the channel closes when it is over.
func during(d time.Duration, frac float64, fault func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Duration(float64(d) * frac))
		fault()
	}()
	return done
}

func reliability(e env) bool {
	outage := 60 * time.Second
	if e.short {
		outage = 10 * time.Second
	}
	scenarios := []func() row{
		func() row { // 1. Elasticsearch stopped in the middle of a steady stream
			r, err := e.newRun("es-outage", e.esURL)
			if err != nil {
				return row{scenario: "es-outage", err: err}
			}
			cfg := e.loadConfig(r.env.GRPC)
			fault := during(cfg.Duration, 0.3, func() {
				_ = e.es("stop")
				time.Sleep(outage)
				_ = e.es("start")
			})
			res, err := loadgen.Run(context.Background(), cfg)
			<-fault
			out := r.settle(res, 0)
			out.note = fmt.Sprintf("Elasticsearch down %s; %d OTLP retries", outage, res.Retries)
			if err != nil {
				out.err = err
			}
			return out
		},
		func() row { // 2. The collector killed with SIGKILL mid-stream and restarted
			r, err := e.newRun("collector-kill", e.esURL)
			if err != nil {
				return row{scenario: "collector-kill", err: err}
			}
			cfg := e.loadConfig(r.env.GRPC)
			fault := during(cfg.Duration, 0.4, func() {
				r.proc.Kill()
				time.Sleep(2 * time.Second)
				if err := r.start(); err != nil {
					fmt.Fprintln(os.Stderr, "restart:", err)
				}
			})
			res, err := loadgen.Run(context.Background(), cfg)
			<-fault
			out := r.settle(res, 0)
			out.note = fmt.Sprintf("SIGKILL at 40%%, restarted with the persistent queue; %d OTLP retries", res.Retries)
			if err != nil {
				out.err = err
			}
			return out
		},
		func() row { // 3. A proxy answering 429 items, 503s and dropped connections for a while
			proxy, err := faultproxy.New(e.esURL)
			if err != nil {
				return row{scenario: "faulty-proxy", err: err}
			}
			srv := httptest.NewServer(proxy)
			defer srv.Close()
			r, err := e.newRun("faulty-proxy", srv.URL)
			if err != nil {
				return row{scenario: "faulty-proxy", err: err}
			}
			cfg := e.loadConfig(r.env.GRPC)
			begin := time.Now()
			active := func() bool { el := time.Since(begin); return el > cfg.Duration/4 && el < cfg.Duration*3/4 }
			proxy.RequestFault = func(n int) string {
				switch {
				case !active():
				case n%5 == 0:
					return "503"
				case n%11 == 0:
					return "drop"
				}
				return ""
			}
			proxy.ItemFault = func(_, i int, _ []byte) int {
				if active() && i%4 == 0 {
					return http.StatusTooManyRequests
				}
				return 0
			}
			res, err := loadgen.Run(context.Background(), cfg)
			out := r.settle(res, 0)
			out.note = fmt.Sprintf("faults injected: %v", proxy.Stats())
			if err != nil {
				out.err = err
			}
			return out
		},
		func() row { // 4. Malformed and hostile input mixed into the stream
			r, err := e.newRun("malformed-input", e.esURL)
			if err != nil {
				return row{scenario: "malformed-input", err: err}
			}
			cfg := e.loadConfig(r.env.GRPC)
			cfg.Bad = 25
			res, err := loadgen.Run(context.Background(), cfg)
			out := r.settle(res, 0)
			out.note = "1 in 25: bad JSON, missing team, hostile team ids, bad actor, 1.5 MB metadata; invalid IPs indexed"
			if err != nil {
				out.err = err
			}
			return out
		},
		func() row { // 5. Backpressure: Elasticsearch slower than the input
			proxy, err := faultproxy.New(e.esURL)
			if err != nil {
				return row{scenario: "backpressure", err: err}
			}
			proxy.Delay = 2 * time.Second
			srv := httptest.NewServer(proxy)
			defer srv.Close()
			r, err := e.newRun("backpressure", srv.URL)
			if err != nil {
				return row{scenario: "backpressure", err: err}
			}
			cfg := e.loadConfig(r.env.GRPC)
			cfg.Rate = 0 // as fast as the collector accepts
			cfg.Duration /= 2
			res, err := loadgen.Run(context.Background(), cfg)
			usage, _ := r.proc.ReadUsage()
			proxy.Delay = 0
			out := r.settle(res, 0)
			out.note = fmt.Sprintf("bulk answers delayed 2s; %.0f events/s accepted; %d OTLP pushbacks; collector peak RSS %d MiB",
				float64(res.Sent)/res.Elapsed.Seconds(), res.Retries, usage.PeakRSS>>20)
			if err != nil {
				out.err = err
			}
			return out
		},
	}
	var rows []row
	for _, s := range scenarios {
		rw := s()
		fmt.Fprintf(os.Stderr, "auditproof: %s done: %+v\n", rw.scenario, rw)
		rows = append(rows, rw)
	}
	tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsent\tstored\tduplicates\tquarantined\tlost\tresult\t")
	ok := true
	for _, rw := range rows {
		result := "ok"
		switch {
		case rw.err != nil:
			result = "ERROR: " + rw.err.Error()
		case rw.lost != 0 || rw.duplicates != 0 || rw.quarantined != rw.expectedQuarantine:
			result = "FAILED"
		}
		if result != "ok" {
			ok = false
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", rw.scenario, rw.sent, rw.stored, rw.duplicates, rw.quarantined, rw.lost, result)
	}
	tw.Flush()
	passed := 0
	for _, rw := range rows {
		fmt.Fprintf(e.out, "  %s: %s\n", rw.scenario, rw.note)
	}
	for _, rw := range rows {
		if rw.err == nil && rw.lost == 0 && rw.duplicates == 0 && rw.quarantined == rw.expectedQuarantine {
			passed++
		}
	}
	fmt.Fprintf(e.out, "reliability: %d passed, %d failed\n", passed, len(rows)-passed)
	return ok
}

// load measures sustained throughput end to end for several team counts and metadata sizes.
func load(e env) bool {
	type shape struct {
		teams, metadata int
	}
	shapes := []shape{{10, 200}, {1000, 200}, {10000, 200}, {10, 4000}}
	if e.teams > 0 {
		shapes = []shape{{e.teams, e.metadata}}
	}
	dur := 60 * time.Second
	if e.short {
		dur = 15 * time.Second
	}
	// One index per team: 10,000 teams need more than Elasticsearch's default of 1,000 shards per node.
	req, _ := http.NewRequest(http.MethodPut, e.esURL+"/_cluster/settings", strings.NewReader(`{"persistent":{"cluster.max_shards_per_node":12000}}`))
	req.Header.Set("Content-Type", "application/json")
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
	const rowFormat = "%6v %15v %8v %16v %23v %23v %5v\n"
	fmt.Fprintf(e.out, rowFormat, "teams", "metadata bytes", "events", "events/s stored", "collector CPU µs/event", "collector peak RSS MiB", "lost")
	ok := true
	for _, s := range shapes {
		r, err := e.newRun(fmt.Sprintf("load-%d-%d", s.teams, s.metadata), e.esURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return false
		}
		before, _ := r.proc.ReadUsage()
		begin := time.Now()
		res, err := loadgen.Run(context.Background(), loadgen.Config{Endpoint: r.env.GRPC, Duration: dur, Teams: s.teams, MetadataBytes: s.metadata, Batch: 500})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			ok = false
		}
		out := r.waitStored(res.Sent)
		elapsed := time.Since(begin)
		after, _ := r.proc.ReadUsage()
		row := r.settle(res, 0)
		if row.lost != 0 || row.duplicates != 0 {
			ok = false
		}
		fmt.Fprintf(e.out, rowFormat, s.teams, s.metadata, out, fmt.Sprintf("%.0f", float64(out)/elapsed.Seconds()),
			fmt.Sprintf("%.1f", float64((after.CPU-before.CPU).Microseconds())/float64(max(out, 1))), after.PeakRSS>>20, row.lost)
	}
	return ok
}

// waitStored waits until n documents are stored under the run's prefix and returns how many are.
func (r *run) waitStored(n int64) int64 {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		counts, _ := esinspect.Counts(r.e.esURL, r.env.Prefix)
		var total int64
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !strings.HasSuffix(k, "quarantine") {
				total += int64(counts[k])
			}
		}
		if total >= n || time.Now().After(deadline) {
			return total
		}
		time.Sleep(500 * time.Millisecond)
	}
}
