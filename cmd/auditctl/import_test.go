package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/importer"
)

// rowsWithout drops the rows of the tools' own records from a CSV export.
func rowsWithout(csv string, actions ...string) string {
	var keep []string
	for _, line := range strings.SplitAfter(csv, "\r\n") {
		drop := false
		for _, a := range actions {
			drop = drop || strings.Contains(line, ","+a+",")
		}
		if !drop {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

// TestImportAnExportIntoAFreshLog: what auditctl export writes, auditctl import stores in a fresh
// log; exporting that log gives the same rows (the tools' own records aside); importing again
// stores nothing and adds only the import's record. Standard input works too.
func TestImportAnExportIntoAFreshLog(t *testing.T) {
	now := time.Now().UTC()
	t0 := time.Date(now.Year(), now.Month(), now.Day()-2, 21, 0, 0, 0, time.UTC)
	from := setup(t, []audit.Event{
		{Time: t0, Action: audit.ActionUserLoginComplete, TeamID: "191796", Actor: auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson"), UserAgent: "=cmd"},
		{Time: t0.Add(time.Second), Action: audit.ActionJobUserAccessChanged, TeamID: "191796", Actor: auditlog.User("445177", "", ""),
			Targets: []audit.Target{{Type: "job", ID: "313520"}}, Metadata: map[string]any{"previous_access_level_id": 7347}},
	})
	file := filepath.Join(t.TempDir(), "history.csv")
	_, stderr, err := auditctl(t, append([]string{"export", "--team", "191796", "--out", file, "--operator", "me"}, from...)...)
	require.NoError(t, err, stderr)
	exported, err := os.ReadFile(file)
	require.NoError(t, err)

	t.Run("fresh", func(t *testing.T) {
		to := setup(t, nil)
		out, stderr, err := auditctl(t, append([]string{"import", "--file", file, "--format", "csv", "--team", "191796", "--operator", "me", "--json"}, to...)...)
		require.NoError(t, err, stderr)
		var sum importer.Summary
		require.NoError(t, json.Unmarshal([]byte(out), &sum), out)
		assert.GreaterOrEqual(t, sum.Stored, int64(2))
		assert.Zero(t, sum.Quarantined)
		assert.Equal(t, "history.csv", sum.Files[0].Name)
		require.Contains(t, sum.Recorded, "191796")

		back := filepath.Join(t.TempDir(), "back.csv")
		_, stderr, err = auditctl(t, append([]string{"export", "--team", "191796", "--out", back, "--operator", "me"}, to...)...)
		require.NoError(t, err, stderr)
		got, err := os.ReadFile(back)
		require.NoError(t, err)
		own := []string{audit.ActionDataExport, audit.ActionAuditLogImported}
		assert.Equal(t, rowsWithout(string(exported), own...), rowsWithout(string(got), own...))

		// Again, from standard input: nothing stored, the import recorded.
		stdin = strings.NewReader(string(exported))
		t.Cleanup(func() { stdin = os.Stdin })
		out, stderr, err = auditctl(t, append([]string{"import", "--file", "-", "--format", "csv", "--team", "191796", "--operator", "me"}, to...)...)
		require.NoError(t, err, stderr)
		assert.Contains(t, out, "stored 0, ")
		assert.Contains(t, out, "recorded in team 191796's log as audit_log_imported event ")
	})

	t.Run("refused", func(t *testing.T) {
		to := setup(t, nil)
		for _, args := range [][]string{
			{"--format", "xml"},
			{"--format", "csv", "--progress", "sometimes"},
			{"--format", "csv", "--column", "nothing"},
			{"--format", "csv", "--column", "when=time"},
			{"--format", "csv", "--team", "Acme"},
			{"--format", "csv", "--operator", ""},
		} {
			_, _, err := auditctl(t, append(append([]string{"import", "--file", file, "--team", "191796", "--operator", "me"}, args...), to...)...)
			assert.Error(t, err, args)
		}
		_, _, err := auditctl(t, append([]string{"import", "--format", "csv", "--team", "191796", "--operator", "me"}, to...)...)
		assert.ErrorContains(t, err, "--file is required")
		out, stderr, err := auditctl(t, append([]string{"teams"}, to...)...)
		require.NoError(t, err, stderr)
		assert.Equal(t, 1, strings.Count(out, "\n"), "nothing stored: %s", out)
	})
}
