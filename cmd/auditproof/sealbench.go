package main

// auditproof load -seal: what sealing costs the pipeline (docs/integrity.md, BENCHMARKS.md "Sealing").
// Each shape runs the load of `auditproof load` twice on the same node, once without and once with
// a sealer running beside the collector (in this process, as auditapi --seal-key runs one), and
// reports the events/s stored of each, how long after the last event was stored every event was
// sealed, and the sealer's index against the events' bytes, both merged to one segment: right after
// the run, and once the states it superseded are merged away (what sealing keeps).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/seal"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/loadgen"
)

func sealBench(e env) bool {
	teams := []int{10, 100000}
	if e.teams > 0 {
		teams = []int{e.teams}
	}
	dur := 60 * time.Second
	if e.short {
		dur = 15 * time.Second
	}
	const rowFormat = "%8v %8v %9v %16v %9v %17v %17v %16v %14v %14v %15v %15v\n"
	fmt.Fprintf(e.out, rowFormat, "teams", "sealing", "events", "events/s stored", "on ÷ off", "sealed after (s)", "sealer CPU µs/ev", "events bytes/ev", "seal bytes/ev", "seal ÷ events", "kept bytes/ev", "kept ÷ events")
	ok := true
	// A warm-up shape first, not reported: the node's JIT and caches warm for minutes.
	for i, t := range append([]int{10}, teams...) {
		var offRate float64
		for _, sealing := range []bool{false, true} {
			row, err := e.sealShape(fmt.Sprintf("seal-%d-%d-%t", i, t, sealing), t, dur, sealing)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				ok = false
				continue
			}
			if i == 0 {
				continue
			}
			ratio := "-"
			if sealing {
				ratio = fmt.Sprintf("%.2f", row.rate/max(offRate, 1))
			} else {
				offRate = row.rate
			}
			sealed, cpu, sealBytes, share, kept, keptShare := "-", "-", "-", "-", "-", "-"
			if sealing {
				sealed, cpu = fmt.Sprintf("%.1f", row.sealedAfter.Seconds()), perEvent(row.sealCPU, row.events)
				sealBytes, share = fmt.Sprint(row.sealBytes/max(row.events, 1)), fmt.Sprintf("%.3f", float64(row.sealBytes)/float64(max(row.eventBytes, 1)))
				kept, keptShare = fmt.Sprint(row.sealKept/max(row.events, 1)), fmt.Sprintf("%.3f", float64(row.sealKept)/float64(max(row.eventBytes, 1)))
			}
			fmt.Fprintf(e.out, rowFormat, t, sealing, row.events, fmt.Sprintf("%.0f", row.rate), ratio, sealed, cpu, row.eventBytes/max(row.events, 1), sealBytes, share, kept, keptShare)
		}
	}
	return ok
}

type sealRow struct {
	events                int64
	rate                  float64
	sealedAfter           time.Duration
	sealCPU               time.Duration
	eventBytes, sealBytes int64
	sealKept              int64 // sealBytes once the superseded states are merged away
}

func (e env) sealShape(name string, teams int, dur time.Duration, sealing bool) (sealRow, error) {
	var row sealRow
	r, err := e.newRun(name, e.esURL, "AUDIT_QUEUE_FSYNC=true")
	if err != nil {
		return row, err
	}
	cfg := loadgen.Config{Endpoint: r.env.GRPC, Duration: dur, Teams: teams, Zipf: true, MetadataBytes: 200, Batch: 500}
	if cfg.Prebuilt, err = loadgen.Prebuild(cfg); err != nil {
		return row, err
	}
	c, err := query.New(query.Conn{URLs: []string{r.esURL}, IndexPrefix: r.env.Prefix + layout.DefaultPrefix, QuarantineIndex: r.env.Prefix + layout.DefaultQuarantine})
	if err != nil {
		return row, err
	}
	store, err := seal.NewStore(c, r.env.Prefix+"seal")
	if err != nil {
		return row, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	var sealer *seal.Sealer
	if sealing {
		skey, _, err := merkle.GenerateKey("audit.bench")
		if err != nil {
			return row, err
		}
		signers, err := seal.Signers([]byte(skey))
		if err != nil {
			return row, err
		}
		if sealer, err = seal.New(seal.Config{Store: store, Origin: "audit.bench", Signers: signers}); err != nil {
			return row, err
		}
		go func() { defer close(done); sealer.Run(ctx) }()
	} else {
		close(done)
	}
	if sealing && e.profile != "" {
		// This process's CPU profile, from the load's start to the shape's end: the sealer's
		// functions are internal/seal's, the load generator's loadgen's, the checks esinspect's.
		stop, err := cpuProfile(filepath.Join(e.profile, fmt.Sprintf("seal-%d-cpu.pprof", teams)))
		if err != nil {
			return row, err
		}
		defer stop()
	}
	cpu0 := selfCPU()
	res, err := loadgen.Run(context.Background(), cfg)
	genCPU := selfCPU() - cpu0
	if err != nil {
		return row, err
	}
	row.events = r.waitStored(res.Sent)
	storedAt := time.Now()
	row.rate = float64(row.events) / time.Since(res.Began).Seconds()
	if sealing {
		// Every stored event in a signed checkpoint: the sum of the teams' tree sizes.
		deadline := time.Now().Add(5 * time.Minute)
		for {
			n, err := sealedEvents(r.esURL, store.Index())
			if err == nil && n >= row.events {
				break
			}
			if time.Now().After(deadline) {
				return row, fmt.Errorf("%s: %d of %d events sealed after 5 minutes", name, n, row.events)
			}
			time.Sleep(200 * time.Millisecond)
		}
		row.sealedAfter = time.Since(storedAt)
		// The sealer's CPU: this process's, less what the load generator used in the off shape's way
		// (its share measured while it ran alone is genCPU; the sealer ran during it too, so this
		// is an upper bound of the generator's and a lower bound of the sealer's).
		row.sealCPU = selfCPU() - cpu0 - genCPU
	}
	cancel()
	<-done
	if err := esinspect.ForceMerge(r.esURL, r.env.Prefix); err != nil {
		return row, err
	}
	if row.eventBytes, err = storeBytes(r.esURL, r.env.Prefix+layout.DefaultPrefix+"*"); err != nil {
		return row, err
	}
	if sealing {
		if row.sealBytes, err = storeBytes(r.esURL, store.Index()); err != nil {
			return row, err
		}
		// The states a round superseded are soft deletes, which Elasticsearch keeps until the
		// shard's retention lease moves past them; merges then drop them. The index once they are
		// gone (or after 3 minutes) is what sealing keeps.
		deadline := time.Now().Add(3 * time.Minute)
		for {
			if err := esinspect.ForceMerge(r.esURL, store.Index()); err != nil {
				return row, err
			}
			deleted, err := deletedDocs(r.esURL, store.Index())
			if err != nil {
				return row, err
			}
			if deleted == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Second)
		}
		if row.sealKept, err = storeBytes(r.esURL, store.Index()); err != nil {
			return row, err
		}
	}
	if v, err := r.settle(res); err != nil || !v.ok() {
		return row, fmt.Errorf("%s: %v %s", name, err, v.describe())
	}
	return row, nil
}

// cpuProfile writes this process's CPU profile to path until stop is called.
func cpuProfile(path string) (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// deletedDocs is the index's deleted documents that its segments still hold.
func deletedDocs(base, index string) (int64, error) {
	res, err := http.Get(base + "/" + index + "/_stats/docs")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var out struct {
		All struct {
			Primaries struct {
				Docs struct {
					Deleted int64 `json:"deleted"`
				} `json:"docs"`
			} `json:"primaries"`
		} `json:"_all"`
	}
	err = json.NewDecoder(res.Body).Decode(&out)
	return out.All.Primaries.Docs.Deleted, err
}

// sealedEvents is the sum of every team's tree size in the sealer's index.
func sealedEvents(base, index string) (int64, error) {
	if err := esinspect.Refresh(base, index); err != nil {
		return 0, err
	}
	var total int64
	var after any
	for {
		q := map[string]any{"size": 10000, "_source": []string{"body.size"}, "query": map[string]any{"term": map[string]any{"kind": "state"}}, "sort": []any{map[string]any{"team": "asc"}}}
		if after != nil {
			q["search_after"] = after
		}
		b, _ := json.Marshal(q)
		req, _ := http.NewRequest(http.MethodPost, base+"/"+index+"/_search", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		var out struct {
			Hits struct {
				Hits []struct {
					Source struct {
						Body struct {
							Size int64 `json:"size"`
						} `json:"body"`
					} `json:"_source"`
					Sort any `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		err = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if err != nil {
			return 0, err
		}
		for _, h := range out.Hits.Hits {
			total += h.Source.Body.Size
		}
		if len(out.Hits.Hits) < 10000 {
			return total, nil
		}
		after = out.Hits.Hits[len(out.Hits.Hits)-1].Sort
	}
}

// storeBytes is the primary store size of the indices a pattern names.
func storeBytes(base, pattern string) (int64, error) {
	res, err := http.Get(base + "/_cat/indices/" + pattern + "?format=json&h=pri.store.size&bytes=b")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var out []struct {
		Size string `json:"pri.store.size"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return 0, err
	}
	var n int64
	for _, ix := range out {
		var b int64
		fmt.Sscan(ix.Size, &b)
		n += b
	}
	return n, nil
}
