package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
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

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
)

// setup installs the index templates under a fresh prefix (as the collector does at start), loads
// events, and returns the connection flags for auditctl.
func setup(t *testing.T, events []audit.Event) []string {
	t.Helper()
	url, prefix := estest.URL(t), estest.Prefix(t)
	f := auditelasticsearchexporter.NewFactory()
	cfg := f.CreateDefaultConfig().(*auditelasticsearchexporter.Config)
	cfg.Endpoints = []string{url}
	cfg.IndexPrefix, cfg.QuarantineIndex = prefix+layout.DefaultPrefix, prefix+layout.DefaultQuarantine
	cfg.Template.Replicas = 0
	exp, err := f.CreateLogs(context.Background(), exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, exp.Shutdown(context.Background()))

	c, err := query.New(query.Conn{URLs: []string{url}, IndexPrefix: cfg.IndexPrefix, QuarantineIndex: cfg.QuarantineIndex})
	require.NoError(t, err)
	_, err = recorder.RecordAll(context.Background(), c, events)
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
	now := time.Now().UTC()
	t0 := time.Date(now.Year(), now.Month(), now.Day()-2, 21, 0, 0, 0, time.UTC)
	until := now.AddDate(0, 0, 1).Format(time.DateOnly)
	conn := setup(t, []audit.Event{
		{Time: t0, Action: audit.ActionUserLoginComplete, TeamID: "191796", Actor: auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson")},
		{Time: t0.Add(time.Second), Action: audit.ActionJobCreated, TeamID: "191796", Actor: auditlog.System()},
	})
	file := filepath.Join(t.TempDir(), "191796.csv")
	_, stderr, err := auditctl(t, append([]string{"export", "--team", "191796", "--out", file, "--operator", "oncall@example.com", "--reason", "TICKET-42", "--until", until}, conn...)...)
	require.NoError(t, err, stderr)
	assert.Contains(t, stderr, "exported 2 events of team 191796; recorded as data_export events ")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 3)
	assert.Equal(t, []string{"user_login_complete", "job_created"}, []string{rows[1][1], rows[2][1]})
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*partial"))
	assert.Empty(t, left, "no temporary file left behind")

	// The export is in the team's log twice: when it started, before any row, and how it ended.
	var startID, endID string
	_, err = fmt.Sscanf(stderr[strings.Index(stderr, "data_export events "):], "data_export events %s (started) and %s", &startID, &endID)
	require.NoError(t, err, stderr)
	var doc struct {
		Action   string
		Actor    struct{ Type, ID string }
		Metadata map[string]any
	}
	refresh(t, conn)
	out, _, err := auditctl(t, append([]string{"show", "--team", "191796", "--id", startID}, conn...)...)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	assert.Equal(t, "data_export", doc.Action)
	assert.Equal(t, "oncall@example.com", doc.Actor.ID)
	assert.Equal(t, map[string]any{"kind": "auditctl", "format": "csv", "until": until, "reason": "TICKET-42", "state": "started"}, doc.Metadata)
	out, _, err = auditctl(t, append([]string{"show", "--team", "191796", "--id", endID}, conn...)...)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	assert.Equal(t, map[string]any{"kind": "auditctl", "format": "csv", "until": until, "reason": "TICKET-42", "state": "completed",
		"events": float64(2), "started_event_id": startID}, doc.Metadata)

	// Bad flags are refused before anything is recorded or written.
	bad := filepath.Join(t.TempDir(), "bad.csv")
	_, _, err = auditctl(t, append([]string{"export", "--team", "191796", "--out", bad, "--operator", "oncall@example.com", "--format", "xml"}, conn...)...)
	require.ErrorContains(t, err, `--format: format "xml"`)
	_, _, err = auditctl(t, append([]string{"export", "--team", "191796", "--out", filepath.Join(bad, "no-such-dir", "x.csv"), "--operator", "oncall@example.com"}, conn...)...)
	require.Error(t, err)

	// A failed export leaves no file at --out, and its failure is in the log too: here the file
	// cannot take the place of the directory named by --out.
	dir := t.TempDir()
	_, _, err = auditctl(t, append([]string{"export", "--team", "191796", "--out", dir, "--operator", "oncall@example.com"}, conn...)...)
	require.Error(t, err)
	assert.Regexp(t, `^export failed after \d+ events \(recorded as data_export events \S+ and \S+\)`, err.Error())
	assert.DirExists(t, dir)
	left, _ = filepath.Glob(filepath.Join(filepath.Dir(dir), ".*partial"))
	assert.Empty(t, left)

	refresh(t, conn)
	out, _, err = auditctl(t, append([]string{"teams"}, conn...)...)
	require.NoError(t, err)
	assert.Regexp(t, `191796\s+6\s+`+t0.Format("2006-01-02T15:04:05.000Z"), out, "2 events, 2 for the export, 2 for the failed one, none for the refused flags")
}

// refresh makes what was stored searchable.
func refresh(t *testing.T, conn []string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, conn[1]+"/"+conn[3]+"*/_refresh", nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
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
	for _, prefix := range []string{"*", "audit-*,other-", "Audit-", "a b"} {
		_, _, err = auditctl(t, "teams", "--index-prefix", prefix, "--es-url", "http://127.0.0.1:9")
		assert.ErrorContains(t, err, "index_prefix", prefix)
	}
}

// TestShowEscapesTheID: an id with URL syntax is looked up as the id, not as a path.
func TestShowEscapesTheID(t *testing.T) {
	conn := setup(t, []audit.Event{{ID: "a/b?c=d#e", Time: time.Now().Add(-time.Hour), Action: audit.ActionJobCreated, TeamID: "7", Actor: auditlog.System()}})
	out, _, err := auditctl(t, append([]string{"show", "--team", "7", "--id", "a/b?c=d#e"}, conn...)...)
	require.NoError(t, err)
	assert.Contains(t, out, `"id":"a/b?c=d#e"`)
	_, _, err = auditctl(t, append([]string{"show", "--team", "7", "--id", "a"}, conn...)...)
	assert.ErrorContains(t, err, `has no event "a"`)
}

func flagErrHelp() error { return flag.ErrHelp }
