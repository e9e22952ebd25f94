package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter"

	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/importer"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/collectorproc"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/loadgen"
)

// importBench measures auditctl import on auditproof's node, in one run beside the collector at the
// same team count (the bar: the node is the bound either way): a CSV of the export's columns and a
// team_id column, of e.apiEvents rows over e.teams teams, and one a tenth its size, to show that
// the import's memory does not grow with the file. Every event is checked stored.
func importBench(e env) bool {
	ctl := filepath.Join(e.work, "auditctl")
	if out, err := exec.Command("go", "build", "-o", ctl, "./cmd/auditctl").CombinedOutput(); err != nil {
		return failed(e, fmt.Errorf("building auditctl: %v: %s", err, out))
	}
	const rowFormat = "%-28v %10v %7v %12v %16v %22v %18v %14v\n"
	fmt.Fprintf(e.out, rowFormat, "what", "events", "teams", "file MiB", "events/s stored", "peak RSS MiB (import)", "ES CPU µs/event", "all stored")
	// The collector first, after a warm-up: as config.example.yaml runs it (the persistent queue,
	// with fsync), and with in-memory queues as in -compare (its best rate).
	for i, who := range []string{"auditpipe", "auditpipe (persistent)", "auditpipe"} {
		teams := e.teams
		if i == 0 {
			teams = 10
		}
		row, err := e.compareOne(who, teams, 60*time.Second)
		if err != nil {
			return failed(e, err)
		}
		what := map[string]string{"auditpipe": "collector (in-memory queue)", "auditpipe (persistent)": "collector (persistent queue)"}[who]
		if i == 0 {
			what = "warm-up (collector)"
		}
		// compareOne has checked every sent event stored, id by id (an error otherwise).
		fmt.Fprintf(e.out, rowFormat, what, row[3], teams, "", row[5], "", row[8], fmt.Sprint(row[3]) == fmt.Sprint(row[2]))
	}
	for _, n := range []int{e.apiEvents / 10, e.apiEvents} {
		row, err := e.importOnce(ctl, n)
		if err != nil {
			return failed(e, err)
		}
		fmt.Fprintf(e.out, rowFormat, row...)
	}
	return true
}

// importOnce writes a CSV of n events over e.teams teams and imports it into fresh indices.
func (e env) importOnce(ctl string, n int) ([]any, error) {
	prefix := fmt.Sprintf("proof-%d-import-%d-", os.Getpid(), n)
	file := filepath.Join(e.work, fmt.Sprintf("history-%d.csv", n))
	if err := writeHistory(file, n, e.teams); err != nil {
		return nil, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	lay, err := layout.New(prefix+layout.DefaultPrefix, prefix+layout.DefaultQuarantine, layout.NewDefaultConfig())
	if err != nil {
		return nil, err
	}
	if err := installTemplates(e.esURL, lay); err != nil {
		return nil, err
	}
	cmd := exec.Command(ctl, "import", "--file", file, "--format", "csv", "--operator", "auditproof", "--es-url", e.esURL,
		"--index-prefix", lay.Prefix(), "--quarantine-index", lay.Quarantine(), "--progress", "off", "--json")
	cmd.Stderr = os.Stderr
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	esBefore := e.esUsage()
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// The child's own high-water mark, read while it runs: the rusage of a child also holds the
	// parent's resident size at the fork.
	var peak int64
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for done := false; !done; {
		select {
		case err = <-exited:
			done = true
		case <-time.After(50 * time.Millisecond):
			if u, uerr := collectorproc.ProcessUsage(cmd.Process.Pid); uerr == nil {
				peak = max(peak, u.PeakRSS)
			}
		}
	}
	elapsed := time.Since(began)
	esCPU := e.esUsage() - esBefore
	if err != nil {
		return nil, fmt.Errorf("auditctl import: %w", err)
	}
	out := stdout.Bytes()
	var sum importer.Summary
	if err := json.Unmarshal(out, &sum); err != nil {
		return nil, fmt.Errorf("the summary: %w: %s", err, out)
	}
	teams, quarantined, err := esinspect.Counts(e.esURL, lay)
	if err != nil {
		return nil, err
	}
	stored := 0
	for team, c := range teams {
		if team != "" {
			stored += c
		}
	}
	imported := stored - len(sum.Recorded) // each team's log also holds the import's record
	all := imported == n && sum.Stored == int64(n) && quarantined == 0
	esinspect.DeleteAll(e.esURL, prefix)
	return []any{"auditctl import", n, e.teams, st.Size() >> 20, fmt.Sprintf("%.0f", float64(sum.Stored)/elapsed.Seconds()),
		peak >> 20, perEvent(esCPU, sum.Stored), all}, nil
}

// writeHistory writes n realistic events (internal/testrig/loadgen's) over teams teams, in time
// order over the last 30 days, as auditctl export's CSV with a team_id column.
func writeHistory(path string, n, teams int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	actions := audit.DefaultCatalog().ActionNames()
	start := time.Now().Add(-30 * 24 * time.Hour)
	step := 30 * 24 * time.Hour / time.Duration(n)
	row := query.AppendCSVRow(nil, append(append([]string(nil), query.CSVHeader...), "team_id"))
	w.Write(row)
	for i := 0; i < n; i++ {
		ev := loadgen.Event(rng, actions, i, i%teams, 200)
		ev.Time = start.Add(time.Duration(i) * step)
		targets, _ := json.Marshal(ev.Targets)
		md, _ := json.Marshal(ev.Metadata)
		email, name := "", ""
		if ev.Actor.Metadata != nil {
			email, _ = ev.Actor.Metadata["email"].(string)
			name, _ = ev.Actor.Metadata["name"].(string)
		}
		row = query.AppendCSVRow(row[:0], []string{ev.Time.UTC().Format(time.RFC3339Nano), ev.Action, "", string(ev.Actor.Type), ev.Actor.ID, email, name,
			string(targets), strings.Join(ev.AccessRoute, ", "), ev.RemoteAddr, ev.UserAgent, string(md), ev.TeamID})
		w.Write(row)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// installTemplates installs the index templates of lay's names, as the collector does at its start.
func installTemplates(esURL string, lay *layout.Layout) error {
	f := auditelasticsearchexporter.NewFactory()
	cfg := f.CreateDefaultConfig().(*auditelasticsearchexporter.Config)
	cfg.Endpoints = []string{esURL}
	cfg.IndexPrefix, cfg.QuarantineIndex = lay.Prefix(), lay.Quarantine()
	cfg.Template.Replicas = 0
	cfg.Layout.PurgeInterval = 0
	exp, err := f.CreateLogs(context.Background(), exporter.Settings{ID: component.NewID(f.Type()), TelemetrySettings: componenttest.NewNopTelemetrySettings(), BuildInfo: component.NewDefaultBuildInfo()}, cfg)
	if err != nil {
		return err
	}
	if err := exp.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		return err
	}
	return exp.Shutdown(context.Background())
}
