package main

import (
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/loadgen"
)

// TestCheckCountsIDsNotTotals: the verdict fails for each way a record can go wrong, even where
// the totals still add up (a lost event and an unexpected one cancel out in sent − stored).
func TestCheckCountsIDsNotTotals(t *testing.T) {
	lay, err := layout.New(layout.DefaultPrefix, layout.DefaultQuarantine, layout.NewDefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	// stored is a document where the layout puts an event of team at ts.
	stored := func(team, id string, ts time.Time) esinspect.Doc {
		return esinspect.Doc{Index: lay.Index(team, ts), ID: layout.DocID(team, id), Routing: team, Time: ts.Format(time.RFC3339Nano), EventID: id, TeamID: team}
	}
	acked := map[string]loadgen.Expect{
		"a": {Team: "1"}, "b": {Team: "1"}, "c": {Team: "2"}, "bad": {Team: "*", Quarantine: true},
	}
	good := []esinspect.Doc{
		stored("1", "a", now), stored("1", "b", now), stored("2", "c", now),
		{Index: lay.Quarantine(), EventID: "bad", QTeamID: "*", Reasons: []string{"invalid_team_id"}},
	}
	if v := check(acked, good, lay); !v.ok() || v.stored != 3 || v.quarantined != 1 {
		t.Fatalf("a correct run fails: %+v", v)
	}
	otherPartition := stored("1", "a", now)
	otherPartition.Index = lay.Index("1", now.AddDate(0, -2, 0))
	unrouted := stored("1", "a", now)
	unrouted.Routing = ""
	unscoped := stored("1", "a", now)
	unscoped.ID = "a"
	for name, tc := range map[string]struct {
		docs  []esinspect.Doc
		field func(verdict) int
	}{
		"lost, gap filled by a redelivery under a new id": {append(good[1:len(good):len(good)], stored("1", "a2", now)), func(v verdict) int { return v.lost + v.unexpected }},
		"duplicated":            {append(good[:len(good):len(good)], stored("2", "a", now)), func(v verdict) int { return v.duplicated }},
		"misrouted partition":   {[]esinspect.Doc{otherPartition, good[1], good[2], good[3]}, func(v verdict) int { return v.misrouted }},
		"misrouted shard":       {[]esinspect.Doc{unrouted, good[1], good[2], good[3]}, func(v verdict) int { return v.misrouted }},
		"id not scoped by team": {[]esinspect.Doc{unscoped, good[1], good[2], good[3]}, func(v verdict) int { return v.misrouted }},
		"misrouted body":        {[]esinspect.Doc{stored("2", "a", now), good[1], good[2], good[3]}, func(v verdict) int { return v.misrouted }},
		"event quarantined":     {[]esinspect.Doc{{Index: lay.Quarantine(), EventID: "a", Reasons: []string{"x"}}, good[1], good[2], good[3]}, func(v verdict) int { return v.misrouted }},
		"bad record stored":     {[]esinspect.Doc{good[0], good[1], good[2], stored("1", "bad", now)}, func(v verdict) int { return v.misrouted }},
		"quarantined no reason": {[]esinspect.Doc{good[0], good[1], good[2], {Index: lay.Quarantine(), EventID: "bad"}}, func(v verdict) int { return v.misrouted }},
		"unexpected":            {append(good[:len(good):len(good)], stored("1", "zzz", now)), func(v verdict) int { return v.unexpected }},
	} {
		v := check(acked, tc.docs, lay)
		if v.ok() || tc.field(v) == 0 {
			t.Errorf("%s: not caught: %+v", name, v)
		}
		if v.describe() == "" {
			t.Errorf("%s: no example printed", name)
		}
	}
}
