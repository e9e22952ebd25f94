package merkle

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testLog is a team's log of n events and the key that signs it.
type testLog struct {
	t        *testing.T
	signer   note.Signer
	verifier string
	events   [][]byte
	hashes   []tlog.Hash
}

func newTestLog(t *testing.T, team string, n int) *testLog {
	t.Helper()
	skey, vkey, err := GenerateKey("audit.example.com")
	require.NoError(t, err)
	signer, err := note.NewSigner(skey)
	require.NoError(t, err)
	l := &testLog{t: t, signer: signer, verifier: vkey}
	for i := range n {
		l.append(apiEvent(team, fmt.Sprintf("ev-%d", i), i))
	}
	return l
}

func apiEvent(team, id string, i int) []byte {
	return fmt.Appendf(nil, `{"id":%q,"timestamp":"2026-12-0%dT10:00:00Z","team_id":%q,"action":"job_updated","action_description":"A job was updated",`+
		`"actor":{"type":"user","id":"445177","metadata":{"email":"ann@example.com"}},"targets":[{"type":"job","id":"%d","metadata":null}],`+
		`"access_route":["203.0.113.9"],"remote_addr":"203.0.113.9","user_agent":"<script>alert(1)</script>","metadata":{"n":%d,"ratio":0.1}}`, id, 1+i%9, team, 1000+i, i)
}

func (l *testLog) append(ev []byte) {
	data, err := LeafData(ev)
	require.NoError(l.t, err)
	l.events = append(l.events, ev)
	l.hashes = append(l.hashes, LeafHash(data))
}

func (l *testLog) checkpoint(team string, size int) []byte {
	msg, err := Sign(Checkpoint{Origin: Origin("audit.example.com", team), Size: int64(size), Root: Root(l.hashes[:size])}, l.signer)
	require.NoError(l.t, err)
	return msg
}

// bundle writes and reads back the bundle of the log's first size leaves, with events changed by
// edit, as a verifier receives it.
func (l *testLog) bundle(team string, size int, edit func(events [][]byte) [][]byte) Bundle {
	events := append([][]byte(nil), l.events[:size]...)
	if edit != nil {
		events = edit(events)
	}
	var buf bytes.Buffer
	require.NoError(l.t, WriteBundle(&buf, Bundle{Checkpoint: l.checkpoint(team, size), Hashes: l.hashes[:size], Events: events}))
	b, err := ReadBundle(&buf)
	require.NoError(l.t, err)
	return b
}

func codes(r Report) []string {
	var out []string
	for _, p := range r.Problems {
		s := p.Code
		if p.Index != nil {
			s += fmt.Sprintf(" %d", *p.Index)
		}
		if p.ID != nil {
			s += " " + *p.ID
		}
		out = append(out, s)
	}
	return out
}

func TestAnIntactBundleVerifies(t *testing.T) {
	l := newTestLog(t, "191796", 37)
	r := Verify(l.bundle("191796", 37, nil), []string{l.verifier}, nil)
	assert.True(t, r.Verified, "%v", codes(r))
	assert.Empty(t, r.Problems)
	assert.Equal(t, "191796", r.Team)
	assert.Equal(t, int64(37), r.Size)
	assert.Equal(t, 37, r.Events)
	assert.Equal(t, []string{"audit.example.com"}, r.SignedBy)

	// A checkpoint pinned earlier, of the same log, is extended by it.
	r = Verify(l.bundle("191796", 37, nil), []string{l.verifier}, l.checkpoint("191796", 20))
	assert.True(t, r.Verified, "%v", codes(r))
}

func TestEachTamperingIsFoundWithItsCode(t *testing.T) {
	l := newTestLog(t, "191796", 12)
	keys := []string{l.verifier}
	forged := apiEvent("191796", "ev-forged", 3)
	other := apiEvent("7", "ev-3", 3)
	for name, c := range map[string]struct {
		edit func([][]byte) [][]byte
		want []string
	}{
		"an edited field": {func(e [][]byte) [][]byte {
			e[4] = bytes.Replace(e[4], []byte(`"job_updated"`), []byte(`"job_deleted"`), 1)
			return e
		}, []string{"HASH_MISMATCH 4 ev-4"}},
		"a deleted event":    {func(e [][]byte) [][]byte { return append(e[:6:6], e[7:]...) }, []string{"MISSING 6"}},
		"an inserted event":  {func(e [][]byte) [][]byte { return append(e, forged) }, []string{"EXTRA ev-forged"}},
		"a duplicated event": {func(e [][]byte) [][]byte { return append(e, e[2]) }, []string{"DUPLICATE 2 ev-2"}},
		"another team's event": {func(e [][]byte) [][]byte { return append(e[:3:3], append([][]byte{other}, e[4:]...)...) },
			[]string{"TEAM_MISMATCH ev-3", "HASH_MISMATCH 3 ev-3"}},
		"two events swapped": {func(e [][]byte) [][]byte { e[8], e[9] = e[9], e[8]; return e }, []string{"ORDER 8 ev-8"}},
		"a byte flipped in an event": {func(e [][]byte) [][]byte {
			e[5] = bytes.Clone(e[5])
			e[5][len(e[5])-3] ^= 1
			return e
		}, []string{"HASH_MISMATCH 5 ev-5"}},
	} {
		t.Run(name, func(t *testing.T) {
			r := Verify(l.bundle("191796", 12, c.edit), keys, nil)
			assert.False(t, r.Verified)
			assert.ElementsMatch(t, c.want, codes(r))
		})
	}
}

func TestCheckpointsTheBundleCannotStandBy(t *testing.T) {
	l := newTestLog(t, "191796", 12)
	keys := []string{l.verifier}
	b := l.bundle("191796", 12, nil)

	_, other, err := GenerateKey("audit.example.com")
	require.NoError(t, err)
	r := Verify(b, []string{other}, nil)
	assert.Equal(t, []string{"SIGNATURE"}, codes(r), "a wrong key")

	rolledBack := Verify(l.bundle("191796", 8, nil), keys, l.checkpoint("191796", 12))
	assert.Equal(t, []string{"INCONSISTENT 12"}, codes(rolledBack), "the log rolled back to an older checkpoint")

	rewritten := newTestLog(t, "191796", 12)
	rewritten.signer, rewritten.verifier = l.signer, l.verifier
	rewritten.hashes[3] = l.hashes[4]
	r = Verify(b, keys, rewritten.checkpoint("191796", 6))
	assert.Equal(t, []string{"INCONSISTENT 6"}, codes(r), "a pinned checkpoint of another history")

	hashes := append([]tlog.Hash(nil), b.Hashes...)
	hashes[2][0] ^= 1
	r = Verify(Bundle{Checkpoint: b.Checkpoint, Hashes: hashes, Events: b.Events}, keys, nil)
	assert.Equal(t, []string{"ROOT_MISMATCH"}, codes(r), "a changed leaf hash")
}

func TestExpiredLeavesNeedASignedStatement(t *testing.T) {
	l := newTestLog(t, "191796", 20)
	keys := []string{l.verifier}
	cp := l.checkpoint("191796", 20)
	expiry := Expiry{Origin: Origin("audit.example.com", "191796"), Size: 5, Root: Root(l.hashes[:5]), At: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	signed, err := SignExpiry(expiry, l.signer)
	require.NoError(t, err)
	roundTrip := func(b Bundle) Bundle {
		var buf bytes.Buffer
		require.NoError(t, WriteBundle(&buf, b))
		got, err := ReadBundle(&buf)
		require.NoError(t, err)
		return got
	}

	r := Verify(roundTrip(Bundle{Checkpoint: cp, Expiry: signed, Edge: EdgeOf(l.hashes[:5]), Hashes: l.hashes[5:], Events: l.events[5:]}), keys, nil)
	assert.True(t, r.Verified, "%v", codes(r))
	assert.Equal(t, []string{"EXPIRED 0"}, codes(r))
	assert.Equal(t, int64(5), r.Expired)

	// Without the statement, the removed events are missing.
	r = Verify(roundTrip(Bundle{Checkpoint: cp, Hashes: l.hashes, Events: l.events[5:]}), keys, nil)
	assert.False(t, r.Verified)
	assert.Equal(t, []string{"MISSING 0", "MISSING 1", "MISSING 2", "MISSING 3", "MISSING 4"}, codes(r))

	// A statement by another key, or of more leaves than it names the root of, excuses nothing.
	skey, _, err := GenerateKey("audit.example.com")
	require.NoError(t, err)
	stranger, err := note.NewSigner(skey)
	require.NoError(t, err)
	forged, err := SignExpiry(expiry, stranger)
	require.NoError(t, err)
	r = Verify(roundTrip(Bundle{Checkpoint: cp, Expiry: forged, Edge: EdgeOf(l.hashes[:5]), Hashes: l.hashes[5:], Events: l.events[5:]}), keys, nil)
	assert.False(t, r.Verified)
	assert.Contains(t, codes(r), "SIGNATURE")
	wider := expiry
	wider.Size = 8
	stretched, err := SignExpiry(wider, l.signer)
	require.NoError(t, err)
	r = Verify(roundTrip(Bundle{Checkpoint: cp, Expiry: stretched, Edge: EdgeOf(l.hashes[:5]), Hashes: l.hashes[5:], Events: l.events[8:]}), keys, nil)
	assert.False(t, r.Verified)
	assert.Contains(t, codes(r), "ROOT_MISMATCH")
}

func TestEveryByteOfABundleIsContent(t *testing.T) {
	l := newTestLog(t, "191796", 3)
	var buf bytes.Buffer
	require.NoError(t, WriteBundle(&buf, Bundle{Checkpoint: l.checkpoint("191796", 3), Hashes: l.hashes, Events: l.events}))
	file := buf.Bytes()
	for i := range file {
		flipped := bytes.Clone(file)
		flipped[i] ^= 0x01
		b, err := ReadBundle(bytes.NewReader(flipped))
		if err != nil {
			continue // refused as a bundle
		}
		r := Verify(b, []string{l.verifier}, nil)
		require.False(t, r.Verified, "byte %d (%q) flipped and the bundle still verifies", i, file[i])
	}
}

func TestReadBundleRefusesWhatWriteBundleDoesNotWrite(t *testing.T) {
	for _, in := range []string{
		"",
		"not json\n",
		`{"format":"auditpipe-bundle/2","checkpoint":"","hashes":""}` + "\n",
		`{"checkpoint":"","format":"auditpipe-bundle/1","hashes":"AAAA"}` + "\n",
		`{"format":"auditpipe-bundle/1","checkpoint":"","hashes":""}` + "\n",             // members out of order
		`{"checkpoint":"","expiry":"","format":"auditpipe-bundle/1","hashes":""}` + "\n", // an empty expiry is none
		`{"checkpoint":"","format":"auditpipe-bundle/1","hashes":"","x":1}` + "\n",       // a member of no meaning
		`{"checkpoint":"","format":"auditpipe-bundle/1","hashes":""}`,                    // no final newline
		`{"checkpoint":"","format":"auditpipe-bundle/1","hashes":""}` + "\n{}",           // nor here
	} {
		_, err := ReadBundle(strings.NewReader(in))
		assert.Error(t, err, "%q", in)
	}
}

func FuzzVerifyBundle(f *testing.F) {
	skey, vkey, err := GenerateKey("audit.example.com")
	require.NoError(f, err)
	signer, err := note.NewSigner(skey)
	require.NoError(f, err)
	data, err := LeafData(apiEvent("1", "a", 1))
	require.NoError(f, err)
	h := LeafHash(data)
	cp, err := Sign(Checkpoint{Origin: "audit.example.com/1", Size: 1, Root: h}, signer)
	require.NoError(f, err)
	var buf bytes.Buffer
	require.NoError(f, WriteBundle(&buf, Bundle{Checkpoint: cp, Hashes: []tlog.Hash{h}, Events: [][]byte{apiEvent("1", "a", 1)}}))
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, file []byte) {
		b, err := ReadBundle(bytes.NewReader(file))
		if err != nil {
			return
		}
		r := Verify(b, []string{vkey}, cp)
		if !r.Verified {
			return
		}
		// What verifies under this key is this log: its checkpoint, its hash and its event (the note
		// may carry other keys' signatures, as C2SP's cosignatures do, and still be the same log).
		got, _, err := Open(b.Checkpoint, []string{vkey})
		if err != nil || got != (Checkpoint{Origin: "audit.example.com/1", Size: 1, Root: h}) ||
			len(b.Hashes) != 1 || b.Hashes[0] != h || len(b.Events) != 1 || !bytes.Equal(b.Events[0], data) || b.Expiry != nil {
			t.Fatalf("another log verifies: %q", file)
		}
	})
}

// BenchmarkVerify verifies a bundle of 10,000 events of about 500 bytes each; events/s is per core
// (-cpu 1): the figure of `auditctl verify --bundle`'s check.
func BenchmarkVerify(b *testing.B) {
	t := &testing.T{}
	l := newTestLog(t, "191796", 10000)
	var buf bytes.Buffer
	require.NoError(b, WriteBundle(&buf, Bundle{Checkpoint: l.checkpoint("191796", 10000), Hashes: l.hashes, Events: l.events}))
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for range b.N {
		bundle, err := ReadBundle(bytes.NewReader(buf.Bytes()))
		if err != nil {
			b.Fatal(err)
		}
		if r := Verify(bundle, []string{l.verifier}, nil); !r.Verified {
			b.Fatal(r.Problems)
		}
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "events/s")
}
