// Package layout is the one home of the rule that maps a team's event to its Elasticsearch index:
// a pure function of (team, event time, layout configuration). Every writer and reader calls it;
// no other code spells an index name. See docs/layout.md for the design and its arithmetic.
//
// Two tiers, both partitioned by event time (UTC):
//
//	shared     audit-shared.<class>.<period>            every team by default, _routing = team
//	dedicated  audit-dedicated.<team>.<class>.<period>  teams named in the configuration
//
// <class> is the retention class, so a whole partition expires at once; <period> is 2026, 2026-11
// or 2026-11-26. Team ids never hold a dot, so no partition can be taken for a team index of the
// previous per-team layout (audit-<team>), which stays readable under the same pattern.
package layout

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/audit"
)

// Default names of the index family and of the quarantine index.
const (
	DefaultPrefix     = "audit-"
	DefaultQuarantine = DefaultPrefix + "quarantine"
)

// DefaultKeysIndex holds the audit log API's keys (their hashes, never a secret). It is outside the
// family's pattern (prefix*), so no reader of team events, no event template and no purge touches it.
const DefaultKeysIndex = "auditapi-keys"

// Tiers.
const (
	Shared    = "shared"
	Dedicated = "dedicated"
)

// Period is the time span of one partition.
type Period string

const (
	Day   Period = "day"
	Month Period = "month"
	Year  Period = "year"
)

// Config is the layout part of the exporter's configuration (key "layout").
type Config struct {
	// Period partitions the shared tier: day, month (default) or year.
	Period Period `mapstructure:"period"`
	// FutureSkew is how far past now an event's time may be; a later event is quarantined.
	FutureSkew time.Duration `mapstructure:"future_skew"`
	// Retention names the retention classes and the default one.
	Retention RetentionConfig `mapstructure:"retention"`
	// Teams places teams other than by default: a dedicated tier or another retention class, each
	// effective from a period boundary.
	Teams []TeamConfig `mapstructure:"teams"`
	// PlatformTeam is the team id of the platform log, where purges are recorded. It must not be a
	// customer's team id.
	PlatformTeam string `mapstructure:"platform_team"`
	// PurgeInterval is how often the exporter deletes expired partitions; 0 turns purging off.
	PurgeInterval time.Duration `mapstructure:"purge_interval"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// RetentionConfig names retention classes: a duration in days ("30d") or years ("7y").
type RetentionConfig struct {
	Default string            `mapstructure:"default"`
	Classes map[string]string `mapstructure:"classes"`
}

// TeamConfig places one team from a date on.
type TeamConfig struct {
	Team string `mapstructure:"team"`
	// From is the first day (YYYY-MM-DD, UTC) of the placement: a boundary of the periods before and
	// after it. Empty means since always; a move needs a date after every event already stored.
	From      string `mapstructure:"from"`
	Tier      string `mapstructure:"tier"`      // shared (default) or dedicated
	Period    Period `mapstructure:"period"`    // dedicated only; default: the shared period
	Retention string `mapstructure:"retention"` // a class; default: retention.default
}

// NewDefaultConfig returns the defaults: monthly shared partitions, 400 days' retention (above PCI
// DSS 10.5.1's twelve months), 24 h of clock skew, an hourly purge.
func NewDefaultConfig() Config {
	return Config{
		Period:        Month,
		FutureSkew:    24 * time.Hour,
		Retention:     RetentionConfig{Default: "standard", Classes: map[string]string{"short": "30d", "standard": "400d", "legal": "7y"}},
		PlatformTeam:  "platform",
		PurgeInterval: time.Hour,
	}
}

// Retention is a retention class's length.
type Retention struct {
	Years, Days int
}

// After returns when something at t leaves under this retention.
func (r Retention) After(t time.Time) time.Time { return t.AddDate(r.Years, 0, r.Days) }

func (r Retention) String() string {
	if r.Years > 0 {
		return strconv.Itoa(r.Years) + "y"
	}
	return strconv.Itoa(r.Days) + "d"
}

// ParseRetention reads "30d" or "7y".
func ParseRetention(s string) (Retention, error) {
	if len(s) < 2 {
		return Retention{}, fmt.Errorf("%q is not a retention like 30d or 7y", s)
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || n < 1 || n > 100*366 {
		return Retention{}, fmt.Errorf("%q is not a retention like 30d or 7y", s)
	}
	switch s[len(s)-1] {
	case 'd':
		return Retention{Days: n}, nil
	case 'y':
		if n > 100 {
			return Retention{}, fmt.Errorf("%q is longer than 100 years", s)
		}
		return Retention{Years: n}, nil
	}
	return Retention{}, fmt.Errorf("%q is not a retention like 30d or 7y", s)
}

// Placement is where a team's events of one span of time go.
type Placement struct {
	Tier   string
	Period Period
	Class  string
	From   time.Time // zero: since always
}

// Layout is a validated configuration with the index family's names.
type Layout struct {
	prefix, quarantine string
	cfg                Config
	classes            map[string]Retention
	def                Placement
	teams              map[string][]Placement // by From, ascending
}

// New validates cfg; each error names its key under "layout.".
func New(prefix, quarantine string, cfg Config) (*Layout, error) {
	var errs []error
	if err := CheckIndexName(prefix + "x"); err != nil || prefix == "" {
		errs = append(errs, fmt.Errorf("index_prefix: %q must be a non-empty lowercase index name prefix (%v)", prefix, err))
	}
	if err := CheckIndexName(quarantine); err != nil {
		errs = append(errs, fmt.Errorf("quarantine_index: %w", err))
	}
	l := &Layout{prefix: prefix, quarantine: quarantine, cfg: cfg, classes: map[string]Retention{}, teams: map[string][]Placement{}}
	if _, ok := l.Parse(quarantine); ok {
		errs = append(errs, fmt.Errorf("quarantine_index: %q has the shape of a partition", quarantine))
	}
	if !validPeriod(cfg.Period) {
		errs = append(errs, fmt.Errorf("layout.period: %q, use day, month or year", cfg.Period))
	}
	if cfg.FutureSkew < 0 {
		errs = append(errs, fmt.Errorf("layout.future_skew: %s, must not be negative", cfg.FutureSkew))
	}
	if cfg.PurgeInterval < 0 {
		errs = append(errs, fmt.Errorf("layout.purge_interval: %s, must not be negative", cfg.PurgeInterval))
	}
	if err := audit.CheckTeamID(cfg.PlatformTeam); err != nil {
		errs = append(errs, fmt.Errorf("layout.platform_team: %w", err))
	}
	for name, v := range cfg.Retention.Classes {
		if !validClass(name) {
			errs = append(errs, fmt.Errorf("layout.retention.classes: %q is not a class name [a-z0-9_]{1,32}", name))
			continue
		}
		r, err := ParseRetention(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("layout.retention.classes.%s: %w", name, err))
			continue
		}
		l.classes[name] = r
	}
	if _, ok := l.classes[cfg.Retention.Default]; !ok {
		errs = append(errs, fmt.Errorf("layout.retention.default: %q is not a class of layout.retention.classes", cfg.Retention.Default))
	}
	l.def = Placement{Tier: Shared, Period: cfg.Period, Class: cfg.Retention.Default}
	for i, tc := range cfg.Teams {
		p, err := l.placement(tc)
		if err != nil {
			errs = append(errs, fmt.Errorf("layout.teams[%d]: %w", i, err))
			continue
		}
		l.teams[tc.Team] = append(l.teams[tc.Team], p)
	}
	for team, ps := range l.teams {
		slices.SortFunc(ps, func(a, b Placement) int { return a.From.Compare(b.From) })
		prev := l.def
		for i, p := range ps {
			if i > 0 && p.From.Equal(ps[i-1].From) {
				errs = append(errs, fmt.Errorf("layout.teams: team %s has two placements from %s", team, day(p.From)))
			}
			if !p.From.IsZero() && (!Boundary(prev.Period, p.From) || !Boundary(p.Period, p.From)) {
				errs = append(errs, fmt.Errorf("layout.teams: team %s: from %s must start a %s (the period before) and a %s (its own); the next such date after today is %s",
					team, day(p.From), prev.Period, p.Period, day(NextBoundary(time.Now(), prev.Period, p.Period))))
			}
			prev = p
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Layout) placement(tc TeamConfig) (Placement, error) {
	if err := audit.CheckTeamID(tc.Team); err != nil {
		return Placement{}, fmt.Errorf("team: %w", err)
	}
	p := Placement{Tier: tc.Tier, Period: tc.Period, Class: tc.Retention}
	if p.Tier == "" {
		p.Tier = Shared
	}
	if p.Class == "" {
		p.Class = l.cfg.Retention.Default
	}
	switch p.Tier {
	case Shared:
		if p.Period != "" && p.Period != l.cfg.Period {
			return p, fmt.Errorf("period: the shared tier's period is layout.period (%s)", l.cfg.Period)
		}
		p.Period = l.cfg.Period
	case Dedicated:
		if p.Period == "" {
			p.Period = l.cfg.Period
		}
		if !validPeriod(p.Period) {
			return p, fmt.Errorf("period: %q, use day, month or year", p.Period)
		}
	default:
		return p, fmt.Errorf("tier: %q, use shared or dedicated", tc.Tier)
	}
	if _, ok := l.classes[p.Class]; !ok {
		return p, fmt.Errorf("retention: %q is not a class of layout.retention.classes", p.Class)
	}
	if tc.From != "" {
		t, err := time.Parse(time.DateOnly, tc.From)
		if err != nil {
			return p, fmt.Errorf("from: %q is not a date like 2027-01-01", tc.From)
		}
		p.From = t
	}
	return p, nil
}

func validPeriod(p Period) bool { return p == Day || p == Month || p == Year }

func validClass(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func day(t time.Time) string { return t.Format(time.DateOnly) }

// Prefix and Quarantine are the family's prefix and the quarantine index.
func (l *Layout) Prefix() string     { return l.prefix }
func (l *Layout) Quarantine() string { return l.quarantine }

// Config returns the configuration the layout was built from.
func (l *Layout) Config() Config { return l.cfg }

// PlatformTeam is the team whose log records the pipeline's own events (purges).
func (l *Layout) PlatformTeam() string { return l.cfg.PlatformTeam }

// Placements returns a team's placements in time order, starting with the one since always (the
// default, unless the configuration places the team without a from date).
func (l *Layout) Placements(team string) []Placement {
	ps := l.teams[team]
	if len(ps) > 0 && ps[0].From.IsZero() {
		return append([]Placement(nil), ps...)
	}
	return append([]Placement{l.def}, ps...)
}

// PlacementAt returns the team's placement at t.
func (l *Layout) PlacementAt(team string, t time.Time) Placement {
	p := l.def
	for _, q := range l.teams[team] {
		if q.From.After(t) {
			break
		}
		p = q
	}
	return p
}

// Index returns the index of a team's event at t. The team id must be valid (audit.CheckTeamID).
func (l *Layout) Index(team string, t time.Time) string {
	return l.index(team, l.PlacementAt(team, t), t)
}

// DedicatedPartition is the dedicated-tier partition that takes over a shared partition's events of
// one team (the same class and period): where a backfill after a move to the dedicated tier copies
// them.
func (l *Layout) DedicatedPartition(team string, p Partition) string {
	return l.index(team, Placement{Tier: Dedicated, Period: p.Period, Class: p.Class}, p.Start)
}

func (l *Layout) index(team string, p Placement, t time.Time) string {
	b := make([]byte, 0, len(l.prefix)+len(team)+48)
	b = append(b, l.prefix...)
	if p.Tier == Dedicated {
		b = append(b, "dedicated."...)
		b = append(b, team...)
	} else {
		b = append(b, "shared"...)
	}
	b = append(b, '.')
	b = append(b, p.Class...)
	b = append(b, '.')
	return string(appendLabel(b, p.Period, t.UTC()))
}

func appendLabel(b []byte, p Period, t time.Time) []byte {
	switch p {
	case Year:
		return t.AppendFormat(b, "2006")
	case Month:
		return t.AppendFormat(b, "2006-01")
	}
	return t.AppendFormat(b, "2006-01-02")
}

// DocID is the _id of a team's event: scoped by team, so that two teams sharing an index and a
// shard may use the same event id, and a 409 means "stored already" for this team only. It stays
// within Elasticsearch's 512 bytes.
func DocID(team, eventID string) string {
	if DocIDCarries(team, eventID) {
		return team + ":" + eventID
	}
	sum := sha256.Sum256([]byte(eventID))
	return team + ":sha256-" + hex.EncodeToString(sum[:])
}

// DocIDCarries tells whether DocID(team, eventID) holds the event id as it is (else it holds its
// hash, and the document must keep the id: the stored document writes event.id only then).
func DocIDCarries(team, eventID string) bool { return len(team)+1+len(eventID) <= audit.MaxIDBytes }

// EventIDOf is the event id a DocID carries: what follows the team. A document whose _id holds a
// hash keeps its id in event.id, which readers take first.
func EventIDOf(docID string) string {
	_, id, _ := strings.Cut(docID, ":")
	return id
}

// Problem codes of events the layout cannot take.
const (
	ProblemExpired = "retention_expired"
	ProblemFuture  = "timestamp_in_future"
)

// Check tells whether a team's event at t may be stored at now: not older than its retention (its
// partition may be gone, and must not come back), not later than future_skew ahead.
func (l *Layout) Check(team string, t, now time.Time) (code, detail string) {
	if t.After(now.Add(l.cfg.FutureSkew)) {
		return ProblemFuture, fmt.Sprintf("event time %s is more than %s after now (%s)", t.UTC().Format(time.RFC3339), l.cfg.FutureSkew, now.UTC().Format(time.RFC3339))
	}
	p := l.PlacementAt(team, t)
	r := l.classes[p.Class]
	if r.After(t).Before(now) {
		return ProblemExpired, fmt.Sprintf("event time %s is past retention class %s (%s)", t.UTC().Format(time.RFC3339), p.Class, r)
	}
	return "", ""
}

// Partition is what an index name of the layout says.
type Partition struct {
	Index      string
	Tier       string
	Team       string // dedicated tier only
	Class      string
	Period     Period
	Start, End time.Time
}

// Parse reads an index name of the layout; ok is false for any other index (the quarantine, an
// index of the previous per-team layout, anything else).
func (l *Layout) Parse(index string) (p Partition, ok bool) {
	rest, found := strings.CutPrefix(index, l.prefix)
	if !found {
		return p, false
	}
	parts := strings.Split(rest, ".")
	p.Index = index
	switch {
	case len(parts) == 3 && parts[0] == Shared:
		p.Tier, p.Class = Shared, parts[1]
	case len(parts) == 4 && parts[0] == Dedicated && audit.CheckTeamID(parts[1]) == nil:
		p.Tier, p.Team, p.Class = Dedicated, parts[1], parts[2]
	default:
		return p, false
	}
	if !validClass(p.Class) {
		return p, false
	}
	label := parts[len(parts)-1]
	for _, f := range []struct {
		p      Period
		layout string
	}{{Year, "2006"}, {Month, "2006-01"}, {Day, "2006-01-02"}} {
		if len(label) != len(f.layout) {
			continue
		}
		t, err := time.Parse(f.layout, label)
		if err != nil {
			return p, false
		}
		p.Period, p.Start, p.End = f.p, t, next(f.p, t)
		return p, true
	}
	return p, false
}

func next(p Period, t time.Time) time.Time {
	switch p {
	case Year:
		return t.AddDate(1, 0, 0)
	case Month:
		return t.AddDate(0, 1, 0)
	}
	return t.AddDate(0, 0, 1)
}

// PurgeGrace is how long after its last event expired a partition is deleted. The exporter refuses
// events past retention before it sends them; the grace covers an event checked just before its
// expiry and still on its way, so that no write can re-create a purged partition.
const PurgeGrace = 24 * time.Hour

// Expired tells whether a partition may be deleted at now, and when it expired. A class the
// configuration no longer names is never expired: data is not deleted on a guess.
func (l *Layout) Expired(p Partition, now time.Time) (time.Time, bool) {
	r, ok := l.classes[p.Class]
	if !ok {
		return time.Time{}, false
	}
	at := r.After(p.End)
	return at, at.Add(PurgeGrace).Before(now)
}

// Retention returns a class's retention.
func (l *Layout) Retention(class string) (Retention, bool) {
	r, ok := l.classes[class]
	return r, ok
}

// Boundary tells whether t (UTC midnight) starts a partition of period p.
func Boundary(p Period, t time.Time) bool {
	t = t.UTC()
	if t.Hour() != 0 || t.Minute() != 0 || t.Second() != 0 || t.Nanosecond() != 0 {
		return false
	}
	switch p {
	case Year:
		return t.YearDay() == 1
	case Month:
		return t.Day() == 1
	}
	return true
}

// NextBoundary is the first day after now that starts a period of each of ps: the earliest date a
// move between tiers can take effect.
func NextBoundary(now time.Time, ps ...Period) time.Time {
	t := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, 1)
	for {
		ok := true
		for _, p := range ps {
			ok = ok && Boundary(p, t)
		}
		if ok {
			return t
		}
		t = t.AddDate(0, 0, 1)
	}
}

// ReadIndices is what a reader of team events searches: every index of the family but the
// quarantine, old per-team indices included. A reader filters by team_id; a team's events are in
// no other index.
func (l *Layout) ReadIndices() []string {
	return []string{l.Family(), "-" + l.quarantine}
}

// ReadIndicesFor is what a reader of one team's events from since (inclusive) to until (exclusive)
// searches: the partitions of either tier whose period can hold such events (month and day
// partitions of the months, year partitions of the years, whatever their class), the team's index of
// the previous per-team layout, and no other. A zero until reads up to now and the future skew the
// exporter accepts. Without a since, or for a range whose names would not fit readPatternsBytes (they
// travel in the request's URL), it is ReadIndices: the time filter still keeps the search to the
// range, and the node skips the shards it cannot match.
func (l *Layout) ReadIndicesFor(team string, since, until, now time.Time) []string {
	if since.IsZero() {
		return l.ReadIndices()
	}
	if until.IsZero() {
		until = now.Add(l.cfg.FutureSkew)
	}
	since, last := since.UTC(), until.UTC().Add(-time.Nanosecond)
	if last.Before(since) {
		last = since
	}
	var out []string
	size := 0
	add := func(parts ...string) {
		s := strings.Join(parts, "")
		out = append(out, s)
		size += len(s) + 1
	}
	shared, dedicated := l.prefix+Shared+".*.", l.prefix+Dedicated+"."+team+".*."
	for y := time.Date(since.Year(), 1, 1, 0, 0, 0, 0, time.UTC); !y.After(last); y = y.AddDate(1, 0, 0) {
		label := string(appendLabel(nil, Year, y))
		add(shared, label)
		add(dedicated, label)
	}
	for m := time.Date(since.Year(), since.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(last); m = m.AddDate(0, 1, 0) {
		label := string(appendLabel(nil, Month, m))
		add(shared, label)
		add(shared, label, "-*") // the month's day partitions
		add(dedicated, label)
		add(dedicated, label, "-*")
		if size > readPatternsBytes {
			return l.ReadIndices()
		}
	}
	add(l.Legacy(team))
	add("-", l.quarantine)
	return out
}

// readPatternsBytes bounds the index names of one read: a few months' worth, well inside the node's
// 4 KiB request line.
const readPatternsBytes = 2048

// Family is the pattern of every index the layout names: the partitions, the previous per-team
// indices and the quarantine.
func (l *Layout) Family() string { return l.prefix + "*" }

// DataViewTitle is ReadIndices as a Kibana data view title.
func (l *Layout) DataViewTitle() string { return strings.Join(l.ReadIndices(), ",") }

// TemplateNames are the names of the two index templates the exporter installs: the partitions'
// and the quarantine's.
func (l *Layout) TemplateNames() (events, quarantine string) {
	return l.prefix + "events", l.quarantine + "-index"
}

// TemplatePattern is the index pattern of the event template (the quarantine's template, of
// higher priority, takes the quarantine out of it).
func (l *Layout) TemplatePattern() string { return l.Family() }

// PartitionPatterns match every partition of both tiers (not the previous per-team indices).
func (l *Layout) PartitionPatterns() []string {
	return []string{l.prefix + Shared + ".*", l.prefix + Dedicated + ".*"}
}

// Renamed is an index of the family under another prefix: where a copy of the whole family (the
// replay benchmark's) puts it. ok is false for an index outside the family.
func (l *Layout) Renamed(index, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(index, l.prefix)
	return prefix + rest, ok
}

// Legacy is a team's index in the previous per-team layout (read, never written).
func (l *Layout) Legacy(team string) string { return l.prefix + team }

// CheckIndexName is the rule for every index name the project is configured with (the prefix, the
// quarantine, the API keys' index): Elasticsearch's rules, and no leading dot (hidden and system
// indices are not ours to write).
func CheckIndexName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%q is not a valid index name", name)
	case len(name) > 255:
		return fmt.Errorf("index name is longer than 255 bytes")
	case strings.ContainsAny(name[:1], "-_+."):
		return fmt.Errorf("%q must not start with -, _, + or .", name)
	case strings.ToLower(name) != name:
		return fmt.Errorf("%q must be lowercase", name)
	case strings.ContainsAny(name, `\/*?"<>| ,#:`):
		return fmt.Errorf(`%q must not contain \ / * ? " < > | space , # :`, name)
	}
	return nil
}
