// Package seal makes every team's audit log a signed Merkle log (docs/integrity.md): the sealer
// appends each stored event to its team's RFC 6962 tree and signs the tree's checkpoints; the
// prover (log.go) serves checkpoints, inclusion and consistency proofs and bundles from what the
// sealer keeps, and checks a team's events in the cluster against them.
//
// The sealer runs beside the collector, never in its hot path, and any number of sealers may run
// against one cluster: each team's state is written only if nobody changed it since it was read,
// so the log of a team is one chain of states, and no two roots are ever signed for one size.
package seal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// DefaultInterval is how often a sealer looks for new events. An event is sealed within about
// two intervals and a refresh of being stored: the documented delay is 60 s.
const DefaultInterval = 10 * time.Second

// Config is what a Sealer needs.
type Config struct {
	Store    *Store
	Origin   string        // the operator's origin: checkpoints name <origin>/<team id>
	Signers  []note.Signer // one, or several while keys are rotated; never stored in Elasticsearch
	Interval time.Duration // default DefaultInterval
	// RoundEvents bounds the events one round reads (default 100,000): a round that stops there
	// commits what it read and the next starts at once.
	RoundEvents int
	Logger      *slog.Logger
	Now         func() time.Time
	// afterCommit, in tests, runs after a team's state is written and before anything else: a
	// sealer "killed" there leaves its tiles and history to the next.
	afterCommit func(team string) error
}

// Sealer seals the teams' logs.
type Sealer struct {
	cfg Config
	c   *query.Client
	s   *Store
}

// New checks the configuration.
func New(cfg Config) (*Sealer, error) {
	if cfg.Store == nil {
		return nil, errors.New("seal: no store")
	}
	if len(cfg.Signers) == 0 {
		return nil, errors.New("seal: no signer key")
	}
	for _, sg := range cfg.Signers {
		if sg.Name() != cfg.Origin {
			return nil, fmt.Errorf("seal: the signer key is named %q, the origin is %q: a key signs the logs of its own name", sg.Name(), cfg.Origin)
		}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.RoundEvents <= 0 {
		cfg.RoundEvents = 100_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sealer{cfg: cfg, c: cfg.Store.c, s: cfg.Store}, nil
}

// SetLogger sets where the sealer logs its rounds.
func (s *Sealer) SetLogger(l *slog.Logger) { s.cfg.Logger = l }

// Signers reads signer keys (note's PRIVATE+KEY+... form), one per line of text.
func Signers(text []byte) ([]note.Signer, error) {
	var out []note.Signer
	for _, k := range merkle.VerifierKeys(text) { // the same line rules
		sg, err := note.NewSigner(k)
		if err != nil {
			return nil, errors.New("not a signer key (auditctl seal keygen writes one)")
		}
		out = append(out, sg)
	}
	if len(out) == 0 {
		return nil, errors.New("no signer key")
	}
	return out, nil
}

// Run seals every Interval until ctx ends; a failed round is logged and tried again.
func (s *Sealer) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := s.Round(ctx)
		wait := s.cfg.Interval
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.Logger.Error("sealing round failed", "error", err)
		case err == nil && st.Events > 0:
			s.cfg.Logger.Info("sealed", "events", st.Events, "teams", st.Teams, "skipped", st.Skipped)
		}
		if st.More {
			wait = 0
		}
		t.Reset(wait)
	}
}

// RoundStats says what a round did.
type RoundStats struct {
	Events  int  // leaves appended
	Teams   int  // teams whose log grew
	Skipped int  // documents not sealed: changed after they were stored (_version above 1)
	More    bool // the round stopped at RoundEvents: more are waiting
}

// shardPos is one shard of one partition: the _seq_no read up to, and its global checkpoint.
type shardPos struct {
	index, shard string
	from, to     int64 // read (from, to]
}

// Round reads every partition shard's events above the sealer's marks, up to the shard's global
// checkpoint (every operation below it is processed on every copy, so after a refresh a search sees
// them all: an event indexed late, in any partition, is above its shard's mark), and appends them
// to their teams' logs in the order (partition, _seq_no).
func (s *Sealer) Round(ctx context.Context) (RoundStats, error) {
	var stats RoundStats
	if err := s.s.ensure(ctx); err != nil {
		return stats, err
	}
	hint, err := s.s.readMarks(ctx)
	if err != nil {
		return stats, err
	}
	if err := s.expire(ctx, hint, s.cfg.Now()); err != nil {
		return stats, err
	}
	work, err := s.shards(ctx, hint)
	if err != nil || len(work) == 0 {
		return stats, err
	}
	var indices []string
	for _, w := range work {
		if !slices.Contains(indices, w.index) {
			indices = append(indices, w.index)
		}
	}
	yes := true
	if err := s.c.Do(ctx, esapi.IndicesRefreshRequest{Index: indices, IgnoreUnavailable: &yes, AllowNoIndices: &yes}, nil); err != nil {
		return stats, err
	}
	byTeam := map[string][]event{}
	var teams []string
	read := 0
	for i := range work {
		w := &work[i]
		evs, upTo, err := s.readShard(ctx, *w, s.cfg.RoundEvents-read)
		if err != nil {
			return stats, err
		}
		read += len(evs)
		for _, ev := range evs {
			if ev.skip != "" {
				stats.Skipped++
				s.cfg.Logger.Warn("not sealed", "index", ev.index, "seq_no", ev.seq, "id", ev.docID, "reason", ev.skip)
				continue
			}
			if _, ok := byTeam[ev.team]; !ok {
				teams = append(teams, ev.team)
			}
			byTeam[ev.team] = append(byTeam[ev.team], ev)
		}
		if upTo < w.to {
			w.to, stats.More = upTo, true
			work = work[:i+1]
			break
		}
	}
	n, err := s.commit(ctx, teams, byTeam)
	stats.Events, stats.Teams = n, len(teams)
	if err != nil {
		return stats, err
	}

	for _, w := range work {
		if hint[w.index] == nil {
			hint[w.index] = map[string]int64{}
		}
		hint[w.index][w.shard] = w.to
	}
	return stats, s.s.writeMarks(ctx, hint)
}

// shards lists the partition shards with operations above the hint, by index name and shard.
func (s *Sealer) shards(ctx context.Context, hint marks) ([]shardPos, error) {
	var res struct {
		Indices map[string]struct {
			Shards map[string][]struct {
				Routing struct {
					Primary bool `json:"primary"`
				} `json:"routing"`
				SeqNo struct {
					GlobalCheckpoint int64 `json:"global_checkpoint"`
				} `json:"seq_no"`
			} `json:"shards"`
		} `json:"indices"`
	}
	err := s.c.Do(ctx, esapi.IndicesStatsRequest{Index: s.c.Layout().ReadIndices(), Metric: []string{"docs"}, Level: "shards", ExpandWildcards: "open",
		FilterPath: []string{"indices.*.shards.*.routing.primary", "indices.*.shards.*.seq_no.global_checkpoint"}}, &res)
	if err != nil {
		return nil, err
	}
	var out []shardPos
	for index, ix := range res.Indices {
		for shard, copies := range ix.Shards {
			for _, cp := range copies {
				if !cp.Routing.Primary {
					continue
				}
				from, ok := hint[index][shard]
				if !ok {
					from = -1
				}
				if cp.SeqNo.GlobalCheckpoint > from {
					out = append(out, shardPos{index: index, shard: shard, from: from, to: cp.SeqNo.GlobalCheckpoint})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b shardPos) int {
		if a.index != b.index {
			return compare(a.index, b.index)
		}
		x, _ := strconv.Atoi(a.shard)
		y, _ := strconv.Atoi(b.shard)
		return x - y
	})
	return out, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// event is one document read for sealing.
type event struct {
	index, docID string
	seq          int64
	team, id     string
	hash         tlog.Hash
	skip         string // why it is not sealed
}

// hit is a search hit with what the sealer and the prover need of it; S is how its source is
// read.
type hit[S any] struct {
	Index   string `json:"_index"`
	ID      string `json:"_id"`
	SeqNo   int64  `json:"_seq_no"`
	Version int64  `json:"_version"`
	Routing string `json:"_routing"`
	Source  S      `json:"_source"`
	Sort    []any  `json:"sort"`
}

// esHit is a hit with its source as stored.
type esHit hit[json.RawMessage]

// leaf reads a hit as a leaf: its team, its event id and its leaf hash.
func (h esHit) leaf() (team, id string, hash tlog.Hash, err error) {
	d, err := document.Decode(document.Hit{ID: h.ID, Source: h.Source})
	if err != nil {
		return "", "", tlog.Hash{}, err
	}
	return leafOf(d, len(h.Source))
}

// leafOf is a decoded document's leaf: the API's event (document.APIEvent), as merkle.LeafData.
func leafOf(d document.Stored, size int) (team, id string, hash tlog.Hash, err error) {
	api, err := d.API()
	if err != nil {
		return "", "", tlog.Hash{}, err
	}
	data, err := merkle.LeafData(api.AppendJSON(make([]byte, 0, size)))
	if err != nil {
		return "", "", tlog.Hash{}, err
	}
	return api.TeamID, api.ID, merkle.LeafHash(data), nil
}

// readPage decodes a page of the sealer's search into events; n is the page's hits, last the
// sort values of its last. It decodes the sources with the answer: one pass of encoding/json over a
// page, not one for the page and one more for each source. A page where a source does not decode
// as a stored document (edited in the cluster) is decoded again hit by hit, so that only that hit
// is unreadable.
func readPage(body []byte) (evs []event, pitID string, last []any, n int, err error) {
	evs, pitID, last, n, err = pageOf(body, func(docID string, d document.Stored) (string, string, tlog.Hash, error) {
		return leafOf(d.WithDocID(docID), 1024)
	})
	if err == nil {
		return evs, pitID, last, n, nil
	}
	evs, pitID, last, n, err = pageOf(body, func(docID string, src json.RawMessage) (string, string, tlog.Hash, error) {
		return esHit{ID: docID, Source: src}.leaf()
	})
	if err != nil {
		return nil, "", nil, 0, fmt.Errorf("seal: a search answer: %w", err)
	}
	return evs, pitID, last, n, nil
}

// pageOf decodes a page with its sources read as S, each hit's leaf made by leaf.
func pageOf[S any](body []byte, leaf func(docID string, src S) (string, string, tlog.Hash, error)) ([]event, string, []any, int, error) {
	var res struct {
		PITID string `json:"pit_id"`
		Hits  struct {
			Hits []hit[S] `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, "", nil, 0, err
	}
	evs := make([]event, 0, len(res.Hits.Hits))
	for _, h := range res.Hits.Hits {
		ev := event{index: h.Index, docID: h.ID, seq: h.SeqNo}
		var err error
		ev.team, ev.id, ev.hash, err = leaf(h.ID, h.Source)
		evs = append(evs, ev.check(err, h.Version, h.Routing))
	}
	var last []any
	if n := len(res.Hits.Hits); n > 0 {
		last = res.Hits.Hits[n-1].Sort
	}
	return evs, res.PITID, last, len(res.Hits.Hits), nil
}

// check says why an event read is not sealed, if it is not.
func (ev event) check(err error, version int64, routing string) event {
	switch {
	case err != nil:
		ev.skip = "unreadable: " + err.Error()
	case version > 1:
		ev.skip = "changed after it was stored"
	case audit.CheckTeamID(ev.team) != nil || routing != ev.team:
		ev.skip = "its team is not its routing"
	}
	return ev
}

// apiJSON is the hit as the API returns it.
func apiJSON(h esHit) ([]byte, error) {
	api, err := document.ToAPI(document.Hit{ID: h.ID, Source: h.Source})
	if err != nil {
		return nil, err
	}
	return api.AppendJSON(nil), nil
}

// readShard reads a shard's events in (from, to], at most max of them, and returns them in
// _seq_no order; upTo is the _seq_no read up to (to, or less when max stopped it: _seq_no are
// dense, so (from, from+max] holds at most max events). It reads them in the shard's own order
// (a point in time on the shard, sorted by _shard_doc), not in _seq_no order: a partition is
// sorted by team, so _seq_no order would decompress each stored block once per page.
func (s *Sealer) readShard(ctx context.Context, w shardPos, max int) ([]event, int64, error) {
	to := w.to
	if to-w.from > int64(max) {
		to = w.from + int64(max)
	}
	var pit struct {
		ID string `json:"id"`
	}
	err := s.c.Do(ctx, esapi.OpenPointInTimeRequest{Index: []string{w.index}, KeepAlive: "2m", Preference: "_shards:" + w.shard}, &pit)
	if errors.Is(err, query.ErrNoTeam) { // the partition was deleted meanwhile
		return nil, w.to, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		body, _ := json.Marshal(map[string]string{"id": pit.ID})
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = s.c.Do(cctx, esapi.ClosePointInTimeRequest{Body: bytes.NewReader(body)}, nil)
	}()
	const page = 10000
	var out []event
	var after []any
	for {
		req := map[string]any{
			"size": page, "seq_no_primary_term": true, "version": true, "track_total_hits": false,
			"pit":   map[string]any{"id": pit.ID, "keep_alive": "2m"},
			"query": map[string]any{"range": map[string]any{"_seq_no": map[string]any{"gt": w.from, "lte": to}}},
			"sort":  []any{"_shard_doc"},
		}
		if after != nil {
			req["search_after"] = after
		}
		body, _ := json.Marshal(req)
		raw, err := s.c.Raw(ctx, esapi.SearchRequest{Body: bytes.NewReader(body)})
		if err != nil {
			return nil, 0, err
		}
		evs, pitID, last, n, err := readPage(raw)
		if err != nil {
			return nil, 0, err
		}
		if pitID != "" {
			pit.ID = pitID
		}
		out = append(out, evs...)
		if n < page {
			break
		}
		after = last
	}
	slices.SortFunc(out, func(a, b event) int { return int(a.seq - b.seq) })
	return out, to, nil
}

// commit appends each team's events to its log: read the states, extend them, sign, write each
// only if unchanged; a team whose state changed meanwhile (another sealer) is read and extended
// again, its events already sealed left out.
func (s *Sealer) commit(ctx context.Context, teams []string, byTeam map[string][]event) (int, error) {
	appended := 0
	for attempt := 0; len(teams) > 0; attempt++ {
		if attempt == 20 {
			return appended, fmt.Errorf("seal: %d teams' states kept changing under this sealer", len(teams))
		}
		states, err := s.s.readStates(ctx, teams)
		if err != nil {
			return appended, err
		}
		// Tiles a stopped sealer completed but did not take out of its state.
		flushed := map[string]bool{}
		for _, team := range teams {
			flushed[team] = len(states[team].Done) > 0
		}
		if err := s.flushTiles(ctx, teams, states); err != nil {
			return appended, err
		}
		now := s.cfg.Now().UTC()
		var items, days []bulkItem
		var changed []string
		var added []int
		for _, team := range teams {
			st := states[team]
			// The history: a state that moves past its day keeps that day's last checkpoint (or,
			// when another sealer commits across midnight, one a little earlier that day). It was
			// committed already, so it is written with the new states, whatever becomes of them.
			var day *bulkItem
			if !st.SealedAt.IsZero() && dayID(team, st.SealedAt) != dayID(team, now) {
				d := dayItem(team, st)
				day = &d
			}
			n, err := s.extend(team, st, byTeam[team], now)
			if err != nil {
				return appended, err
			}
			if n == 0 && !flushed[team] {
				continue // every event sealed already (another sealer, or this one's earlier try)
			}
			items = append(items, stateItem(team, st))
			changed, added = append(changed, team), append(added, n)
			if day != nil {
				days = append(days, *day)
			}
		}
		res, err := s.s.bulk(ctx, append(items, days...), "")
		if err != nil {
			return appended, err
		}
		var again, full []string
		for i, team := range changed {
			if res[i].status == http.StatusConflict {
				again = append(again, team)
				continue
			}
			st := states[team]
			st.seqNo, st.primaryTerm = res[i].seqNo, res[i].term
			appended += added[i]
			if s.cfg.afterCommit != nil {
				if err := s.cfg.afterCommit(team); err != nil {
					return appended, err
				}
			}
			if len(st.Done) > 0 {
				full = append(full, team)
			}
		}
		if err := s.afterCommit(ctx, full, states); err != nil {
			return appended, err
		}
		teams = again
	}
	return appended, nil
}

// extend appends the events above the team's marks to its state and signs the new tree head; it
// returns how many leaves it added.
func (s *Sealer) extend(team string, st *state, evs []event, now time.Time) (int, error) {
	n := 0
	for _, ev := range evs {
		if m, ok := st.Marks[ev.index]; ok && ev.seq <= m {
			continue // sealed already, by this sealer's earlier try or another sealer
		}
		st.Edge = st.Edge.Append(st.Size, ev.hash, func(level int, h tlog.Hash) {
			if level == TileHeight { // the new leaf completes its tile
				st.Done = append(st.Done, h)
			}
		})
		st.Size++
		st.Pending.add(ev.index, ev.seq, ev.id)
		st.Marks[ev.index] = ev.seq
		n++
	}
	cp, err := merkle.Sign(merkle.Checkpoint{Origin: merkle.Origin(s.cfg.Origin, team), Size: st.Size, Root: st.root()}, s.cfg.Signers...)
	if err != nil {
		return 0, err
	}
	st.Checkpoint, st.SealedAt = string(cp), now
	return n, nil
}

// flushTiles writes, in one request, the tile documents of the teams' full tiles and takes them
// out of their states (the caller writes those). Tiles follow from a state already written, so
// whoever writes one writes the same document. The tiles are searchable before any state without
// their leaves is written (refresh wait_for): a reader finds a leaf in its state or in its tile.
func (s *Sealer) flushTiles(ctx context.Context, teams []string, states map[string]*state) error {
	var items []bulkItem
	for _, team := range teams {
		st := states[team]
		for j, h := range st.Done {
			k := st.Tiles + int64(j)
			t := tile{Hash: h, Refs: st.Pending.slice(j*TileLeaves, (j+1)*TileLeaves)}
			items = append(items, bulkItem{op: "index", id: tileID(team, k), seqNo: -1, doc: tileDoc(team, k, t)})
		}
	}
	if len(items) == 0 {
		return nil
	}
	if _, err := s.s.bulk(ctx, items, "wait_for"); err != nil {
		return err
	}
	for _, team := range teams {
		st := states[team]
		full := len(st.Done) * TileLeaves
		st.Pending = st.Pending.slice(full, st.Pending.len())
		st.Tiles += int64(len(st.Done))
		st.Done = nil
	}
	return nil
}

// dayItem is a team's last checkpoint of its state's day: the log's bounded history, one a day.
func dayItem(team string, st *state) bulkItem {
	return bulkItem{op: "index", id: dayID(team, st.SealedAt), seqNo: -1, doc: doc{Kind: "checkpoint", Team: team,
		Body: map[string]any{"checkpoint": st.Checkpoint, "size": st.Size, "sealed_at": st.SealedAt}}}
}

// afterCommit writes what follows from written states, for the whole round at once: the full
// tiles of the teams in full, then their states without those tiles' leaves, each only if still
// the one this sealer wrote (else another sealer went on from it and takes the tiles out itself).
func (s *Sealer) afterCommit(ctx context.Context, full []string, states map[string]*state) error {
	if err := s.flushTiles(ctx, full, states); err != nil {
		return err
	}
	items := make([]bulkItem, len(full))
	for i, team := range full {
		items[i] = stateItem(team, states[team])
	}
	_, err := s.s.bulk(ctx, items, "")
	return err
}
