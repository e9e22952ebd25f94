package main

import (
	"testing"

	"github.com/auditpipe/auditpipe/internal/esinspect"
	"github.com/auditpipe/auditpipe/internal/loadgen"
)

// TestCheckCountsIDsNotTotals: the verdict fails for each way a record can go wrong, even where
// the totals still add up (a lost event and an unexpected one cancel out in sent − stored).
func TestCheckCountsIDsNotTotals(t *testing.T) {
	acked := map[string]loadgen.Expect{
		"a": {Team: "1"}, "b": {Team: "1"}, "c": {Team: "2"}, "bad": {Team: "*", Quarantine: true},
	}
	good := []esinspect.Doc{
		{Index: "audit-1", EventID: "a", TeamID: "1"}, {Index: "audit-1", EventID: "b", TeamID: "1"},
		{Index: "audit-2", EventID: "c", TeamID: "2"}, {Index: "audit-quarantine", EventID: "bad", QTeamID: "*", Reasons: []string{"invalid_team_id"}},
	}
	if v := check(acked, good); !v.ok() || v.stored != 3 || v.quarantined != 1 {
		t.Fatalf("a correct run fails: %+v", v)
	}
	for name, tc := range map[string]struct {
		docs  []esinspect.Doc
		field func(verdict) int
	}{
		"lost, gap filled by a redelivery under a new id": {append(good[1:len(good):len(good)], esinspect.Doc{Index: "audit-1", EventID: "a2", TeamID: "1"}), func(v verdict) int { return v.lost + v.unexpected }},
		"duplicated":            {append(good[:len(good):len(good)], esinspect.Doc{Index: "audit-2", EventID: "a", TeamID: "2"}), func(v verdict) int { return v.duplicated }},
		"misrouted index":       {[]esinspect.Doc{{Index: "audit-2", EventID: "a", TeamID: "1"}, good[1], good[2], good[3]}, func(v verdict) int { return v.misrouted }},
		"misrouted body":        {[]esinspect.Doc{{Index: "audit-1", EventID: "a", TeamID: "2"}, good[1], good[2], good[3]}, func(v verdict) int { return v.misrouted }},
		"event quarantined":     {[]esinspect.Doc{{Index: "audit-quarantine", EventID: "a", Reasons: []string{"x"}}, good[1], good[2], good[3]}, func(v verdict) int { return v.misrouted }},
		"bad record stored":     {[]esinspect.Doc{good[0], good[1], good[2], {Index: "audit-1", EventID: "bad", TeamID: "1"}}, func(v verdict) int { return v.misrouted }},
		"quarantined no reason": {[]esinspect.Doc{good[0], good[1], good[2], {Index: "audit-quarantine", EventID: "bad"}}, func(v verdict) int { return v.misrouted }},
		"unexpected":            {append(good[:len(good):len(good)], esinspect.Doc{Index: "audit-1", EventID: "zzz", TeamID: "1"}), func(v verdict) int { return v.unexpected }},
	} {
		v := check(acked, tc.docs)
		if v.ok() || tc.field(v) == 0 {
			t.Errorf("%s: not caught: %+v", name, v)
		}
		if v.describe() == "" {
			t.Errorf("%s: no example printed", name)
		}
	}
}
