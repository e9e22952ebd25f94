package auditelasticsearchexporter

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// The layout against the real node: where events land, team-scoped ids, moves between tiers,
// retention and mapping evolution.

type rec struct {
	team, id string
	at       time.Time
}

// records runs one event per rec through the real processor, with its id and time.
func records(t *testing.T, recs ...rec) plog.Logs {
	t.Helper()
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for _, r := range recs {
		lr := lrs.AppendEmpty()
		lr.SetEventName(audit.EventName)
		lr.SetTimestamp(pcommon.NewTimestampFromTime(r.at))
		lr.Attributes().PutStr(audit.AttrID, r.id)
		lr.Body().SetStr(rawEvent(r.team, "job_created", ""))
	}
	return processed(t, ld)
}

func TestTwoTeamsMayShareAnEventID(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	// Two teams, one shared partition and one shard, the same client-chosen id: neither event may
	// suppress the other as a "duplicate".
	require.NoError(t, e.pushLogs(context.Background(), records(t, rec{"1", "evt-1", baseTime}, rec{"2", "evt-1", baseTime})))
	assert.Equal(t, map[string]int{"1": 1, "2": 1}, teamCounts(t, cfg))
	one, two := searchTeam(t, cfg, "1")[0], searchTeam(t, cfg, "2")[0]
	assert.Equal(t, one.Index, two.Index)
	assert.Equal(t, []string{"1:evt-1", "2:evt-1"}, []string{one.ID, two.ID}, "each under its team's _id, which carries the event id")
}

func TestTierMoveTakesEffectAtItsBoundary(t *testing.T) {
	now := time.Now().UTC()
	from := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	e, cfg := testExporter(t, "", func(c *Config) {
		c.Layout.Teams = []layout.TeamConfig{{Team: "big", Tier: layout.Dedicated, From: from.Format(time.DateOnly)}}
	})
	before, after := from.Add(-time.Second), from.Add(time.Second)
	require.NoError(t, e.pushLogs(context.Background(), records(t,
		rec{"big", "b1", before}, rec{"big", "b2", after}, rec{"small", "s1", before}, rec{"small", "s2", after})))
	// teamCounts checks every event against the layout; the names are spelled out here once.
	assert.Equal(t, map[string]int{"big": 2, "small": 2}, teamCounts(t, cfg))
	month := func(t time.Time) string { return t.Format("2006-01") }
	var got []string
	for _, h := range append(searchTeam(t, cfg, "big"), searchTeam(t, cfg, "small")...) {
		got = append(got, strings.TrimPrefix(h.Index, cfg.IndexPrefix))
	}
	assert.Equal(t, []string{
		"shared.standard." + month(before), "dedicated.big.standard." + month(after),
		"shared.standard." + month(before), "shared.standard." + month(after),
	}, got)

	// Redelivered after the move, each event finds its first copy: the index is a function of the
	// event's time, not of when it is sent.
	require.NoError(t, e.pushLogs(context.Background(), records(t, rec{"big", "b1", before}, rec{"big", "b2", after})))
	assert.Equal(t, map[string]int{"big": 2, "small": 2}, teamCounts(t, cfg))
}

func TestEventsOutsideRetentionOrTooFarAheadAreQuarantined(t *testing.T) {
	e, cfg := testExporter(t, "", nil)
	now := time.Now()
	require.NoError(t, e.pushLogs(context.Background(), records(t,
		rec{"7", "old", now.AddDate(0, 0, -401)}, rec{"7", "ahead", now.Add(25 * time.Hour)}, rec{"7", "ok", now.Add(23 * time.Hour)})))
	assert.Equal(t, map[string]int{"7": 1, cfg.QuarantineIndex: 2}, teamCounts(t, cfg))
	var reasons []string
	for _, h := range quarantined(t, cfg) {
		reasons = append(reasons, reasonsOf(h)...)
	}
	assert.ElementsMatch(t, []string{layout.ProblemExpired, layout.ProblemFuture}, reasons)
}

func TestRetentionPurgesWholePartitionsAndNothingBringsThemBack(t *testing.T) {
	e, cfg := testExporter(t, "", func(c *Config) {
		c.Layout.Teams = []layout.TeamConfig{{Team: "brief", Retention: "short"}}
		c.Layout.PurgeInterval = 0 // the test purges, with a clock of its own
	})
	ctx := context.Background()
	real := time.Now()
	old := real.AddDate(0, 0, -75) // its month ended at least 44 days ago: past 30 days and the grace
	// The youngest event whose partition must stay: the partition ends after the event, so it
	// expires after now. A purge one period early (or one that counted from the partition's start)
	// would delete it.
	young := real.Add(-30*24*time.Hour - layout.PurgeGrace + time.Minute)
	// The events were stored while they were young: the exporter's clock is set back.
	for _, r := range []rec{{"brief", "b-old", old}, {"kept", "k-old", old}, {"brief", "b-young", young}} {
		e.now = func() time.Time { return r.at.Add(time.Hour) }
		require.NoError(t, e.pushLogs(ctx, records(t, r)))
	}
	e.now = time.Now
	require.NoError(t, e.pushLogs(ctx, records(t, rec{"brief", "b-new", real.Add(-time.Minute)})))
	assert.Equal(t, map[string]int{"brief": 3, "kept": 1}, teamCounts(t, cfg))
	expired, kept := e.layout.Index("brief", old), e.layout.Index("brief", young)
	require.NotEqual(t, expired, kept)
	require.Equal(t, http.StatusOK, esGet(t, "/"+expired, nil))

	purged, err := e.purge(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{expired}, purged)
	assert.Equal(t, http.StatusNotFound, esGet(t, "/"+expired, nil), "the partition is deleted")
	assert.Equal(t, http.StatusOK, esGet(t, "/"+kept, nil), "a partition not yet past its retention and the grace stays")
	assert.Equal(t, map[string]int{"brief": 2, "kept": 1, e.layout.PlatformTeam(): 1}, teamCounts(t, cfg),
		"the other class's partition of the same month stays; the purge is in the platform log")
	purge := searchTeam(t, cfg, e.layout.PlatformTeam())[0].Source
	assert.Equal(t, audit.ActionAuditPartitionPurged, purge["action"])
	assert.Equal(t, expired, purge["targets"].([]any)[0].(map[string]any)["id"])
	md := purge["metadata"].(map[string]any)
	assert.Equal(t, float64(1), md["documents"])
	assert.Equal(t, "short", md["retention_class"])

	// A second purge finds nothing; a repeated record of the same purge would be one event.
	purged, err = e.purge(ctx)
	require.NoError(t, err)
	assert.Empty(t, purged)

	// A late event for the deleted partition is quarantined, and the partition stays deleted.
	require.NoError(t, e.pushLogs(ctx, records(t, rec{"brief", "b-late", old.Add(time.Minute)})))
	assert.Equal(t, http.StatusNotFound, esGet(t, "/"+expired, nil), "no write re-created the partition")
	q := quarantined(t, cfg)
	require.Len(t, q, 1)
	assert.Equal(t, []string{layout.ProblemExpired}, reasonsOf(q[0]))
	assert.Equal(t, expired, q[0].Source["quarantine"].(map[string]any)["index"])

	// Where automatic creation is restricted, the exporter creates missing partitions itself, but
	// never an expired one.
	it := &item{index: expired, errType: "index_not_found_exception"}
	e.createMissing(ctx, []*item{it})
	assert.Equal(t, http.StatusNotFound, esGet(t, "/"+expired, nil))
}

// An event converted while its partition was alive and sent after the partition expired (a queue
// backlog longer than the retention's grace) is quarantined, not written: a write would make automatic
// index creation bring the purged partition back.
func TestAQueuedEventOutlivingItsPartitionIsQuarantined(t *testing.T) {
	e, cfg := testExporter(t, "", func(c *Config) {
		c.Layout.Teams = []layout.TeamConfig{{Team: "brief", Retention: "short"}}
		c.Layout.PurgeInterval = 0
	})
	ctx := context.Background()
	old := time.Now().AddDate(0, 0, -75)
	e.now = func() time.Time { return old.Add(time.Hour) } // received while young
	req, err := e.convert(ctx, records(t, rec{"brief", "b-queued", old}, rec{"kept", "k-queued", old}))
	require.NoError(t, err)
	require.Nil(t, req.(*docsRequest).items[0].q, "within retention when it arrived")
	partition := req.(*docsRequest).items[0].index

	e.now = time.Now // sent from the queue 75 days later
	require.NoError(t, e.push(ctx, req))
	assert.Equal(t, http.StatusNotFound, esGet(t, "/"+partition, nil), "the expired partition was not created")
	counts := teamCounts(t, cfg)
	assert.Equal(t, 1, counts["kept"], "the standard class keeps its event")
	assert.Zero(t, counts["brief"])
	q := quarantined(t, cfg)
	require.Len(t, q, 1)
	assert.Equal(t, []string{layout.ProblemExpired}, reasonsOf(q[0]))
	assert.Equal(t, "indexing", q[0].Source["quarantine"].(map[string]any)["stage"])
	assert.Equal(t, "brief", q[0].Source["quarantine"].(map[string]any)["team_id"])
	assert.Contains(t, q[0].Source["record"].(map[string]any)["body"], `"team_id":"brief"`, "the record is rebuilt from the document")
}

// TestNewFieldsReachTheCurrentPartition: the current partition was created by template version 3,
// without audit.warnings (as version 2 had it). The exporter starts, although version 4 maps some of
// that partition's fields otherwise (aliases, event.hash in _source only), adds the missing field,
// and stores its lighter documents there.
func TestNewFieldsReachTheCurrentPartition(t *testing.T) {
	cfg := testConfig(t, "")
	lay, err := cfg.layout()
	require.NoError(t, err)
	current := lay.Index("7", baseTime)
	v3, err := os.ReadFile("../../internal/document/testdata/event-mappings.v3.json")
	require.NoError(t, err)
	old := strings.Replace(string(v3), `,
        "warnings": {
          "type": "keyword",
          "ignore_above": 1024
        }`, "", 1)
	require.NotEqual(t, string(v3), old)
	esDo(t, http.MethodPut, "/"+current, fmt.Sprintf(`{"settings":{"number_of_replicas":0},"mappings":%s}`, old))

	e := startExporter(t, cfg)
	// A record without an id gets the missing_id warning: a field the old mapping did not have.
	ld := normalized(t, rawEvent(7, "job_created", ""))
	require.NoError(t, e.pushLogs(context.Background(), ld))
	assert.Equal(t, map[string]int{"7": 1}, teamCounts(t, cfg), "stored, not refused by the old strict mapping")
	assert.NotEmpty(t, searchTeam(t, cfg, "7")[0].Source["audit"].(map[string]any)["warnings"])
}

// TestThePurgeLoopRuns: a running exporter deletes an expired partition on its own.
func TestThePurgeLoopRuns(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.Layout.PurgeInterval = 100 * time.Millisecond
	lay, err := cfg.layout()
	require.NoError(t, err)
	expired := lay.Index("1", time.Now().AddDate(-2, 0, 0)) // standard class: 400 days
	current := lay.Index("1", time.Now())
	for _, index := range []string{expired, current} {
		esDo(t, http.MethodPut, "/"+index, `{"settings":{"number_of_replicas":0}}`)
	}
	startExporter(t, cfg)
	require.Eventually(t, func() bool { return esGet(t, "/"+expired, nil) == http.StatusNotFound }, 30*time.Second, 100*time.Millisecond)
	assert.Equal(t, http.StatusOK, esGet(t, "/"+current, nil))
}
