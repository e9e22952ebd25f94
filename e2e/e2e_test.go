// Package e2e runs the built collector distribution (_build/otelcol-audit, from `make build`) with
// config.example.yaml against the real Elasticsearch, and sends it audit events from the auditlog
// package over OTLP/gRPC and OTLP/HTTP.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/collectorproc"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
	"github.com/auditpipe/auditpipe/internal/testrig/faultproxy"
)

// binary returns the built distribution; without it the test skips locally and fails in CI.
func binary(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs("../_build/otelcol-audit")
	require.NoError(t, err)
	if _, err := os.Stat(bin); err != nil {
		msg := "no " + bin + ": run `make build` (make test does)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func newEnv(t *testing.T) collectorproc.Env {
	t.Helper()
	env, err := collectorproc.NewEnv(estest.URL(t), estest.Prefix(t), t.TempDir())
	require.NoError(t, err)
	return env
}

// startCollector runs the distribution with config.example.yaml; its log is shown if the test fails.
func startCollector(t *testing.T, env collectorproc.Env) *collectorproc.Proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "collector.log")
	p, err := collectorproc.Start(binary(t), []string{"../config.example.yaml"}, env, logPath)
	t.Cleanup(func() {
		if p != nil && !p.Exited() {
			p.Kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("collector log:\n%s", b)
		}
	})
	require.NoError(t, err)
	return p
}

func stop(t *testing.T, p *collectorproc.Proc) {
	t.Helper()
	require.NoError(t, p.Stop(), "the collector exits cleanly on SIGTERM")
}

func provider(t *testing.T, exp sdklog.Exporter) *sdklog.LoggerProvider {
	t.Helper()
	return sdklog.NewLoggerProvider(
		sdklog.WithResource(resource.NewSchemaless(attribute.String("service.name", "e2e-service"))),
		sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
}

// counted is the number of events of each team, and of quarantine documents under quarantined.
type counted map[string]int

const quarantined = "(quarantine)" // not a team id

func counts(t *testing.T, env collectorproc.Env) counted {
	t.Helper()
	c, q, err := esinspect.Counts(estest.URL(t), env.Layout())
	require.NoError(t, err)
	if q > 0 {
		c[quarantined] = q
	}
	return c
}

func waitForCounts(t *testing.T, env collectorproc.Env, want counted) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got counted
	var err error
	for time.Now().Before(deadline) {
		// An index the collector is creating right now is in the cluster state before its shard
		// starts, and a count then fails with 503: a moment to wait, like any count below want.
		var q int
		if got, q, err = esinspect.Counts(estest.URL(t), env.Layout()); err == nil {
			if q > 0 {
				got[quarantined] = q
			}
			if assert.ObjectsAreEqual(want, got) {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	require.NoError(t, err)
	var diff []string
	for k, n := range want {
		if got[k] != n {
			diff = append(diff, fmt.Sprintf("%s: want %d, got %d", k, n, got[k]))
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			diff = append(diff, fmt.Sprintf("%s: want 0, got %d", k, n))
		}
	}
	sort.Strings(diff)
	t.Fatalf("stored counts differ in %d entries (of %d wanted): %s", len(diff), len(want), strings.Join(diff[:min(len(diff), 10)], "; "))
}

// getEvent returns a team's stored event by its event id, and checks it is where the layout puts it.
func getEvent(t *testing.T, env collectorproc.Env, team, id string) map[string]any {
	t.Helper()
	lay := env.Layout()
	body := fmt.Sprintf(`{"query":{"bool":{"filter":[{"term":{"team_id":%q}},{"ids":{"values":[%q]}}]}}}`, team, layout.DocID(team, id))
	res, err := http.Post(estest.URL(t)+"/"+strings.Join(lay.ReadIndices(), ",")+"/_search", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	var out struct {
		Hits struct {
			Hits []struct {
				Index  string         `json:"_index"`
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.NoError(t, json.NewDecoder(res.Body).Decode(&out))
	require.Len(t, out.Hits.Hits, 1)
	h := out.Hits.Hits[0]
	ts, err := time.Parse(time.RFC3339Nano, h.Source["@timestamp"].(string))
	require.NoError(t, err)
	assert.Equal(t, lay.Index(team, ts), h.Index)
	return h.Source
}

func TestEndToEnd(t *testing.T) {
	env := newEnv(t)
	c := startCollector(t, env)
	ctx := context.Background()

	grpcExp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(env.GRPC), otlploggrpc.WithInsecure())
	require.NoError(t, err)
	httpExp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(env.HTTP), otlploghttp.WithInsecure())
	require.NoError(t, err)
	overGRPC, overHTTP := provider(t, grpcExp), provider(t, httpExp)
	alGRPC, alHTTP := auditlog.New(overGRPC), auditlog.New(overHTTP)

	seedID, err := alGRPC.Emit(ctx, audit.SampleEvent())
	require.NoError(t, err)
	sysID, err := alHTTP.Emit(ctx, audit.Event{Action: audit.ActionDataExport, TeamID: "acme-corp", Actor: auditlog.System(), Metadata: map[string]any{"kind": "nightly"}})
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		al := alGRPC
		if i%2 == 1 {
			al = alHTTP
		}
		_, err := al.Emit(ctx, audit.Event{Action: audit.ActionUserLoginComplete, TeamID: fmt.Sprint(100 + i%4), Actor: auditlog.User(fmt.Sprint(i), "", "")})
		require.NoError(t, err)
	}
	// An invalid event, which the emitter would refuse, sent as a raw record over OTLP/HTTP.
	var bad log.Record
	bad.SetEventName("audit")
	bad.SetTimestamp(time.Now())
	bad.SetBody(attribute.StringValue(`{"action":"job_created","team_id":"../191797","actor":{"type":"system"}}`))
	overHTTP.Logger("e2e").Emit(ctx, bad)
	// Not an audit record: the example config dedicates the pipeline to audit and drops it.
	var plain log.Record
	plain.SetBody(attribute.StringValue("GET /health 200"))
	overHTTP.Logger("e2e").Emit(ctx, plain)

	require.NoError(t, overGRPC.Shutdown(ctx))
	require.NoError(t, overHTTP.Shutdown(ctx))
	want := counted{"191796": 1, "acme-corp": 1, "100": 5, "101": 5, "102": 5, "103": 5, quarantined: 1}
	waitForCounts(t, env, want)

	seed := getEvent(t, env, "191796", seedID)
	assert.Equal(t, "job_user_access_changed", seed["action"])
	assert.Equal(t, "191796", seed["team_id"])
	assert.Equal(t, map[string]any{"type": "user", "id": "445177", "metadata": map[string]any{"email": "ann+oats@gem.com", "name": "Ann Samuelson"}}, seed["actor"])
	assert.Equal(t, map[string]any{"previous_access_level_id": float64(7347)}, seed["metadata"])
	assert.Equal(t, "e2e-service", seed["service"].(map[string]any)["name"])
	sys := getEvent(t, env, "acme-corp", sysID)
	assert.Equal(t, "system", sys["actor"].(map[string]any)["type"])
	assert.Equal(t, map[string]any{"kind": "nightly"}, sys["metadata"])

	res, err := http.Get(estest.URL(t) + "/" + env.Layout().Quarantine() + "/_search")
	require.NoError(t, err)
	var q struct {
		Hits struct {
			Hits []struct {
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&q))
	res.Body.Close()
	require.Len(t, q.Hits.Hits, 1)
	quarantined := q.Hits.Hits[0].Source
	assert.Equal(t, "validation", quarantined["quarantine"].(map[string]any)["stage"])
	assert.Equal(t, []any{`invalid_team_id: team_id "../191797" is not a positive integer or a lowercase slug [a-z0-9][a-z0-9_-]{0,63}`}, quarantined["quarantine"].(map[string]any)["reasons"])
	assert.Equal(t, `"{\"action\":\"job_created\",\"team_id\":\"../191797\",\"actor\":{\"type\":\"system\"}}"`, quarantined["record"].(map[string]any)["body"])

	stop(t, c)
	assert.Equal(t, want, counts(t, env), "nothing changes after a graceful stop")
}

func emitJobs(t *testing.T, grpcAddr string, n int) {
	t.Helper()
	ctx := context.Background()
	exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(grpcAddr), otlploggrpc.WithInsecure())
	require.NoError(t, err)
	p := provider(t, exp)
	al := auditlog.New(p)
	for i := 0; i < n; i++ {
		_, err := al.Emit(ctx, audit.Event{Action: audit.ActionJobUpdated, TeamID: fmt.Sprint(500 + i%3), Actor: auditlog.System(), Metadata: map[string]any{"seq": i}})
		require.NoError(t, err)
	}
	require.NoError(t, p.Shutdown(ctx)) // every event acknowledged by the collector
}

// TestGracefulStopFlushesInFlight stops the collector right after it acknowledged the events (the
// exporter's batch waits up to a second): SIGTERM must deliver them before the process exits.
func TestGracefulStopFlushesInFlight(t *testing.T) {
	env := newEnv(t)
	c := startCollector(t, env)
	const n = 300
	emitJobs(t, env.GRPC, n)
	stop(t, c)
	assert.Equal(t, counted{"500": n / 3, "501": n / 3, "502": n / 3}, counts(t, env))
}

// TestPersistentQueueSurvivesAKill: Elasticsearch stores every bulk request but its answers are lost
// (a proxy drops the connection after forwarding), so the collector keeps retrying batches that are
// already stored; it is killed with SIGKILL mid-retry and started again against the node directly.
// The persistent queue replays the batches, their 409s are verified as duplicates, and every event is
// stored exactly once.
func TestPersistentQueueSurvivesAKill(t *testing.T) {
	env := newEnv(t)
	proxy, err := faultproxy.New(estest.URL(t))
	require.NoError(t, err)
	proxy.RequestFault = func(int) string { return "drop-answer" }
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	lossy := env
	lossy.Extra = []string{"ES_URL=" + srv.URL} // later entries win
	c := startCollector(t, lossy)
	const n = 300
	emitJobs(t, env.GRPC, n)
	want := counted{"500": n / 3, "501": n / 3, "502": n / 3}
	// Not every event need be stored before the kill: both consumers may be retrying stored
	// batches while a later batch waits its turn in the queue. It is persisted all the same.
	require.Eventually(t, func() bool { return proxy.Stats()["answer dropped after store"] >= 2 }, time.Minute, 100*time.Millisecond,
		"the collector must have retried a stored batch at least once before the kill")
	stored, _, err := esinspect.Counts(estest.URL(t), env.Layout())
	require.NoError(t, err)
	require.NotEmpty(t, stored, "batches were stored though the collector never heard so")
	pid := c.Cmd.Process.Pid
	c.Kill()
	require.True(t, c.Exited(), "pid %d survived SIGKILL", pid)

	c = startCollector(t, env)
	// The replayed batches are answered 409 and verified: the counts stay exact, with no duplicate id.
	require.Eventually(t, func() bool { return queueEmpty(t, env) }, time.Minute, 200*time.Millisecond, "the queue replays and drains")
	waitForCounts(t, env, want) // the last batch read from the queue may still be in flight
	docs, err := esinspect.Inventory(estest.URL(t), env.Layout())
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, d := range docs {
		assert.False(t, ids[d.EventID], "event %s stored twice", d.EventID)
		ids[d.EventID] = true
	}
	stop(t, c)
}

// queueEmpty reads the collector's sending queue size from its metrics.
func queueEmpty(t *testing.T, env collectorproc.Env) bool {
	size, found, err := env.Metric("otelcol_exporter_queue_size")
	return err == nil && found && size == 0
}

func TestConfigValidation(t *testing.T) {
	bin := binary(t)
	out, err := exec.Command(bin, "validate", "--config", "../config.example.yaml").CombinedOutput()
	require.NoError(t, err, string(out))

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	b, err := os.ReadFile("../config.example.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(b), "${env:AUDIT_INDEX_PREFIX:-audit-}", "Audit-", 1)), 0o600))
	out, err = exec.Command(bin, "validate", "--config", bad).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), `index_prefix: "Audit-" must be a non-empty lowercase index name prefix`)

	// The same bad value stops a starting collector with the same message.
	cmd := exec.Command(bin, "--config", bad)
	cmd.Env = append(os.Environ(), "HEALTH_ENDPOINT="+freePort(t), "PPROF_ENDPOINT="+freePort(t), "METRICS_PORT=0", "AUDIT_STORAGE_DIR="+t.TempDir())
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), `index_prefix: "Audit-"`)
}
