package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/recorder"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
	"github.com/auditpipe/auditpipe/internal/tenantapi"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
	"github.com/auditpipe/auditpipe/internal/testrig/estest"
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

// server is a running auditapi: its address, its log, and stop, which ends it as SIGTERM does.
type server struct {
	addr string
	logs *syncBuffer
	stop func() error
}

// serve runs the command with args (and --listen 127.0.0.1:0) until stop or the test's end.
func serve(t *testing.T, args ...string) server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), logs, func(a string) { addr <- a })
	}()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("auditapi did not stop")
		}
	}
	t.Cleanup(func() { stop() })
	select {
	case a := <-addr:
		return server{addr: a, logs: logs, stop: stop}
	case err := <-done:
		t.Fatalf("auditapi stopped: %v\n%s", err, logs.String())
	}
	return server{}
}

// mint creates a key of a team as `auditctl keys create` does.
func mint(t *testing.T, c *query.Client, keysIndex, team string) string {
	t.Helper()
	keys, err := tenantapi.NewKeys(c, keysIndex)
	require.NoError(t, err)
	rec, err := recorder.New(context.Background(), c, nil)
	require.NoError(t, err)
	defer rec.Close()
	token, _, err := keys.Create(context.Background(), rec, tenantapi.NewSpec{Team: team, Scopes: []string{"read"}, Operator: "op"})
	require.NoError(t, err)
	return token
}

// TestServesAKeysTeamAndLogsNoSecret runs the command as an operator would, with a key minted as
// `auditctl keys create` mints it, and stops it with its context (SIGTERM).
func TestServesAKeysTeamAndLogsNoSecret(t *testing.T) {
	url, prefix := estest.URL(t), estest.Prefix(t)
	conn := query.Conn{URLs: []string{url}, IndexPrefix: prefix + layout.DefaultPrefix, QuarantineIndex: prefix + layout.DefaultQuarantine, InstallTemplates: true}
	c, err := query.New(conn)
	require.NoError(t, err)
	_, err = recorder.RecordAll(context.Background(), c, []audit.Event{
		{Action: audit.ActionJobCreated, TeamID: "501", Actor: auditlog.System()},
		{Action: audit.ActionJobCreated, TeamID: "502", Actor: auditlog.System()},
	})
	require.NoError(t, err)
	token := mint(t, c, prefix+"keys", "501")
	require.NoError(t, esinspect.Refresh(url, conn.IndexPrefix))

	srv := serve(t, "--es-url", url, "--index-prefix", conn.IndexPrefix, "--quarantine-index", conn.QuarantineIndex,
		"--keys-index", prefix+"keys", "--rate-limit", "50")
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.addr+"/v1/events?action=job_*", nil)
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

	require.NoError(t, srv.stop())
	logs := srv.logs.String()
	assert.Regexp(t, `"status":200,"key":"[0-9a-f]{24}","access_event":"[0-9a-f-]{36}"`, logs, "the request log names the key and the event that recorded the access")
	assert.NotContains(t, logs, token[29:], "no secret in the server's log")
}

// The verifier keys are anyone's to fetch and pin: text/plain, one a line, both during a rotation.
func TestVerifierKeysAreServedToAnyone(t *testing.T) {
	url, prefix := estest.URL(t), estest.Prefix(t)
	_, oldKey, err := merkle.GenerateKey("audit.example.com")
	require.NoError(t, err)
	_, newKey, err := merkle.GenerateKey("audit.example.com")
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "verifier-keys")
	require.NoError(t, os.WriteFile(file, []byte("# rotating: the old key until 2027-01-01\n"+oldKey+"\n"+newKey+"\n"), 0o644))
	get := func(addr string) (*http.Response, string) {
		res, err := http.Get("http://" + addr + "/v1/verifier-keys")
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	common := []string{"--es-url", url, "--index-prefix", prefix + layout.DefaultPrefix, "--keys-index", prefix + "keys"}

	srv := serve(t, append(common, "--verifier-keys", file)...)
	res, body := get(srv.addr)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/plain; charset=utf-8", res.Header.Get("Content-Type"))
	assert.Equal(t, oldKey+"\n"+newKey+"\n", body)
	assert.Equal(t, []string{oldKey, newKey}, merkle.VerifierKeys([]byte(body)))
	require.NoError(t, srv.stop())

	srv = serve(t, common...)
	res, body = get(srv.addr)
	assert.Equal(t, http.StatusNotFound, res.StatusCode, body)
	require.NoError(t, srv.stop())
}

func TestFlagsAreChecked(t *testing.T) {
	badKeys := filepath.Join(t.TempDir(), "bad")
	require.NoError(t, os.WriteFile(badKeys, []byte("audit.example.com+00000000+AAAA\n"), 0o644))
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--rate-limit", "0"}, "--rate-limit"},
		{[]string{"--tls-cert", "x.pem"}, "--tls-key"},
		{[]string{"--keys-index", "audit-keys"}, "must not start with the audit indices' prefix"},
		{[]string{"--keys-index", "Keys"}, "lowercase"},
		{[]string{"--keys-index", ".keys"}, "must not start with"},
		{[]string{"--keys-index", "keys#1"}, "must not contain"},
		{[]string{"--index-prefix", "Audit-"}, "index_prefix"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--verifier-keys", "/nonexistent"}, "--verifier-keys"},
		{[]string{"--verifier-keys", badKeys}, `--verifier-keys: "audit.example.com+00000000+AAAA" is not a verifier key`},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"--listen", "127.0.0.1:0"}, c.args...), &out, nil)
		require.Error(t, err, c.args)
		assert.Contains(t, err.Error()+out.String(), c.msg, strings.Join(c.args, " "))
	}
}

// TestTLSAndTheCollectorsConfig: with --config the index names and the processor's catalog come
// from the collector's configuration; with --tls-cert and --tls-key it serves HTTPS.
func TestTLSAndTheCollectorsConfig(t *testing.T) {
	url, prefix := estest.URL(t), estest.Prefix(t)
	dir := t.TempDir()
	catalog := filepath.Join(dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(catalog, []byte("version: 1\nactions:\n  - {name: invoice_paid, category: billing, description: An invoice was paid}\n"), 0o600))
	config := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`
processors:
  audit:
    catalog: {file: %s, mode: extend}
exporters:
  auditelasticsearch:
    endpoints: [%s]
    index_prefix: %saudit-
    quarantine_index: %saudit-quarantine
`, catalog, url, prefix, prefix)), 0o600))
	certFile, keyFile, pool := selfSigned(t, dir)

	srv := serve(t, "--es-url", url, "--config", config, "--keys-index", prefix+"keys", "--tls-cert", certFile, "--tls-key", keyFile)
	base := "https://" + srv.addr
	assert.Contains(t, srv.logs.String(), `"index_prefix":"`+prefix+`audit-"`)

	c, err := query.New(query.Conn{URLs: []string{url}, IndexPrefix: prefix + "audit-", QuarantineIndex: prefix + "audit-quarantine", InstallTemplates: true})
	require.NoError(t, err)
	token := mint(t, c, prefix+"keys", "511")

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/actions", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", body)
	assert.Contains(t, string(body), `"invoice_paid"`, "the operator's catalog")
	assert.Contains(t, string(body), `"job_created"`, "extending the embedded one")
	_, err = http.Get(base + "/v1/openapi.json")
	assert.Error(t, err, "an untrusted certificate")
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "auditapi test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
