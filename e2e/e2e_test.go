// Package e2e runs the built collector distribution (_build/otelcol-audit, from `make build`) with
// config.example.yaml against the real Elasticsearch, and sends it audit events from the auditlog
// package over OTLP/gRPC and OTLP/HTTP.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
	"github.com/auditpipe/auditpipe/internal/estest"
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

// collector is one run of the distribution with config.example.yaml.
type collector struct {
	t      *testing.T
	cmd    *exec.Cmd
	env    []string
	health string
	log    *os.File
}

func newCollectorEnv(t *testing.T) (env []string, prefix, grpcAddr, httpAddr, health string) {
	prefix = estest.Prefix(t)
	grpcAddr, httpAddr, health = freePort(t), freePort(t), freePort(t)
	metrics := freePort(t)
	env = append(os.Environ(),
		"ES_URL="+estest.URL(t),
		"AUDIT_STORAGE_DIR="+t.TempDir(),
		"AUDIT_INDEX_PREFIX="+prefix+"audit-",
		"AUDIT_QUARANTINE_INDEX="+prefix+"audit-quarantine",
		"OTLP_GRPC_ENDPOINT="+grpcAddr,
		"OTLP_HTTP_ENDPOINT="+httpAddr,
		"HEALTH_ENDPOINT="+health,
		"METRICS_PORT="+metrics[strings.LastIndex(metrics, ":")+1:],
	)
	return env, prefix, grpcAddr, httpAddr, health
}

func startCollector(t *testing.T, env []string, health string) *collector {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "collector-*.log")
	require.NoError(t, err)
	cmd := exec.Command(binary(t), "--config", "../config.example.yaml")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	c := &collector{t: t, cmd: cmd, env: env, health: health, log: logf}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("collector log:\n%s", b)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + health + "/")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return c
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := os.ReadFile(logf.Name())
	t.Fatalf("collector not healthy after 60s:\n%s", b)
	return nil
}

// stop sends SIGTERM and waits for a clean exit.
func (c *collector) stop() {
	c.t.Helper()
	require.NoError(c.t, c.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(c.t, err, "the collector exits cleanly on SIGTERM")
	case <-time.After(60 * time.Second):
		c.t.Fatal("collector did not stop within 60s of SIGTERM")
	}
}

func provider(t *testing.T, exp sdklog.Exporter) *sdklog.LoggerProvider {
	t.Helper()
	return sdklog.NewLoggerProvider(
		sdklog.WithResource(resource.NewSchemaless(attribute.String("service.name", "e2e-service"))),
		sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
}

type counted map[string]int

// counts returns the document count of every index under prefix, after a refresh.
func counts(t *testing.T, prefix string) counted {
	t.Helper()
	base := estest.URL(t)
	req, _ := http.NewRequest(http.MethodPost, base+"/"+prefix+"*/_refresh?expand_wildcards=all", nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
	res, err := http.Get(base + "/_cat/indices/" + prefix + "*?format=json&h=index,docs.count&expand_wildcards=all")
	require.NoError(t, err)
	defer res.Body.Close()
	var rows []struct {
		Index string `json:"index"`
		Count string `json:"docs.count"`
	}
	b, _ := io.ReadAll(res.Body)
	require.NoError(t, json.Unmarshal(b, &rows), string(b))
	out := counted{}
	for _, r := range rows {
		var n int
		fmt.Sscan(r.Count, &n)
		out[strings.TrimPrefix(r.Index, prefix)] = n
	}
	return out
}

func waitForCounts(t *testing.T, prefix string, want counted) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got counted
	for time.Now().Before(deadline) {
		if got = counts(t, prefix); assert.ObjectsAreEqual(want, got) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	require.Equal(t, want, got)
}

func getDoc(t *testing.T, index, id string) map[string]any {
	t.Helper()
	res, err := http.Get(estest.URL(t) + "/" + index + "/_doc/" + id)
	require.NoError(t, err)
	defer res.Body.Close()
	var doc struct {
		Source map[string]any `json:"_source"`
	}
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.NoError(t, json.NewDecoder(res.Body).Decode(&doc))
	return doc.Source
}

func seedEvent() audit.Event {
	return audit.Event{
		Action: audit.ActionJobUserAccessChanged,
		TeamID: "191796",
		Actor:  auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson"),
		Targets: []audit.Target{
			{Type: "job_user_access", ID: "107404", Metadata: map[string]any{"job_id": 313520, "user_id": 506607, "access_level_id": 7349}},
			{Type: "job", ID: "313520"},
			{Type: "user", ID: "506607"},
		},
		AccessRoute: []string{"::1"},
		RemoteAddr:  "::1",
		UserAgent:   "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36",
		Metadata:    map[string]any{"previous_access_level_id": 7347},
	}
}

func TestEndToEnd(t *testing.T) {
	env, prefix, grpcAddr, httpAddr, health := newCollectorEnv(t)
	c := startCollector(t, env, health)
	ctx := context.Background()

	grpcExp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(grpcAddr), otlploggrpc.WithInsecure())
	require.NoError(t, err)
	httpExp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(httpAddr), otlploghttp.WithInsecure())
	require.NoError(t, err)
	overGRPC, overHTTP := provider(t, grpcExp), provider(t, httpExp)
	alGRPC, alHTTP := auditlog.New(overGRPC), auditlog.New(overHTTP)

	seedID, err := alGRPC.Emit(ctx, seedEvent())
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
	want := counted{"audit-191796": 1, "audit-acme-corp": 1, "audit-100": 5, "audit-101": 5, "audit-102": 5, "audit-103": 5, "audit-quarantine": 1}
	waitForCounts(t, prefix, want)

	seed := getDoc(t, prefix+"audit-191796", seedID)
	assert.Equal(t, "job_user_access_changed", seed["action"])
	assert.Equal(t, "191796", seed["team_id"])
	assert.Equal(t, map[string]any{"type": "user", "id": "445177", "metadata": map[string]any{"email": "ann+oats@gem.com", "name": "Ann Samuelson"}}, seed["actor"])
	assert.Equal(t, map[string]any{"previous_access_level_id": float64(7347)}, seed["metadata"])
	assert.Equal(t, "e2e-service", seed["service"].(map[string]any)["name"])
	sys := getDoc(t, prefix+"audit-acme-corp", sysID)
	assert.Equal(t, "system", sys["actor"].(map[string]any)["type"])
	assert.Equal(t, map[string]any{"kind": "nightly"}, sys["metadata"])

	res, err := http.Get(estest.URL(t) + "/" + prefix + "audit-quarantine/_search")
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

	c.stop()
	assert.Equal(t, want, counts(t, prefix), "nothing changes after a graceful stop")
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
	env, prefix, grpcAddr, _, health := newCollectorEnv(t)
	c := startCollector(t, env, health)
	const n = 300
	emitJobs(t, grpcAddr, n)
	c.stop()
	assert.Equal(t, counted{"audit-500": n / 3, "audit-501": n / 3, "audit-502": n / 3}, counts(t, prefix))
}

// TestPersistentQueueSurvivesAKill: with Elasticsearch unreachable the acknowledged events wait in
// the persistent queue; the collector is killed (SIGKILL) and started again with the real node, and
// every event is stored exactly once.
func TestPersistentQueueSurvivesAKill(t *testing.T) {
	env, prefix, grpcAddr, _, health := newCollectorEnv(t)
	dead := append(append([]string(nil), env...), "ES_URL=http://"+freePort(t)) // later entries win
	c := startCollector(t, dead, health)
	const n = 300
	emitJobs(t, grpcAddr, n)
	require.NoError(t, c.cmd.Process.Kill())
	_ = c.cmd.Wait()
	assert.Empty(t, counts(t, prefix), "nothing could be stored while Elasticsearch was unreachable")

	c = startCollector(t, env, health)
	waitForCounts(t, prefix, counted{"audit-500": n / 3, "audit-501": n / 3, "audit-502": n / 3})
	c.stop()
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
	cmd.Env = append(os.Environ(), "HEALTH_ENDPOINT="+freePort(t), "METRICS_PORT=0", "AUDIT_STORAGE_DIR="+t.TempDir())
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), `index_prefix: "Audit-"`)
}
