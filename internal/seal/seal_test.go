package seal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
)

const origin = "audit.test"

// env is a team log on the real test node under a prefix of its own, with a sealer's store.
type env struct {
	t        *testing.T
	c        *query.Client
	rec      *recorder.Recorder
	store    *Store
	log      *Log
	signer   note.Signer
	verifier string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	prefix := estest.Prefix(t)
	c, err := query.New(query.Conn{URLs: []string{estest.URL(t)}, IndexPrefix: prefix + layout.DefaultPrefix,
		QuarantineIndex: prefix + layout.DefaultQuarantine, InstallTemplates: true})
	require.NoError(t, err)
	rec, err := recorder.New(context.Background(), c, nil)
	require.NoError(t, err)
	t.Cleanup(rec.Close)
	store, err := NewStore(c, prefix+"seal") // under the prefix: the test's cleanup deletes it
	require.NoError(t, err)
	skey, vkey, err := merkle.GenerateKey(origin)
	require.NoError(t, err)
	signer, err := note.NewSigner(skey)
	require.NoError(t, err)
	return &env{t: t, c: c, rec: rec, store: store, log: NewLog(store), signer: signer, verifier: vkey}
}

func (e *env) sealer(signers ...note.Signer) *Sealer {
	e.t.Helper()
	if len(signers) == 0 {
		signers = []note.Signer{e.signer}
	}
	s, err := New(Config{Store: e.store, Origin: origin, Signers: signers})
	require.NoError(e.t, err)
	return s
}

func (e *env) round(s *Sealer) RoundStats {
	e.t.Helper()
	for {
		st, err := s.Round(context.Background())
		require.NoError(e.t, err)
		if !st.More {
			return st
		}
	}
}

// events makes n events of a team at times spread back from end.
func events(team string, n int, end time.Time, span time.Duration) []audit.Event {
	evs := make([]audit.Event, n)
	for i := range evs {
		evs[i] = audit.Event{
			ID: uuid.NewString(), Time: end.Add(-time.Duration(i) * span / time.Duration(n+1)).Truncate(time.Millisecond),
			Action: audit.ActionJobUpdated, TeamID: team, Actor: auditlog.User(fmt.Sprint(1000+i%7), "", ""),
			Targets: []audit.Target{{Type: "job", ID: fmt.Sprint(5000 + i%13)}}, Metadata: map[string]any{"seq": i},
		}
	}
	return evs
}

func (e *env) load(evs []audit.Event) {
	e.t.Helper()
	for start := 0; start < len(evs); start += 500 {
		_, err := e.rec.RecordAll(context.Background(), evs[start:min(start+500, len(evs))])
		require.NoError(e.t, err)
	}
}

// bundle exports the team's bundle and verifies it offline.
func (e *env) bundle(team string, pinned []byte) (merkle.Bundle, merkle.Report) {
	e.t.Helper()
	var buf bytes.Buffer
	_, err := e.log.WriteBundle(context.Background(), team, &buf)
	require.NoError(e.t, err)
	b, err := merkle.ReadBundle(&buf)
	require.NoError(e.t, err)
	return b, merkle.Verify(b, []string{e.verifier}, pinned)
}

// leafHashOf is the leaf hash of an event as the API serves it.
func (e *env) leafHashOf(team, id string) tlog.Hash {
	e.t.Helper()
	hit, err := e.c.Get(context.Background(), team, id)
	require.NoError(e.t, err)
	api, err := document.ToAPI(hit)
	require.NoError(e.t, err)
	b, _ := json.Marshal(api)
	data, err := merkle.LeafData(b)
	require.NoError(e.t, err)
	return merkle.LeafHash(data)
}

func unb64(t *testing.T, ss []string) []tlog.Hash {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		b, err := base64.StdEncoding.DecodeString(s)
		require.NoError(t, err)
		copy(out[i][:], b)
	}
	return out
}

func (e *env) checkpoint(team string) merkle.Checkpoint {
	e.t.Helper()
	note, err := e.log.Checkpoint(context.Background(), team)
	require.NoError(e.t, err)
	cp, _, err := merkle.Open(note, []string{e.verifier})
	require.NoError(e.t, err)
	return cp
}

// TestSealProveAndBundle seals two teams' events over two partitions (full tiles and a partial
// one), then proves inclusion of events in every kind of place and the log's consistency with an
// earlier size, with tlog's checks, and verifies the team's bundle offline; late events, in the
// older partition, are sealed by the next round.
func TestSealProveAndBundle(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC().Add(-time.Hour)
	a := events("401", 700, now, 50*24*time.Hour) // two monthly partitions at least
	e.load(a)
	e.load(events("402", 60, now, 50*24*time.Hour))
	s := e.sealer()
	st := e.round(s)
	require.Equal(t, 760, st.Events)
	require.Equal(t, 2, st.Teams)
	cp := e.checkpoint("401")
	require.EqualValues(t, 700, cp.Size)
	require.Equal(t, origin+"/401", cp.Origin)
	require.EqualValues(t, 60, e.checkpoint("402").Size)

	ctx := context.Background()
	for _, ev := range []audit.Event{a[0], a[300], a[699], a[511]} {
		p, err := e.log.Proof(ctx, "401", ev.ID)
		require.NoError(t, err)
		require.Equal(t, string(mustNote(t, e, "401")), p.Checkpoint)
		require.NoError(t, tlog.CheckRecord(unb64(t, p.Inclusion), cp.Size, cp.Root, p.Index, e.leafHashOf("401", ev.ID)), "event %s", ev.ID)
	}
	_, err := e.log.Proof(ctx, "402", a[0].ID) // another team's event is not this team's
	require.ErrorIs(t, err, query.ErrNoEvent)

	_, rep := e.bundle("401", nil)
	require.True(t, rep.Verified, "%+v", rep.Problems)
	require.Equal(t, 700, rep.Events)
	pinned := mustNote(t, e, "401")

	// Late events with old timestamps, and new ones.
	late := events("401", 300, now.Add(-45*24*time.Hour), 24*time.Hour)
	e.load(late)
	e.round(s)
	cp2 := e.checkpoint("401")
	require.EqualValues(t, 1000, cp2.Size)
	c, err := e.log.ConsistencyFrom(ctx, "401", 700)
	require.NoError(t, err)
	require.NoError(t, tlog.CheckTree(unb64(t, c.Consistency), cp2.Size, cp2.Root, 700, cp.Root))
	for _, from := range []int64{1, 255, 256, 257, 999, 1000} {
		c, err := e.log.ConsistencyFrom(ctx, "401", from)
		require.NoError(t, err)
		old := e.rootAt(t, "401", from)
		require.NoError(t, tlog.CheckTree(unb64(t, c.Consistency), cp2.Size, cp2.Root, from, old), "from %d", from)
	}
	_, err = e.log.ConsistencyFrom(ctx, "401", 1001)
	var re *RangeError
	require.ErrorAs(t, err, &re)
	p, err := e.log.Proof(ctx, "401", late[5].ID)
	require.NoError(t, err)
	require.NoError(t, tlog.CheckRecord(unb64(t, p.Inclusion), cp2.Size, cp2.Root, p.Index, e.leafHashOf("401", late[5].ID)))
	_, rep = e.bundle("401", pinned)
	require.True(t, rep.Verified, "%+v", rep.Problems)
	require.Equal(t, 1000, rep.Events)

	// A round with nothing new changes nothing.
	require.Zero(t, e.round(s).Events)
	require.Equal(t, cp2, e.checkpoint("401"))
}

func mustNote(t *testing.T, e *env, team string) []byte {
	n, err := e.log.Checkpoint(context.Background(), team)
	require.NoError(t, err)
	return n
}

// rootAt is the root of the first n leaves, from the bundle's hashes.
func (e *env) rootAt(t *testing.T, team string, n int64) tlog.Hash {
	b, _ := e.bundle(team, nil)
	return merkle.Root(b.Hashes[:n])
}

// TestSealersRacing runs three sealers at once while events arrive: every event is sealed once,
// each size has one root (the log verifies as one chain against every checkpoint seen), and a
// sealer stopped right after writing a state leaves nothing the next one cannot finish.
func TestSealersRacing(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC().Add(-time.Hour)
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	seen := map[int64]string{} // size -> root, from every checkpoint read while racing
	for i := 0; i < 3; i++ {
		s := e.sealer()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Round(ctx); err != nil {
					t.Error(err)
					return
				}
				if n, err := e.log.Checkpoint(ctx, "501"); err == nil {
					cp, _, err := merkle.Open(n, []string{e.verifier})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					root := base64.StdEncoding.EncodeToString(cp.Root[:])
					if r, ok := seen[cp.Size]; ok && r != root {
						t.Errorf("two roots signed for size %d", cp.Size)
					}
					seen[cp.Size] = root
					mu.Unlock()
				}
			}
		}()
	}
	var all []audit.Event
	for i := 0; i < 8; i++ {
		b := events("501", 150, now.Add(-time.Duration(i)*time.Hour), 40*24*time.Hour)
		e.load(b)
		all = append(all, b...)
	}
	// Wait for the condition: every event sealed.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := e.log.Checkpoint(ctx, "501")
		if err == nil {
			cp, _, _ := merkle.Open(n, []string{e.verifier})
			if cp.Size >= int64(len(all)) {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "not every event sealed in time")
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	b, rep := e.bundle("501", nil)
	require.True(t, rep.Verified, "%+v", rep.Problems)
	require.Len(t, b.Events, len(all)) // each once
	for size, root := range seen {
		require.Equal(t, root, base64.StdEncoding.EncodeToString(ptr(merkle.Root(b.Hashes[:size]))[:]), "size %d", size)
	}

	// A sealer that stops right after writing a team's state, before its tiles and history.
	crashing := e.sealer()
	crashing.cfg.afterCommit = func(string) error { return fmt.Errorf("killed") }
	e.load(events("501", 300, now, time.Hour))
	_, err := crashing.Round(ctx)
	require.ErrorContains(t, err, "killed")
	st, _, err := e.store.readState(ctx, "501")
	require.NoError(t, err)
	require.NotEmpty(t, st.Done, "the crash left full tiles in the state")
	_, rep = e.bundle("501", nil) // readable meanwhile
	require.True(t, rep.Verified, "%+v", rep.Problems)
	e.round(e.sealer())
	st, _, err = e.store.readState(ctx, "501")
	require.NoError(t, err)
	require.Empty(t, st.Done)
	require.EqualValues(t, len(all)+300, st.Size)
	_, rep = e.bundle("501", nil)
	require.True(t, rep.Verified, "%+v", rep.Problems)
}

func ptr[T any](v T) *T { return &v }

// TestTamperingInTheClusterIsFound changes a sealed team's events in the cluster as someone with
// write access could, and checks that the online check names each event with its code, that the
// team's bundle is refused, and that a proof of another event still holds where its tile is intact.
func TestTamperingInTheClusterIsFound(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC().Add(-time.Hour)
	evs := events("601", 600, now, 10*24*time.Hour)
	e.load(evs)
	e.load(events("602", 20, now, time.Hour))
	s := e.sealer()
	e.round(s)
	ctx := context.Background()
	keys := []string{e.verifier}
	rep, err := e.log.Verify(ctx, "601", keys, nil)
	require.NoError(t, err)
	require.True(t, rep.Verified, "%+v", rep.Problems)
	require.Equal(t, 600, rep.Events)

	base := e.c.Conn().URLs[0]
	where := func(id string) (index string) {
		hit, err := e.log.events(ctx, "601", []string{id})
		require.NoError(t, err)
		return hit[id].Index
	}
	edited, deleted, moved := evs[10], evs[300], evs[550]
	// Edit a field: the document rewritten in place.
	ix := where(edited.ID)
	src := docSource(t, base, ix, layout.DocID("601", edited.ID), "601")
	src["metadata"] = map[string]any{"seq": 999999}
	docPut(t, base, ix, layout.DocID("601", edited.ID), "601", src)
	// Delete one.
	docDelete(t, base, where(deleted.ID), layout.DocID("601", deleted.ID), "601")
	// Give one to another team, in place.
	ix = where(moved.ID)
	src = docSource(t, base, ix, layout.DocID("601", moved.ID), "601")
	src["team_id"] = "602"
	docPut(t, base, ix, layout.DocID("601", moved.ID), "601", src)
	require.NoError(t, esinspect.Refresh(base, e.c.Layout().Prefix()))

	rep, err = e.log.Verify(ctx, "601", keys, nil)
	require.NoError(t, err)
	require.False(t, rep.Verified)
	got := map[string]string{}
	for _, p := range rep.Problems {
		if p.ID != nil {
			got[*p.ID] = p.Code
		}
	}
	require.Equal(t, merkle.ProblemHashMismatch, got[edited.ID], "%+v", rep.Problems)
	require.Equal(t, merkle.ProblemMissing, got[deleted.ID], "%+v", rep.Problems)
	require.Equal(t, merkle.ProblemTeamMismatch, got[moved.ID], "%+v", rep.Problems)

	// The changed documents are not sealed again as new leaves.
	st := e.round(s)
	require.Equal(t, 2, st.Skipped)
	require.EqualValues(t, 600, e.checkpoint("601").Size)

	_, err = e.log.WriteBundle(ctx, "601", &bytes.Buffer{})
	require.ErrorIs(t, err, ErrTampered)
	_, err = e.log.Proof(ctx, "601", evs[5].ID) // in the edited event's tile
	require.ErrorIs(t, err, ErrTampered)

	// A wrong key, and a rolled-back log against a checkpoint the customer pinned.
	_, other, err := merkle.GenerateKey(origin)
	require.NoError(t, err)
	rep, err = e.log.Verify(ctx, "602", []string{other}, nil)
	require.NoError(t, err)
	require.Equal(t, merkle.ProblemSignature, rep.Problems[0].Code)
	pinned := mustNote(t, e, "602")
	e.load(events("602", 5, now, time.Hour))
	e.round(s)
	cur, _, err := e.store.readState(ctx, "602")
	require.NoError(t, err)
	require.EqualValues(t, 25, cur.Size)
	rep, err = e.log.Verify(ctx, "602", keys, pinned)
	require.NoError(t, err)
	require.True(t, rep.Verified, "%+v", rep.Problems)
	// Roll team 602's seal back to a forged smaller log: a state of 10 leaves, signed by the key.
	forged := *cur
	forged.Size, forged.Edge, forged.Pending = 0, nil, refs{}
	forged.Marks = map[string]int64{}
	for i := 0; i < 10; i++ {
		var h tlog.Hash
		h[0] = byte(i)
		forged.Edge = forged.Edge.Append(forged.Size, h, nil)
		forged.Size++
		forged.Pending.add(cur.Pending.part(i), cur.Pending.Seq[i], cur.Pending.ID[i])
		forged.Marks[cur.Pending.part(i)] = cur.Pending.Seq[i]
	}
	n, err := merkle.Sign(merkle.Checkpoint{Origin: origin + "/602", Size: 10, Root: forged.root()}, e.signer)
	require.NoError(t, err)
	forged.Checkpoint = string(n)
	_, err = e.store.bulk(ctx, []bulkItem{{op: "index", id: stateID("602"), seqNo: -1, doc: doc{Kind: "state", Team: "602", Body: &forged}}}, "")
	require.NoError(t, err)
	rep, err = e.log.Verify(ctx, "602", keys, pinned)
	require.NoError(t, err)
	require.False(t, rep.Verified)
	codes := []string{}
	for _, p := range rep.Problems {
		codes = append(codes, p.Code)
	}
	require.Contains(t, codes, merkle.ProblemInconsistent, "%+v", rep.Problems)
}

// TestTheStoreRefusesTheAuditIndicesPattern: a seal index under the prefix would be read as events.
func TestTheStoreRefusesTheAuditIndicesPattern(t *testing.T) {
	c, err := query.New(query.Conn{})
	require.NoError(t, err)
	_, err = NewStore(c, "audit-seal")
	require.ErrorContains(t, err, "must not start with")
	_, err = NewStore(c, "Bad")
	require.Error(t, err)
	s, err := NewStore(c, "")
	require.NoError(t, err)
	require.Equal(t, DefaultIndex, s.Index())
}

// docSource, docPut and docDelete change a document as anyone who can write to the cluster can.
func docSource(t *testing.T, base, index, id, routing string) map[string]any {
	t.Helper()
	var res struct {
		Source map[string]any `json:"_source"`
	}
	docReq(t, http.MethodGet, base, index, id, routing, nil, &res)
	return res.Source
}

func docPut(t *testing.T, base, index, id, routing string, src map[string]any) {
	t.Helper()
	b, _ := json.Marshal(src)
	docReq(t, http.MethodPut, base, index, id, routing, b, nil)
}

func docDelete(t *testing.T, base, index, id, routing string) {
	t.Helper()
	docReq(t, http.MethodDelete, base, index, id, routing, nil, nil)
}

func docReq(t *testing.T, method, base, index, id, routing string, body []byte, out any) {
	t.Helper()
	u := fmt.Sprintf("%s/%s/_doc/%s?routing=%s", strings.TrimRight(base, "/"), index, url.PathEscape(id), url.QueryEscape(routing))
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Less(t, res.StatusCode, 300, "%s %s", method, u)
	if out != nil {
		require.NoError(t, json.NewDecoder(res.Body).Decode(out))
	}
}

// TestAPurgedPartitionLeavesALogThatVerifies seals a team's events of an old partition and of
// this month, moves the sealer's clock past the old partition's retention (it states the expiry
// while the events are there), purges the partition as the exporter does, and checks that the
// bundle verifies with the expired leaves excused, the online check passes, and events of this
// month are still proved.
func TestAPurgedPartitionLeavesALogThatVerifies(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC()
	old := events("701", 300, now.Add(-70*24*time.Hour), time.Hour) // a partition two months back or more
	recent := events("701", 100, now.Add(-time.Minute), time.Hour)
	e.load(old)
	e.load(recent)
	s := e.sealer()
	e.round(s)
	require.EqualValues(t, 400, e.checkpoint("701").Size)
	pinned := mustNote(t, e, "701")

	lay := e.c.Layout()
	oldIndex := lay.Index("701", old[0].Time)
	p, ok := lay.Parse(oldIndex)
	require.True(t, ok)
	at, _ := lay.Expired(p, now)
	later := at.Add(time.Hour) // retention over, the purge a day away
	s.cfg.Now = func() time.Time { return later }
	e.round(s)
	st, _, err := e.store.readState(context.Background(), "701")
	require.NoError(t, err)
	require.EqualValues(t, 300, st.Expired)
	_, rep := e.bundle("701", nil) // before the purge too
	require.True(t, rep.Verified, "%+v", rep.Problems)

	// The purge.
	req, _ := http.NewRequest(http.MethodDelete, e.c.Conn().URLs[0]+"/"+oldIndex, nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 200, res.StatusCode)

	b, rep := e.bundle("701", pinned)
	require.True(t, rep.Verified, "%+v", rep.Problems)
	require.EqualValues(t, 300, rep.Expired)
	require.Len(t, b.Events, 100)
	require.Equal(t, merkle.ProblemExpired, rep.Problems[0].Code)
	vr, err := e.log.Verify(context.Background(), "701", []string{e.verifier}, pinned)
	require.NoError(t, err)
	require.True(t, vr.Verified, "%+v", vr.Problems)
	cp := e.checkpoint("701")
	for _, ev := range []audit.Event{recent[0], recent[99], recent[50]} {
		p, err := e.log.Proof(context.Background(), "701", ev.ID)
		require.NoError(t, err)
		require.NoError(t, tlog.CheckRecord(unb64(t, p.Inclusion), cp.Size, cp.Root, p.Index, e.leafHashOf("701", ev.ID)))
	}
	c, err := e.log.ConsistencyFrom(context.Background(), "701", 400)
	require.NoError(t, err)
	require.Empty(t, c.Consistency)
	// The log goes on growing after the purge.
	e.load(events("701", 10, now, time.Minute))
	e.round(s)
	_, rep = e.bundle("701", pinned)
	require.True(t, rep.Verified, "%+v", rep.Problems)
	require.Equal(t, 110, rep.Events)
}

// TestKeyRotation: during the overlap the sealer signs with both keys (one file, two lines), so a
// customer who pinned either verifies; after it, the new key alone, and the log still verifies
// with it, the old checkpoints kept by customers extended by the new.
func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	oldKey, oldVerifier := e.signer, e.verifier
	skey, newVerifier, err := merkle.GenerateKey(origin)
	require.NoError(t, err)
	signers, err := Signers([]byte("# the new key\n" + skey + "\n"))
	require.NoError(t, err)
	newKey := signers[0]
	now := time.Now().UTC().Add(-time.Minute)
	e.load(events("801", 20, now, time.Hour))
	e.round(e.sealer(oldKey, newKey))
	overlap := mustNote(t, e, "801")
	require.Equal(t, 2, strings.Count(string(overlap), "\n\u2014 "), "two signature lines: %s", overlap)
	for _, k := range []string{oldVerifier, newVerifier} {
		_, _, err := merkle.Open(overlap, []string{k})
		require.NoError(t, err)
	}
	e.load(events("801", 5, now, time.Hour))
	e.round(e.sealer(newKey))
	after := mustNote(t, e, "801")
	_, _, err = merkle.Open(after, []string{oldVerifier})
	require.Error(t, err, "the old key no longer signs")
	e.verifier = newVerifier
	_, rep := e.bundle("801", overlap) // a checkpoint pinned during the overlap
	require.True(t, rep.Verified, "%+v", rep.Problems)
	require.Equal(t, 25, rep.Events)
	_, err = Signers([]byte("not a key"))
	require.Error(t, err)
}

// TestEveryKindOfIDIsSealedAndFound: an id too long for the _id (the document keeps it, the _id its
// hash), a UUID in capitals, ids that look like the refs' compact form: each is sealed, proven,
// exported and found again by the online check, none of them EXTRA.
func TestEveryKindOfIDIsSealedAndFound(t *testing.T) {
	e := newEnv(t)
	evs := events("404", 6, time.Now().UTC().Add(-time.Hour), time.Hour)
	evs[0].ID = strings.Repeat("l", audit.MaxIDBytes)
	evs[1].ID = strings.ToUpper(uuid.NewString())
	evs[2].ID = "~" + strings.Repeat("A", 22)
	evs[3].ID = "~~x"
	e.load(evs)
	require.Equal(t, 6, e.round(e.sealer()).Events)
	cp := e.checkpoint("404")
	for _, ev := range evs {
		p, err := e.log.Proof(context.Background(), "404", ev.ID)
		require.NoError(t, err, "event %q", ev.ID)
		require.NoError(t, tlog.CheckRecord(unb64(t, p.Inclusion), cp.Size, cp.Root, p.Index, e.leafHashOf("404", ev.ID)), "event %q", ev.ID)
	}
	_, rep := e.bundle("404", nil)
	require.True(t, rep.Verified, "%+v", rep.Problems)
	vr, err := e.log.Verify(context.Background(), "404", []string{e.verifier}, nil)
	require.NoError(t, err)
	require.True(t, vr.Verified, "%+v", vr.Problems)
	require.Equal(t, 6, vr.Events)
}
