// The filters of a read, and the team filter every read of team events carries.

package query

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/audit"
)

// Filter selects events of one team.
type Filter struct {
	Team    string
	Since   time.Time // inclusive; zero: from the start
	Until   time.Time // exclusive; zero: to the end
	Actions []string  // action names or patterns with * and ?; any matches
	ActorID string
	// TargetType and TargetID keep events with a target of that type and a target of that id. The
	// targets are mapped as plain objects, so with both given the two may be different targets
	// of one event.
	TargetType, TargetID string
}

var actionPattern = regexp.MustCompile(`^[a-z0-9_*?]{1,128}$`)

// CheckActionPattern accepts an action name or a pattern with the documented wildcards (* and ?),
// so that nothing else reaches a query.
func CheckActionPattern(a string) error {
	if !actionPattern.MatchString(a) {
		return fmt.Errorf("action %q: use lowercase action names, with * and ? as wildcards", a)
	}
	return nil
}

// query renders the filter as an Elasticsearch query. Action patterns are checked so that nothing but
// the documented wildcards reaches the query.
func (f Filter) query() (map[string]any, error) {
	team, err := teamFilter(f.Team)
	if err != nil {
		return nil, err
	}
	filters := []any{team}
	if r := timeRange("@timestamp", f.Since, f.Until); r != nil {
		filters = append(filters, r)
	}
	if len(f.Actions) > 0 {
		var should []any
		for _, a := range f.Actions {
			if err := CheckActionPattern(a); err != nil {
				return nil, err
			}
			if strings.ContainsAny(a, "*?") {
				should = append(should, map[string]any{"wildcard": map[string]any{"action": map[string]any{"value": a}}})
			} else {
				should = append(should, map[string]any{"term": map[string]any{"action": a}})
			}
		}
		filters = append(filters, map[string]any{"bool": map[string]any{"should": should, "minimum_should_match": 1}})
	}
	for field, v := range map[string]string{"actor.id": f.ActorID, "targets.type": f.TargetType, "targets.id": f.TargetID} {
		if v != "" {
			filters = append(filters, map[string]any{"term": map[string]any{field: v}})
		}
	}
	return map[string]any{"bool": map[string]any{"filter": filters}}, nil
}

// teamFilter returns the query clause that keeps one team's events, after checking the team id with
// the rule the processor and the exporter apply. Every read of team events searches
// layout.ReadIndices with this filter: one step, whatever the team's tier or partitions, and no
// input can select another team's events.
func teamFilter(team string) (map[string]any, error) {
	if err := audit.CheckTeamID(team); err != nil {
		return nil, fmt.Errorf("team %w", err)
	}
	return map[string]any{"term": map[string]any{"team_id": team}}, nil
}

// timeRange is a range query on a date field, since inclusive, until exclusive (zero: open); nil
// when both are open.
func timeRange(field string, since, until time.Time) map[string]any {
	if since.IsZero() && until.IsZero() {
		return nil
	}
	r := map[string]any{"format": "strict_date_optional_time_nanos"}
	if !since.IsZero() {
		r["gte"] = since.UTC().Format(time.RFC3339Nano)
	}
	if !until.IsZero() {
		r["lt"] = until.UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{"range": map[string]any{field: r}}
}
