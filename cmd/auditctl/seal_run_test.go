package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/recorder"
	sealpkg "github.com/auditpipe/auditpipe/internal/seal"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// TestSealExportAndVerifyABundleFromTheNode is the signed log end to end with the commands an
// operator and a customer run: seal run --once, export --format bundle, verify --bundle (offline)
// and verify --team (online) pass on the intact log; then each tampering, of the bundle file or of
// the cluster, makes verification fail with its code.
func TestSealExportAndVerifyABundleFromTheNode(t *testing.T) {
	now := time.Now().UTC().Add(-time.Hour)
	var evs []audit.Event
	for i := range 40 {
		evs = append(evs, audit.Event{ID: uuid.NewString(), Time: now.Add(-time.Duration(i) * time.Hour), Action: audit.ActionJobUpdated, TeamID: "191796",
			Actor: auditlog.User("445177", "ann@example.com", "Ann"), Targets: []audit.Target{{Type: "job", ID: fmt.Sprint(i)}}, Metadata: map[string]any{"i": i}})
	}
	evs = append(evs, audit.Event{ID: uuid.NewString(), Time: now, Action: audit.ActionJobUpdated, TeamID: "8", Actor: auditlog.System()})
	conn := setup(t, evs)
	prefix := strings.TrimSuffix(conn[3], layout.DefaultPrefix)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "seal.key")
	vkey, _, err := auditctl(t, "seal", "keygen", "--name", "audit.example.com", "--out", keyFile)
	require.NoError(t, err)
	vkey = strings.TrimSpace(vkey)
	sealFlags := append(append([]string{}, conn...), "--seal-index", prefix+"seal")
	seal := func() {
		t.Helper()
		_, stderr, err := auditctl(t, append([]string{"seal", "run", "--once", "--seal-key", keyFile}, sealFlags...)...)
		require.NoError(t, err, stderr)
	}
	seal()

	bundle := filepath.Join(dir, "191796.bundle")
	_, stderr, err := auditctl(t, append([]string{"export", "--team", "191796", "--format", "bundle", "--out", bundle, "--operator", "oncall@example.com"}, sealFlags...)...)
	require.NoError(t, err, stderr)
	rep, err := runVerify(t, "--bundle", bundle, "--key", vkey)
	require.NoError(t, err, "%+v", rep.Problems)
	require.Equal(t, "191796", rep.Team)
	require.EqualValues(t, 40, rep.Size)
	refresh(t, conn)
	rep, err = runVerify(t, append([]string{"--team", "191796", "--key", vkey}, sealFlags...)...)
	require.NoError(t, err, "%+v", rep.Problems)
	require.Equal(t, 40, rep.Events)
	require.EqualValues(t, 2, rep.Unsealed) // the export's own two events, recorded after the seal

	// The bundle file, tampered as a customer might receive it.
	data, err := os.ReadFile(bundle)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(data), "\n")
	lines = lines[:len(lines)-1] // after the last newline
	tampered := func(name string, edit func([]string) []string) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, []byte(strings.Join(edit(append([]string{}, lines...)), "")), 0o644))
		return f
	}
	pinnedBig := filepath.Join(dir, "newer.checkpoint")
	codes := func(file string, args ...string) []string {
		t.Helper()
		r, err := runVerify(t, append([]string{"--bundle", file, "--key", vkey}, args...)...)
		require.ErrorIs(t, err, errNotVerified)
		var out []string
		for _, p := range r.Problems {
			out = append(out, p.Code)
		}
		return out
	}
	require.Contains(t, codes(tampered("edit", func(l []string) []string { l[3] = strings.Replace(l[3], `"i":`, `"i":1`, 1); return l })), merkle.ProblemHashMismatch)
	require.Contains(t, codes(tampered("delete", func(l []string) []string { return append(l[:5], l[6:]...) })), merkle.ProblemMissing)
	require.Contains(t, codes(tampered("reorder", func(l []string) []string { l[2], l[7] = l[7], l[2]; return l })), merkle.ProblemOrder)
	require.Contains(t, codes(tampered("duplicate", func(l []string) []string { return append(l, l[4]) })), merkle.ProblemDuplicate)
	forged := `{"access_route":[],"action":"job_updated","actor":null,"id":"forged","metadata":null,"remote_addr":null,"targets":[],"team_id":"191796","timestamp":"2026-01-01T00:00:00.000000000Z","user_agent":null}` + "\n"
	require.Contains(t, codes(tampered("insert", func(l []string) []string { return append(l, forged) })), merkle.ProblemExtra)
	other := strings.Replace(forged, `"191796"`, `"8"`, 1)
	require.Contains(t, codes(tampered("move", func(l []string) []string { return append(l, other) })), merkle.ProblemTeamMismatch)
	require.Contains(t, codes(tampered("flip", func(l []string) []string { l[0] = strings.Replace(l[0], "checkpoint", "checkpoinT", 1); return l })), merkle.ProblemSignature)
	_, wrong, err := merkle.GenerateKey("audit.example.com")
	require.NoError(t, err)
	r, err := runVerify(t, "--bundle", bundle, "--key", wrong)
	require.ErrorIs(t, err, errNotVerified)
	require.Equal(t, merkle.ProblemSignature, r.Problems[0].Code)

	// Rolled back: the log grew and the customer pinned the newer checkpoint; the old bundle does
	// not extend it.
	seal()
	c, err := newSealLog(sealFlags)
	require.NoError(t, err)
	newer, err := c.Checkpoint(context.Background(), "191796")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(pinnedBig, newer, 0o644))
	require.Contains(t, codes(bundle, "--pinned", pinnedBig), merkle.ProblemInconsistent)

	// The cluster, tampered: an event deleted is named by verify --team.
	hits, err := c.Proof(context.Background(), "191796", evs[7].ID)
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/%s/_doc/%s?routing=191796&refresh=true", conn[1], url.PathEscape(indexOf(t, conn, evs[7])), url.PathEscape(layout.DocID("191796", evs[7].ID))), nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	r, err = runVerify(t, append([]string{"--team", "191796", "--key", vkey}, sealFlags...)...)
	require.ErrorIs(t, err, errNotVerified)
	require.Equal(t, merkle.ProblemMissing, r.Problems[0].Code, "%+v", r.Problems)
	require.Equal(t, evs[7].ID, *r.Problems[0].ID)
	require.Equal(t, hits.Index, *r.Problems[0].Index)
	_, _, err = auditctl(t, append([]string{"export", "--team", "191796", "--format", "bundle", "--out", filepath.Join(dir, "x"), "--operator", "o"}, sealFlags...)...)
	require.ErrorContains(t, err, "no longer match")

	// Bad flags.
	_, _, err = auditctl(t, append([]string{"export", "--team", "191796", "--format", "bundle", "--since", "1h", "--operator", "o"}, sealFlags...)...)
	require.ErrorContains(t, err, "takes no")
	_, _, err = runVerifyErr(t, "--team", "../x", "--key", vkey)
	require.ErrorContains(t, err, "--team")
	_, _, err = auditctl(t, "seal", "run", "--once")
	require.ErrorContains(t, err, "--seal-key")
}

func runVerifyErr(t *testing.T, args ...string) (string, string, error) {
	return auditctl(t, append([]string{"verify"}, args...)...)
}

// indexOf is the partition an event is stored in.
func indexOf(t *testing.T, conn []string, ev audit.Event) string {
	t.Helper()
	lay, err := layout.New(conn[3], conn[5], layout.NewDefaultConfig())
	require.NoError(t, err)
	return lay.Index(ev.TeamID, ev.Time)
}

// newSealLog reads the signed logs with the flags given to auditctl.
func newSealLog(flags []string) (*sealpkg.Log, error) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	connect := recorder.RegisterFlags(fs)
	index := sealpkg.IndexFlag(fs)
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	c, err := connect.Client()
	if err != nil {
		return nil, err
	}
	s, err := sealpkg.NewStore(c, *index)
	if err != nil {
		return nil, err
	}
	return sealpkg.NewLog(s), nil
}
