package query_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/auditpipe/auditpipe/internal/query" // an external test: the recorder, which seeds the logs, imports query
	"github.com/auditpipe/auditpipe/internal/recorder"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
)

// t0 is two days ago at 21:00 UTC: within every retention class.
var t0 = func() time.Time {
	now := time.Now().UTC()
	return time.Date(now.Year(), now.Month(), now.Day()-2, 21, 0, 0, 0, time.UTC)
}()

// at formats t0 plus minutes as Elasticsearch returns aggregated dates.
func at(minutes int) string {
	return t0.Add(time.Duration(minutes) * time.Minute).Format("2006-01-02T15:04:05.000Z")
}

func testClient(t testing.TB) *Client {
	t.Helper()
	prefix := estest.Prefix(t)
	c, err := New(Conn{URLs: []string{estest.URL(t)}, IndexPrefix: prefix + layout.DefaultPrefix, QuarantineIndex: prefix + layout.DefaultQuarantine, InstallTemplates: true})
	require.NoError(t, err)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return c
}

func refresh(t testing.TB, c *Client) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.Conn().URLs[0]+"/"+c.Conn().IndexPrefix+"*/_refresh", nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
}

func load(t testing.TB, c *Client, events []audit.Event) []string {
	t.Helper()
	var ids []string
	for start := 0; start < len(events); start += 10000 {
		end := min(start+10000, len(events))
		got, err := recorder.RecordAll(context.Background(), c, events[start:end])
		require.NoError(t, err)
		ids = append(ids, got...)
	}
	refresh(t, c)
	return ids
}

// smallLog is a team log with every case the filters and the CSV must handle.
func smallLog() []audit.Event {
	return []audit.Event{
		{Time: t0, Action: audit.ActionUserLoginFailed, TeamID: "191796", Actor: auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson"), RemoteAddr: "::1", AccessRoute: []string{"203.0.113.9", "::1"}},
		{Time: t0.Add(time.Minute), Action: audit.ActionJobUserAccessChanged, TeamID: "191796", Actor: auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson"),
			Targets:  []audit.Target{{Type: "job_user_access", ID: "107404", Metadata: map[string]any{"job_id": 313520, "access_level_id": 7349}}, {Type: "job", ID: "313520"}},
			Metadata: map[string]any{"previous_access_level_id": 7347}, UserAgent: "Mozilla/5.0"},
		{Time: t0.Add(2 * time.Minute), Action: audit.ActionJobCreated, TeamID: "191796", Actor: auditlog.User("9", "", "=HYPERLINK(\"http://evil\")"), UserAgent: "@SUM(1+1)", Metadata: map[string]any{"title": "-5 engineers, \"senior\"\nline two"}},
		{Time: t0.Add(3 * time.Minute), Action: audit.ActionJobClosed, TeamID: "191796", Actor: auditlog.System()},
		{Time: t0.Add(4 * time.Minute), Action: audit.ActionUserLoginComplete, TeamID: "191796", Actor: auditlog.User("445177", "", "")},
		{Time: t0.Add(5 * time.Minute), Action: audit.ActionUserLoginComplete, TeamID: "7", Actor: auditlog.User("445177", "", "")},
	}
}

func exportString(t *testing.T, c *Client, f Filter, format Format) (string, int64) {
	t.Helper()
	var b bytes.Buffer
	n, err := c.Export(context.Background(), f, format, &b, nil)
	require.NoError(t, err)
	return b.String(), n
}

func TestExportFiltersAreExact(t *testing.T) {
	c := testClient(t)
	load(t, c, smallLog())
	cases := []struct {
		name string
		f    Filter
		want []string // actions, in order
	}{
		{"all of one team", Filter{Team: "191796"}, []string{"user_login_failed", "job_user_access_changed", "job_created", "job_closed", "user_login_complete"}},
		{"other team", Filter{Team: "7"}, []string{"user_login_complete"}},
		{"since inclusive", Filter{Team: "191796", Since: t0.Add(time.Minute)}, []string{"job_user_access_changed", "job_created", "job_closed", "user_login_complete"}},
		{"until exclusive", Filter{Team: "191796", Until: t0.Add(2 * time.Minute)}, []string{"user_login_failed", "job_user_access_changed"}},
		{"action pattern", Filter{Team: "191796", Actions: []string{"job_*"}}, []string{"job_user_access_changed", "job_created", "job_closed"}},
		{"two actions", Filter{Team: "191796", Actions: []string{"user_login_failed", "job_closed"}}, []string{"user_login_failed", "job_closed"}},
		{"actor", Filter{Team: "191796", ActorID: "445177"}, []string{"user_login_failed", "job_user_access_changed", "user_login_complete"}},
		{"everything", Filter{Team: "191796", ActorID: "445177", Actions: []string{"user_login_*"}, Since: t0.Add(time.Second)}, []string{"user_login_complete"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, n := exportString(t, c, tc.f, NDJSON)
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var d struct{ Action, TeamID string }
				require.NoError(t, json.Unmarshal([]byte(line), &d))
				got = append(got, d.Action)
			}
			assert.Equal(t, tc.want, got)
			assert.Equal(t, int64(len(tc.want)), n)
		})
	}
	_, err := c.Export(context.Background(), Filter{Team: "191796", Actions: []string{`job_*" OR *`}}, CSV, io.Discard, nil)
	assert.ErrorContains(t, err, "use lowercase action names")
}

func TestCSVParsesBackToTheSameValues(t *testing.T) {
	c := testClient(t)
	load(t, c, smallLog())
	out, _ := exportString(t, c, Filter{Team: "191796"}, CSV)
	assert.True(t, strings.HasPrefix(out, strings.Join(CSVHeader, ",")+"\r\n"), "RFC 4180 header line")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 6)
	assert.Equal(t, CSVHeader, rows[0])
	assert.Equal(t, []string{t0.Format(time.RFC3339), "user_login_failed", "A user failed a login attempt", "user", "445177", "ann+oats@gem.com", "Ann Samuelson",
		"[]", "203.0.113.9, ::1", "::1", "", ""}, rows[1])
	assert.Equal(t, []string{t0.Add(time.Minute).Format(time.RFC3339), "job_user_access_changed", "A user’s permissions were changed", "user", "445177", "ann+oats@gem.com", "Ann Samuelson",
		`[{"id":"107404","metadata":{"access_level_id":7349,"job_id":313520},"type":"job_user_access"},{"id":"313520","type":"job"}]`, "", "", "Mozilla/5.0",
		`{"previous_access_level_id":7347}`}, rows[2])
	// Formula injection is neutralized; quotes, commas and newlines survive the round trip.
	assert.Equal(t, `'=HYPERLINK("http://evil")`, rows[3][6])
	assert.Equal(t, "'@SUM(1+1)", rows[3][10])
	assert.Equal(t, `{"title":"-5 engineers, \"senior\"\nline two"}`, rows[3][11])
	assert.Equal(t, []string{"system", "", "", ""}, rows[4][3:7])
}

func TestNeutralizeFormula(t *testing.T) {
	for in, want := range map[string]string{"=1+1": "'=1+1", "+1": "'+1", "-1": "'-1", "@x": "'@x", "\tx": "'\tx", "\rx": "'\rx", "ok": "ok", "": "", "a=b": "a=b",
		"＝1+1": "'＝1+1", "＋1": "'＋1", "－1": "'－1", "＠x": "'＠x", "é": "é"} {
		assert.Equal(t, want, NeutralizeFormula(in), in)
	}
}

func TestHostileAndUnknownTeamsAndUnreachableCluster(t *testing.T) {
	c := testClient(t)
	// Hostile ids are refused before any request: against a closed port, a check that let one
	// through would fail with "unreachable" instead.
	offline, err := New(Conn{URLs: []string{"http://127.0.0.1:9"}, IndexPrefix: c.Conn().IndexPrefix, QuarantineIndex: c.Conn().QuarantineIndex})
	require.NoError(t, err)
	for _, team := range []string{"", "*", "../191796", "191796,7", "Acme", "_all", "a b", "audit-*"} {
		for what, call := range map[string]func() error{
			"export": func() error {
				_, err := offline.Export(context.Background(), Filter{Team: team}, CSV, io.Discard, nil)
				return err
			},
			"show": func() error { _, err := offline.Show(context.Background(), team, "x"); return err },
			"tail": func() error {
				return offline.Tail(context.Background(), Filter{Team: team}, time.Now(), time.Second, io.Discard)
			},
			"check": func() error { return offline.CheckTeam(context.Background(), team) },
		} {
			err := call()
			require.Error(t, err, "%s team %q", what, team)
			assert.Regexp(t, `^team `, err.Error(), "%s team %q", what, team)
			assert.NotContains(t, err.Error(), "unreachable", "%s team %q reached the network", what, team)
		}
	}
	err = c.CheckTeam(context.Background(), "404404")
	assert.True(t, errors.Is(err, ErrNoTeam), "%v", err)
	assert.ErrorContains(t, err, "no audit log for this team")

	down, err := New(Conn{URLs: []string{"http://127.0.0.1:9"}})
	require.NoError(t, err)
	_, err = down.Export(context.Background(), Filter{Team: "7"}, CSV, io.Discard, nil)
	assert.ErrorContains(t, err, "unreachable")
}

func TestTeamsShowTail(t *testing.T) {
	c := testClient(t)
	ids := load(t, c, smallLog())
	teams, err := c.Teams(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []Team{
		{ID: "191796", Events: 5, First: at(0), Last: at(4)},
		{ID: "7", Events: 1, First: at(5), Last: at(5)},
	}, teams)

	doc, err := c.Show(context.Background(), "191796", ids[1])
	require.NoError(t, err)
	assert.Contains(t, string(doc), `"action":"job_user_access_changed"`)
	_, err = c.Show(context.Background(), "191796", "no-such-id")
	assert.ErrorContains(t, err, `team 191796 has no event "no-such-id"`)

	// tail prints what was stored since its start, then what arrives, once each, in the order it was
	// stored: an event that arrives late with an old timestamp is printed too.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mark := time.Now()
	load(t, c, []audit.Event{{Time: t0.Add(-time.Hour), Action: audit.ActionJobOpened, TeamID: "191796", Actor: auditlog.System()}})
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- c.Tail(ctx, Filter{Team: "191796"}, mark, 100*time.Millisecond, pw)
		pw.Close()
	}()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		t.Helper()
		select {
		case line, ok := <-lines:
			require.True(t, ok, "tail ended")
			var d struct{ Action string }
			require.NoError(t, json.Unmarshal([]byte(line), &d))
			return d.Action
		case <-time.After(15 * time.Second):
			t.Fatal("tail printed nothing for 15 s")
			return ""
		}
	}
	assert.Equal(t, "job_opened", next(), "stored after since, though its timestamp is an hour older than the rest")
	load(t, c, []audit.Event{{Time: t0.Add(-24 * time.Hour), Action: audit.ActionSessionDeleted, TeamID: "191796", Actor: auditlog.System()}})
	assert.Equal(t, "session_deleted", next(), "a late event with an old timestamp")
	load(t, c, []audit.Event{{Time: t0.Add(10 * time.Minute), Action: audit.ActionSessionCreated, TeamID: "191796", Actor: auditlog.System()}})
	assert.Equal(t, "session_created", next())
	select {
	case line := <-lines:
		t.Fatalf("printed twice or unexpected: %s", line)
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	require.NoError(t, <-done)
}

// TestExportOutlivesItsPointInTime: a reader slower than the point in time's keep-alive gets the
// whole log anyway, in order, each event once: the export reopens the point in time and goes on from
// the last sort values.
func TestExportOutlivesItsPointInTime(t *testing.T) {
	c := testClient(t)
	var events []audit.Event
	for i := 0; i < 2*PageSize+500; i++ {
		events = append(events, audit.Event{Time: t0.Add(time.Duration(i/3) * time.Second), Action: audit.ActionJobUpdated, TeamID: "191796",
			Actor: auditlog.System(), Metadata: map[string]any{"seq": i}})
	}
	load(t, c, events)
	reopened := 0
	// The node reaps expired contexts only once a minute; closing the point in time after each page
	// is what a slow reader meets, sooner.
	restore := SetTestHooks(func(pit string) {
		require.NoError(t, c.Do(context.Background(), esapi.ClosePointInTimeRequest{Body: strings.NewReader(`{"id":"` + pit + `"}`)}, nil))
	}, func() { reopened++ })
	t.Cleanup(restore)
	var out bytes.Buffer
	n, err := c.Export(context.Background(), Filter{Team: "191796"}, NDJSON, &out, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(len(events)), n)
	assert.Equal(t, 2, reopened, "the point in time was reopened after each full page")
	seen := map[float64]bool{}
	prev := ""
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var d struct {
			Timestamp string `json:"@timestamp"`
			Metadata  struct{ Seq float64 }
		}
		require.NoError(t, json.Unmarshal([]byte(line), &d))
		assert.False(t, seen[d.Metadata.Seq], "event %v written twice", d.Metadata.Seq)
		seen[d.Metadata.Seq] = true
		assert.GreaterOrEqual(t, d.Timestamp, prev)
		prev = d.Timestamp
	}
	assert.Len(t, seen, len(events))
}

// TestCSVKeepsCarriageReturns: a lone CR inside a cell survives (encoding/csv drops it).

// TestExportOf100kEvents: complete, in order, constant in memory, byte-for-byte stable.
func TestExportOf100kEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("indexes 100,000 events")
	}
	c := testClient(t)
	const n = 100_000
	events := make([]audit.Event, n)
	actions := audit.DefaultCatalog().ActionNames()
	for i := range events {
		events[i] = audit.Event{
			// Pairs of events share a timestamp: the event id breaks the tie.
			Time:     t0.Add(time.Duration(i/2) * time.Millisecond),
			Action:   actions[i%len(actions)],
			TeamID:   "191796",
			Actor:    auditlog.User(fmt.Sprint(i%97), fmt.Sprintf("user%d@example.com", i%97), "User"),
			Targets:  []audit.Target{{Type: "job", ID: fmt.Sprint(i)}},
			Metadata: map[string]any{"seq": i, "note": strings.Repeat("x", i%50)},
		}
	}
	load(t, c, events)
	events = nil

	// The live heap (what the last garbage collection kept), not the heap in use: how far the heap
	// runs ahead of a collection depends on when the collector gets to run on a busy machine, what
	// the export retains does not.
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	liveHeap := func() uint64 { metrics.Read(live); return live[0].Value.Uint64() }
	var peak atomic.Uint64
	runtime.GC()
	runtime.GC() // the second empties the pools the load's pipelines left
	base := liveHeap()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if l := liveHeap(); l > peak.Load() {
					peak.Store(l)
				}
			}
		}
	}()
	digest := func(format Format) ([32]byte, int64, int64) {
		h := sha256.New()
		var size countingWriter
		cnt, err := c.Export(context.Background(), Filter{Team: "191796"}, format, io.MultiWriter(h, &size), nil)
		require.NoError(t, err)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		return sum, cnt, int64(size)
	}
	first, cnt, size := digest(CSV)
	second, _, _ := digest(CSV)
	close(stop)
	assert.Equal(t, int64(n), cnt)
	assert.Equal(t, first, second, "two exports are byte-for-byte identical")
	grown := int64(peak.Load()) - int64(base)
	t.Logf("CSV export: %d bytes; the live heap grew by at most %d KiB", size, grown/1024)
	// One page at a time: the heap grows by a bounded amount, well below the size of the export.
	assert.Less(t, grown, size/2, "memory must not grow with the export (%d bytes exported)", size)
	assert.Less(t, grown, int64(32<<20))

	// Order and completeness, read back as NDJSON.
	var b bytes.Buffer
	_, err := c.Export(context.Background(), Filter{Team: "191796"}, NDJSON, &b, nil)
	require.NoError(t, err)
	sc := bufio.NewScanner(&b)
	sc.Buffer(nil, 1<<20)
	seen := make(map[int]bool, n)
	var prevTS time.Time
	prevID := ""
	for sc.Scan() {
		var d struct {
			TS       string `json:"@timestamp"`
			Event    struct{ ID string }
			Metadata struct{ Seq int }
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &d))
		ts, err := time.Parse(time.RFC3339Nano, d.TS)
		require.NoError(t, err)
		require.True(t, ts.After(prevTS) || (ts.Equal(prevTS) && d.Event.ID > prevID), "out of order at seq %d", d.Metadata.Seq)
		prevTS, prevID = ts, d.Event.ID
		seen[d.Metadata.Seq] = true
	}
	assert.Len(t, seen, n)
}

type countingWriter int64

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}
