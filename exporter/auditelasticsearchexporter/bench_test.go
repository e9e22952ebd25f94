package auditelasticsearchexporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

// countingBulk is a _bulk endpoint that only counts: it answers 201 for every document, so the
// benchmark measures the exporter's encoding and request handling, not Elasticsearch.
func countingBulk(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var docs atomic.Int64
	created := []byte(`{"create":{"status":201}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := bytes.Count(body, []byte{'\n'}) / 2
		docs.Add(int64(n))
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		out := make([]byte, 0, 16+n*(len(created)+1))
		out = append(out, `{"items":[`...)
		for i := 0; i < n; i++ {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, created...)
		}
		w.Write(append(out, "]}"...))
	}))
	b.Cleanup(srv.Close)
	return srv, &docs
}

// benchBatch is n normalized records: a third the seed sample, a third system actors, a third
// team_settings_changed with larger metadata, spread over 100 teams.
func benchBatch(b *testing.B, n int) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "jobs-api")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i := 0; i < n; i++ {
		lr := lrs.AppendEmpty()
		lr.SetEventName("audit")
		lr.SetTimestamp(pcommon.NewTimestampFromTime(baseTime.Add(time.Duration(i) * time.Millisecond)))
		switch i % 3 {
		case 0:
			lr.Body().SetStr(seedSample)
		case 1:
			lr.Body().SetStr(rawEvent(1000+i%100, "data_export", `,"metadata":{"format":"csv","rows":120394}`))
		default:
			lr.Body().SetStr(rawEvent(1000+i%100, "team_settings_changed", `,"metadata":{"setting":"captcha_protection_level","previous":{"level":"low","rules":[1,2,3]},"current":{"level":"strict","rules":[1,2,3,4,5,6,7,8]}}`))
		}
	}
	sink := new(consumertest.LogsSink)
	f := auditprocessor.NewFactory()
	p, err := f.CreateLogs(context.Background(), processortest.NewNopSettings(f.Type()), f.CreateDefaultConfig(), sink)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.ConsumeLogs(context.Background(), ld); err != nil {
		b.Fatal(err)
	}
	return sink.AllLogs()[0]
}

// BenchmarkExporter pushes batches of normalized events through the exporter into a counting _bulk
// endpoint. events/s and bytes/event are reported per batch size.
func BenchmarkExporter(b *testing.B) {
	for _, size := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			srv, docs := countingBulk(b)
			cfg := createDefaultConfig()
			cfg.Endpoints = []string{srv.URL}
			cfg.Template.Install = false
			e := startExporter(b, cfg)
			ld := benchBatch(b, size)
			var sent int64
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := e.pushLogs(context.Background(), ld); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := docs.Load(); got != int64(b.N*size) {
				b.Fatalf("endpoint counted %d documents, want %d", got, b.N*size)
			}
			sent = int64(b.N * size)
			b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent), "ns/event")
		})
	}
}

// BenchmarkExporterRealNode indexes batches of 5,000 new events into the real test node (each op
// uses fresh timestamps, so nothing is a duplicate). It reports events/s end to end and the CPU this
// process (the exporter) spent per event; the rest of the machine's CPU went to Elasticsearch.
func BenchmarkExporterRealNode(b *testing.B) {
	e := startExporter(b, testConfig(b, ""))
	const size = 5000
	batches := make([]plog.Logs, b.N)
	for i := range batches {
		batches[i] = benchBatch(b, size)
		shift := pcommon.Timestamp(time.Duration(i+1) * time.Hour)
		for _, lr := range batches[i].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().All() {
			lr.SetTimestamp(lr.Timestamp() + shift)
			lr.Attributes().PutStr("audit.id", fmt.Sprintf("bench-%d-%d", i, lr.Timestamp()))
		}
	}
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.pushLogs(context.Background(), batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// Every event must be stored: a benchmark of an exporter that drops is no benchmark.
	cfg := e.cfg
	if err := esinspect.Refresh(estest.URL(b), cfg.IndexPrefix); err != nil {
		b.Fatal(err)
	}
	var cnt struct {
		Count int `json:"count"`
	}
	res, err := http.Get(estest.URL(b) + "/" + strings.Join(e.layout.ReadIndices(), ",") + "/_count")
	if err != nil {
		b.Fatal(err)
	}
	err = json.NewDecoder(res.Body).Decode(&cnt)
	res.Body.Close()
	if err != nil || cnt.Count != b.N*size {
		b.Fatalf("%d of %d events stored (%v)", cnt.Count, b.N*size, err)
	}
	sent := float64(b.N * size)
	b.ReportMetric(sent/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/sent, "exporter-cpu-ns/event")
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
