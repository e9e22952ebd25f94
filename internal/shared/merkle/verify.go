package merkle

// Verifying a bundle offline: what `auditctl verify --bundle` reports (docs/integrity.md, "Verifying").

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// The problem codes of a verification report.
const (
	ProblemSignature    = "SIGNATURE"     // a checkpoint or statement not signed by a given key
	ProblemRootMismatch = "ROOT_MISMATCH" // the leaf hashes do not make the signed root
	ProblemHashMismatch = "HASH_MISMATCH" // the event in a leaf's place is not the one sealed there
	ProblemMissing      = "MISSING"       // a leaf without its event
	ProblemExtra        = "EXTRA"         // an event no leaf holds
	ProblemDuplicate    = "DUPLICATE"     // an event id twice
	ProblemTeamMismatch = "TEAM_MISMATCH" // an event of another team
	ProblemOrder        = "ORDER"         // an event out of leaf order
	ProblemInconsistent = "INCONSISTENT"  // the log is not an extension of the pinned checkpoint
	ProblemExpired      = "EXPIRED"       // leaves removed by retention, the removal signed: not a failure
)

// Problem is one finding: its code, the leaf index and the event id where they are known.
type Problem struct {
	Code   string  `json:"code"`
	Index  *int64  `json:"index"`
	ID     *string `json:"id"`
	Detail string  `json:"detail"`
}

// Report is the outcome of a verification, as `auditctl verify` prints it.
type Report struct {
	Team     string   `json:"team"`
	Origin   string   `json:"origin"`
	Size     int64    `json:"size"`
	Root     string   `json:"root"`
	SignedBy []string `json:"signed_by"`
	Events   int      `json:"events"`
	Expired  int64    `json:"expired"`
	// Unsealed counts, in a check of a team's log in the cluster, the team's events stored after the
	// checkpoint: not yet sealed, not a failure.
	Unsealed int64     `json:"unsealed,omitempty"`
	Verified bool      `json:"verified"`
	Problems []Problem `json:"problems"`
}

// Add records a problem; index -1 and id "" are unknown.
func (r *Report) Add(code string, index int64, id, format string, args ...any) {
	r.add(code, index, id, format, args...)
}

// Conclude sets Verified: no problem but EXPIRED.
func (r *Report) Conclude() {
	r.Verified = true
	for _, p := range r.Problems {
		if p.Code != ProblemExpired {
			r.Verified = false
		}
	}
}

func (r *Report) add(code string, index int64, id, format string, args ...any) {
	p := Problem{Code: code, Detail: fmt.Sprintf(format, args...)}
	if index >= 0 {
		p.Index = &index
	}
	if id != "" {
		p.ID = &id
	}
	r.Problems = append(r.Problems, p)
}

// Verify checks a bundle against the verifier keys, and against a checkpoint the verifier pinned
// earlier when pinned is not nil. It opens no connection.
func Verify(b Bundle, keys []string, pinned []byte) Report {
	r := Report{SignedBy: []string{}, Problems: []Problem{}, Events: len(b.Events)}
	cp, by, err := Open(b.Checkpoint, keys)
	if err != nil { // nothing in the bundle can be trusted
		r.add(ProblemSignature, -1, "", "the checkpoint: %v", err)
		return r
	}
	r.Origin, r.Size, r.Root, r.SignedBy = cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]), by
	r.Team = cp.Origin[strings.LastIndexByte(cp.Origin, '/')+1:]
	first, ok := r.verifyExpiry(b, keys, cp)
	if !ok {
		return r
	}
	// The leaf hashes are the log's when they make the signed root; only then can events be placed.
	if int64(len(b.Hashes)) != cp.Size-first || rootAfter(b.Edge, first, b.Hashes) != cp.Root {
		r.add(ProblemRootMismatch, -1, "", "the bundle's %d leaf hashes do not make the root the checkpoint signs for %d leaves", len(b.Hashes), cp.Size)
		return r
	}
	r.placeEvents(b, first)
	if pinned != nil {
		r.verifyPinned(b, keys, cp, pinned)
	}
	r.Conclude()
	return r
}

// rootAfter is the root of the tree of the leaves [0, first), given by their edge, then hashes.
func rootAfter(edge Edge, first int64, hashes []tlog.Hash) tlog.Hash {
	e := append(Edge(nil), edge...)
	for i, h := range hashes {
		e = e.Append(first+int64(i), h, nil)
	}
	return e.Root()
}

// verifyExpiry returns the number of leaves whose events retention removed, as a valid signed
// statement says (0 without one); ok is false when the bundle cannot be checked further.
func (r *Report) verifyExpiry(b Bundle, keys []string, cp Checkpoint) (int64, bool) {
	if b.Expiry == nil {
		return 0, true
	}
	e, err := OpenExpiry(b.Expiry, keys)
	switch {
	case err != nil:
		r.add(ProblemSignature, -1, "", "the expiry statement: %v", err)
	case e.Origin != cp.Origin:
		r.add(ProblemTeamMismatch, -1, "", "the expiry statement is about the log %q, not %q", e.Origin, cp.Origin)
	case e.Size > cp.Size || !b.Edge.Valid(e.Size) || b.Edge.Root() != e.Root:
		r.add(ProblemRootMismatch, -1, "", "the expiry statement's root is not the root of the log's first %d leaves", e.Size)
	default:
		r.Expired = e.Size
		if e.Size > 0 {
			r.add(ProblemExpired, 0, "", "the events of leaves [0, %d) were removed by retention at %s; the removal is signed", e.Size, e.At.Format("2006-01-02T15:04:05Z"))
		}
		return e.Size, true
	}
	return 0, false
}

// placeEvents matches the bundle's events to the leaves [first, size) by their leaf hashes.
func (r *Report) placeEvents(b Bundle, first int64) {
	at := make(map[tlog.Hash]int64, len(b.Hashes))
	for i := first; i < r.Size; i++ {
		if _, ok := at[b.Hashes[i-first]]; !ok {
			at[b.Hashes[i-first]] = i
		}
	}
	matched := make([]bool, r.Size)
	ids := map[string]bool{}
	last := first - 1
	type stray struct {
		pos int
		id  string
		why string
	}
	var strays []stray
	for pos, line := range b.Events {
		id, team, h, err := leafOf(line)
		if err != nil {
			strays = append(strays, stray{pos, id, err.Error()})
			continue
		}
		i, known := at[h]
		index := int64(-1)
		if known {
			index = i
		}
		if team != r.Team {
			r.add(ProblemTeamMismatch, index, id, "an event of team %q in the log of team %q", team, r.Team)
		}
		if ids[id] {
			r.add(ProblemDuplicate, index, id, "the event id appears more than once")
			continue
		}
		ids[id] = true
		if !known {
			strays = append(strays, stray{pos, id, "its leaf hash is none of the log's"})
			continue
		}
		matched[i] = true
		if i < last {
			r.add(ProblemOrder, i, id, "leaf %d comes after leaf %d in the bundle", i, last)
		}
		last = max(last, i)
	}
	// An event standing where a leaf lacks its event is that leaf's event, changed; others are extra.
	for _, s := range strays {
		if i := first + int64(s.pos); i < r.Size && !matched[i] {
			matched[i] = true
			r.add(ProblemHashMismatch, i, s.id, "the event in the place of leaf %d is not the event sealed there: %s", i, s.why)
			continue
		}
		r.add(ProblemExtra, -1, s.id, "an event of no leaf: %s", s.why)
	}
	for i := first; i < r.Size; i++ {
		if !matched[i] {
			r.add(ProblemMissing, i, "", "no event for leaf %d", i)
		}
	}
}

// leafOf reads one line of events: its id and team, and its leaf hash. A line must be exactly its
// leaf's data, so that any changed byte is found.
func leafOf(line []byte) (id, team string, h tlog.Hash, err error) {
	var ev struct {
		ID     string `json:"id"`
		TeamID string `json:"team_id"`
	}
	_ = json.Unmarshal(line, &ev)
	data, err := LeafData(line)
	if err != nil {
		return ev.ID, ev.TeamID, h, err
	}
	if !bytes.Equal(data, line) {
		return ev.ID, ev.TeamID, h, fmt.Errorf("the line is not its leaf's data (the event's leaf fields in RFC 8785 form)")
	}
	return ev.ID, ev.TeamID, LeafHash(line), nil
}

// verifyPinned checks that the bundle's log extends a checkpoint the verifier kept: same log, no
// smaller, and its first leaves make the pinned root.
func (r *Report) verifyPinned(b Bundle, keys []string, cp Checkpoint, pinned []byte) {
	pc, _, err := Open(pinned, keys)
	switch {
	case err != nil:
		r.add(ProblemSignature, -1, "", "the pinned checkpoint: %v", err)
	case pc.Origin != cp.Origin:
		r.add(ProblemInconsistent, -1, "", "the pinned checkpoint is of the log %q, not %q", pc.Origin, cp.Origin)
	case pc.Size > cp.Size:
		r.add(ProblemInconsistent, pc.Size, "", "the log has %d leaves, fewer than the %d of the pinned checkpoint: it was rolled back", cp.Size, pc.Size)
	case pc.Size < r.Expired:
		r.add(ProblemInconsistent, pc.Size, "", "the pinned checkpoint of %d leaves is older than the %d expired ones: a bundle cannot check it; pin a newer checkpoint", pc.Size, r.Expired)
	case rootAfter(b.Edge, r.Expired, b.Hashes[:pc.Size-r.Expired]) != pc.Root:
		r.add(ProblemInconsistent, pc.Size, "", "the log's first %d leaves do not make the pinned checkpoint's root: it was rewritten", pc.Size)
	}
}
