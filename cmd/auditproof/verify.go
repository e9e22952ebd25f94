package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/loadgen"
)

// verdict is what a scenario's stored documents show against the records the collector
// acknowledged, id by id.
type verdict struct {
	sent        int // acknowledged records
	stored      int // acknowledged events stored exactly once in their own team's index
	quarantined int // acknowledged bad records quarantined exactly once, with a reason
	lost        int // acknowledged and stored nowhere
	duplicated  int // stored more than once (in any index)
	misrouted   int // stored, but not where the layout puts its team and time, under another team id, or quarantined instead of stored (or stored instead of quarantined)
	unexpected  int // stored or quarantined, but never acknowledged
	perTeam     map[string][2]int
	examples    map[string][]string
}

func (v *verdict) example(kind, id string) {
	if len(v.examples[kind]) < 5 {
		v.examples[kind] = append(v.examples[kind], id)
	}
}

func (v verdict) ok() bool {
	return v.lost == 0 && v.duplicated == 0 && v.misrouted == 0 && v.unexpected == 0 && v.stored+v.quarantined == v.sent
}

// check compares the acknowledged records with the documents of the run's layout: an event is
// stored once, in the index the layout gives for its team and time, routed by its team, under its
// team-scoped id.
func check(acked map[string]loadgen.Expect, docs []esinspect.Doc, lay *layout.Layout) verdict {
	v := verdict{sent: len(acked), perTeam: map[string][2]int{}, examples: map[string][]string{}}
	type place struct {
		index, team string
		reasons     int
		placed      bool // where the layout says
	}
	where := map[string][]place{}
	for _, d := range docs {
		p := place{index: d.Index, team: d.TeamID}
		if d.Index == lay.Quarantine() {
			p.team, p.reasons = d.QTeamID, len(d.Reasons)
		} else if ts, err := time.Parse(time.RFC3339Nano, d.Time); err == nil {
			p.placed = d.Index == lay.Index(d.TeamID, ts) && d.Routing == d.TeamID && d.ID == layout.DocID(d.TeamID, d.EventID)
		}
		where[d.EventID] = append(where[d.EventID], p)
	}
	for id, want := range acked {
		places := where[id]
		delete(where, id)
		if !want.Quarantine {
			c := v.perTeam[want.Team]
			c[0]++
			v.perTeam[want.Team] = c
		}
		switch {
		case len(places) == 0:
			v.lost++
			v.example("lost", id)
		case len(places) > 1:
			v.duplicated++
			v.example("duplicated", fmt.Sprintf("%s in %v", id, places))
		case want.Quarantine:
			if places[0].index != lay.Quarantine() || places[0].reasons == 0 {
				v.misrouted++
				v.example("misrouted", fmt.Sprintf("%s (bad record) in %s", id, places[0].index))
				continue
			}
			v.quarantined++
		default:
			p := places[0]
			if p.team != want.Team || !p.placed {
				v.misrouted++
				v.example("misrouted", fmt.Sprintf("%s of team %s in %s (team_id %q)", id, want.Team, p.index, p.team))
				continue
			}
			v.stored++
			c := v.perTeam[want.Team]
			c[1]++
			v.perTeam[want.Team] = c
		}
	}
	for id, places := range where {
		v.unexpected += len(places)
		v.example("unexpected", fmt.Sprintf("%s in %v", id, places))
	}
	return v
}

// teamMismatches lists the teams whose stored count differs from the acknowledged count.
func (v verdict) teamMismatches() []string {
	var out []string
	for team, c := range v.perTeam {
		if c[0] != c[1] {
			out = append(out, fmt.Sprintf("team %s: %d acknowledged, %d stored", team, c[0], c[1]))
		}
	}
	sort.Strings(out)
	return out
}

func (v verdict) describe() string {
	var parts []string
	for _, k := range []string{"lost", "duplicated", "misrouted", "unexpected"} {
		if ex := v.examples[k]; len(ex) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s", k, strings.Join(ex, ", ")))
		}
	}
	if m := v.teamMismatches(); len(m) > 0 {
		if len(m) > 5 {
			m = append(m[:5], fmt.Sprintf("and %d more teams", len(m)-5))
		}
		parts = append(parts, "per team: "+strings.Join(m, "; "))
	}
	return strings.Join(parts, "\n    ")
}
