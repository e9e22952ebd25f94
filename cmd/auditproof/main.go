// Command auditproof proves the pipeline's promises with the real collector binary and a real
// Elasticsearch node of its own (started on -es-port through scripts/elasticsearch.sh):
//
//	auditproof reliability [-short] [-only a,b]   fault scenarios, verified id by id
//	auditproof load [-short] [-profile DIR]       sustained throughput beside a raw replay of the same documents,
//	                                              collector CPU per event, peak memory, shards and cluster state,
//	                                              for 10 to 100,000 teams
//	auditproof footprint                          cluster state and time of an index or an alias per team
//	auditproof api [-teams 1000] [-events 1000000] the audit log API: GET /v1/events requests/s and latency,
//	                                              export events/s
//	auditproof import [-teams 1000] [-events 1000000] auditctl import of a CSV: events/s beside the collector's,
//	                                              peak RSS at a tenth and at the whole file
//
// Every acknowledged record is checked by id: stored exactly once where the layout puts its team and
// time, or quarantined with a reason. Every fault is shown to have happened (measured, counted, the pid
// named). It exits non-zero on any loss, duplicate, misrouted or unexpected document, or a fault
// that did not happen. `make reliability` and `make load` run it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/auditpipe/auditpipe/internal/testrig/collectorproc"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/loadgen"
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
	only, fsync     string
	profile         string // load: write the collector's CPU and allocation profiles here
	compare         string // load: "contrib" runs the side-by-side comparison instead
	seal            bool   // load: each shape with sealing off, then on (sealbench.go)
	apiEvents       int    // api: events to store
	clients         int    // api: concurrent clients
	duration        time.Duration
	contribBin      string
	out             io.Writer
}

func main() {
	if len(os.Args) < 2 || !slices.Contains([]string{"reliability", "load", "footprint", "api", "import"}, os.Args[1]) {
		fmt.Fprintln(os.Stderr, "usage: auditproof reliability|load|footprint|api|import [-short] [-es-port 9250]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("auditproof "+os.Args[1], flag.ExitOnError)
	e := env{out: os.Stdout}
	fs.BoolVar(&e.short, "short", false, "short version (as CI runs it)")
	fs.StringVar(&e.bin, "bin", "_build/otelcol-audit", "the collector distribution")
	fs.StringVar(&e.config, "config", "config.example.yaml", "the collector configuration")
	fs.StringVar(&e.esPort, "es-port", "9250", "port of the Elasticsearch node auditproof starts and stops")
	fs.IntVar(&e.teams, "teams", 0, "load: only this team count (with -metadata); api: the teams (default 1000)")
	fs.IntVar(&e.apiEvents, "events", 1000000, "api: events stored before measuring; import: rows of the file")
	fs.IntVar(&e.clients, "clients", 4, "api: concurrent clients")
	fs.DurationVar(&e.duration, "duration", 60*time.Second, "api: how long clients page through logs")
	fs.IntVar(&e.metadata, "metadata", 200, "load: metadata bytes per event, with -teams")
	fs.StringVar(&e.only, "only", "", "reliability: only these scenarios, comma-separated")
	fs.StringVar(&e.fsync, "fsync", "true", "load with -teams: the queue's fsync, true or both (to measure its cost)")
	fs.StringVar(&e.compare, "compare", "", "load: contrib compares, in one run, this collector with contrib's elasticsearchexporter (bench/contrib)")
	fs.StringVar(&e.contribBin, "contrib-bin", "bench/contrib/_build/otelcol-contrib-es", "load -compare contrib: the baseline collector (see bench/contrib/builder-config.yaml)")
	fs.BoolVar(&e.seal, "seal", false, "load: each shape without and then with a sealer running (docs/integrity.md), 10 and 100,000 teams (or -teams)")
	fs.StringVar(&e.profile, "profile", "", "load: a directory for the collector's CPU profile (30 s, from the 10th second) and allocation profile of each shape; with -seal, the sealer's (this process's) CPU profile")
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
		if e.compare != "" {
			ok = compare(e)
		} else if e.seal {
			ok = sealBench(e)
		} else {
			ok = load(e)
		}
	case "footprint":
		ok = footprint(e)
	case "api":
		if e.teams == 0 {
			e.teams = 1000
		}
		ok = apiBench(e)
	case "import":
		if e.teams == 0 {
			e.teams = 1000
		}
		ok = importBench(e)
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
func (e env) es(verb string, args ...string) error {
	_, err := e.script(nil, verb, args...)
	return err
}

// script runs scripts/elasticsearch.sh with extra environment and returns its standard output.
func (e env) script(extra []string, verb string, args ...string) (string, error) {
	cmd := exec.Command("scripts/elasticsearch.sh", append([]string{verb}, args...)...)
	// The default development node: 1 GiB heap, the default shard limit.
	cmd.Env = append(append(os.Environ(), "ES_PORT="+e.esPort), extra...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("scripts/elasticsearch.sh %s %s: %w", verb, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(out.String()), err
}

// run is one scenario's setting: a collector writing under its own prefix.
type run struct {
	name    string
	bin     string   // the collector binary
	configs []string // its configuration files, later ones overriding earlier ones
	env     collectorproc.Env
	proc    *collectorproc.Proc
	logs    int
	e       env
	esURL   string // where the run's documents are read back (the node, not a proxy)
}

func (e env) newRun(name, esURL string, extraEnv ...string) (*run, error) {
	return e.newRunOf(name, esURL, e.bin, []string{e.config}, extraEnv...)
}

// newRunOf starts the collector bin with configs, writing under a prefix of its own.
func (e env) newRunOf(name, esURL, bin string, configs []string, extraEnv ...string) (*run, error) {
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ce, err := collectorproc.NewEnv(esURL, fmt.Sprintf("proof-%d-%s-", os.Getpid(), name), dir)
	if err != nil {
		return nil, err
	}
	ce.Extra = extraEnv
	r := &run{name: name, bin: bin, configs: configs, env: ce, e: e, esURL: esURL}
	return r, r.start()
}

// newRunSharing starts a second collector writing the same indices as r, with its own queue and ports.
func (e env) newRunSharing(name string, r *run) (*run, error) {
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ce, err := collectorproc.NewEnv(r.env.ESURL, r.env.Prefix, dir)
	if err != nil {
		return nil, err
	}
	ce.Extra = r.env.Extra
	other := &run{name: name, bin: r.bin, configs: r.configs, env: ce, e: e, esURL: r.esURL}
	return other, other.start()
}

func (r *run) start() error {
	r.logs++
	p, err := collectorproc.Start(r.bin, r.configs, r.env, filepath.Join(r.env.StorageDir, fmt.Sprintf("collector-%d.log", r.logs)))
	r.proc = p
	return err
}

// load measures sustained throughput end to end for several team counts and metadata sizes.
func load(e env) bool {
	type shape struct {
		teams, metadata int
		fsync           bool
		warmUp          bool // a first, shorter run on the fresh node, printed but not compared
	}
	// Events spread over the teams by a Zipf distribution. Team counts up to 100,000 on the default
	// node (1 GiB heap, 1,000 shards): the layout's shard count does not grow with the teams.
	warmUp := shape{10, 200, true, true}
	shapes := []shape{warmUp, {10, 200, true, false}, {1000, 200, true, false}, {10000, 200, true, false}, {100000, 200, true, false}, {10, 4000, true, false}, {10, 200, false, false}}
	if e.teams > 0 {
		shapes = []shape{warmUp, {e.teams, e.metadata, true, false}}
		if e.fsync == "both" {
			shapes = append(shapes, shape{e.teams, e.metadata, false, false})
		}
	}
	dur := 60 * time.Second
	if e.short {
		dur = 15 * time.Second
	}
	const rowFormat = "%7v %14v %6v %8v %7v %16v %13v %10v %23v %23v %14v %14v %7v %7v %19v %12v %5v %11v\n"
	fmt.Fprintf(e.out, rowFormat, "teams", "metadata bytes", "fsync", "events", "teams", "events/s stored", "raw replay", "efficiency", "collector CPU µs/event", "collector peak RSS MiB",
		"generator CPU", "ES CPU µs/event", "shards", "cluster", "cluster state KiB", "stored bytes", "lost", "duplicated")
	fmt.Fprintf(e.out, rowFormat, "", "", "", "", "sending", "", "events/s", "", "", "", "µs/event", "(pipeline/raw)", "(run)", "shards", "", "per event", "", "")
	ok := true
	for _, s := range shapes {
		r, err := e.newRun(fmt.Sprintf("load-%d-%d-%t-%t", s.teams, s.metadata, s.fsync, s.warmUp), e.esURL, fmt.Sprintf("AUDIT_QUEUE_FSYNC=%t", s.fsync))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return false
		}
		d := dur
		if s.warmUp {
			d = dur / 3
		}
		// The requests are built before anything is measured (loadgen.Prebuild).
		cfg := loadgen.Config{Endpoint: r.env.GRPC, Duration: d, Teams: s.teams, Zipf: true, MetadataBytes: s.metadata, Batch: 500}
		if cfg.Prebuilt, err = loadgen.Prebuild(cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return false
		}
		before, _ := r.proc.ReadUsage()
		esBefore := e.esUsage()
		profiled := make(chan error, 1)
		if e.profile != "" && !s.warmUp {
			go func() {
				profiled <- r.profile(filepath.Join(e.profile, fmt.Sprintf("%d-%d-%t", s.teams, s.metadata, s.fsync)))
			}()
		} else {
			profiled <- nil
		}
		genBefore := selfCPU()
		res, err := loadgen.Run(context.Background(), cfg)
		genCPU := selfCPU() - genBefore
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			ok = false
		}
		out := r.waitStored(res.Sent)
		elapsed := time.Since(res.Began) // from the first event sent: the requests are built before
		after, _ := r.proc.ReadUsage()
		esCPU := e.esUsage() - esBefore
		if err := <-profiled; err != nil {
			fmt.Fprintln(os.Stderr, "profiling the collector:", err)
			ok = false
		}
		fp, ferr := esinspect.Measure(r.esURL, r.env.Prefix)
		if ferr != nil {
			fmt.Fprintln(os.Stderr, "measuring the cluster:", ferr)
			ok = false
		}
		raw, replayed, rawESCPU, rerr := rawReplay(r.esURL, r.env.Layout(), r.env.Prefix+"raw-", e.esUsage)
		if rerr == nil && int64(replayed) != out {
			rerr = fmt.Errorf("replayed %d events of %d stored", replayed, out)
		}
		if rerr != nil {
			fmt.Fprintln(os.Stderr, "raw replay:", rerr)
			ok = false
		}
		rate := float64(out) / elapsed.Seconds()
		v, verr := r.settle(res)
		if verr != nil || !v.ok() {
			fmt.Fprintf(os.Stderr, "load %d teams: %v %s\n", s.teams, verr, v.describe())
			ok = false
		}
		label := fmt.Sprint(s.teams)
		if s.warmUp {
			label = "warm-up"
		}
		fmt.Fprintf(e.out, rowFormat, label, s.metadata, s.fsync, out, len(res.PerTeam), fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.0f", raw), fmt.Sprintf("%.2f", rate/max(raw, 1)),
			perEvent(after.CPU-before.CPU, out), after.PeakRSS>>20, perEvent(genCPU, res.Sent),
			perEvent(esCPU, out)+"/"+perEvent(rawESCPU, int64(replayed)), fp.Shards, fp.AllShards, fp.StateBytes>>10, fp.StoreBytes/max(out, 1), v.lost, v.duplicated)
	}
	return ok
}

// perEvent is CPU time per event in µs, as the load table prints it.
func perEvent(cpu time.Duration, events int64) string {
	return fmt.Sprintf("%.1f", float64(cpu.Microseconds())/float64(max(events, 1)))
}

// selfCPU is the CPU time auditproof has used: during a load, the load generator's.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// esUsage is the CPU time auditproof's Elasticsearch node has used (0 when it cannot be read).
func (e env) esUsage() time.Duration {
	out, err := e.script(nil, "pid", "0")
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(out)
	if err != nil {
		return 0
	}
	u, _ := collectorproc.ProcessUsage(pid)
	return u.CPU
}

// profile saves the collector's CPU profile, 30 s from the 10th second of load, and its allocation
// profile after that, as <base>-cpu.pprof and <base>-allocs.pprof (go tool pprof reads them).
func (r *run) profile(base string) error {
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return err
	}
	time.Sleep(10 * time.Second)
	c := http.Client{Timeout: time.Minute}
	for _, p := range []struct{ path, file string }{
		{"/debug/pprof/profile?seconds=30", base + "-cpu.pprof"},
		{"/debug/pprof/allocs", base + "-allocs.pprof"},
	} {
		res, err := c.Get("http://" + r.env.PProf + p.path)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s %v", p.path, res.Status, err)
		}
		if err := os.WriteFile(p.file, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// waitStored waits until n events are stored in the run's layout and returns how many are.
func (r *run) waitStored(n int64) int64 {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		events, _, _ := esinspect.Total(r.e.esURL, r.env.Layout())
		total := int64(events)
		if total >= n || time.Now().After(deadline) {
			return total
		}
		time.Sleep(500 * time.Millisecond)
	}
}
