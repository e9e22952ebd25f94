package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/auditquery"
	"github.com/auditpipe/auditpipe/internal/esinspect"
	"github.com/auditpipe/auditpipe/internal/estest"
	"github.com/auditpipe/auditpipe/internal/layout"
	"github.com/auditpipe/auditpipe/internal/tenantapi"
)

// syncBuffer is the server's log, written by its goroutines and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestServesAKeysTeamAndLogsNoSecret runs the command as an operator would, with a key minted as
// `auditctl keys create` mints it, and stops it with its context (SIGTERM).
func TestServesAKeysTeamAndLogsNoSecret(t *testing.T) {
	url, prefix := estest.URL(t), estest.Prefix(t)
	conn := auditquery.Conn{URLs: []string{url}, IndexPrefix: prefix + layout.DefaultPrefix, QuarantineIndex: prefix + layout.DefaultQuarantine, InstallTemplates: true}
	c, err := auditquery.New(conn)
	require.NoError(t, err)
	_, err = c.RecordAll(context.Background(), []audit.Event{
		{Action: audit.ActionJobCreated, TeamID: "501", Actor: auditlog.System()},
		{Action: audit.ActionJobCreated, TeamID: "502", Actor: auditlog.System()},
	})
	require.NoError(t, err)
	keys, err := tenantapi.NewKeys(c, prefix+"keys")
	require.NoError(t, err)
	rec, err := c.NewRecorder(context.Background(), nil)
	require.NoError(t, err)
	token, _, err := keys.Create(context.Background(), rec, tenantapi.NewSpec{Team: "501", Scopes: []string{"read"}, Operator: "op"})
	rec.Close()
	require.NoError(t, err)
	require.NoError(t, esinspect.Refresh(url, conn.IndexPrefix))

	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--es-url", url, "--index-prefix", conn.IndexPrefix,
			"--quarantine-index", conn.QuarantineIndex, "--keys-index", prefix + "keys", "--rate-limit", "50"}, &logs, func(a string) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("auditapi stopped: %v\n%s", err, logs.String())
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/events?action=job_*", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var page struct {
		Data []struct {
			TeamID string `json:"team_id"`
		} `json:"data"`
		NextCursor *string `json:"next_cursor"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&page))
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Len(t, page.Data, 1)
	assert.Equal(t, "501", page.Data[0].TeamID)
	assert.Nil(t, page.NextCursor)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("auditapi did not stop")
	}
	assert.Regexp(t, `"status":200,"key":"[0-9a-f]{24}","access_event":"[0-9a-f-]{36}"`, logs.String(), "the request log names the key and the event that recorded the access")
	assert.NotContains(t, logs.String(), token[29:], "no secret in the server's log")
}

func TestFlagsAreChecked(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--rate-limit", "0"}, "--rate-limit"},
		{[]string{"--tls-cert", "x.pem"}, "--tls-key"},
		{[]string{"--keys-index", "audit-keys"}, "must not start with the audit indices' prefix"},
		{[]string{"--keys-index", "Keys"}, "lowercase"},
		{[]string{"--index-prefix", "Audit-"}, "index_prefix"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"--listen", "127.0.0.1:0"}, c.args...), &out, nil)
		require.Error(t, err, c.args)
		assert.Contains(t, err.Error()+out.String(), c.msg, strings.Join(c.args, " "))
	}
}
