package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

func TestSealKeygenWritesTheSignerAndPrintsTheVerifierFirst(t *testing.T) {
	out := filepath.Join(t.TempDir(), "seal.key")
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"seal", "keygen", "--name", "audit.example.com", "--out", out}, &stdout, &stderr))
	verifier, _, _ := strings.Cut(stdout.String(), "\n")
	assert.True(t, strings.HasPrefix(verifier, "audit.example.com+"), verifier)
	assert.Contains(t, stderr.String(), out)

	st, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	skey, err := os.ReadFile(out)
	require.NoError(t, err)
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	require.NoError(t, err)

	// The pair signs and verifies a checkpoint.
	c := merkle.Checkpoint{Origin: merkle.Origin("audit.example.com", "191796"), Size: 0, Root: merkle.Root(nil)}
	msg, err := merkle.Sign(c, signer)
	require.NoError(t, err)
	got, _, err := merkle.Open(msg, merkle.VerifierKeys(stdout.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, c, got)

	// An existing key is never overwritten.
	err = run(context.Background(), []string{"seal", "keygen", "--name", "audit.example.com", "--out", out}, &stdout, &stderr)
	assert.ErrorContains(t, err, "--out")
	again, _ := os.ReadFile(out)
	assert.Equal(t, skey, again)
}

func TestSealKeygenRefusesBadNames(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]string{"": "--name is required", "a+b": "--name", "audit.example.com/x": "--name", "a b": "--name"} {
		err := run(context.Background(), []string{"seal", "keygen", "--name", name, "--out", filepath.Join(dir, "k")}, new(bytes.Buffer), new(bytes.Buffer))
		assert.ErrorContains(t, err, want, "%q", name)
	}
	assert.ErrorContains(t, run(context.Background(), []string{"seal"}, new(bytes.Buffer), new(bytes.Buffer)), "usage: auditctl seal keygen")
	_, err := os.Stat(filepath.Join(dir, "k"))
	assert.True(t, os.IsNotExist(err), "no key file is left behind")
}
