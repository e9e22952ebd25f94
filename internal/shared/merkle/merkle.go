// Package merkle holds the formats of the per-team Merkle logs (docs/integrity.md), each written
// once and used by everything that writes, serves or verifies them:
//
//   - a leaf: the RFC 8785 (JCS) bytes of one event as the API returns it, restricted to LeafFields
//     (LeafData), hashed as RFC 6962 says (LeafHash: SHA-256 of 0x00 and the data);
//   - the tree: RFC 6962's Merkle tree hash over the leaves in their order (Root), with inclusion and
//     consistency proofs from golang.org/x/mod/sumdb/tlog, whose hashing is RFC 6962's;
//   - a checkpoint: the C2SP tlog-checkpoint body, origin line "<origin>/<team id>", the tree size in
//     decimal and the base64 root hash, signed as a golang.org/x/mod/sumdb/note note (Ed25519).
//
// Everything here is offline: it reads bytes and returns bytes, so that `auditctl verify` can check
// a bundle with no connection, and a customer can do the same with off-the-shelf libraries.
package merkle

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/internal/shared/jcs"
)

// LeafFields are the members of the API's event that a leaf holds, in the API's own names. Others
// (what readers derive, such as the action's description) are not the event and may change.
var LeafFields = []string{"id", "timestamp", "team_id", "action", "actor", "targets", "access_route", "remote_addr", "user_agent", "metadata"}

// LeafData returns the leaf of one event: the RFC 8785 serialization of the API's JSON object of
// the event, restricted to LeafFields. A field the API leaves out stays out; one it gives as null
// stays null.
func LeafData(apiEvent []byte) ([]byte, error) {
	if t := bytes.TrimLeft(apiEvent, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("merkle: an event is a JSON object")
	}
	return jcs.Members(apiEvent, LeafFields)
}

// LeafHash is RFC 6962's leaf hash: SHA-256(0x00 ‖ data).
func LeafHash(data []byte) tlog.Hash { return tlog.RecordHash(data) }

// NodeHash is RFC 6962's interior node hash: SHA-256(0x01 ‖ left ‖ right).
func NodeHash(left, right tlog.Hash) tlog.Hash { return tlog.NodeHash(left, right) }

// Root is RFC 6962's Merkle tree hash of the leaves (their hashes, in order); the root of no leaves
// is SHA-256 of nothing.
func Root(leaves []tlog.Hash) tlog.Hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	}
	k := 1 // the largest power of two smaller than the number of leaves
	for k<<1 < len(leaves) {
		k <<= 1
	}
	return NodeHash(Root(leaves[:k]), Root(leaves[k:]))
}

// Checkpoint is a tree head of one team's log: C2SP tlog-checkpoint's body.
type Checkpoint struct {
	Origin string // "<origin>/<team id>"
	Size   int64
	Root   tlog.Hash
}

// Origin is a team's log's origin line: the operator's origin (a key name, e.g. audit.example.com)
// and the team id.
func Origin(origin, team string) string { return origin + "/" + team }

// Body is the checkpoint's note text: three lines, each ending in a newline.
func (c Checkpoint) Body() string {
	return c.Origin + "\n" + strconv.FormatInt(c.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(c.Root[:]) + "\n"
}

// ParseCheckpoint reads a checkpoint body. Extension lines after the third are allowed and ignored,
// as C2SP says a client that does not know them must.
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) < 4 || !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, errors.New("merkle: a checkpoint is an origin, a size and a root hash, one per line")
	}
	origin, size, root := strings.TrimSuffix(lines[0], "\n"), strings.TrimSuffix(lines[1], "\n"), strings.TrimSuffix(lines[2], "\n")
	if origin == "" {
		return Checkpoint{}, errors.New("merkle: checkpoint without an origin")
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != size {
		return Checkpoint{}, fmt.Errorf("merkle: checkpoint size %q is not a decimal tree size", size)
	}
	h, err := base64.StdEncoding.Strict().DecodeString(root)
	if err != nil || len(h) != len(tlog.Hash{}) {
		return Checkpoint{}, fmt.Errorf("merkle: checkpoint root %q is not a base64 SHA-256 hash", root)
	}
	c := Checkpoint{Origin: origin, Size: n}
	copy(c.Root[:], h)
	return c, nil
}

// GenerateKey makes an Ed25519 signer key and its verifier key in note's text forms
// ("PRIVATE+KEY+<name>+<hash>+<key>" and "<name>+<hash>+<key>"). name is the operator's origin.
func GenerateKey(name string) (signer, verifier string, err error) {
	if name == "" || strings.ContainsAny(name, "+/ \t\n") {
		return "", "", fmt.Errorf("merkle: key name %q: use the log's origin, such as audit.example.com (no '+', '/' or spaces)", name)
	}
	return note.GenerateKey(rand.Reader, name)
}

// Sign signs a checkpoint with every signer (more than one while keys are rotated).
func Sign(c Checkpoint, signers ...note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Body()}, signers...)
}

// Open verifies a signed checkpoint against the verifier keys (note's "<name>+<hash>+<key>" form):
// at least one signature must be by a known key and valid, and every known key's signature valid.
// It returns the checkpoint and the names of the keys that signed it.
func Open(msg []byte, verifierKeys []string) (Checkpoint, []string, error) {
	vs, err := Verifiers(verifierKeys)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	n, err := openNote(msg, vs)
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("merkle: checkpoint signature: %w", err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	var by []string
	for _, s := range n.Sigs {
		by = append(by, s.Name)
	}
	return c, by, nil
}

// openNote is note.Open, and refuses signatures in a base64 other than the canonical one (note
// decodes leniently, so a changed padding bit would leave a valid signature): one note, one text.
func openNote(msg []byte, vs note.Verifiers) (*note.Note, error) {
	n, err := note.Open(msg, vs)
	if err != nil {
		return nil, err
	}
	for _, sig := range append(n.Sigs, n.UnverifiedSigs...) {
		if _, err := base64.StdEncoding.Strict().DecodeString(sig.Base64); err != nil {
			return nil, fmt.Errorf("the signature of %s is not in canonical base64", sig.Name)
		}
	}
	return n, nil
}

// Verifiers reads verifier keys (note's "<name>+<hash>+<key>" form); it names the first that is not one.
func Verifiers(keys []string) (note.Verifiers, error) {
	var vs []note.Verifier
	for _, k := range keys {
		v, err := note.NewVerifier(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("%q is not a verifier key: %w", k, err)
		}
		vs = append(vs, v)
	}
	return note.VerifierList(vs...), nil
}

// VerifierKeys reads verifier keys, one per line, blank lines and lines starting with # ignored:
// the form of GET /v1/verifier-keys and of a file given to `auditctl verify --key`.
func VerifierKeys(text []byte) []string {
	var keys []string
	for line := range bytes.Lines(text) {
		if k := strings.TrimSpace(string(line)); k != "" && !strings.HasPrefix(k, "#") {
			keys = append(keys, k)
		}
	}
	return keys
}
