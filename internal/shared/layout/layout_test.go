package layout

import (
	"path"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
)

func date(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func testLayout(t testing.TB, teams ...TeamConfig) *Layout {
	t.Helper()
	cfg := NewDefaultConfig()
	cfg.Teams = teams
	l, err := New(DefaultPrefix, DefaultQuarantine, cfg)
	require.NoError(t, err)
	return l
}

func TestIndexIsAFunctionOfTeamTimeAndConfig(t *testing.T) {
	l := testLayout(t,
		TeamConfig{Team: "big", Tier: Dedicated, Period: Year, From: "2027-01-01"},
		TeamConfig{Team: "bank", Retention: "legal"},
	)
	cases := []struct {
		team, at, want string
	}{
		{"191796", "2026-11-30T23:59:59.999999999Z", "audit-shared.standard.2026-11"},
		{"191796", "2026-12-01T00:00:00Z", "audit-shared.standard.2026-12"},
		{"191796", "2026-12-01T00:30:00+01:00", "audit-shared.standard.2026-11"}, // UTC decides
		{"big", "2026-12-31T23:59:59Z", "audit-shared.standard.2026-12"},
		{"big", "2027-01-01T00:00:00Z", "audit-dedicated.big.standard.2027"},
		{"big", "2027-11-05T00:00:00Z", "audit-dedicated.big.standard.2027"},
		{"bank", "1999-03-01T00:00:00Z", "audit-shared.legal.1999-03"},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, l.Index(c.team, date(c.at)), "%s at %s", c.team, c.at)
		p, ok := l.Parse(c.want)
		require.True(t, ok, c.want)
		assert.False(t, date(c.at).Before(p.Start), c.want)
		assert.True(t, date(c.at).Before(p.End), c.want)
		assert.NoError(t, CheckIndexName(c.want))
	}
}

func TestPlacements(t *testing.T) {
	l := testLayout(t, TeamConfig{Team: "bank", Retention: "legal"}, TeamConfig{Team: "bank", Tier: Dedicated, Period: Year, From: "2027-01-01"})
	ps := l.Placements("bank")
	require.Len(t, ps, 2, "the team's own placement since always replaces the default")
	assert.Equal(t, Placement{Tier: Shared, Period: Month, Class: "legal"}, ps[0])
	assert.Equal(t, Placement{Tier: Dedicated, Period: Year, Class: "standard", From: date("2027-01-01T00:00:00Z")}, ps[1])
	assert.Equal(t, []Placement{{Tier: Shared, Period: Month, Class: "standard"}}, l.Placements("1"))
}

func TestMovesTakeEffectAtABoundaryOfBothPeriods(t *testing.T) {
	cfg := NewDefaultConfig()
	cfg.Teams = []TeamConfig{{Team: "big", Tier: Dedicated, Period: Year, From: "2026-12-01"}}
	_, err := New(DefaultPrefix, DefaultQuarantine, cfg)
	require.ErrorContains(t, err, "layout.teams: team big: from 2026-12-01 must start a month (the period before) and a year (its own)")

	cfg.Teams = []TeamConfig{
		{Team: "big", Tier: Dedicated, Period: Day, From: "2026-12-01"},
		{Team: "big", Tier: Shared, From: "2026-12-15"},
	}
	_, err = New(DefaultPrefix, DefaultQuarantine, cfg)
	require.ErrorContains(t, err, "from 2026-12-15 must start a day (the period before) and a month (its own)")

	cfg.Teams = []TeamConfig{{Team: "Big", Tier: "private", From: "soon", Retention: "forever"}}
	_, err = New(DefaultPrefix, DefaultQuarantine, cfg)
	require.ErrorContains(t, err, "layout.teams[0]: team:")
	cfg.Teams[0].Team = "big"
	_, err = New(DefaultPrefix, DefaultQuarantine, cfg)
	require.ErrorContains(t, err, `layout.teams[0]: tier: "private"`)
	cfg.Teams[0].Tier = Dedicated
	_, err = New(DefaultPrefix, DefaultQuarantine, cfg)
	require.ErrorContains(t, err, `layout.teams[0]: retention: "forever"`)
	cfg.Teams[0].Retention = ""
	_, err = New(DefaultPrefix, DefaultQuarantine, cfg)
	require.ErrorContains(t, err, `layout.teams[0]: from: "soon"`)

	assert.Equal(t, date("2027-01-01T00:00:00Z"), NextBoundary(date("2026-11-26T10:00:00Z"), Month, Year))
	assert.Equal(t, date("2026-12-01T00:00:00Z"), NextBoundary(date("2026-11-26T10:00:00Z"), Month))
	assert.Equal(t, date("2026-11-27T00:00:00Z"), NextBoundary(date("2026-11-26T10:00:00Z"), Day))
}

func TestConfigErrorsNameTheirKey(t *testing.T) {
	cfg := NewDefaultConfig()
	cfg.Period = "week"
	cfg.FutureSkew = -time.Second
	cfg.PlatformTeam = "Platform"
	cfg.Retention = RetentionConfig{Default: "gold", Classes: map[string]string{"Bad.Name": "1d", "short": "30 days"}}
	_, err := New("Audit-", "audit-shared.x.2026", cfg)
	require.Error(t, err)
	for _, want := range []string{
		`index_prefix: "Audit-"`,
		`layout.period: "week"`,
		`layout.future_skew: -1s`,
		`layout.platform_team:`,
		`layout.retention.classes: "Bad.Name"`,
		`layout.retention.classes.short: "30 days"`,
		`layout.retention.default: "gold"`,
	} {
		assert.ErrorContains(t, err, want)
	}
	_, err = New(DefaultPrefix, "audit-shared.standard.2026", NewDefaultConfig())
	assert.ErrorContains(t, err, "quarantine_index: \"audit-shared.standard.2026\" has the shape of a partition")
}

func TestCheckRetentionAndSkew(t *testing.T) {
	l := testLayout(t, TeamConfig{Team: "brief", Retention: "short"})
	now := date("2026-11-26T12:00:00Z")
	code, _ := l.Check("1", now.Add(23*time.Hour), now)
	assert.Empty(t, code)
	code, detail := l.Check("1", now.Add(25*time.Hour), now)
	assert.Equal(t, ProblemFuture, code)
	assert.Contains(t, detail, "more than 24h0m0s after now")
	code, _ = l.Check("1", now.AddDate(0, 0, -399), now)
	assert.Empty(t, code)
	code, _ = l.Check("1", now.AddDate(0, 0, -401), now)
	assert.Equal(t, ProblemExpired, code)
	code, detail = l.Check("brief", now.AddDate(0, 0, -31), now)
	assert.Equal(t, ProblemExpired, code)
	assert.Contains(t, detail, "retention class short (30d)")
}

func TestExpiredPartitions(t *testing.T) {
	l := testLayout(t)
	p, ok := l.Parse("audit-shared.short.2026-09")
	require.True(t, ok)
	at, expired := l.Expired(p, date("2026-10-31T00:00:00Z"))
	assert.Equal(t, date("2026-10-31T00:00:00Z"), at) // 30 days after the end of September
	assert.False(t, expired, "within the grace")
	_, expired = l.Expired(p, date("2026-11-01T00:00:01Z"))
	assert.True(t, expired)

	// A class no longer configured is never purged.
	p, ok = l.Parse("audit-dedicated.big.gone.2001")
	require.True(t, ok)
	_, expired = l.Expired(p, date("2099-01-01T00:00:00Z"))
	assert.False(t, expired)

	// An event the exporter still accepts is never in a partition the purge may delete.
	now := date("2026-11-26T12:00:00Z")
	for _, d := range []int{29, 30} {
		ev := now.AddDate(0, 0, -d)
		l2 := testLayout(t, TeamConfig{Team: "t", Retention: "short"})
		if code, _ := l2.Check("t", ev, now); code == "" {
			p, _ := l2.Parse(l2.Index("t", ev))
			_, expired := l2.Expired(p, now)
			assert.False(t, expired)
		}
	}
}

func TestParseKnowsOnlyPartitions(t *testing.T) {
	l := testLayout(t)
	for _, name := range []string{
		"audit-quarantine", "audit-191796", "audit-shared", "audit-shared.standard", "audit-shared.standard.2026-13",
		"audit-dedicated.Big.standard.2026", "audit-shared.standard.2026-11.x", "other-shared.standard.2026", "audit-shared..2026",
	} {
		_, ok := l.Parse(name)
		assert.False(t, ok, name)
	}
	p, ok := l.Parse("audit-dedicated.big.legal.2026-11-26")
	require.True(t, ok)
	assert.Equal(t, Partition{Index: "audit-dedicated.big.legal.2026-11-26", Tier: Dedicated, Team: "big", Class: "legal", Period: Day,
		Start: date("2026-11-26T00:00:00Z"), End: date("2026-11-27T00:00:00Z")}, p)
}

func TestDocIDIsTeamScopedAndBounded(t *testing.T) {
	assert.Equal(t, "191796:evt-1", DocID("191796", "evt-1"))
	assert.NotEqual(t, DocID("1", "x"), DocID("2", "x"))
	long := DocID("191796", strings.Repeat("é", 256))
	assert.LessOrEqual(t, len(long), audit.MaxIDBytes)
	assert.True(t, strings.HasPrefix(long, "191796:sha256-"))
}

func TestDocIDCarriesTheEventID(t *testing.T) {
	assert.True(t, DocIDCarries("191796", "evt-1"))
	assert.Equal(t, "evt-1", EventIDOf(DocID("191796", "evt-1")))
	assert.Equal(t, "a:b", EventIDOf(DocID("7", "a:b")), "the team holds no colon; the id may")
	long := strings.Repeat("é", 256)
	assert.False(t, DocIDCarries("191796", long))
	assert.NotEqual(t, long, EventIDOf(DocID("191796", long)), "the document keeps such an id")
}

// TestReadIndicesForPrunesByPeriod: a read with a time range names the partitions of the months and
// years it touches, of both tiers and every class, and the team's index of the previous layout; an
// open start, or a range too long for a URL, reads every index.
func TestReadIndicesForPrunesByPeriod(t *testing.T) {
	l := testLayout(t)
	now := date("2026-12-04T10:00:00Z")
	got := l.ReadIndicesFor("191796", date("2026-11-20T00:00:00Z"), date("2026-12-01T00:00:00Z"), now)
	assert.Equal(t, []string{
		"audit-shared.*.2026", "audit-dedicated.191796.*.2026",
		"audit-shared.*.2026-11", "audit-shared.*.2026-11-*", "audit-dedicated.191796.*.2026-11", "audit-dedicated.191796.*.2026-11-*",
		"audit-191796", "-audit-quarantine",
	}, got, "until is exclusive: December is not read")
	got = l.ReadIndicesFor("191796", date("2026-12-01T00:00:00Z"), time.Time{}, now)
	assert.Contains(t, got, "audit-shared.*.2026-12")
	assert.Contains(t, got, "audit-shared.*.2026-12-*")
	assert.NotContains(t, got, "audit-shared.*.2026-11")
	got = l.ReadIndicesFor("191796", date("2026-12-31T12:00:00Z"), time.Time{}, date("2026-12-31T12:00:00Z"))
	assert.Contains(t, got, "audit-shared.*.2027-01", "up to now and the future skew")

	read := func(index string) bool {
		for _, p := range l.ReadIndicesFor("191796", date("2026-11-20T00:00:00Z"), date("2026-12-01T00:00:00Z"), now) {
			if ok, _ := path.Match(p, index); ok {
				return true
			}
		}
		return false
	}
	for _, index := range []string{"audit-shared.standard.2026-11", "audit-shared.legal.2026", "audit-shared.brief.2026-11-30", "audit-dedicated.191796.legal.2026-11", "audit-191796"} {
		assert.True(t, read(index), index)
	}
	for _, index := range []string{"audit-shared.standard.2026-12", "audit-shared.standard.2026-10", "audit-shared.brief.2026-12-01", "audit-dedicated.7.legal.2026-11", "audit-quarantine"} {
		assert.False(t, read(index), index)
	}
	assert.Equal(t, l.ReadIndices(), l.ReadIndicesFor("191796", time.Time{}, now, now))
	assert.Equal(t, l.ReadIndices(), l.ReadIndicesFor("191796", now.AddDate(-10, 0, 0), now, now), "ten years of months")
}

func FuzzParse(f *testing.F) {
	l := testLayout(f)
	for _, s := range []string{"audit-shared.standard.2026-11", "audit-dedicated.big.legal.2027", "audit-191796", "audit-shared.a.2026-02-30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, ok := l.Parse(name)
		if !ok {
			return
		}
		// A name that parses is the name the layout gives for its start.
		team := p.Team
		if team == "" {
			team = "1"
		}
		got := l.index(team, Placement{Tier: p.Tier, Period: p.Period, Class: p.Class}, p.Start)
		if got != name {
			t.Fatalf("Parse(%q) = %+v, which names %q", name, p, got)
		}
	})
}

// TestCheckIndexName: the one rule for configured index names.
func TestCheckIndexName(t *testing.T) {
	for _, ok := range []string{"audit-", "audit-quarantine", "auditapi-keys", "a.b_c-1", "ünïcode"} {
		assert.NoError(t, CheckIndexName(ok), ok)
	}
	for _, bad := range []string{"", ".", "..", ".hidden", "-a", "_a", "+a", "Audit", "a b", "a,b", "a*", "a?", "a#b", "a:b", `a\b`, "a/b", `a"b`, "a<b", "a>b", "a|b", strings.Repeat("a", 256)} {
		assert.Error(t, CheckIndexName(bad), bad)
	}
}

// TestDedicatedPartition: the dedicated partition that takes over a shared one is the one Index
// gives the team once it is dedicated, for the same class and period.
func TestDedicatedPartition(t *testing.T) {
	shared := testLayout(t)
	p, ok := shared.Parse(shared.Index("191796", date("2026-11-15T10:00:00Z")))
	require.True(t, ok)
	dedicated := testLayout(t, TeamConfig{Team: "191796", Tier: Dedicated, Period: Month})
	assert.Equal(t, dedicated.Index("191796", date("2026-11-15T10:00:00Z")), shared.DedicatedPartition("191796", p))
}

func TestRenamed(t *testing.T) {
	l := testLayout(t)
	got, ok := l.Renamed("audit-shared.standard.2026-11", "copy-audit-")
	assert.True(t, ok)
	assert.Equal(t, "copy-audit-shared.standard.2026-11", got)
	_, ok = l.Renamed("other-index", "copy-audit-")
	assert.False(t, ok)
}
