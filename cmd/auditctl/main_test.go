package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter"
	"github.com/auditpipe/auditpipe/internal/auditquery"
	"github.com/auditpipe/auditpipe/internal/estest"
)

// setup installs the index templates under a fresh prefix (as the collector does at start), loads
// events, and returns the connection flags for auditctl.
func setup(t *testing.T, events []audit.Event) []string {
	t.Helper()
	url, prefix := estest.URL(t), estest.Prefix(t)
	f := auditelasticsearchexporter.NewFactory()
	cfg := f.CreateDefaultConfig().(*auditelasticsearchexporter.Config)
	cfg.Endpoints = []string{url}
	cfg.IndexPrefix, cfg.QuarantineIndex = prefix+"audit-", prefix+"audit-quarantine"
	cfg.Template.Replicas = 0
	exp, err := f.CreateLogs(context.Background(), exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, exp.Shutdown(context.Background()))

	c, err := auditquery.New(auditquery.Conn{URLs: []string{url}, IndexPrefix: cfg.IndexPrefix, QuarantineIndex: cfg.QuarantineIndex})
	require.NoError(t, err)
	_, err = c.RecordAll(context.Background(), events)
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodPost, url+"/"+prefix+"*/_refresh", nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return []string{"--es-url", url, "--index-prefix", cfg.IndexPrefix, "--quarantine-index", cfg.QuarantineIndex}
}

func auditctl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestExportIsRecordedInTheTeamsLog(t *testing.T) {
	t0 := time.Date(2025, 8, 1, 21, 0, 0, 0, time.UTC)
	conn := setup(t, []audit.Event{
		{Time: t0, Action: audit.ActionUserLoginComplete, TeamID: "191796", Actor: auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson")},
		{Time: t0.Add(time.Second), Action: audit.ActionJobCreated, TeamID: "191796", Actor: auditlog.System()},
	})
	file := filepath.Join(t.TempDir(), "191796.csv")
	_, stderr, err := auditctl(t, append([]string{"export", "--team", "191796", "--out", file, "--operator", "oncall@example.com", "--reason", "TICKET-42", "--until", "2026-01-01"}, conn...)...)
	require.NoError(t, err, stderr)
	assert.Contains(t, stderr, "exported 2 events of team 191796; recorded as data_export event ")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 3)
	assert.Equal(t, []string{"user_login_complete", "job_created"}, []string{rows[1][1], rows[2][1]})

	// The export itself is now in the team's log, newest, with who and why.
	id := stderr[strings.LastIndex(stderr, " ")+1 : len(stderr)-1]
	out, _, err := auditctl(t, append([]string{"show", "--team", "191796", "--id", id}, conn...)...)
	require.NoError(t, err)
	var doc struct {
		Action   string
		Actor    struct{ Type, ID string }
		Metadata map[string]any
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	assert.Equal(t, "data_export", doc.Action)
	assert.Equal(t, "oncall@example.com", doc.Actor.ID)
	assert.Equal(t, map[string]any{"kind": "auditctl", "format": "csv", "events": float64(2), "until": "2026-01-01", "reason": "TICKET-42"}, doc.Metadata)

	req, _ := http.NewRequest(http.MethodPost, conn[1]+"/"+conn[3]+"*/_refresh", nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	out, _, err = auditctl(t, append([]string{"teams"}, conn...)...)
	require.NoError(t, err)
	assert.Regexp(t, `191796\s+3\s+2025-08-01T21:00:00.000Z`, out)
}

func TestErrors(t *testing.T) {
	_, _, err := auditctl(t)
	assert.ErrorContains(t, err, "a command is required")
	_, _, err = auditctl(t, "frobnicate")
	assert.ErrorContains(t, err, `unknown command "frobnicate"`)
	_, stderr, err := auditctl(t, "export", "--help")
	assert.ErrorIs(t, err, flagErrHelp())
	assert.Contains(t, stderr, "-team")
	_, _, err = auditctl(t, "export", "--operator", "x")
	assert.ErrorContains(t, err, "--team is required")
	_, _, err = auditctl(t, "export", "--team", "191796", "--operator", "")
	assert.ErrorContains(t, err, "--operator is required")
	for _, team := range []string{"*", "../7", "a,b", "Acme"} {
		_, _, err = auditctl(t, "export", "--team", team, "--operator", "x", "--es-url", "http://127.0.0.1:9")
		assert.ErrorContains(t, err, "team ", team)
	}
	_, _, err = auditctl(t, "export", "--team", "7", "--operator", "x", "--since", "yesterday")
	assert.ErrorContains(t, err, `--since: "yesterday" is not an RFC 3339 time`)
	_, _, err = auditctl(t, "export", "--team", "7", "--operator", "x", "--es-url", "http://127.0.0.1:9")
	assert.ErrorContains(t, err, "unreachable")
}

func flagErrHelp() error { return flag.ErrHelp }
