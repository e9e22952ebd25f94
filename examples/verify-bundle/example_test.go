// Package verifybundle_test runs the Python example on bundles written by auditpipe's own code:
// a customer's verifier, written from docs/integrity.md with off-the-shelf libraries, agrees.
package verifybundle_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// python returns the Python of scripts/python-env.sh: in CI a missing one fails the test.
func python(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../../scripts/python-env.sh").Output()
	if err != nil {
		msg := fmt.Sprintf("no Python with the example's requirements (scripts/python-env.sh: %v)", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return strings.TrimSpace(string(out))
}

type log struct {
	signer   note.Signer
	verifier string
	events   [][]byte
	hashes   []tlog.Hash
}

func newLog(t *testing.T, n int) *log {
	skey, vkey, err := merkle.GenerateKey("audit.example.com")
	require.NoError(t, err)
	signer, err := note.NewSigner(skey)
	require.NoError(t, err)
	l := &log{signer: signer, verifier: vkey}
	for i := range n {
		// What the API returns: numbers of every kind, text of every script, markup, nulls.
		ev := fmt.Appendf(nil, `{"id":"ev-%d","timestamp":"2026-12-01T10:%02d:00.123456789Z","team_id":"191796","action":"team_settings_changed",`+
			`"action_description":"A team setting was changed","actor":{"type":"user","id":"445177","metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"}},`+
			`"targets":[{"type":"team","id":"191796","metadata":null}],"access_route":["203.0.113.9","::1"],"remote_addr":"::1","user_agent":"<script>alert('x')</script>",`+
			`"metadata":{"n":%d,"ratio":%g,"big":12345678901234567890,"tiny":1e-7,"name":"Zoë \u20ac \ud83d\ude00 \"quoted\" \\ \u0007","previous":{"level":7347},"flags":[true,false,null]}}`,
			i, i%60, i, float64(i)/3)
		data, err := merkle.LeafData(ev)
		require.NoError(t, err)
		l.events, l.hashes = append(l.events, ev), append(l.hashes, merkle.LeafHash(data))
	}
	return l
}

func (l *log) checkpoint(t *testing.T, size int) []byte {
	msg, err := merkle.Sign(merkle.Checkpoint{Origin: merkle.Origin("audit.example.com", "191796"), Size: int64(size), Root: merkle.Root(l.hashes[:size])}, l.signer)
	require.NoError(t, err)
	return msg
}

func (l *log) write(t *testing.T, b merkle.Bundle) string {
	var buf bytes.Buffer
	require.NoError(t, merkle.WriteBundle(&buf, b))
	file := filepath.Join(t.TempDir(), "bundle.ndjson")
	require.NoError(t, os.WriteFile(file, buf.Bytes(), 0o644))
	return file
}

// verify runs the example and returns its report and whether it exited 0.
func verify(t *testing.T, py string, args ...string) (map[string]any, bool) {
	t.Helper()
	cmd := exec.Command(py, append([]string{"verify_bundle.py"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var report map[string]any
	require.NoError(t, json.Unmarshal(out, &report), "%s\n%s", out, stderr.String())
	if err != nil {
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, stderr.String())
		require.Equal(t, 1, exit.ExitCode(), stderr.String())
	}
	return report, err == nil
}

func codes(report map[string]any) []string {
	var out []string
	for _, p := range report["problems"].([]any) {
		out = append(out, p.(map[string]any)["code"].(string))
	}
	return out
}

func TestThePythonExampleVerifiesOurBundles(t *testing.T) {
	py := python(t)
	l := newLog(t, 25)
	file := l.write(t, merkle.Bundle{Checkpoint: l.checkpoint(t, 25), Hashes: l.hashes, Events: l.events})
	pinned := filepath.Join(t.TempDir(), "pinned")
	require.NoError(t, os.WriteFile(pinned, l.checkpoint(t, 10), 0o644))
	report, ok := verify(t, py, file, l.verifier, pinned)
	assert.True(t, ok, "%v", report)
	assert.Equal(t, "191796", report["team"])
	assert.Equal(t, float64(25), report["size"])

	// Retention removed the first 5 events; the removal is signed.
	expiry, err := merkle.SignExpiry(merkle.Expiry{Origin: "audit.example.com/191796", Size: 5, Root: merkle.Root(l.hashes[:5]), At: time.Now()}, l.signer)
	require.NoError(t, err)
	report, ok = verify(t, py, l.write(t, merkle.Bundle{Checkpoint: l.checkpoint(t, 25), Expiry: expiry, Edge: merkle.EdgeOf(l.hashes[:5]), Hashes: l.hashes[5:], Events: l.events[5:]}), l.verifier)
	assert.True(t, ok, "%v", report)
	assert.Equal(t, float64(5), report["expired"])
}

func TestThePythonExampleRefusesTampering(t *testing.T) {
	py := python(t)
	l := newLog(t, 12)
	good, err := os.ReadFile(l.write(t, merkle.Bundle{Checkpoint: l.checkpoint(t, 12), Hashes: l.hashes, Events: l.events}))
	require.NoError(t, err)
	lines := bytes.SplitAfter(good, []byte("\n"))
	write := func(b []byte) string {
		f := filepath.Join(t.TempDir(), "bundle.ndjson")
		require.NoError(t, os.WriteFile(f, b, 0o644))
		return f
	}
	edited := bytes.Clone(good)
	i := bytes.Index(edited, []byte(`"ev-4"`))
	edited[i+4] = '5' // ev-4 claims to be ev-5
	deleted := bytes.Join(append(lines[:4:4], lines[5:]...), nil)
	swapped := bytes.Join(append(append(lines[:3:3], lines[4], lines[3]), lines[5:]...), nil)
	_, stranger, err := merkle.GenerateKey("audit.example.com")
	require.NoError(t, err)
	rollback := filepath.Join(t.TempDir(), "pinned")
	bigger := newLog(t, 13)
	bigger.signer, bigger.verifier = l.signer, l.verifier
	require.NoError(t, os.WriteFile(rollback, bigger.checkpoint(t, 13), 0o644))

	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"an edited event":      {[]string{write(edited), l.verifier}, "HASH_MISMATCH"},
		"a deleted event":      {[]string{write(deleted), l.verifier}, "HASH_MISMATCH"},
		"two events swapped":   {[]string{write(swapped), l.verifier}, "HASH_MISMATCH"},
		"a wrong key":          {[]string{write(good), stranger}, "SIGNATURE"},
		"a rolled-back log":    {[]string{write(good), l.verifier, rollback}, "INCONSISTENT"},
		"a flipped header bit": {[]string{write(append([]byte{good[0] ^ 1}, good[1:]...)), l.verifier}, "SIGNATURE"},
	} {
		t.Run(name, func(t *testing.T) {
			report, ok := verify(t, py, c.args...)
			assert.False(t, ok)
			assert.Contains(t, codes(report), c.want, "%v", report)
		})
	}
}
