package query_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/auditpipe/auditpipe/internal/query"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// TestOneTeamIsReadWhole: a team's log is read in one step whatever its tier and partitions: events
// either side of a month boundary, a move to the dedicated tier at that boundary, and an index of the
// previous per-team layout. Another team's events never appear.
func TestOneTeamIsReadWhole(t *testing.T) {
	now := time.Now().UTC()
	boundary := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	lc := layout.NewDefaultConfig()
	lc.Teams = []layout.TeamConfig{{Team: "big", Tier: layout.Dedicated, From: boundary.Format(time.DateOnly)}}
	base := testClient(t)
	conn := base.Conn()
	conn.Layout = &lc
	c, err := New(conn)
	require.NoError(t, err)

	before, after := boundary.Add(-time.Millisecond), boundary
	var events []audit.Event
	for _, team := range []string{"big", "small"} {
		for _, ts := range []time.Time{before, after} {
			events = append(events, audit.Event{Time: ts, Action: audit.ActionJobCreated, TeamID: team, Actor: auditlog.System()})
		}
	}
	load(t, c, events)
	// An event the previous layout stored in the team's own index, audit-big, without routing.
	legacy := c.Layout().Legacy("big")
	put(t, c, "/"+legacy+"/_doc/legacy-1?refresh=true&routing=big",
		`{"@timestamp":"`+before.Add(-24*time.Hour).Format(time.RFC3339Nano)+`","action":"job_created","team_id":"big","actor":{"type":"system"},"event":{"id":"legacy-1"}}`)

	// The events are where the layout says, in three indices for team big.
	var indices []string
	for _, ts := range []time.Time{before, after} {
		indices = append(indices, c.Layout().Index("big", ts))
	}
	assert.Equal(t, []string{c.Conn().IndexPrefix + "shared.standard." + before.Format("2006-01"), c.Conn().IndexPrefix + "dedicated.big.standard." + after.Format("2006-01")}, indices)

	out, n := exportString(t, c, Filter{Team: "big"}, NDJSON)
	assert.EqualValues(t, 3, n)
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var d struct {
			TeamID string `json:"team_id"`
			Event  struct {
				ID string `json:"id"`
			} `json:"event"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &d))
		assert.Equal(t, "big", d.TeamID)
		ids = append(ids, d.Event.ID)
	}
	assert.Equal(t, "legacy-1", ids[0], "the old layout's event comes first, in time order")
	_, n = exportString(t, c, Filter{Team: "small"}, NDJSON)
	assert.EqualValues(t, 2, n)
	_, n = exportString(t, c, Filter{Team: "big", Since: boundary}, NDJSON)
	assert.EqualValues(t, 1, n, "since is inclusive at the boundary")

	doc, err := c.Show(context.Background(), "big", "legacy-1")
	require.NoError(t, err)
	assert.Contains(t, string(doc), `"legacy-1"`)
	_, err = c.Show(context.Background(), "small", "legacy-1")
	assert.ErrorContains(t, err, `team small has no event "legacy-1"`)

	teams, err := c.Teams(context.Background())
	require.NoError(t, err)
	require.Len(t, teams, 2)
	assert.Equal(t, Team{ID: "big", Events: 3}, Team{ID: teams[0].ID, Events: teams[0].Events})
	assert.Equal(t, Team{ID: "small", Events: 2}, Team{ID: teams[1].ID, Events: teams[1].Events})
}

func put(t *testing.T, c *Client, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, c.Conn().URLs[0]+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Less(t, res.StatusCode, 300, res.Status)
}

// TestAReadWithSinceSkipsOlderPartitions: a read with a time range opens no partition its range
// cannot touch. Last month's partition is made unreadable: a read of this month does not notice,
// a read of the whole log does.
func TestAReadWithSinceSkipsOlderPartitions(t *testing.T) {
	c := testClient(t)
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	load(t, c, []audit.Event{
		{Time: month.Add(-time.Hour), Action: audit.ActionJobCreated, TeamID: "7", Actor: auditlog.System()},
		{Time: now.Add(-time.Minute), Action: audit.ActionJobCreated, TeamID: "7", Actor: auditlog.System()},
	})
	old := c.Layout().Index("7", month.Add(-time.Hour))
	put(t, c, "/"+old+"/_settings", `{"index.blocks.read":true}`)
	t.Cleanup(func() { put(t, c, "/"+old+"/_settings", `{"index.blocks.read":false}`) })

	_, n := exportString(t, c, Filter{Team: "7", Since: month}, NDJSON)
	assert.EqualValues(t, 1, n)
	n, err := c.Count(context.Background(), Filter{Team: "7", Since: month, Until: now.Add(time.Minute)})
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
	_, err = c.Export(context.Background(), Filter{Team: "7"}, NDJSON, io.Discard, nil)
	assert.ErrorContains(t, err, "block", "without a range, last month's partition is read")
}
