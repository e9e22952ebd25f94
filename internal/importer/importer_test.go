package importer

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
)

// t0 is two days ago at 21:00 UTC: within every retention class.
var t0 = func() time.Time {
	now := time.Now().UTC()
	return time.Date(now.Year(), now.Month(), now.Day()-2, 21, 0, 0, 0, time.UTC)
}()

// node is a fresh set of audit indices on the test node: a prefix of its own.
func node(t testing.TB, name string) *query.Client {
	t.Helper()
	prefix := estest.Prefix(t) + name + "-"
	c, err := query.New(query.Conn{URLs: []string{estest.URL(t)}, IndexPrefix: prefix + layout.DefaultPrefix, QuarantineIndex: prefix + layout.DefaultQuarantine, InstallTemplates: true})
	require.NoError(t, err)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return c
}

func refresh(t testing.TB, c *query.Client) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.Conn().URLs[0]+"/"+c.Conn().IndexPrefix+"*,"+c.Conn().QuarantineIndex+"/_refresh?ignore_unavailable=true", nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
}

func options(c *query.Client, files ...string) Options {
	return Options{
		Files: files, Format: CSV, Operator: "ops@example.com", Batch: 7, Client: c,
		NewRecorder: func(ctx context.Context) (*recorder.Recorder, error) { return recorder.New(ctx, c, nil) },
	}
}

func exportCSV(t *testing.T, c *query.Client, team string) string {
	t.Helper()
	refresh(t, c)
	var b bytes.Buffer
	_, err := c.Export(context.Background(), query.Filter{Team: team}, query.CSV, &b, nil)
	require.NoError(t, err)
	return b.String()
}

// withoutAction drops the rows of an action (the import's own record) from an export.
func withoutAction(csv, action string) string {
	var keep []string
	for _, line := range strings.SplitAfter(csv, "\r\n") {
		if !strings.Contains(line, ","+action+",") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

func write(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// history is a team's log with every case the CSV must carry back: formulas, quotes, commas, CR and
// CRLF inside cells, metadata of every shape, numbers, a system actor.
func history() []audit.Event {
	return []audit.Event{
		{Time: t0, Action: audit.ActionUserLoginFailed, TeamID: "191796", Actor: auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson"), RemoteAddr: "::1", AccessRoute: []string{"203.0.113.9", "::1"}},
		{Time: t0.Add(time.Minute), Action: audit.ActionJobUserAccessChanged, TeamID: "191796", Actor: auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson"),
			Targets:  []audit.Target{{Type: "job_user_access", ID: "107404", Metadata: map[string]any{"job_id": 313520, "access_level_id": 7349}}, {Type: "job", ID: "313520"}},
			Metadata: map[string]any{"previous_access_level_id": 7347, "ratio": 0.25, "big": 12345678901234567}, UserAgent: "Mozilla/5.0 \"quoted\", comma"},
		{Time: t0.Add(2 * time.Minute), Action: audit.ActionJobCreated, TeamID: "191796", Actor: auditlog.User("9", "", "=HYPERLINK(\"http://evil\")"), UserAgent: "@SUM(1+1)",
			Metadata: map[string]any{"title": "-5 engineers, \"senior\"\nline two", "nested": map[string]any{"a": []any{1, "x", nil}}}},
		{Time: t0.Add(3 * time.Minute), Action: audit.ActionJobClosed, TeamID: "191796", Actor: auditlog.System(), UserAgent: "line\r\nbreak and a lone\rCR"},
		{Time: t0.Add(4*time.Minute + 123456789), Action: audit.ActionUserLoginComplete, TeamID: "191796", Actor: auditlog.User("-1", "", "＋full width"), RemoteAddr: "not an ip"},
		{Time: t0.Add(5 * time.Minute), Action: audit.ActionUserLoginComplete, TeamID: "7", Actor: auditlog.User("445177", "", "")},
	}
}

// TestARoundTripGivesTheSameRows: a CSV exported from one node, imported into a fresh one and
// exported again gives the same rows (the import's own record aside); importing it again stores
// nothing and adds only its record.
func TestARoundTripGivesTheSameRows(t *testing.T) {
	from, to := node(t, "from"), node(t, "to")
	_, err := recorder.RecordAll(context.Background(), from, history())
	require.NoError(t, err)
	exported := exportCSV(t, from, "191796")
	require.Len(t, readAll(t, exported), 6, "the header and five events")
	file := write(t, "history.csv", exported)

	o := options(to, file)
	o.Team = "191796"
	sum, err := Import(context.Background(), o)
	require.NoError(t, err)
	assert.Equal(t, Counts{Rows: 5, Stored: 5}, sum.Counts)
	require.Contains(t, sum.Recorded, "191796")
	again := exportCSV(t, to, "191796")
	assert.Equal(t, exported, withoutAction(again, audit.ActionAuditLogImported), "the same rows, byte for byte")

	sum, err = Import(context.Background(), o)
	require.NoError(t, err)
	assert.Equal(t, Counts{Rows: 5, Duplicates: 5}, sum.Counts, "nothing stored twice")
	third := exportCSV(t, to, "191796")
	assert.Equal(t, exported, withoutAction(third, audit.ActionAuditLogImported))
	assert.Equal(t, 2, strings.Count(third, ","+audit.ActionAuditLogImported+","), "each import is recorded")

	// The record says who, what and how much.
	doc, err := to.Show(context.Background(), "191796", sum.Recorded["191796"])
	require.NoError(t, err)
	d, err := document.Decode(document.Hit{Source: doc})
	require.NoError(t, err)
	var md map[string]any
	require.NoError(t, json.Unmarshal(d.Metadata, &md))
	assert.Equal(t, float64(5), md["duplicates"])
	assert.Equal(t, float64(0), md["stored"])
	files := md["files"].([]any)
	assert.Equal(t, "history.csv", files[0].(map[string]any)["name"])
	assert.Len(t, files[0].(map[string]any)["sha256"], 64)
	assert.Equal(t, "ops@example.com", d.ActorFields().ID)
}

// TestAKilledImportResumes: an import stopped after its first passes and run again stores every
// event exactly once.
func TestAKilledImportResumes(t *testing.T) {
	c := node(t, "resume")
	var b bytes.Buffer
	b.Write(query.AppendCSVRow(nil, query.CSVHeader))
	const n = 60
	for i := 0; i < n; i++ {
		b.Write(query.AppendCSVRow(nil, []string{t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano), "job_created", "", "user", fmt.Sprint(i), "", "", "[]", "", "", "", fmt.Sprintf(`{"seq":%d}`, i)}))
	}
	file := write(t, "big.csv", b.String())
	ctx, cancel := context.WithCancel(context.Background())
	o := options(c, file)
	o.Team, o.Workers = "5", 1
	passes := 0
	inner := o.NewRecorder
	o.NewRecorder = func(ctx context.Context) (*recorder.Recorder, error) { return inner(ctx) }
	o.Progress = func(read, total int64) {
		if passes++; passes != 3 {
			return
		}
		// Killed once some of the file is stored: wait for that, then end the import.
		require.Eventually(t, func() bool {
			refresh(t, c)
			n, err := c.Count(context.Background(), query.Filter{Team: "5"})
			return err == nil && n > 0
		}, 30*time.Second, 20*time.Millisecond)
		cancel()
	}
	_, err := Import(ctx, o)
	require.Error(t, err)
	refresh(t, c)
	n1, err := c.Count(context.Background(), query.Filter{Team: "5", Actions: []string{"job_created"}})
	require.NoError(t, err)
	require.Greater(t, n1, int64(0), "some passes were stored before the kill")
	require.Less(t, n1, int64(n))

	o.Progress = nil
	sum, err := Import(context.Background(), o)
	require.NoError(t, err)
	assert.Equal(t, int64(n), sum.Stored+sum.Duplicates)
	assert.Equal(t, n1, sum.Duplicates)
	refresh(t, c)
	n2, err := c.Count(context.Background(), query.Filter{Team: "5", Actions: []string{"job_created"}})
	require.NoError(t, err)
	assert.Equal(t, int64(n), n2, "every event once")
}

// TestHostileRowsAreQuarantinedWithTheirLine: rows that are not events, or not valid ones, are
// quarantined with their file, line and reason; the rest is stored; expired rows are reported, not
// written. The file has a byte order mark and mixed line ends.
func TestHostileRowsAreQuarantinedWithTheirLine(t *testing.T) {
	c := node(t, "hostile")
	old := time.Now().AddDate(-3, 0, 0).UTC().Format(time.RFC3339Nano) // past the standard class's 400 days
	ts := t0.Format(time.RFC3339Nano)
	rows := []string{
		"\xEF\xBB\xBFTimestamp,ACTION,actor_type,actor_id,team_id,Metadata,Targets,User_Agent\r\n",   // line 1
		ts + ",job_created,system,,42,,,\r\n",                                                        // 2: stored
		ts + ",job_created,system,,*,,,\n",                                                           // 3: invalid_team_id
		ts + ",job_created,system,,../x,,,\r\n",                                                      // 4: invalid_team_id
		ts + ",job_created,system,,42,{broken,,\n",                                                   // 5: malformed_row (metadata)
		ts + ",job_created,system,,42,,[1,\r\n",                                                      // 6: malformed_row (targets)
		"yesterday,job_created,system,,42,,,\n",                                                      // 7: malformed_row (timestamp)
		ts + ",Bad Action,system,,42,,,\n",                                                           // 8: malformed_action
		ts + ",job_created,user,,42,,,\n",                                                            // 9: missing_actor_id
		ts + `,job_created,system,,42,"{""note"":""a\rb""}",,"a` + "\r" + `b` + "\r\n" + `c"` + "\n", // 10-11: stored, CR and CRLF kept
		ts + ",job_created,system\n",                                                                 // 12: too few cells
		old + ",job_created,system,,42,,,\n",                                                         // 13: expired
		ts + `,job_created,system,,42,"x"y,,` + "\n",                                                 // 14: not RFC 4180
		ts + `,job_created,system,,42,,,"never closed` + "\n",                                        // 15: not RFC 4180, to the end
	}
	content := strings.Join(rows, "")
	file := write(t, "hostile.csv", content)
	var report bytes.Buffer
	o := options(c, file)
	o.Report = &report
	sum, err := Import(context.Background(), o)
	require.NoError(t, err)
	assert.Equal(t, int64(13), sum.Rows)
	assert.Equal(t, int64(2), sum.Stored)
	assert.Equal(t, int64(1), sum.Expired)
	assert.Equal(t, int64(10), sum.Quarantined)
	assert.Equal(t, map[string]int64{"invalid_team_id": 2, "malformed_row": 4, "malformed_action": 1, "missing_actor_id": 1, "malformed_file": 2}, sum.ByReason)
	assert.Equal(t, int64(2), sum.Teams["42"].Stored)

	// Each row not stored is in the report with its line, and in the quarantine with its file and line.
	lines := map[float64]string{}
	for _, l := range strings.Split(strings.TrimSpace(report.String()), "\n") {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		lines[r["line"].(float64)] = r["result"].(string)
	}
	assert.Equal(t, map[float64]string{3: "quarantined", 4: "quarantined", 5: "quarantined", 6: "quarantined", 7: "quarantined", 8: "quarantined",
		9: "quarantined", 12: "quarantined", 13: "expired", 14: "quarantined", 15: "quarantined"}, lines)
	refresh(t, c)
	quarantinedLines := map[int64]bool{}
	require.NoError(t, c.EachQuarantined(context.Background(), query.QuarantineFilter{}, 0, 100, func(docs []document.Quarantined) (bool, error) {
		for _, d := range docs {
			var attrs map[string]any
			require.NoError(t, json.Unmarshal([]byte(d.Record.Attributes), &attrs))
			assert.Equal(t, "hostile.csv", attrs[AttrFile])
			quarantinedLines[int64(attrs[AttrLine].(float64))] = true
		}
		return true, nil
	}))
	assert.Equal(t, map[int64]bool{3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true, 12: true, 14: true, 15: true}, quarantinedLines)

	// The stored row kept its carriage returns; no other team gained anything.
	assert.Contains(t, exportCSV(t, c, "42"), "\"a\rb\r\nc\"")
	teams, err := c.Teams(context.Background())
	require.NoError(t, err)
	var ids []string
	for _, tm := range teams {
		ids = append(ids, tm.ID)
	}
	assert.Equal(t, []string{"42"}, ids)
}

// TestBadInputIsRefusedBeforeAnythingIsStored: an unknown format, an unreadable file, a CSV
// without the needed columns, a --team that is not a team id, an unknown column.
func TestBadInputIsRefusedBeforeAnythingIsStored(t *testing.T) {
	c := node(t, "bad")
	good := write(t, "good.csv", "timestamp,action,actor_type\r\n"+t0.Format(time.RFC3339Nano)+",job_created,system\r\n")
	for name, tc := range map[string]struct {
		mod  func(*Options)
		want string
	}{
		"format":        {func(o *Options) { o.Format = "xml" }, `--format "xml"`},
		"unreadable":    {func(o *Options) { o.Files = append(o.Files, filepath.Join(t.TempDir(), "missing.csv")) }, "missing.csv"},
		"no team":       {func(o *Options) { o.Team = "" }, "team_id (or --team)"},
		"columns":       {func(o *Options) { o.Files = append(o.Files, write(t, "x.csv", "when,action\r\n")) }, `unknown column "when"`},
		"needed":        {func(o *Options) { o.Files = append(o.Files, write(t, "y.csv", "timestamp,action\r\n")) }, "actor_type"},
		"team":          {func(o *Options) { o.Team = "Acme Corp" }, "--team"},
		"rename":        {func(o *Options) { o.Columns = map[string]string{"when": "time"} }, `"time" is not one of`},
		"empty":         {func(o *Options) { o.Files = append(o.Files, write(t, "e.csv", "")) }, "empty"},
		"no operator":   {func(o *Options) { o.Operator = "" }, "--operator"},
		"a directory":   {func(o *Options) { o.Files = append(o.Files, t.TempDir()) }, "not a file"},
		"bad gzip":      {func(o *Options) { o.Files = append(o.Files, write(t, "z.csv.gz", "not gzip")) }, "z.csv.gz"},
		"ndjson+rename": {func(o *Options) { o.Format, o.Columns = NDJSON, map[string]string{"a": "id"} }, "--column is for csv"},
	} {
		t.Run(name, func(t *testing.T) {
			o := options(c, good)
			o.Team = "5"
			tc.mod(&o)
			_, err := Import(context.Background(), o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	refresh(t, c)
	teams, err := c.Teams(context.Background())
	require.NoError(t, err)
	assert.Empty(t, teams, "nothing stored")
}

// TestRenamedColumnsNDJSONAndGzip: a file with other headers, with --column; the API's events and
// the stored documents as NDJSON, keeping their ids; a gzipped file; a dry run stores nothing.
func TestRenamedColumnsNDJSONAndGzip(t *testing.T) {
	from, to := node(t, "src"), node(t, "dst")
	ids, err := recorder.RecordAll(context.Background(), from, history())
	require.NoError(t, err)
	refresh(t, from)

	// The API's shape, and the stored documents, of team 191796.
	var api, stored bytes.Buffer
	_, err = from.Export(context.Background(), query.Filter{Team: "191796"}, query.Events, &api, nil)
	require.NoError(t, err)
	_, err = from.Export(context.Background(), query.Filter{Team: "191796"}, query.NDJSON, &stored, nil)
	require.NoError(t, err)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(stored.Bytes())
	require.NoError(t, zw.Close())

	dry := options(to, write(t, "events.ndjson", api.String()))
	dry.Format, dry.DryRun = NDJSON, true
	sum, err := Import(context.Background(), dry)
	require.NoError(t, err)
	assert.Equal(t, Counts{Rows: 5, Stored: 5}, sum.Counts, "would store")
	assert.Empty(t, sum.Recorded)
	refresh(t, to)
	teams, err := to.Teams(context.Background())
	require.NoError(t, err)
	assert.Empty(t, teams, "a dry run stores nothing")

	o := options(to, write(t, "events.ndjson", api.String()), write(t, "stored.ndjson.gz", gz.String()))
	o.Format = NDJSON
	sum, err = Import(context.Background(), o)
	require.NoError(t, err)
	assert.Equal(t, Counts{Rows: 10, Stored: 5, Duplicates: 5}, sum.Counts, "the same events twice, by their ids")
	refresh(t, to)
	for _, id := range ids[:5] {
		_, err := to.Show(context.Background(), "191796", id)
		assert.NoError(t, err, "kept its id %s", id)
	}

	renamed := "When,What,Who Type,Who,Org,Ignored\r\n" + t0.Format(time.RFC3339Nano) + ",job_created,user,12,77,x\r\n"
	o = options(to, write(t, "other.csv", renamed))
	o.Columns = map[string]string{"when": "timestamp", "what": "action", "who type": "actor_type", "who": "actor_id", "org": "team_id", "ignored": "-"}
	sum, err = Import(context.Background(), o)
	require.NoError(t, err)
	assert.Equal(t, int64(1), sum.Teams["77"].Stored)
}

// TestImportMemoryStaysFlat: the live heap an import needs does not grow with the file: 100,000
// rows take no more than 20,000 do, give or take (the pipelines' own buffers are the same for both).
func TestImportMemoryStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 120,000 events")
	}
	small, _ := importGrowth(t, 20_000)
	large, size := importGrowth(t, 100_000)
	t.Logf("the live heap grew by at most %d KiB for 20,000 rows, %d KiB for 100,000 rows (%d bytes)", small/1024, large/1024, size)
	assert.Less(t, large, 2*small+32<<20, "memory must not grow with the file")
	assert.Less(t, large, int64(256<<20))
}

// importGrowth imports a CSV of n rows into fresh indices and returns how far the live heap grew
// above what it was before, at most, and the file's size.
func importGrowth(t *testing.T, n int) (int64, int64) {
	c := node(t, fmt.Sprintf("flat%d", n))
	path := filepath.Join(t.TempDir(), "rows.csv")
	f, err := os.Create(path)
	require.NoError(t, err)
	var row []byte
	row = query.AppendCSVRow(row[:0], query.CSVHeader)
	f.Write(row)
	for i := 0; i < n; i++ {
		row = query.AppendCSVRow(row[:0], []string{t0.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano), "job_created", "", "user",
			fmt.Sprint(i % 97), fmt.Sprintf("user%d@example.com", i%97), "User", fmt.Sprintf(`[{"id":"%d","type":"job"}]`, i), "", "", "", fmt.Sprintf(`{"seq":%d,"note":"%s"}`, i, strings.Repeat("x", i%50))})
		f.Write(row)
	}
	require.NoError(t, f.Close())
	st, err := os.Stat(path)
	require.NoError(t, err)

	// The live heap (what the last collection kept), not the heap in use, as the export's test.
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	liveHeap := func() uint64 { metrics.Read(live); return live[0].Value.Uint64() }
	runtime.GC()
	runtime.GC()
	base := liveHeap()
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
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
	o := options(c, path)
	o.Team, o.Batch = "191796", 0
	sum, err := Import(context.Background(), o)
	close(stop)
	<-done
	require.NoError(t, err)
	require.Equal(t, int64(n), sum.Stored)
	return int64(peak.Load()) - int64(base), st.Size()
}

// TestNoImportBeforeTheTemplates: where the collector never installed the index templates, the
// import refuses to start, and nothing is stored with Elasticsearch's guessed mappings.
func TestNoImportBeforeTheTemplates(t *testing.T) {
	installed := node(t, "notemplates")
	conn := installed.Conn()
	conn.InstallTemplates = false // as the tools run: the templates are the collector's
	c, err := query.New(conn)
	require.NoError(t, err)
	o := options(c, write(t, "h.csv", "timestamp,action,actor_type\r\n"+t0.Format(time.RFC3339Nano)+",job_created,system\r\n"))
	o.Team = "5"
	_, err = Import(context.Background(), o)
	require.ErrorContains(t, err, "no index template")
	refresh(t, c)
	teams, err := c.Teams(context.Background())
	require.NoError(t, err)
	assert.Empty(t, teams)
}

// TestAnEventTheExporterQuarantinesIsCountedSo: an event the processor takes but the exporter
// quarantines (its document is over max_document_bytes) is counted quarantined, not stored, and the
// rows beside it stored.
func TestAnEventTheExporterQuarantinesIsCountedSo(t *testing.T) {
	c := node(t, "toolarge")
	ts := t0.Format(time.RFC3339Nano)
	big := `"{""blob"":""` + strings.Repeat("x", 2<<20) + `""}"`
	file := write(t, "big.csv", "timestamp,action,actor_type,metadata\r\n"+ts+",job_created,system,\r\n"+ts+",job_closed,system,"+big+"\r\n")
	o := options(c, file)
	o.Team = "5"
	sum, err := Import(context.Background(), o)
	require.NoError(t, err)
	assert.Equal(t, int64(1), sum.Stored)
	assert.Equal(t, map[string]int64{recorder.ProblemExporterQuarantined: 1}, sum.ByReason)
	n, err := c.Count(context.Background(), query.Filter{Team: "5", Actions: []string{"job_*"}})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}
