package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

func TestLayoutShowAndPlan(t *testing.T) {
	now := time.Now().UTC()
	conn := setup(t, []audit.Event{{Time: now.Add(-time.Hour), Action: audit.ActionJobCreated, TeamID: "191796", Actor: auditlog.System()}})
	refresh(t, conn)
	config := filepath.Join(t.TempDir(), "collector.yaml")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(
		"exporters:\n  auditelasticsearch:\n    endpoints: [%s]\n    index_prefix: %s\n    quarantine_index: %s\n    layout:\n      teams:\n        - {team: \"big\", tier: dedicated, period: year, retention: legal, from: \"2030-01-01\"}\n",
		conn[1], conn[3], conn[5])), 0o600))
	args := []string{"--es-url", conn[1], "--config", config}

	out, _, err := auditctl(t, append([]string{"layout", "show", "--team", "big"}, args...)...)
	require.NoError(t, err)
	assert.Contains(t, out, "since always     shared    month retention standard (400d)")
	assert.Contains(t, out, "from 2030-01-01  dedicated year  retention legal (7y)")
	assert.Contains(t, out, "readers search "+conn[3]+"*,-"+conn[5]+" for team_id big")

	out, _, err = auditctl(t, append([]string{"layout", "show", "--team", "191796"}, args...)...)
	require.NoError(t, err)
	assert.Contains(t, out, conn[3]+"shared.standard."+now.Format("2006-01")+" ")
	assert.Contains(t, out, "1 events")

	out, _, err = auditctl(t, append([]string{"layout", "plan", "--team", "191796", "--tier", "dedicated", "--period", "year"}, args...)...)
	require.NoError(t, err)
	from := layout.NextBoundary(now.Add(24*time.Hour), layout.Month, layout.Year).Format(time.DateOnly)
	assert.Contains(t, out, "It can move to the dedicated tier from "+from)
	assert.Contains(t, out, "    - team: \"191796\"\n      from: \""+from+"\"\n      tier: dedicated\n      period: year\n      retention: standard\n")
	assert.Contains(t, out, "go to "+conn[3]+"dedicated.191796.standard."+from[:4])
	assert.Contains(t, out, "POST _reindex")
	assert.Contains(t, out, `"dest":{"index":"`+conn[3]+"dedicated.191796.standard."+now.Format("2006-01")+`"`)

	_, _, err = auditctl(t, append([]string{"layout", "plan", "--team", "191796", "--tier", "private"}, args...)...)
	assert.ErrorContains(t, err, `tier: "private"`)
	_, _, err = auditctl(t, append([]string{"layout", "show", "--team", "../x"}, args...)...)
	assert.Error(t, err)
}
