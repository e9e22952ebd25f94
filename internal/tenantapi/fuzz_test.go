package tenantapi

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/query"
)

// FuzzParams: any query string gets a 400 naming a parameter or a listing whose query builds; never
// a panic, and never a filter that could select another team.
func FuzzParams(f *testing.F) {
	for _, s := range []string{"", "action=job_*&action=user_login_complete&limit=10&order=asc", "since=2025-08-01T00:00:00Z&until=2025-08-02T00:00:00.5Z",
		"team_id=2", "limit=1001", "cursor=a.b", "%zz", "action=*&actor_id=%00", "target_type=job&target_id=1&since=2025-13-01T00:00:00Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, e := parseParams(&url.URL{RawQuery: raw}, eventsParams)
		if e != nil {
			require.Equal(t, 400, e.status)
			return
		}
		l, e := parseListing(v)
		if e != nil {
			require.True(t, strings.HasPrefix(e.msg, `parameter "`), e.msg)
			return
		}
		if _, e := parseLimit(v.Get("limit")); e != nil {
			return
		}
		fl := l.filter("42")
		require.Equal(t, "42", fl.Team, "the team is the key's, whatever the parameters")
		if !fl.Since.IsZero() && !fl.Until.IsZero() {
			require.True(t, fl.Until.After(fl.Since))
		}
	})
}

// FuzzCursor: no string but a cursor this key issued decodes.
func FuzzCursor(f *testing.F) {
	k := &Key{ID: "0123456789abcdef01234567", Hash: strings.Repeat("ab", 32)}
	good := encodeCursor(k, cursor{Query: listing{Actions: []string{"job_*"}}, Pos: &query.Position{PIT: "p"}, ReadID: "r"})
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add("e30.AAAA")
	f.Add(good[:len(good)-1] + string(good[len(good)-1]+1)) // the same bytes, but for the last character's unused bits
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(k, s)
		if err != nil {
			return
		}
		require.Equal(t, good, s, "only the issued cursor decodes")
		require.Equal(t, k.ID, c.KeyID)
	})
}

func TestCursorIsBoundToItsKey(t *testing.T) {
	a := &Key{ID: "0123456789abcdef01234567", Hash: strings.Repeat("ab", 32)}
	b := &Key{ID: "0123456789abcdef01234567", Hash: strings.Repeat("cd", 32)} // same id, another secret
	c := encodeCursor(a, cursor{Pos: &query.Position{PIT: "p"}})
	_, err := decodeCursor(a, c)
	require.NoError(t, err)
	_, err = decodeCursor(b, c)
	assert.Error(t, err)
}

func TestLimiter(t *testing.T) {
	l := newLimiter(10)
	now := time.Unix(1000, 0)
	for i := 0; i < 20; i++ {
		ok, _ := l.allow("k", now)
		require.True(t, ok, i)
	}
	ok, wait := l.allow("k", now)
	require.False(t, ok)
	assert.Equal(t, 100*time.Millisecond, wait)
	ok, _ = l.allow("k", now.Add(100*time.Millisecond))
	assert.True(t, ok)
	ok, _ = l.allow("other", now)
	assert.True(t, ok)
	// Idle keys are forgotten.
	l.allow("k", now.Add(time.Hour))
	assert.Len(t, l.buckets, 1)
}

func TestRedactTokens(t *testing.T) {
	tok := "apk_0123456789abcdef01234567_Y8arcwfO8CqIhMuqiUfJJOOq2eufhyysHkMzKhZxCRc"
	for _, s := range []string{"token=" + tok, "a=1&access_token=" + url.QueryEscape(tok) + "&b=2", "x=" + strings.ReplaceAll(tok, "_", "%5F")} {
		got := redactTokens(s)
		assert.NotContains(t, got, "Y8arcwfO8", s)
		assert.Contains(t, got, "0123456789abcdef01234567", "the key id stays, to find whose it was")
	}
	assert.Equal(t, "action=job_*&limit=10", redactTokens("action=job_*&limit=10"))
}
