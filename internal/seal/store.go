package seal

// What the sealer keeps, in an index of its own beside the audit indices (docs/integrity.md,
// "Sealing"): one state document per team, one tile document per full tile of 256 leaves, one
// checkpoint a team a day, and a hint of how far the sealer has read each shard. Its size grows with
// events (a tile is a few bytes a leaf: which event each leaf is), not with seals.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// DefaultIndex is the sealer's index. Like the API keys' index it is outside the audit indices'
// pattern, so no reader of team events, no template and no purge touches it.
const DefaultIndex = "auditseal"

// sealMapping keeps the index to this shape: what is searched is indexed, the rest is kept only.
const sealMapping = `{"dynamic":"strict","properties":{
  "kind":{"type":"keyword"},"team":{"type":"keyword"},"k":{"type":"long"},
  "parts":{"type":"keyword"},"seq_lo":{"type":"long"},"seq_hi":{"type":"long"},
  "body":{"type":"object","enabled":false}}}`

// Store reads and writes the sealer's index.
type Store struct {
	c     *query.Client
	index string
}

// NewStore uses the index (DefaultIndex unless configured), which must not fall under the audit
// indices' pattern.
func NewStore(c *query.Client, index string) (*Store, error) {
	if index == "" {
		index = DefaultIndex
	}
	if err := layout.CheckIndexName(index); err != nil {
		return nil, fmt.Errorf("seal index: %w", err)
	}
	if strings.HasPrefix(index, c.Layout().Prefix()) {
		return nil, fmt.Errorf("seal index %q: must not start with the audit indices' prefix %q", index, c.Layout().Prefix())
	}
	return &Store{c: c, index: index}, nil
}

// Index is the store's index name.
func (s *Store) Index() string { return s.index }

// ensure creates the index if it is missing.
func (s *Store) ensure(ctx context.Context) error {
	body := `{"settings":{"index":{"number_of_shards":1,"auto_expand_replicas":"0-1","codec":"best_compression"}},"mappings":` + sealMapping + `}`
	err := s.c.Do(ctx, esapi.IndicesCreateRequest{Index: s.index, Body: strings.NewReader(body)}, nil)
	if err != nil && !(query.IsStatus(err, http.StatusBadRequest) && strings.Contains(err.Error(), "resource_already_exists_exception")) {
		return err
	}
	// Created by this sealer or another one a moment ago: its shard may not be started yet.
	yes := true
	return s.c.Do(ctx, esapi.ClusterHealthRequest{Index: []string{s.index}, WaitForStatus: "yellow", WaitForNoInitializingShards: &yes,
		WaitForActiveShards: "1", Timeout: 30 * time.Second}, nil)
}

// refs say which event each of a run of leaves is, in leaf order: its partition (an index into
// Parts), its _seq_no there, and its event id. They are most of what sealing stores, so they are
// stored in columns (refsJSON), which compress better than rows.
type refs struct {
	Parts []string
	P     []int
	Seq   []int64
	ID    []string
}

// refsJSON is refs as stored: each _seq_no as its difference from the leaf before's (a team's
// events of a partition are near each other there: a byte or two after compression, not seven
// digits), each event id in compactID's form.
type refsJSON struct {
	Parts    []string `json:"parts"`
	P        []int    `json:"p"`
	SeqDelta []int64  `json:"seq_delta"`
	ID       []string `json:"id"`
}

func (r refs) MarshalJSON() ([]byte, error) {
	out := refsJSON{Parts: r.Parts, P: r.P, SeqDelta: make([]int64, len(r.Seq)), ID: make([]string, len(r.ID))}
	prev := int64(0)
	for i, s := range r.Seq {
		out.SeqDelta[i], prev = s-prev, s
	}
	for i, id := range r.ID {
		out.ID[i] = compactID(id)
	}
	return json.Marshal(out)
}

func (r *refs) UnmarshalJSON(b []byte) error {
	var in refsJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*r = refs{Parts: in.Parts, P: in.P, Seq: make([]int64, len(in.SeqDelta)), ID: make([]string, len(in.ID))}
	prev := int64(0)
	for i, d := range in.SeqDelta {
		prev += d
		r.Seq[i] = prev
	}
	for i, c := range in.ID {
		id, err := expandID(c)
		if err != nil {
			return err
		}
		r.ID[i] = id
	}
	return nil
}

// compactID is how refs store an event id: a canonical (lowercase) UUID, the usual id, as "~" and
// its 16 bytes in unpadded base64url (23 characters, not 36, and fewer bytes after compression);
// any other id as it is, with a "~" before it if it starts with one.
func compactID(id string) string {
	if u, ok := uuidBytes(id); ok {
		return "~" + base64.RawURLEncoding.EncodeToString(u[:])
	}
	if strings.HasPrefix(id, "~") {
		return "~" + id
	}
	return id
}

// expandID inverts compactID.
func expandID(c string) (string, error) {
	switch {
	case strings.HasPrefix(c, "~~"):
		return c[1:], nil
	case strings.HasPrefix(c, "~"):
		u, err := base64.RawURLEncoding.DecodeString(c[1:])
		if err != nil || len(u) != 16 {
			return "", fmt.Errorf("seal: a stored event id %q is not a compact UUID", c)
		}
		h := hex.EncodeToString(u)
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
	}
	return c, nil
}

// uuidBytes parses a UUID in its canonical lowercase text form only, so that expandID gives back
// the very string.
func uuidBytes(id string) (u [16]byte, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return u, false
	}
	h := id[:8] + id[9:13] + id[14:18] + id[19:23] + id[24:]
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return u, false
		}
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, false
	}
	return u, true
}

func (r *refs) len() int { return len(r.ID) }

func (r *refs) add(part string, seq int64, id string) {
	p := len(r.Parts) - 1
	if p < 0 || r.Parts[p] != part {
		p = -1
		for i, q := range r.Parts {
			if q == part {
				p = i
			}
		}
		if p < 0 {
			r.Parts = append(r.Parts, part)
			p = len(r.Parts) - 1
		}
	}
	r.P = append(r.P, p)
	r.Seq = append(r.Seq, seq)
	r.ID = append(r.ID, id)
}

func (r *refs) part(i int) string { return r.Parts[r.P[i]] }

// slice returns leaves [lo, hi) as refs of their own.
func (r *refs) slice(lo, hi int) refs {
	var out refs
	for i := lo; i < hi; i++ {
		out.add(r.part(i), r.Seq[i], r.ID[i])
	}
	return out
}

// check tells whether the columns agree.
func (r *refs) check() error {
	if len(r.P) != len(r.ID) || len(r.Seq) != len(r.ID) {
		return errors.New("seal: leaf references of unequal columns")
	}
	for _, p := range r.P {
		if p < 0 || p >= len(r.Parts) {
			return errors.New("seal: a leaf reference names no partition")
		}
	}
	return nil
}

// state is a team's log as the sealer left it.
type state struct {
	Size  int64       `json:"size"`
	Edge  merkle.Edge `json:"edge"`  // the right edge of the tree of Size leaves
	Tiles int64       `json:"tiles"` // full tiles in tile documents: leaves [0, Tiles*TileLeaves)
	// Pending are the leaves [Tiles*TileLeaves, Size); Done the hashes of the full tiles among them,
	// whose tile documents are written after the state.
	Pending refs        `json:"pending"`
	Done    []tlog.Hash `json:"done"`
	// Marks are, per partition, the highest _seq_no of this team's events sealed there: the team's
	// events of one partition are on one shard, where _seq_no grows as they are indexed.
	Marks      map[string]int64 `json:"marks"`
	Checkpoint string           `json:"checkpoint"` // the signed checkpoint of Size and the root
	SealedAt   time.Time        `json:"sealed_at"`
	// Expired leaves [0, Expired) lost their events to retention, as the signed statement Expiry
	// says; ExpiredEdge is the edge of their tree.
	Expired     int64       `json:"expired,omitempty"`
	ExpiredEdge merkle.Edge `json:"expired_edge,omitempty"`
	Expiry      string      `json:"expiry,omitempty"`
	// ExpiredParts are the partitions whose retention ended when Expiry was signed.
	ExpiredParts []string `json:"expired_parts,omitempty"`

	seqNo, primaryTerm int64 // of the document read, for the conditional write; -1: none yet
}

func (st *state) root() tlog.Hash { return st.Edge.Root() }

// tile is a full tile's document.
type tile struct {
	Hash tlog.Hash `json:"hash"`
	Refs refs      `json:"refs"`
}

func stateID(team string) string         { return "state:" + team }
func tileID(team string, k int64) string { return fmt.Sprintf("tile:%s:%d", team, k) }
func dayID(team string, t time.Time) string {
	return "checkpoint:" + team + ":" + t.UTC().Format(time.DateOnly)
}

// doc is a document of the index.
type doc struct {
	Kind  string   `json:"kind"`
	Team  string   `json:"team,omitempty"`
	K     *int64   `json:"k,omitempty"`
	Parts []string `json:"parts,omitempty"`
	SeqLo *int64   `json:"seq_lo,omitempty"`
	SeqHi *int64   `json:"seq_hi,omitempty"`
	Body  any      `json:"body"`
}

func tileDoc(team string, k int64, t tile) doc {
	lo, hi := t.Refs.Seq[0], t.Refs.Seq[0]
	for _, s := range t.Refs.Seq {
		lo, hi = min(lo, s), max(hi, s)
	}
	return doc{Kind: "tile", Team: team, K: &k, Parts: t.Refs.Parts, SeqLo: &lo, SeqHi: &hi, Body: t}
}

// chunk bounds the documents of one _mget or _bulk: a round of 100,000 teams is requests of a
// few megabytes, not one of a hundred.
const chunk = 2000

// readStates gets the states of teams, chunk by chunk; a team without one gets a new state.
func (s *Store) readStates(ctx context.Context, teams []string) (map[string]*state, error) {
	out := make(map[string]*state, len(teams))
	for lo := 0; lo < len(teams); lo += chunk {
		if err := s.readStateChunk(ctx, teams[lo:min(lo+chunk, len(teams))], out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) readStateChunk(ctx context.Context, teams []string, out map[string]*state) error {
	ids := make([]string, len(teams))
	for i, t := range teams {
		ids[i] = stateID(t)
	}
	body, _ := json.Marshal(map[string]any{"ids": ids})
	var res struct {
		Docs []struct {
			ID          string          `json:"_id"`
			Found       bool            `json:"found"`
			SeqNo       int64           `json:"_seq_no"`
			PrimaryTerm int64           `json:"_primary_term"`
			Source      json.RawMessage `json:"_source"`
			Error       json.RawMessage `json:"error"`
		} `json:"docs"`
	}
	yes := true
	if err := s.c.Do(ctx, esapi.MgetRequest{Index: s.index, Body: bytes.NewReader(body), Realtime: &yes}, &res); err != nil {
		return err
	}
	for i, d := range res.Docs {
		if len(d.Error) > 0 && bytes.Contains(d.Error, []byte("index_not_found_exception")) {
			d.Found = false // nothing sealed yet
		} else if len(d.Error) > 0 {
			return fmt.Errorf("seal: reading %s: %s", d.ID, d.Error)
		}
		st := &state{seqNo: -1, primaryTerm: -1, Marks: map[string]int64{}}
		if d.Found {
			var w struct {
				Body state `json:"body"`
			}
			if err := json.Unmarshal(d.Source, &w); err != nil {
				return fmt.Errorf("seal: %s: %w", d.ID, err)
			}
			*st = w.Body
			if err := st.check(); err != nil {
				return fmt.Errorf("seal: %s: %w", d.ID, err)
			}
			st.seqNo, st.primaryTerm = d.SeqNo, d.PrimaryTerm
			if st.Marks == nil {
				st.Marks = map[string]int64{}
			}
		}
		out[teams[i]] = st
	}
	return nil
}

// check refuses a state whose parts disagree.
func (st *state) check() error {
	if err := st.Pending.check(); err != nil {
		return err
	}
	if !st.ExpiredEdge.Valid(st.Expired) || st.Expired > st.Size || !st.Edge.Valid(st.Size) || st.Tiles*TileLeaves+int64(st.Pending.len()) != st.Size ||
		int64(len(st.Done)) != int64(st.Pending.len())/TileLeaves {
		return errors.New("seal: a state whose size, edge and leaves disagree")
	}
	return nil
}

// readState is one team's state; found is false when the team's log was never sealed.
func (s *Store) readState(ctx context.Context, team string) (st *state, found bool, err error) {
	m, err := s.readStates(ctx, []string{team})
	if err != nil {
		if errors.Is(err, query.ErrNoTeam) { // no index yet
			return nil, false, nil
		}
		return nil, false, err
	}
	st = m[team]
	return st, st.seqNo >= 0, nil
}

// bulkItem is one action of a _bulk request.
type bulkItem struct {
	op          string // index or create
	id          string
	seqNo, term int64 // index only when seqNo >= 0
	doc         doc
}

// written is what _bulk answered for one item: its status and, when written, the document's new
// _seq_no and _primary_term (a later conditional write's condition).
type written struct {
	status      int
	seqNo, term int64
}

// bulk runs items, chunk by chunk, and gives what each did; any failure but a conflict is an error.
func (s *Store) bulk(ctx context.Context, items []bulkItem, refresh string) ([]written, error) {
	var out []written
	for lo := 0; lo < len(items); lo += chunk {
		w, err := s.bulkChunk(ctx, items[lo:min(lo+chunk, len(items))], refresh)
		if err != nil {
			return nil, err
		}
		out = append(out, w...)
	}
	return out, nil
}

func (s *Store) bulkChunk(ctx context.Context, items []bulkItem, refresh string) ([]written, error) {
	var b bytes.Buffer
	for _, it := range items {
		meta := map[string]any{"_id": it.id}
		if it.op == "index" && it.seqNo >= 0 {
			meta["if_seq_no"], meta["if_primary_term"] = it.seqNo, it.term
		}
		line, _ := json.Marshal(map[string]any{it.op: meta})
		b.Write(line)
		b.WriteByte('\n')
		body, err := json.Marshal(it.doc)
		if err != nil {
			return nil, err
		}
		b.Write(body)
		b.WriteByte('\n')
	}
	var res struct {
		Items []map[string]struct {
			Status      int             `json:"status"`
			SeqNo       int64           `json:"_seq_no"`
			PrimaryTerm int64           `json:"_primary_term"`
			Error       json.RawMessage `json:"error"`
		} `json:"items"`
	}
	if err := s.c.Do(ctx, esapi.BulkRequest{Index: s.index, Body: &b, Refresh: refresh}, &res); err != nil {
		return nil, err
	}
	if len(res.Items) != len(items) {
		return nil, fmt.Errorf("seal: _bulk answered %d items for %d", len(res.Items), len(items))
	}
	out := make([]written, len(items))
	for i, m := range res.Items {
		for _, r := range m {
			out[i] = written{r.Status, r.SeqNo, r.PrimaryTerm}
			if r.Status >= 300 && r.Status != http.StatusConflict {
				return nil, fmt.Errorf("seal: writing %s: %d %s", items[i].id, r.Status, r.Error)
			}
		}
	}
	return out, nil
}

// stateItem is the conditional write of a state: create for a new team, else index if unchanged.
func stateItem(team string, st *state) bulkItem {
	parts := make([]string, 0, len(st.Marks))
	for p := range st.Marks {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	it := bulkItem{op: "create", id: stateID(team), seqNo: -1, doc: doc{Kind: "state", Team: team, Parts: parts, Body: st}}
	if st.seqNo >= 0 {
		it.op, it.seqNo, it.term = "index", st.seqNo, st.primaryTerm
	}
	return it
}

// marks is the sealer's hint of how far it has read: per partition and shard, the _seq_no up to
// which every team's events are in the team's state. Only a hint: the teams' own marks decide.
type marks map[string]map[string]int64

func (s *Store) readMarks(ctx context.Context) (marks, error) {
	var res struct {
		Source struct {
			Body marks `json:"body"`
		} `json:"_source"`
	}
	err := s.c.Do(ctx, esapi.GetRequest{Index: s.index, DocumentID: "marks"}, &res)
	if isMissing(err) {
		return marks{}, nil
	}
	if err != nil {
		return nil, err
	}
	if res.Source.Body == nil {
		return marks{}, nil
	}
	return res.Source.Body, nil
}

func (s *Store) writeMarks(ctx context.Context, m marks) error {
	body, _ := json.Marshal(doc{Kind: "marks", Body: m})
	return s.c.Do(ctx, esapi.IndexRequest{Index: s.index, DocumentID: "marks", Body: bytes.NewReader(body)}, nil)
}

// isMissing tells a document or an index that is not there.
func isMissing(err error) bool {
	return query.IsStatus(err, http.StatusNotFound) || errors.Is(err, query.ErrNoTeam)
}
