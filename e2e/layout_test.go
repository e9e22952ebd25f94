package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
)

// TestFiveThousandTeamsOnTheDefaultNode: 5,000 teams with one event each, through the collector, on
// the default development node. Every event is stored, the teams share one partition (the shard
// count does not grow with the teams), the node stays healthy, and `auditctl export --team T`
// returns exactly team T's events.
func TestFiveThousandTeamsOnTheDefaultNode(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 5,000 teams' events through the collector")
	}
	const teams = 5000
	env := newEnv(t)
	c := startCollector(t, env)
	ctx := context.Background()
	exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(env.GRPC), otlploggrpc.WithInsecure())
	require.NoError(t, err)
	p := sdklog.NewLoggerProvider(
		sdklog.WithResource(resource.NewSchemaless(attribute.String("service.name", "e2e-service"))),
		// A queue for every record: the SDK drops what does not fit.
		sdklog.WithProcessor(sdklog.NewBatchProcessor(exp, sdklog.WithExportMaxBatchSize(1000), sdklog.WithMaxQueueSize(teams))))
	al := auditlog.New(p)
	ids := map[string]string{}
	for i := 0; i < teams; i++ {
		team := fmt.Sprint(20000 + i)
		id, err := al.Emit(ctx, audit.Event{Action: audit.ActionUserLoginComplete, TeamID: team, Actor: auditlog.User(fmt.Sprint(i), "", "")})
		require.NoError(t, err)
		ids[team] = id
	}
	require.NoError(t, p.Shutdown(ctx)) // every event acknowledged by the collector

	want := counted{}
	for team := range ids {
		want[team] = 1
	}
	waitForCounts(t, env, want)
	fp, err := esinspect.Measure(estest.URL(t), env.Prefix)
	require.NoError(t, err)
	assert.LessOrEqual(t, fp.Shards, 2, "one shared partition (two if the month turned during the test), whatever the team count")
	var health struct{ Status string }
	require.NoError(t, getJSON(estest.URL(t)+"/_cluster/health", &health))
	assert.NotEqual(t, "red", health.Status)

	auditctl := buildAuditctl(t)
	for _, team := range []string{"20000", "21234", "24999"} {
		out := filepath.Join(t.TempDir(), team+".ndjson")
		cmd := exec.Command(auditctl, "export", "--team", team, "--format", "ndjson", "--out", out, "--operator", "e2e@example.com",
			"--es-url", estest.URL(t), "--index-prefix", env.Layout().Prefix(), "--quarantine-index", env.Layout().Quarantine())
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, string(b))
		f, err := os.Open(out)
		require.NoError(t, err)
		var events []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var d struct {
				TeamID string `json:"team_id"`
				Action string `json:"action"`
				Event  struct{ ID string }
			}
			require.NoError(t, json.Unmarshal(sc.Bytes(), &d))
			assert.Equal(t, team, d.TeamID, "an event of another team in team %s's export", team)
			if d.Action != audit.ActionDataExport { // the export records itself in the team's log
				events = append(events, d.Event.ID)
			}
		}
		f.Close()
		assert.Equal(t, []string{ids[team]}, events, "team %s", team)
	}
	stop(t, c)
}

// buildAuditctl builds the command line tool the way a user gets it.
func buildAuditctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "auditctl")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/auditctl")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

func getJSON(url string, out any) error {
	c := http.Client{Timeout: 30 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	return json.NewDecoder(res.Body).Decode(out)
}
