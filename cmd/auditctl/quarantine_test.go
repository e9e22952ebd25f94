package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/recorder"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

// ingest sends records through the audit processor configured by the collector configuration file
// cfgPath and the exporter, as the collector would.
func ingest(t *testing.T, conn []string, cfgPath string, ld plog.Logs) {
	t.Helper()
	pcfg := auditprocessor.NewFactory().CreateDefaultConfig().(*auditprocessor.Config)
	require.NoError(t, recorder.CollectorSection(context.Background(), cfgPath, "processors::audit", pcfg))
	ef := auditelasticsearchexporter.NewFactory()
	ecfg := ef.CreateDefaultConfig().(*auditelasticsearchexporter.Config)
	ecfg.Endpoints = []string{conn[1]}
	ecfg.IndexPrefix, ecfg.QuarantineIndex = conn[3], conn[5]
	ecfg.Template.Replicas = 0
	exp, err := ef.CreateLogs(context.Background(), exportertest.NewNopSettings(ef.Type()), ecfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	pf := auditprocessor.NewFactory()
	proc, err := pf.CreateLogs(context.Background(), processortest.NewNopSettings(pf.Type()), pcfg, exp)
	require.NoError(t, err)
	require.NoError(t, proc.ConsumeLogs(context.Background(), ld))
	require.NoError(t, exp.Shutdown(context.Background()))
}

func esJSON(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return res.StatusCode, out
}

// count returns the number of documents matching a query string in an index, refreshed first.
func count(t *testing.T, url, index, q string) int {
	t.Helper()
	esJSON(t, "POST", url+"/"+index+"/_refresh", "")
	status, out := esJSON(t, "GET", url+"/"+index+"/_count?q="+q, "")
	if status == http.StatusNotFound {
		return 0
	}
	require.Equal(t, http.StatusOK, status, "%v", out)
	return int(out["count"].(float64))
}

// TestQuarantineReplayAfterCatalogChange: a record quarantined for an unknown action (with
// unknown_actions: reject) stays quarantined while the catalog lacks the action, moves into its
// team's log once the catalog has it, and is stored once however often the replay runs, even when
// the replay was interrupted between storing the event and removing it from quarantine.
func TestQuarantineReplayAfterCatalogChange(t *testing.T) {
	conn := setup(t, nil)
	url, prefix, quarantineIndex := conn[1], conn[3], conn[5]
	dir := t.TempDir()
	catalog := filepath.Join(dir, "catalog.yaml")
	writeCatalog := func(extra string) {
		require.NoError(t, os.WriteFile(catalog, []byte("version: 1\nactions:\n  - {name: job_created, category: job, description: A job was created}\n"+extra), 0o600))
	}
	writeCatalog("")
	config := filepath.Join(dir, "collector.yaml")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf("processors:\n  audit:\n    unknown_actions: reject\n    catalog:\n      file: %s\n"+
		"exporters:\n  auditelasticsearch:\n    endpoints: [%s]\n    index_prefix: %s\n    quarantine_index: %s\n", catalog, url, prefix, quarantineIndex)), 0o600))

	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "offers")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetEventName("audit.offer_rescinded")
	lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Now().Add(-time.Hour)))
	lr.Body().SetStr(`{"team_id":77,"actor":{"type":"user","id":5},"targets":[{"type":"offer","id":9}]}`)
	lr.Attributes().PutStr("audit.id", "offer-9-rescinded")
	ingest(t, conn, config, ld)
	require.Equal(t, 1, count(t, url, quarantineIndex, "quarantine.team_id:77"))

	out, _, err := auditctl(t, append([]string{"quarantine", "list", "--team", "77", "--reason", "unknown_action"}, conn...)...)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	qid := strings.Fields(lines[1])[0]
	assert.Contains(t, lines[1], "unknown_action")
	out, _, err = auditctl(t, append([]string{"quarantine", "show", "--id", qid}, conn...)...)
	require.NoError(t, err)
	assert.Contains(t, out, `"event_name":"audit.offer_rescinded"`)

	replay := func() string {
		t.Helper()
		out, stderr, err := auditctl(t, append([]string{"quarantine", "replay", "--team", "77", "--config", config, "--operator", "oncall@example.com"}, conn...)...)
		require.NoError(t, err, stderr)
		return out
	}
	// The catalog still lacks the action: the record stays, nothing reaches the team's log.
	assert.Contains(t, replay(), "replayed: 0 stored in their team's log, 1 quarantined again")
	assert.Equal(t, 1, count(t, url, quarantineIndex, "quarantine.team_id:77"))
	assert.Equal(t, 0, count(t, url, prefix+"*", "team_id:77"))

	// The catalog gains the action: the record moves into the team's log, with the replay recorded.
	writeCatalog("  - {name: offer_rescinded, category: offer, description: An offer was rescinded}\n")
	_, saved := esJSON(t, "GET", url+"/"+quarantineIndex+"/_doc/"+qid, "")
	assert.Contains(t, replay(), "replayed: 1 stored in their team's log, 0 quarantined again")
	assert.Equal(t, 0, count(t, url, quarantineIndex, "quarantine.team_id:77"))
	assert.Equal(t, 1, count(t, url, prefix+"*", "team_id:77%20AND%20action:offer_rescinded"))
	assert.Equal(t, 1, count(t, url, prefix+"*", "team_id:77%20AND%20action:audit_quarantine_replayed"))

	// Twice: nothing left to replay.
	assert.Contains(t, replay(), "replayed: 0 stored in their team's log, 0 quarantined again")
	// A replay interrupted after storing, before removing: the next one finds the event stored.
	src, _ := json.Marshal(saved["_source"])
	status, _ := esJSON(t, "PUT", url+"/"+quarantineIndex+"/_doc/"+qid+"?refresh=true", string(src))
	require.Equal(t, http.StatusCreated, status)
	assert.Contains(t, replay(), "replayed: 1 stored in their team's log, 0 quarantined again")
	assert.Equal(t, 1, count(t, url, prefix+"*", "team_id:77%20AND%20action:offer_rescinded"), "stored once")
	assert.Equal(t, 0, count(t, url, quarantineIndex, "*"))
}
