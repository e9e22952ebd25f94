package seal

// The operators' online check: a team's events in the cluster against its latest signed
// checkpoint (auditctl verify --team), reported as auditctl verify --bundle reports a bundle.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// Verify checks the team's log in the cluster: the checkpoint is signed by one of keys and is the
// sealed tree's; every leaf's event is where it was sealed, unchanged and of the team; every
// full tile's events make its hash and the tree makes the signed root; no event of the team that
// was stored before the checkpoint is missing from it; and, with pinned, the log extends that
// checkpoint. An edited event is a HASH_MISMATCH, a deleted one MISSING, one given another team
// TEAM_MISMATCH, one that is in the cluster but in no leaf EXTRA, all naming the event id.
func (l *Log) Verify(ctx context.Context, team string, keys []string, pinned []byte) (merkle.Report, error) {
	r := merkle.Report{Team: team, SignedBy: []string{}, Problems: []merkle.Problem{}}
	t, err := l.tree(ctx, team)
	if err != nil {
		return r, err
	}
	cp, by, err := merkle.Open([]byte(t.st.Checkpoint), keys)
	if err != nil {
		r.Add(merkle.ProblemSignature, -1, "", "the checkpoint: %v", err)
		return r, nil
	}
	r.Origin, r.Size, r.Root, r.SignedBy = cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]), by
	if !strings.HasSuffix(cp.Origin, "/"+team) || cp.Size != t.st.Size || cp.Root != t.st.root() {
		r.Add(merkle.ProblemRootMismatch, -1, "", "the signed checkpoint is not the sealed tree of team %s", team)
		r.Conclude()
		return r, nil
	}
	first := t.st.Expired
	if first > 0 {
		if e, err := merkle.OpenExpiry([]byte(t.st.Expiry), keys); err != nil || e.Size != first || e.Root != t.st.ExpiredEdge.Root() {
			r.Add(merkle.ProblemSignature, -1, "", "the expiry statement of the first %d leaves is not signed, or not of them", first)
			r.Conclude()
			return r, nil
		}
		r.Expired = first
		r.Add(merkle.ProblemExpired, 0, "", "the events of leaves [0, %d) were removed by retention; the removal is signed", first)
	}
	sealed := map[string]map[string]bool{} // partition -> document ids sealed there
	var hashes []tlog.Hash
	intact := true
	for k := first / TileLeaves; k*TileLeaves < t.st.Size; k++ {
		refs, err := t.refs(k)
		if err != nil {
			return r, err
		}
		skip := int(max(first-k*TileLeaves, 0))
		hits, err := l.events(ctx, team, refs.ID[skip:])
		if err != nil {
			return r, err
		}
		found := skip
		for i, id := range refs.ID {
			if i < skip {
				continue
			}
			n := k*TileLeaves + int64(i)
			part := refs.part(i)
			if sealed[part] == nil {
				sealed[part] = map[string]bool{}
			}
			sealed[part][layout.DocID(team, id)] = true
			h, ok := hits[id]
			evTeam, _, lh, lerr := h.leaf()
			switch {
			case !ok:
				r.Add(merkle.ProblemMissing, n, id, "the event sealed as leaf %d is not in the cluster", n)
			case lerr != nil:
				r.Add(merkle.ProblemHashMismatch, n, id, "the event sealed as leaf %d cannot be read: %v", n, lerr)
			case evTeam != team:
				r.Add(merkle.ProblemTeamMismatch, n, id, "the event sealed as leaf %d now says team %q", n, evTeam)
			case h.SeqNo != refs.Seq[i] || h.Index != part || h.Version > 1:
				r.Add(merkle.ProblemHashMismatch, n, id, "the event sealed as leaf %d was rewritten after it was sealed", n)
			default:
				found++
				hashes = append(hashes, lh)
				continue
			}
			intact = false
		}
		if skip == 0 && found == refs.len() && refs.len() == TileLeaves {
			want, err := t.tileHash(k)
			if err != nil {
				return r, err
			}
			if merkle.Root(hashes[len(hashes)-TileLeaves:]) != want {
				r.Add(merkle.ProblemRootMismatch, k*TileLeaves, "", "the events of leaves [%d, %d) do not make the hash sealed for them", k*TileLeaves, (k+1)*TileLeaves)
				intact = false
			}
		}
	}
	edge := append(merkle.Edge(nil), t.st.ExpiredEdge...)
	for i, h := range hashes {
		edge = edge.Append(first+int64(i), h, nil)
	}
	if intact && edge.Root() != cp.Root {
		r.Add(merkle.ProblemRootMismatch, -1, "", "the sealed leaves do not make the signed root")
	}
	r.Events = len(hashes)
	if err := l.extra(ctx, team, t.st, sealed, &r); err != nil {
		return r, err
	}
	if pinned != nil {
		l.verifyPinned(t, keys, cp, pinned, &r)
	}
	r.Conclude()
	return r, nil
}

// extra finds the team's events stored in a partition up to the team's mark there that no leaf
// holds (inserted where the sealer had read), and counts those above the marks (not sealed yet).
func (l *Log) extra(ctx context.Context, team string, st *state, sealed map[string]map[string]bool, r *merkle.Report) error {
	teamQ := map[string]any{"term": map[string]any{"team_id": team}}
	var after []any
	for {
		req := map[string]any{"size": 5000, "_source": []string{document.EventID}, "seq_no_primary_term": true, "track_total_hits": false,
			"query": map[string]any{"bool": map[string]any{"filter": []any{teamQ}}},
			"sort":  []any{map[string]any{"_index": "asc"}, map[string]any{"_seq_no": "asc"}}}
		if after != nil {
			req["search_after"] = after
		}
		body, _ := json.Marshal(req)
		var res struct {
			Hits struct {
				Hits []esHit `json:"hits"`
			} `json:"hits"`
		}
		yes := true
		err := l.c.Do(ctx, esapi.SearchRequest{Index: l.c.Layout().ReadIndices(), Routing: []string{team}, Body: bytes.NewReader(body),
			IgnoreUnavailable: &yes, AllowNoIndices: &yes}, &res)
		if errors.Is(err, query.ErrNoTeam) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, h := range res.Hits.Hits {
			id := eventIDOf(h)
			mark, marked := st.Marks[h.Index]
			switch {
			case slices.Contains(st.ExpiredParts, h.Index): // its events' retention ended
			case sealed[h.Index][h.ID] && marked && h.SeqNo <= mark:
			case marked && h.SeqNo <= mark:
				r.Add(merkle.ProblemExtra, -1, id, "an event of the team stored in %s before the checkpoint is in no leaf", h.Index)
			default:
				r.Unsealed++
			}
		}
		if len(res.Hits.Hits) < 5000 {
			return nil
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
}

// eventIDOf is the event id of a hit read with only event.id of its source: event.id where the
// stored document keeps it (an id too long for the _id), else what its _id carries.
func eventIDOf(h esHit) string {
	var src struct {
		Event struct {
			ID string `json:"id"`
		} `json:"event"`
	}
	if json.Unmarshal(h.Source, &src) == nil && src.Event.ID != "" {
		return src.Event.ID
	}
	return layout.EventIDOf(h.ID)
}

// verifyPinned checks that the log extends a checkpoint kept earlier.
func (l *Log) verifyPinned(t *tree, keys []string, cp merkle.Checkpoint, pinned []byte, r *merkle.Report) {
	pc, _, err := merkle.Open(pinned, keys)
	switch {
	case err != nil:
		r.Add(merkle.ProblemSignature, -1, "", "the pinned checkpoint: %v", err)
		return
	case pc.Origin != cp.Origin:
		r.Add(merkle.ProblemInconsistent, -1, "", "the pinned checkpoint is of the log %q, not %q", pc.Origin, cp.Origin)
		return
	case pc.Size > cp.Size:
		r.Add(merkle.ProblemInconsistent, pc.Size, "", "the log has %d leaves, fewer than the %d of the pinned checkpoint: it was rolled back", cp.Size, pc.Size)
		return
	}
	root, err := tlog.TreeHash(pc.Size, t.reader())
	if err != nil {
		r.Add(merkle.ProblemInconsistent, pc.Size, "", "the log's first %d leaves cannot be read back: %v", pc.Size, err)
		return
	}
	if root != pc.Root {
		r.Add(merkle.ProblemInconsistent, pc.Size, "", "the log's first %d leaves do not make the pinned checkpoint's root: it was rewritten", pc.Size)
	}
}
