package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// writeTestBundle writes the bundle of a log of n events of team 191796, with events changed by
// edit, and returns its file, the verifier key and a checkpoint of its first half.
func writeTestBundle(t *testing.T, n int, edit func([][]byte) [][]byte) (file, vkey string, half []byte) {
	t.Helper()
	skey, vkey, err := merkle.GenerateKey("audit.example.com")
	require.NoError(t, err)
	signer, err := note.NewSigner(skey)
	require.NoError(t, err)
	var events [][]byte
	var hashes []tlog.Hash
	for i := range n {
		ev := fmt.Appendf(nil, `{"id":"ev-%d","timestamp":"2026-12-01T10:00:%02dZ","team_id":"191796","action":"job_updated","actor":{"type":"system","id":null},"targets":[],"metadata":{"n":%d}}`, i, i%60, i)
		data, err := merkle.LeafData(ev)
		require.NoError(t, err)
		events, hashes = append(events, ev), append(hashes, merkle.LeafHash(data))
	}
	sign := func(size int) []byte {
		msg, err := merkle.Sign(merkle.Checkpoint{Origin: merkle.Origin("audit.example.com", "191796"), Size: int64(size), Root: merkle.Root(hashes[:size])}, signer)
		require.NoError(t, err)
		return msg
	}
	if edit != nil {
		events = edit(events)
	}
	var buf bytes.Buffer
	require.NoError(t, merkle.WriteBundle(&buf, merkle.Bundle{Checkpoint: sign(n), Hashes: hashes, Events: events}))
	file = filepath.Join(t.TempDir(), "191796.bundle")
	require.NoError(t, os.WriteFile(file, buf.Bytes(), 0o644))
	return file, vkey, sign(n / 2)
}

func runVerify(t *testing.T, args ...string) (merkle.Report, error) {
	t.Helper()
	var stdout bytes.Buffer
	err := run(context.Background(), append([]string{"verify"}, args...), &stdout, new(bytes.Buffer))
	var r merkle.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &r), stdout.String())
	return r, err
}

func TestVerifyABundleOfflineWithAKeyOrAFileOfKeys(t *testing.T) {
	// Whatever the environment says, verify connects to nothing.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	for _, v := range []string{"ES_URL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		t.Setenv(v, "http://"+l.Addr().String())
	}

	file, vkey, half := writeTestBundle(t, 40, nil)
	r, err := runVerify(t, "--bundle", file, "--key", vkey)
	require.NoError(t, err)
	assert.True(t, r.Verified)
	assert.Equal(t, "191796", r.Team)
	assert.Equal(t, int64(40), r.Size)
	assert.Empty(t, r.Problems)

	keys := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.WriteFile(keys, []byte("# pinned on first use\n"+vkey+"\n"), 0o644))
	pinned := filepath.Join(t.TempDir(), "checkpoint")
	require.NoError(t, os.WriteFile(pinned, half, 0o644))
	r, err = runVerify(t, "--bundle", file, "--key", keys, "--pinned", pinned)
	require.NoError(t, err)
	assert.True(t, r.Verified)

	require.NoError(t, l.(*net.TCPListener).SetDeadline(time.Now()))
	c, err := l.Accept()
	if err == nil {
		c.Close()
	}
	assert.Error(t, err, "auditctl verify opened a connection")
}

func TestVerifyReportsTamperingAndFails(t *testing.T) {
	file, vkey, _ := writeTestBundle(t, 10, func(e [][]byte) [][]byte { return append(e[:3:3], e[4:]...) })
	r, err := runVerify(t, "--bundle", file, "--key", vkey)
	assert.ErrorIs(t, err, errNotVerified)
	assert.False(t, r.Verified)
	require.Len(t, r.Problems, 1)
	assert.Equal(t, merkle.ProblemMissing, r.Problems[0].Code)
	assert.Equal(t, int64(3), *r.Problems[0].Index)

	// A damaged header: the signed checkpoint cannot be read.
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	b[2] ^= 0x40
	require.NoError(t, os.WriteFile(file, b, 0o644))
	r, err = runVerify(t, "--bundle", file, "--key", vkey)
	assert.ErrorIs(t, err, errNotVerified)
	assert.Equal(t, merkle.ProblemSignature, r.Problems[0].Code)

	err = run(context.Background(), []string{"verify", "--bundle", file}, new(bytes.Buffer), new(bytes.Buffer))
	assert.ErrorContains(t, err, "--key and one of --bundle or --team are required")
	err = run(context.Background(), []string{"verify", "--bundle", file, "--key", "/nonexistent"}, new(bytes.Buffer), new(bytes.Buffer))
	assert.ErrorContains(t, err, "--key")
}
