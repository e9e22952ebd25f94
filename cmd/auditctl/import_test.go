package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/importer"
	"github.com/auditpipe/auditpipe/internal/query"
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

// TestMain lets a test run auditctl as a process of its own (this test binary, with the arguments
// in AUDITCTL_TEST_ARGS), so that it can kill it.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("AUDITCTL_TEST_ARGS"); ok {
		var a []string
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			panic(err)
		}
		if err := run(context.Background(), a, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "auditctl:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestAKilledImportRunAgainStoresEverythingOnce: an auditctl import killed with SIGKILL once part
// of the file is stored, then run again, leaves every event stored exactly once.
func TestAKilledImportRunAgainStoresEverythingOnce(t *testing.T) {
	conn := setup(t, nil)
	url, prefix := conn[1], conn[3]
	const n = 100_000
	t0 := time.Now().UTC().Add(-48 * time.Hour)
	var b strings.Builder
	b.Write(query.AppendCSVRow(nil, query.CSVHeader))
	for i := 0; i < n; i++ {
		b.Write(query.AppendCSVRow(nil, []string{t0.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano), "job_created", "", "user", fmt.Sprint(i % 97),
			"", "", fmt.Sprintf(`[{"id":"%d","type":"job"}]`, i), "", "", "", fmt.Sprintf(`{"seq":%d}`, i)}))
	}
	file := filepath.Join(t.TempDir(), "history.csv")
	require.NoError(t, os.WriteFile(file, []byte(b.String()), 0o600))
	args := append([]string{"import", "--file", file, "--format", "csv", "--team", "5", "--operator", "me", "--progress", "off"}, conn...)

	encoded, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AUDITCTL_TEST_ARGS="+string(encoded))
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Killed as soon as part of the file is stored: while the import creates its partitions, a count
	// may answer 503, which is "not yet".
	q := "team_id:5%20AND%20action:job_created"
	for killed := false; !killed; {
		select {
		case err := <-exited:
			t.Fatalf("the import ended before it could be killed: %v", err)
		default:
		}
		esJSON(t, "POST", url+"/"+prefix+"*/_refresh", "")
		status, res := esJSON(t, "GET", url+"/"+prefix+"*/_count?q="+q, "")
		if status == http.StatusOK && res["count"].(float64) > 0 {
			require.NoError(t, cmd.Process.Kill())
			<-exited
			killed = true
		}
	}
	stored := func() int {
		esJSON(t, "GET", url+"/_cluster/health/"+prefix+"*?wait_for_status=green&timeout=30s", "")
		return count(t, url, prefix+"*", q)
	}
	// The node goes on with the bulk requests the killed process had sent: what it stored is known
	// once none into this test's indices is left (other tests may be writing meanwhile).
	require.Eventually(t, func() bool {
		_, res := esJSON(t, "GET", url+"/_tasks?actions=indices:data/write/bulk*&detailed=true", "")
		nodes, _ := res["nodes"].(map[string]any)
		for _, node := range nodes {
			tasks, _ := node.(map[string]any)["tasks"].(map[string]any)
			for _, task := range tasks {
				if desc, _ := task.(map[string]any)["description"].(string); strings.Contains(desc, prefix) {
					return false
				}
			}
		}
		return true
	}, time.Minute, 20*time.Millisecond)
	before := stored()
	require.Greater(t, before, 0)
	require.Less(t, before, n, "killed halfway")

	out, stderr, err := auditctl(t, append(args, "--json")...)
	require.NoError(t, err, stderr)
	var sum importer.Summary
	require.NoError(t, json.Unmarshal([]byte(out), &sum), out)
	assert.Equal(t, int64(n), sum.Stored+sum.Duplicates)
	assert.Equal(t, int64(before), sum.Duplicates, "what the killed import stored is found stored")
	assert.Equal(t, n, stored(), "every event exactly once")
}
