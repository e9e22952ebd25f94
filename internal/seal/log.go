package seal

// The prover: what the API and auditctl read of a team's signed log. Every read is of one team,
// named by the caller (the API's key, auditctl's checked --team): no input selects another's.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// Errors a reader tells its client about.
var (
	ErrNotSealed = errors.New("this team's log has no signed checkpoint yet")
	ErrUnsealed  = errors.New("this event is not sealed yet: it is in a checkpoint within the sealing delay")
	// ErrTampered: the cluster's events no longer make what was sealed; auditctl verify --team names them.
	ErrTampered = errors.New("the team's events in the cluster no longer match their sealed log")
)

// Log reads the signed logs.
type Log struct {
	s *Store
	c *query.Client
}

// NewLog reads what the store holds.
func NewLog(s *Store) *Log { return &Log{s: s, c: s.c} }

// tree is one team's log at its latest state: a hashSource for proofs.
type tree struct {
	l     *Log
	ctx   context.Context
	team  string
	st    *state
	tiles []tlog.Hash // hashes of the tile documents, read once
}

func (l *Log) tree(ctx context.Context, team string) (*tree, error) {
	if err := audit.CheckTeamID(team); err != nil {
		return nil, fmt.Errorf("team %w", err)
	}
	st, found, err := l.s.readState(ctx, team)
	if err != nil {
		return nil, err
	}
	if !found || st.Size == 0 {
		return nil, ErrNotSealed
	}
	return &tree{l: l, ctx: ctx, team: team, st: st}, nil
}

func (t *tree) tileHash(k int64) (tlog.Hash, error) {
	if k >= t.st.Tiles {
		if j := k - t.st.Tiles; j < int64(len(t.st.Done)) {
			return t.st.Done[j], nil
		}
		return tlog.Hash{}, fmt.Errorf("seal: tile %d is not full", k)
	}
	if t.tiles == nil {
		hs, err := t.l.tileHashes(t.ctx, t.team, t.st.Tiles)
		if err != nil {
			return tlog.Hash{}, err
		}
		t.tiles = hs
	}
	return t.tiles[k], nil
}

// refs are the leaves of tile k.
func (t *tree) refs(k int64) (refs, error) {
	if k >= t.st.Tiles {
		lo := int((k - t.st.Tiles) * TileLeaves)
		if lo >= t.st.Pending.len() {
			return refs{}, fmt.Errorf("seal: tile %d is beyond the log", k)
		}
		return t.st.Pending.slice(lo, min(lo+TileLeaves, t.st.Pending.len())), nil
	}
	var res struct {
		Source struct {
			Body tile `json:"body"`
		} `json:"_source"`
	}
	if err := t.l.c.Do(t.ctx, esapi.GetRequest{Index: t.l.s.index, DocumentID: tileID(t.team, k)}, &res); err != nil {
		return refs{}, fmt.Errorf("seal: tile %d of team %s: %w", k, t.team, err)
	}
	r := res.Source.Body.Refs
	if err := r.check(); err != nil || r.len() != TileLeaves {
		return refs{}, fmt.Errorf("seal: tile %d of team %s is not a full tile", k, t.team)
	}
	return r, nil
}

// leafHashes reads tile k's events back and hashes them; a full tile's must make its hash.
func (t *tree) leafHashes(k int64) ([]tlog.Hash, error) { return t.leafHashesFrom(k, k*TileLeaves) }

// leafHashesFrom hashes the leaves of tile k from leaf from on (the leaves before it may have
// expired); only a whole full tile can be checked against its hash.
func (t *tree) leafHashesFrom(k, from int64) ([]tlog.Hash, error) {
	r, err := t.refs(k)
	if err != nil {
		return nil, err
	}
	skip := int(max(from-k*TileLeaves, 0))
	if skip >= r.len() {
		return nil, nil
	}
	hits, err := t.l.events(t.ctx, t.team, r.ID[skip:])
	if err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, r.len()-skip)
	for i := skip; i < r.len(); i++ {
		id := r.ID[i]
		h, ok := hits[id]
		if !ok || h.SeqNo != r.Seq[i] || h.Index != r.part(i) {
			return nil, fmt.Errorf("%w (leaf %d, event %q)", ErrTampered, k*TileLeaves+int64(i), id)
		}
		if _, _, out[i-skip], err = h.leaf(); err != nil {
			return nil, err
		}
	}
	if skip == 0 && len(out) == TileLeaves {
		want, err := t.tileHash(k)
		if err != nil {
			return nil, err
		}
		if merkle.Root(out) != want {
			return nil, fmt.Errorf("%w (tile %d)", ErrTampered, k)
		}
	}
	return out, nil
}

// reader serves the tree's hashes to tlog's proofs.
func (t *tree) reader() *hashReader {
	return &hashReader{src: t, expired: t.st.Expired, edge: t.st.ExpiredEdge}
}

// checkRoot makes sure the tree the proofs come from is the one signed.
func (t *tree) checkRoot(r *hashReader) error {
	root, err := tlog.TreeHash(t.st.Size, r)
	if err != nil {
		return err
	}
	if root != t.st.root() {
		return fmt.Errorf("%w (the tree's hashes do not make the signed root)", ErrTampered)
	}
	return nil
}

// tileHashes reads the hashes of a team's tile documents [0, n), in order.
func (l *Log) tileHashes(ctx context.Context, team string, n int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, 0, n)
	var after []any
	for int64(len(out)) < n {
		req := map[string]any{"size": 10000, "_source": []string{"k", "body.hash"}, "track_total_hits": false,
			"query": map[string]any{"bool": map[string]any{"filter": []any{
				map[string]any{"term": map[string]any{"kind": "tile"}}, map[string]any{"term": map[string]any{"team": team}},
				map[string]any{"range": map[string]any{"k": map[string]any{"lt": n}}}}}},
			"sort": []any{map[string]any{"k": "asc"}}}
		if after != nil {
			req["search_after"] = after
		}
		body, _ := json.Marshal(req)
		var res struct {
			Hits struct {
				Hits []struct {
					Source struct {
						K    int64 `json:"k"`
						Body struct {
							Hash tlog.Hash `json:"hash"`
						} `json:"body"`
					} `json:"_source"`
					Sort []any `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := l.c.Do(ctx, esapi.SearchRequest{Index: []string{l.s.index}, Body: bytes.NewReader(body)}, &res); err != nil {
			return nil, err
		}
		if len(res.Hits.Hits) == 0 {
			break
		}
		for _, h := range res.Hits.Hits {
			if h.Source.K != int64(len(out)) {
				return nil, fmt.Errorf("%w (tile %d of team %s is missing from the seal)", ErrTampered, len(out), team)
			}
			out = append(out, h.Source.Body.Hash)
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
	if int64(len(out)) != n {
		return nil, fmt.Errorf("%w (the seal has %d of team %s's %d tiles)", ErrTampered, len(out), team, n)
	}
	return out, nil
}

// events fetches a team's events by event id, wherever the layout put them: the team's routing,
// its _id. Another team's document cannot answer: its _id starts with its own team.
func (l *Log) events(ctx context.Context, team string, ids []string) (map[string]esHit, error) {
	docIDs := make([]string, len(ids))
	for i, id := range ids {
		docIDs[i] = layout.DocID(team, id)
	}
	body, _ := json.Marshal(map[string]any{"size": len(ids), "seq_no_primary_term": true, "version": true, "track_total_hits": false,
		"query": map[string]any{"ids": map[string]any{"values": docIDs}}})
	var res struct {
		Hits struct {
			Hits []esHit `json:"hits"`
		} `json:"hits"`
	}
	yes := true
	if err := l.c.Do(ctx, esapi.SearchRequest{Index: l.c.Layout().ReadIndices(), Routing: []string{team}, Body: bytes.NewReader(body),
		IgnoreUnavailable: &yes, AllowNoIndices: &yes}, &res); err != nil {
		return nil, err
	}
	out := make(map[string]esHit, len(res.Hits.Hits))
	for _, h := range res.Hits.Hits {
		_, id, _, err := h.leaf()
		if err != nil {
			continue // unreadable: the caller finds the leaf without its event
		}
		out[id] = h
	}
	return out, nil
}

// Checkpoint is the team's latest signed checkpoint note.
func (l *Log) Checkpoint(ctx context.Context, team string) ([]byte, error) {
	t, err := l.tree(ctx, team)
	if err != nil {
		return nil, err
	}
	return []byte(t.st.Checkpoint), nil
}

// Inclusion is GET /v1/events/{id}/proof's answer.
type Inclusion struct {
	Index      int64    `json:"index"`
	Checkpoint string   `json:"checkpoint"`
	Inclusion  []string `json:"inclusion"`
}

// Consistency is GET /v1/checkpoint/consistency's answer.
type Consistency struct {
	From        int64    `json:"from"`
	Checkpoint  string   `json:"checkpoint"`
	Consistency []string `json:"consistency"`
}

// Proof proves an event of the team is the leaf it names in the latest checkpoint.
func (l *Log) Proof(ctx context.Context, team, id string) (Inclusion, error) {
	t, err := l.tree(ctx, team)
	if err != nil {
		return Inclusion{}, err
	}
	hits, err := l.events(ctx, team, []string{id})
	if err != nil {
		return Inclusion{}, err
	}
	h, ok := hits[id]
	if !ok {
		return Inclusion{}, query.ErrNoEvent
	}
	n, err := t.leafIndex(h, id)
	if err != nil {
		return Inclusion{}, err
	}
	r := t.reader()
	if err := t.checkRoot(r); err != nil {
		return Inclusion{}, err
	}
	p, err := tlog.ProveRecord(t.st.Size, n, r)
	if err != nil {
		return Inclusion{}, err
	}
	return Inclusion{Index: n, Checkpoint: t.st.Checkpoint, Inclusion: b64(p)}, nil
}

// leafIndex finds the leaf of a stored event: in the pending leaves, or in the tile whose range of
// _seq_no in its partition holds it.
func (t *tree) leafIndex(h esHit, id string) (int64, error) {
	p := &t.st.Pending
	for i := range p.ID {
		if p.ID[i] == id && p.Seq[i] == h.SeqNo && p.part(i) == h.Index {
			return t.st.Tiles*TileLeaves + int64(i), nil
		}
	}
	body, _ := json.Marshal(map[string]any{"size": 1000, "_source": []string{"k"},
		"query": map[string]any{"bool": map[string]any{"filter": []any{
			map[string]any{"term": map[string]any{"kind": "tile"}}, map[string]any{"term": map[string]any{"team": t.team}},
			map[string]any{"term": map[string]any{"parts": h.Index}},
			map[string]any{"range": map[string]any{"seq_lo": map[string]any{"lte": h.SeqNo}}},
			map[string]any{"range": map[string]any{"seq_hi": map[string]any{"gte": h.SeqNo}}}}}}})
	var res struct {
		Hits struct {
			Hits []struct {
				Source struct {
					K int64 `json:"k"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := t.l.c.Do(t.ctx, esapi.SearchRequest{Index: []string{t.l.s.index}, Body: bytes.NewReader(body)}, &res); err != nil {
		return 0, err
	}
	for _, c := range res.Hits.Hits {
		if c.Source.K >= t.st.Tiles {
			continue
		}
		r, err := t.refs(c.Source.K)
		if err != nil {
			return 0, err
		}
		for i := range r.ID {
			if r.ID[i] == id && r.Seq[i] == h.SeqNo && r.part(i) == h.Index {
				return c.Source.K*TileLeaves + int64(i), nil
			}
		}
	}
	return 0, ErrUnsealed
}

// ConsistencyFrom proves the latest checkpoint's tree extends the tree of its first from leaves.
func (l *Log) ConsistencyFrom(ctx context.Context, team string, from int64) (Consistency, error) {
	t, err := l.tree(ctx, team)
	if err != nil {
		return Consistency{}, err
	}
	if from < 1 || from > t.st.Size {
		return Consistency{}, &RangeError{Size: t.st.Size}
	}
	r := t.reader()
	if err := t.checkRoot(r); err != nil {
		return Consistency{}, err
	}
	p, err := tlog.ProveTree(t.st.Size, from, r)
	if err != nil {
		return Consistency{}, err
	}
	return Consistency{From: from, Checkpoint: t.st.Checkpoint, Consistency: b64(p)}, nil
}

// RangeError is a consistency proof asked from a size the log does not have.
type RangeError struct{ Size int64 }

func (e *RangeError) Error() string {
	return fmt.Sprintf("from must be a tree size from 1 to the log's %d (a larger one means the log was rolled back, or is another log)", e.Size)
}

func b64(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// WriteBundle writes the team's log as a bundle (docs/integrity.md, "Bundles"): its latest
// checkpoint, the leaf hashes, and every leaf's event in leaf order. The events are read twice,
// for the hashes the header holds and then for the lines; a log whose events no longer make its
// seal is refused (ErrTampered), not written. It returns the number of events written.
func (l *Log) WriteBundle(ctx context.Context, team string, w io.Writer) (int64, error) {
	t, err := l.tree(ctx, team)
	if err != nil {
		return 0, err
	}
	ntiles := (t.st.Size + TileLeaves - 1) / TileLeaves
	first := t.st.Expired
	hashes := make([]tlog.Hash, 0, t.st.Size-first)
	for k := first / TileLeaves; k < ntiles; k++ {
		hs, err := t.leafHashesFrom(k, first)
		if err != nil {
			return 0, err
		}
		hashes = append(hashes, hs...)
	}
	e := append(merkle.Edge(nil), t.st.ExpiredEdge...)
	for i, h := range hashes {
		e = e.Append(first+int64(i), h, nil)
	}
	if e.Root() != t.st.root() {
		return 0, fmt.Errorf("%w (the leaves do not make the signed root)", ErrTampered)
	}
	var expiry []byte
	if t.st.Expiry != "" {
		expiry = []byte(t.st.Expiry)
	}
	bw, err := merkle.NewBundleWriter(w, []byte(t.st.Checkpoint), expiry, t.st.ExpiredEdge, hashes)
	if err != nil {
		return 0, err
	}
	var n int64
	for k := first / TileLeaves; k < ntiles; k++ {
		r, err := t.refs(k)
		if err != nil {
			return n, err
		}
		skip := int(max(first-k*TileLeaves, 0))
		hits, err := l.events(ctx, team, r.ID[skip:])
		if err != nil {
			return n, err
		}
		for i := skip; i < r.len(); i++ {
			id := r.ID[i]
			h := hits[id]
			_, _, lh, err := h.leaf()
			if err != nil || lh != hashes[k*TileLeaves+int64(i)-first] {
				return n, fmt.Errorf("%w (event %q changed while the bundle was written)", ErrTampered, id)
			}
			api, err := apiJSON(h)
			if err != nil {
				return n, err
			}
			if err := bw.Event(api); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, bw.Flush()
}
