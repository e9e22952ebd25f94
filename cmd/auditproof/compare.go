package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/document"

	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/loadgen"
)

// compare runs, in one run on one node, the same load through this collector and through a
// collector built with contrib's elasticsearchexporter (bench/contrib), both with an in-memory
// sending queue (contrib's baseline cannot have file_storage), at 10 and 100,000 teams. contrib gets
// the index and _id our layout gives each event as attributes, and an index template with our event
// mapping, so that it can store every event; what it does not store is counted as dropped. contrib
// runs twice: with the default codec (the baseline of the goals) and with best_compression, the
// codec of our partitions by default (template.codec).
func compare(e env) bool {
	if _, err := os.Stat(e.contribBin); err != nil {
		fmt.Fprintf(os.Stderr, "no %s: build it with `make contrib-baseline`\n", e.contribBin)
		return false
	}
	dur := 60 * time.Second
	if e.short {
		dur = 15 * time.Second
	}
	const rowFormat = "%-27v %7v %8v %8v %8v %16v %23v %23v %16v %15v\n"
	fmt.Fprintf(e.out, rowFormat, "collector", "teams", "sent", "stored", "dropped", "events/s stored", "collector CPU µs/event", "collector peak RSS MiB",
		"ES CPU µs/event", "stored bytes/ev")
	ok := true
	for i, teams := range []int{10, 10, 100000} {
		for _, who := range []string{"auditpipe", "contrib", "contrib (best_compression)"} {
			if i == 0 && who != "auditpipe" {
				continue // the first round warms the node up
			}
			row, err := e.compareOne(who, teams, dur)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s, %d teams: %v\n", who, teams, err)
				ok = false
			}
			if i == 0 {
				row[0] = "warm-up (auditpipe)"
			}
			fmt.Fprintf(e.out, rowFormat, row...)
		}
	}
	return ok
}

// compareOne runs one collector under the load and returns its row.
func (e env) compareOne(who string, teams int, dur time.Duration) ([]any, error) {
	name := fmt.Sprintf("cmp-%s-%d-%d", strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(who), teams, time.Now().UnixNano()%1e6)
	bin, configs := e.bin, []string{e.config, "bench/inmemory.yaml"}
	switch who {
	case "auditpipe (persistent)": // config.example.yaml as it is: the persistent queue, with fsync
		configs = []string{e.config}
	case "contrib", "contrib (best_compression)":
		bin, configs = e.contribBin, []string{"bench/contrib/config.yaml"}
	}
	contrib := strings.HasPrefix(who, "contrib")
	blank := []any{who, teams, "", "", "", "", "", "", "", ""}
	r, err := e.newRunOf(name, e.esURL, bin, configs)
	if err != nil {
		return blank, err
	}
	defer esinspect.DeleteAll(e.esURL, r.env.Prefix)
	defer func() {
		if !r.proc.Exited() {
			r.proc.Stop()
		}
	}()
	// Where contrib writes: our layout's names under a prefix of its own, without routing.
	lay := r.env.Layout()
	cfg := loadgen.Config{Endpoint: r.env.GRPC, Duration: dur, Teams: teams, Zipf: true, MetadataBytes: 200, Batch: 500}
	if contrib {
		// contrib's indices get our event mapping, and the index settings it would have from a
		// template of its user's: the default codec, or best_compression as ours have by default.
		settings := `"number_of_shards":1,"number_of_replicas":0,"refresh_interval":"1s"`
		if who == "contrib (best_compression)" {
			settings += `,"codec":"best_compression"`
		}
		if lay, err = layout.New(r.env.Prefix+"contrib-", r.env.Prefix+"contrib-quarantine", layout.NewDefaultConfig()); err != nil {
			return blank, err
		}
		template := fmt.Sprintf(`{"index_patterns":[%q],"priority":300,"template":{"settings":{"index":{%s}},"mappings":%s}}`,
			lay.TemplatePattern(), settings, document.EventProperties)
		if err := esDo(http.MethodPut, e.esURL+"/_index_template/"+r.env.Prefix+"contrib", template, nil); err != nil {
			return blank, err
		}
		cfg.Route = lay
	}
	if cfg.Prebuilt, err = loadgen.Prebuild(cfg); err != nil {
		return blank, err
	}
	before, _ := r.proc.ReadUsage()
	esBefore := e.esUsage()
	res, lerr := loadgen.Run(context.Background(), cfg)
	stored, last := waitStable(e.esURL, lay, res.Sent)
	after, _ := r.proc.ReadUsage()
	// The node's work for the events includes the refreshes and merges they cause: both collectors'
	// rows count it until no merge runs.
	esinspect.Refresh(e.esURL, r.env.Prefix)
	if err := esinspect.WaitMerged(e.esURL, 5*time.Minute); err != nil {
		return blank, err
	}
	esCPU := e.esUsage() - esBefore
	elapsed := last.Sub(res.Began)
	// Bytes at rest: every index merged to one segment, as a partition no longer written to becomes,
	// so that the size does not depend on where the node's merging stood (the force merge's own CPU
	// is not counted). The documents differ: ours carry the event's time, hash and ingest time and a
	// few ECS fields; contrib's bodymap is the body.
	if err := esinspect.ForceMerge(e.esURL, r.env.Prefix); err != nil {
		return blank, err
	}
	fp, _ := esinspect.Measure(e.esURL, r.env.Prefix)
	row := []any{who, teams, res.Sent, stored, res.Sent - int64(stored), fmt.Sprintf("%.0f", float64(stored)/elapsed.Seconds()),
		perEvent(after.CPU-before.CPU, int64(stored)), after.PeakRSS >> 20, perEvent(esCPU, int64(stored)), fp.StoreBytes / max(int64(stored), 1)}
	if !contrib {
		// Ours must store everything: checked id by id, as in every other proof.
		v, err := r.settle(res)
		if err == nil && !v.ok() {
			err = fmt.Errorf("%s", v.describe())
		}
		return row, err
	}
	return row, lerr
}

// waitStable waits until n events are stored in lay's indices, or until their count has not moved
// for 20 s (an exporter that drops never gets there), and returns the count and when it last grew.
func waitStable(esURL string, lay *layout.Layout, n int64) (int, time.Time) {
	stored, last := 0, time.Now()
	for time.Since(last) < 20*time.Second {
		events, _, err := esinspect.Total(esURL, lay)
		if err == nil && events > stored {
			stored, last = events, time.Now()
		}
		if int64(stored) >= n {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return stored, last
}
