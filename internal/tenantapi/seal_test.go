package tenantapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// TestSignedLogEndpoints checks the signed log through the API as a customer would: the
// checkpoint verifies with the served key, each proof with tlog's RFC 6962 check, the consistency
// proof from an earlier checkpoint, the bundle offline; and a key of one team gets nothing of
// another's, not even a proof of an event id it knows.
func TestSignedLogEndpoints(t *testing.T) {
	e := newAPI(t, 1000)
	evs := events("391", 300, "signed")
	e.load(evs)
	e.load(events("392", 10, "other"))
	token, _ := e.mint("391", 0, ScopeRead, ScopeExport)
	other, _ := e.mint("392", 0, ScopeRead, ScopeExport)
	e.seal()

	status, _, keys := e.get("", "/v1/verifier-keys")
	require.Equal(t, 200, status)
	status, h, note := e.get(token, "/v1/checkpoint")
	require.Equal(t, 200, status, "%s", note)
	require.Equal(t, "text/plain; charset=utf-8", h.Get("Content-Type"))
	cp, _, err := merkle.Open(note, merkle.VerifierKeys(keys))
	require.NoError(t, err)
	require.Equal(t, "audit.test/391", cp.Origin)
	require.GreaterOrEqual(t, cp.Size, int64(300)) // and the key's own creation, recorded

	for _, ev := range []audit.Event{evs[0], evs[150], evs[299]} {
		status, _, body := e.get(token, "/v1/events/"+ev.ID+"/proof")
		require.Equal(t, 200, status, "%s", body)
		var p struct {
			Index      int64    `json:"index"`
			Checkpoint string   `json:"checkpoint"`
			Inclusion  []string `json:"inclusion"`
		}
		require.NoError(t, json.Unmarshal(body, &p))
		pc, _, err := merkle.Open([]byte(p.Checkpoint), merkle.VerifierKeys(keys))
		require.NoError(t, err)
		_, _, evBody := e.get(token, "/v1/events/"+ev.ID)
		leaf, err := merkle.LeafData(evBody)
		require.NoError(t, err)
		require.NoError(t, tlog.CheckRecord(hashes(t, p.Inclusion), pc.Size, pc.Root, p.Index, merkle.LeafHash(leaf)))
		// Another team's key: the event is not found, and neither is its proof.
		status, _, body = e.get(other, "/v1/events/"+ev.ID+"/proof")
		require.Equal(t, 404, status, "%s", body)
	}

	e.load(events("391", 20, "later"))
	e.seal()
	status, _, body := e.get(token, fmt.Sprintf("/v1/checkpoint/consistency?from=%d", cp.Size))
	require.Equal(t, 200, status, "%s", body)
	var c struct {
		From        int64    `json:"from"`
		Checkpoint  string   `json:"checkpoint"`
		Consistency []string `json:"consistency"`
	}
	require.NoError(t, json.Unmarshal(body, &c))
	now, _, err := merkle.Open([]byte(c.Checkpoint), merkle.VerifierKeys(keys))
	require.NoError(t, err)
	require.Greater(t, now.Size, cp.Size)
	require.NoError(t, tlog.CheckTree(hashes(t, c.Consistency), now.Size, now.Root, cp.Size, cp.Root))

	status, h, bundle := e.get(token, "/v1/export?format=bundle")
	require.Equal(t, 200, status, "%s", bundle)
	require.Equal(t, "complete", h.Get("X-Export-Status"))
	b, err := merkle.ReadBundle(bytes.NewReader(bundle))
	require.NoError(t, err)
	rep := merkle.Verify(b, merkle.VerifierKeys(keys), note)
	require.True(t, rep.Verified, "%+v", rep.Problems)
	require.Equal(t, "391", rep.Team)
	for _, line := range bytes.Split(bytes.TrimSpace(bundle), []byte("\n"))[1:] {
		var ev struct {
			TeamID string `json:"team_id"`
		}
		require.NoError(t, json.Unmarshal(line, &ev))
		require.Equal(t, "391", ev.TeamID)
	}

	// Every one of these reads is in the team's log.
	var kinds []string
	for _, ev := range e.teamLog("391", audit.ActionAuditLogRead, audit.ActionDataExport) {
		var md map[string]any
		require.NoError(t, json.Unmarshal(ev.Metadata, &md))
		if r, ok := md["resource"].(string); ok {
			kinds = append(kinds, r)
		}
		if md["format"] == "bundle" {
			kinds = append(kinds, "bundle:"+md["state"].(string))
		}
	}
	for _, k := range []string{"checkpoint", "inclusion_proof", "consistency_proof", "bundle:started", "bundle:completed"} {
		require.Contains(t, kinds, k)
	}
}

func hashes(t *testing.T, ss []string) []tlog.Hash {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		b, err := base64.StdEncoding.DecodeString(s)
		require.NoError(t, err)
		copy(out[i][:], b)
	}
	return out
}
