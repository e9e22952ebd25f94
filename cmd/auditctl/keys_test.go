package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
)

// TestKeysCreateListRevoke: the token alone on the first line of standard output, once; list shows
// no secret; revoke works for the key's own team only; both are in the team's log.
func TestKeysCreateListRevoke(t *testing.T) {
	conn := setup(t, []audit.Event{{Action: audit.ActionJobCreated, TeamID: "401", Actor: auditlog.System()}})
	prefix := strings.TrimSuffix(conn[3], layout.DefaultPrefix)
	conn = append(conn, "--keys-index", prefix+"keys")
	out, errOut, err := auditctl(t, append([]string{"keys", "create", "--team", "401", "--scope", "read", "--scope", "export", "--expires", "720h", "--name", "SIEM export", "--operator", "oncall@example.com"}, conn...)...)
	require.NoError(t, err, errOut)
	require.Regexp(t, regexp.MustCompile(`^apk_[0-9a-f]{24}_[A-Za-z0-9_-]{43}\n$`), out, "the token alone on one line")
	token := strings.TrimSpace(out)
	id := token[4:28]
	assert.Contains(t, errOut, "created key "+id)

	out, _, err = auditctl(t, append([]string{"keys", "list", "--team", "401"}, conn...)...)
	require.NoError(t, err)
	assert.Contains(t, out, id)
	assert.Contains(t, out, `"SIEM export"`)
	assert.Contains(t, out, "read,export")
	assert.NotContains(t, out, token[29:], "the secret is never shown again")
	out, _, err = auditctl(t, append([]string{"keys", "list", "--team", "402"}, conn...)...)
	require.NoError(t, err)
	assert.NotContains(t, out, id, "another team's list")

	_, _, err = auditctl(t, append([]string{"keys", "revoke", "--team", "402", "--id", id, "--operator", "x"}, conn...)...)
	assert.ErrorContains(t, err, "team 402 has no key")
	_, _, err = auditctl(t, append([]string{"keys", "revoke", "--team", "401", "--id", id, "--operator", "oncall@example.com"}, conn...)...)
	require.NoError(t, err)
	out, _, err = auditctl(t, append([]string{"keys", "list", "--team", "401"}, conn...)...)
	require.NoError(t, err)
	assert.Regexp(t, `\d{4}-\d\d-\d\dT[0-9:]+Z\s+oncall@example.com`, out, "the revocation time")

	_, _, err = auditctl(t, append([]string{"keys", "create", "--team", "401", "--scope", "write", "--operator", "x"}, conn...)...)
	assert.ErrorContains(t, err, `scope "write"`)
	_, _, err = auditctl(t, append([]string{"keys", "create", "--team", "401", "--operator", "x"}, conn...)...)
	assert.ErrorContains(t, err, "a key needs a scope")
	_, _, err = auditctl(t, append([]string{"keys", "create", "--team", "../401", "--scope", "read", "--operator", "x"}, conn...)...)
	assert.ErrorContains(t, err, "team")
	t.Setenv("AUDITCTL_OPERATOR", "")
	t.Setenv("USER", "")
	_, _, err = auditctl(t, append([]string{"keys", "create", "--team", "401", "--scope", "read"}, conn...)...)
	assert.ErrorContains(t, err, "operator")

	c, err := query.New(query.Conn{URLs: []string{conn[1]}, IndexPrefix: conn[3], QuarantineIndex: conn[5]})
	require.NoError(t, err)
	require.NoError(t, esinspect.Refresh(conn[1], conn[3]))
	docs, _, err := c.Page(context.Background(), query.Filter{Team: "401", Actions: []string{"audit_api_key_*"}}, query.Asc, 10, nil)
	require.NoError(t, err)
	require.Len(t, docs, 2)
	assert.Contains(t, string(docs[0].Source), `"audit_api_key_created"`)
	assert.Contains(t, string(docs[0].Source), `"oncall@example.com"`)
	assert.Contains(t, string(docs[1].Source), `"audit_api_key_revoked"`)
	assert.NotContains(t, string(docs[0].Source)+string(docs[1].Source), token[29:], "no secret in the log")
}
