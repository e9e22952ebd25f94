package merkle

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The test vectors of RFC 6962's reference implementation (Certificate Transparency): eight
// leaves, the roots of the trees of their first 0..8, and proofs.
var (
	ctLeaves = []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	ctRoots  = []string{
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	ctInclusion = []struct {
		index, size int64
		proof       []string
	}{
		{0, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{5, 8, []string{"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 3, []string{"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
		{1, 5, []string{"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
	}
	ctConsistency = []struct {
		from, to int64
		proof    []string
	}{
		{1, 1, nil},
		{1, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{6, 8, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 5, []string{"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
	}
)

// stored is tlog's stored hashes of a tree kept in memory.
type stored []tlog.Hash

func (s stored) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(s)) {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = s[x]
	}
	return out, nil
}

func ctTree(t *testing.T) (stored, []tlog.Hash) {
	t.Helper()
	var s stored
	var leaves []tlog.Hash
	for i, l := range ctLeaves {
		data, err := hex.DecodeString(l)
		require.NoError(t, err)
		hs, err := tlog.StoredHashes(int64(i), data, s)
		require.NoError(t, err)
		s = append(s, hs...)
		leaves = append(leaves, LeafHash(data))
	}
	return s, leaves
}

func hexes(hs []tlog.Hash) []string {
	var out []string
	for _, h := range hs {
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

func TestRFC6962Roots(t *testing.T) {
	s, leaves := ctTree(t)
	for n := range len(ctRoots) {
		root := Root(leaves[:n])
		assert.Equal(t, ctRoots[n], hex.EncodeToString(root[:]), "size %d", n)
		if n > 0 {
			th, err := tlog.TreeHash(int64(n), s)
			require.NoError(t, err)
			assert.Equal(t, root, th, "tlog agrees at size %d", n)
		}
	}
}

func TestRFC6962Proofs(t *testing.T) {
	s, leaves := ctTree(t)
	root := func(n int64) tlog.Hash { return Root(leaves[:n]) }
	for _, c := range ctInclusion {
		p, err := tlog.ProveRecord(c.size, c.index, s)
		require.NoError(t, err)
		assert.Equal(t, c.proof, hexes(p), "inclusion of %d in %d", c.index, c.size)
		require.NoError(t, tlog.CheckRecord(p, c.size, root(c.size), c.index, leaves[c.index]))
		assert.Error(t, tlog.CheckRecord(p, c.size, root(c.size), c.index, leaves[(c.index+1)%c.size]))
	}
	for _, c := range ctConsistency {
		p, err := tlog.ProveTree(c.to, c.from, s)
		require.NoError(t, err)
		assert.Equal(t, c.proof, hexes(p), "consistency of %d with %d", c.from, c.to)
		require.NoError(t, tlog.CheckTree(p, c.to, root(c.to), c.from, root(c.from)))
		if c.from != c.to {
			assert.Error(t, tlog.CheckTree(p, c.to, root(c.to), c.from, root(c.from-1)))
		}
	}
}

func TestLeafDataIsTheCanonicalAPIEventRestrictedToItsFields(t *testing.T) {
	api := `{"id":"ev-1","timestamp":"2025-08-01T21:00:00Z","team_id":"191796","action":"job_user_access_changed",
	"action_description":"A user’s permissions were changed",
	"actor":{"type":"user","id":"445177","metadata":{"name":"Ann Samuelson","email":"ann+oats@gem.com"}},
	"targets":[{"type":"user","id":"107404","metadata":{"access_level_id":7349}}],
	"access_route":["::1"],"remote_addr":"::1","user_agent":null,"metadata":{"previous_access_level_id":7347.0}}`
	data, err := LeafData([]byte(api))
	require.NoError(t, err)
	assert.Equal(t, `{"access_route":["::1"],"action":"job_user_access_changed",`+
		`"actor":{"id":"445177","metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"},"type":"user"},`+
		`"id":"ev-1","metadata":{"previous_access_level_id":7347},"remote_addr":"::1",`+
		`"targets":[{"id":"107404","metadata":{"access_level_id":7349},"type":"user"}],`+
		`"team_id":"191796","timestamp":"2025-08-01T21:00:00Z","user_agent":null}`, string(data))

	// The order of the API's members and its derived fields do not change the leaf.
	again, err := LeafData([]byte(`{"metadata":{"previous_access_level_id":7347},"user_agent":null,"remote_addr":"::1","access_route":["::1"],
	"targets":[{"metadata":{"access_level_id":7349},"id":"107404","type":"user"}],"actor":{"metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"},"id":"445177","type":"user"},
	"action":"job_user_access_changed","team_id":"191796","timestamp":"2025-08-01T21:00:00Z","id":"ev-1"}`))
	require.NoError(t, err)
	assert.Equal(t, string(data), string(again))

	for _, bad := range []string{`[]`, `"x"`, `{"id":"a","id":"b"}`, `{"id":`} {
		_, err := LeafData([]byte(bad))
		assert.Error(t, err, bad)
	}
}

func TestCheckpointSignedAndOpened(t *testing.T) {
	skey, vkey, err := GenerateKey("audit.example.com")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(vkey, "audit.example.com+"), vkey)
	signer, err := note.NewSigner(skey)
	require.NoError(t, err)
	_, leaves := ctTree(t)
	c := Checkpoint{Origin: Origin("audit.example.com", "191796"), Size: 8, Root: Root(leaves)}
	msg, err := Sign(c, signer)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(msg), "audit.example.com/191796\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n— audit.example.com "), string(msg))

	got, by, err := Open(msg, VerifierKeys([]byte("# pinned\n\n"+vkey+"\n")))
	require.NoError(t, err)
	assert.Equal(t, c, got)
	assert.Equal(t, []string{"audit.example.com"}, by)

	// Rotation: signed by the old and the new key; either verifies it alone.
	skey2, vkey2, err := GenerateKey("audit.example.com")
	require.NoError(t, err)
	signer2, err := note.NewSigner(skey2)
	require.NoError(t, err)
	both, err := Sign(c, signer, signer2)
	require.NoError(t, err)
	for _, keys := range [][]string{{vkey}, {vkey2}, {vkey, vkey2}} {
		_, _, err := Open(both, keys)
		assert.NoError(t, err, "%v", keys)
	}

	// Another key, a changed body, a flipped signature byte: refused.
	_, other, err := GenerateKey("audit.example.com")
	require.NoError(t, err)
	_, _, err = Open(msg, []string{other})
	assert.Error(t, err)
	_, _, err = Open([]byte(strings.Replace(string(msg), "\n8\n", "\n9\n", 1)), []string{vkey})
	assert.Error(t, err)
	flipped := []byte(string(msg))
	flipped[len(flipped)-5] ^= 1
	_, _, err = Open(flipped, []string{vkey})
	assert.Error(t, err)

	_, _, err = GenerateKey("audit.example.com/x")
	assert.Error(t, err)
}

func TestParseCheckpoint(t *testing.T) {
	root := "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="
	c, err := ParseCheckpoint("o/1\n8\n" + root + "\nextension line\n")
	require.NoError(t, err)
	assert.Equal(t, int64(8), c.Size)
	assert.Equal(t, "o/1\n8\n"+root+"\n", c.Body())
	for _, bad := range []string{
		"o/1\n8\n" + root,         // no final newline
		"o/1\n08\n" + root + "\n", // leading zero
		"o/1\n-1\n" + root + "\n", // negative
		"o/1\n8\nAAAA\n",          // not 32 bytes
		"\n8\n" + root + "\n",     // no origin
		"o/1\n8\n" + root + "x\n", // not base64
		"o/1\n 8\n" + root + "\n", // not decimal
		"o/1\n8\n",                // no root
	} {
		_, err := ParseCheckpoint(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add("o/1\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n")
	f.Add("o/1\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		again, err := ParseCheckpoint(c.Body())
		if err != nil || again != c {
			t.Fatalf("%q parsed as %+v, whose body %q parses as %+v (%v)", text, c, c.Body(), again, err)
		}
	})
}
