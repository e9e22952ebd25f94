package tenantapi

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/query"
)

// param is a query parameter an endpoint accepts: its longest value in bytes and how many times it
// may be given.
type param struct {
	name  string
	max   int
	times int
}

// filterParams select events, for listings and exports alike.
var filterParams = []param{
	{"action", 128, 20}, {"actor_id", 256, 1}, {"target_type", 128, 1}, {"target_id", 256, 1},
	{"since", 64, 1}, {"until", 64, 1},
}

// The parameters of each endpoint; any other is refused, so a misspelt filter never returns more
// than was asked for.
var (
	eventsParams = append(slices.Clone(filterParams), param{"limit", 8, 1}, param{"order", 8, 1}, param{"cursor", MaxCursor, 1})
	exportParams = append(slices.Clone(filterParams), param{"format", 8, 1})
)

// Limits of GET /v1/events.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// badParam is a 400 that names the parameter.
func badParam(name, format string, args ...any) *apiError {
	return &apiError{status: 400, code: "invalid_parameter", msg: fmt.Sprintf("parameter %q: ", name) + fmt.Sprintf(format, args...)}
}

// parseParams reads the query string against an endpoint's parameters.
func parseParams(u *url.URL, accepted []param) (url.Values, *apiError) {
	v, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, &apiError{status: 400, code: "invalid_parameter", msg: "the query string is malformed: " + err.Error()}
	}
	for name, vals := range v {
		i := slices.IndexFunc(accepted, func(p param) bool { return p.name == name })
		if i < 0 {
			return nil, badParam(audit.Abbreviate(name, 64), "unknown parameter; this endpoint accepts %s", names(accepted))
		}
		p := accepted[i]
		if len(vals) > p.times {
			return nil, badParam(name, "given %d times, at most %d", len(vals), p.times)
		}
		for _, s := range vals {
			switch {
			case s == "":
				return nil, badParam(name, "is empty")
			case len(s) > p.max:
				return nil, badParam(name, "is %d bytes long, the limit is %d", len(s), p.max)
			case !utf8.ValidString(s) || hasControl(s):
				return nil, badParam(name, "must be UTF-8 text without control characters")
			}
		}
	}
	return v, nil
}

func names(ps []param) string {
	var s string
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.name
	}
	return s
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// listing is the filters and order of a read, as the client gave them (checked): what a cursor is
// bound to and what the access event records.
type listing struct {
	Actions    []string `json:"action,omitempty"`
	ActorID    string   `json:"actor_id,omitempty"`
	TargetType string   `json:"target_type,omitempty"`
	TargetID   string   `json:"target_id,omitempty"`
	Since      string   `json:"since,omitempty"`
	Until      string   `json:"until,omitempty"`
	Order      string   `json:"order,omitempty"`
}

// parseListing checks the filter parameters (and order, for listings).
func parseListing(v url.Values) (listing, *apiError) {
	l := listing{Actions: v["action"], ActorID: v.Get("actor_id"), TargetType: v.Get("target_type"), TargetID: v.Get("target_id"),
		Since: v.Get("since"), Until: v.Get("until"), Order: v.Get("order")}
	for _, a := range l.Actions {
		if err := query.CheckActionPattern(a); err != nil {
			return l, badParam("action", "%q: use lowercase action names, with * and ? as wildcards", a)
		}
	}
	var since, until time.Time
	for _, t := range []struct {
		name string
		s    string
		at   *time.Time
	}{{"since", l.Since, &since}, {"until", l.Until, &until}} {
		if t.s == "" {
			continue
		}
		var err error
		if *t.at, err = time.Parse(time.RFC3339Nano, t.s); err != nil {
			return l, badParam(t.name, "%q is not an RFC 3339 time, such as 2025-08-01T00:00:00Z", t.s)
		}
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		return l, badParam("until", "must be after since")
	}
	if l.Order != "" && l.Order != "asc" && l.Order != "desc" {
		return l, badParam("order", "%q: use asc or desc", l.Order)
	}
	return l, nil
}

// filter is the listing's query of a team. The times were checked by parseListing (a cursor's
// listing too: it was checked before it was signed).
func (l listing) filter(team string) query.Filter {
	f := query.Filter{Team: team, Actions: l.Actions, ActorID: l.ActorID, TargetType: l.TargetType, TargetID: l.TargetID}
	f.Since, _ = time.Parse(time.RFC3339Nano, l.Since)
	f.Until, _ = time.Parse(time.RFC3339Nano, l.Until)
	return f
}

func (l listing) order() query.Order {
	if l.Order == "asc" {
		return query.Asc
	}
	return query.Desc
}

// empty tells a request that gives no filter and no order (a cursor alone).
func (l listing) empty() bool { return l.equal(listing{}) }

// equal compares what a cursor is bound to.
func (l listing) equal(o listing) bool {
	return slices.Equal(l.Actions, o.Actions) && l.ActorID == o.ActorID && l.TargetType == o.TargetType &&
		l.TargetID == o.TargetID && l.Since == o.Since && l.Until == o.Until && l.Order == o.Order
}

// metadata is the listing as an access event records it.
func (l listing) metadata() map[string]any {
	m := map[string]any{}
	if len(l.Actions) > 0 {
		m["action"] = l.Actions
	}
	for k, s := range map[string]string{"actor_id": l.ActorID, "target_type": l.TargetType, "target_id": l.TargetID, "since": l.Since, "until": l.Until, "order": l.Order} {
		if s != "" {
			m[k] = s
		}
	}
	return m
}

// parseLimit reads limit (default DefaultLimit).
func parseLimit(s string) (int, *apiError) {
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, badParam("limit", "%q is not a whole number from 1 to %d", s, MaxLimit)
	}
	if n > MaxLimit {
		return 0, badParam("limit", "%d is more than the maximum, %d", n, MaxLimit)
	}
	return n, nil
}
