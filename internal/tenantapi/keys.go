// Package tenantapi is the audit log API customers use to read and export their own team's log, and
// the team-scoped keys it accepts. cmd/auditapi serves it; `auditctl keys` mints and revokes keys.
package tenantapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// Scopes a key may hold.
const (
	ScopeRead   = "read"   // list and show events, and the catalog
	ScopeExport = "export" // export the whole log as CSV or NDJSON
)

// Key is a stored key, without its secret.
type Key struct {
	ID        string     `json:"-"`
	TeamID    string     `json:"team_id"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	Hash      string     `json:"hash"` // hex SHA-256 of the secret
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	RevokedBy string     `json:"revoked_by,omitempty"`
}

// Has tells whether the key holds a scope.
func (k *Key) Has(scope string) bool { return slices.Contains(k.Scopes, scope) }

// Actor is how the key appears in its team's log.
func (k *Key) Actor() audit.Actor {
	return audit.Actor{Type: audit.ActorSystem, ID: k.ID, Metadata: map[string]any{"kind": "audit_api_key", "name": k.Name}}
}

// keysMapping keeps the keys index to this exact shape. The hash is not searchable: a key is found
// by its id, the hash only compared.
const keysMapping = `{"dynamic":"strict","properties":{
  "team_id":{"type":"keyword"},"name":{"type":"keyword","ignore_above":256},"scopes":{"type":"keyword"},
  "hash":{"type":"keyword","index":false,"doc_values":false},
  "created_at":{"type":"date"},"created_by":{"type":"keyword"},"expires_at":{"type":"date"},
  "revoked_at":{"type":"date"},"revoked_by":{"type":"keyword"}}}`

// KeysIndexFlag declares --keys-index, the index of the keys (AUDIT_KEYS_INDEX), for the server and
// for the tool that mints keys alike.
func KeysIndexFlag(fs *flag.FlagSet) *string {
	return fs.String("keys-index", recorder.Env("AUDIT_KEYS_INDEX", layout.DefaultKeysIndex), "index of the API keys (AUDIT_KEYS_INDEX)")
}

// Keys stores keys in an index of their own, next to the audit indices.
type Keys struct {
	es    *query.Client
	index string
}

// NewKeys uses the index (layout.DefaultKeysIndex unless configured), which must not fall under
// the audit indices' pattern: a reader of team events would read the keys.
func NewKeys(es *query.Client, index string) (*Keys, error) {
	if err := layout.CheckIndexName(index); err != nil {
		return nil, fmt.Errorf("keys index: %w", err)
	}
	if strings.HasPrefix(index, es.Layout().Prefix()) {
		return nil, fmt.Errorf("keys index %q: must not start with the audit indices' prefix %q", index, es.Layout().Prefix())
	}
	return &Keys{es: es, index: index}, nil
}

// A token is "apk_" + the key id (24 hex digits) + "_" + the secret (32 random bytes, base64url).
const (
	tokenPrefix = "apk_"
	idLen       = 24
	secretLen   = 43
	tokenLen    = len(tokenPrefix) + idLen + 1 + secretLen
)

// NewSpec is what a new key is made of.
type NewSpec struct {
	Team     string
	Scopes   []string
	Name     string
	Expires  time.Duration // 0: never
	Operator string        // who creates it, recorded in the team's log
}

// MaxKeyName bounds a key's name.
const MaxKeyName = 200

// Create mints a key and returns its token, which exists nowhere else: only its hash is stored. The
// creation is recorded in the team's log first, so no key exists that its team's log does not show.
func (k *Keys) Create(ctx context.Context, rec *recorder.Recorder, s NewSpec) (token string, key Key, err error) {
	if err := audit.CheckTeamID(s.Team); err != nil {
		return "", Key{}, fmt.Errorf("team %w", err)
	}
	if len(s.Scopes) == 0 {
		return "", Key{}, errors.New("a key needs a scope: read, export or both")
	}
	scopes := []string{}
	for _, sc := range s.Scopes {
		if sc != ScopeRead && sc != ScopeExport {
			return "", Key{}, fmt.Errorf("scope %q: use read or export", sc)
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	if s.Expires < 0 {
		return "", Key{}, errors.New("expires must be positive (or 0 for a key that does not expire)")
	}
	if len(s.Name) > MaxKeyName {
		return "", Key{}, fmt.Errorf("name is %d bytes long, the limit is %d", len(s.Name), MaxKeyName)
	}
	if s.Operator == "" {
		return "", Key{}, errors.New("the operator is required: keys are recorded in the team's log")
	}
	var raw [12 + 32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Key{}, err
	}
	id := hex.EncodeToString(raw[:12])
	secret := base64.RawURLEncoding.EncodeToString(raw[12:])
	now := time.Now().UTC().Truncate(time.Millisecond)
	key = Key{ID: id, TeamID: s.Team, Name: s.Name, Scopes: scopes, Hash: hashSecret(secret), CreatedAt: now, CreatedBy: s.Operator}
	md := map[string]any{"name": s.Name, "scopes": scopes, "expires_at": nil}
	if s.Expires > 0 {
		exp := now.Add(s.Expires)
		key.ExpiresAt = &exp
		md["expires_at"] = exp.Format(time.RFC3339)
	}
	if _, err := rec.Record(ctx, audit.Event{
		Action: audit.ActionAuditAPIKeyCreated, TeamID: s.Team, Actor: auditlog.User(s.Operator, "", ""),
		Targets: []audit.Target{{Type: "audit_api_key", ID: id}}, Metadata: md,
	}); err != nil {
		return "", Key{}, fmt.Errorf("recording the key in the team's log failed, so no key was created: %w", err)
	}
	err = k.ensureIndex(ctx)
	if err == nil {
		body, _ := json.Marshal(key)
		err = k.es.Do(ctx, esapi.CreateRequest{Index: k.index, DocumentID: id, Body: bytes.NewReader(body), Refresh: "wait_for"}, nil)
	}
	if err != nil {
		return "", Key{}, fmt.Errorf("the team's log records key %s as created, but storing it failed, so it does not exist: %w", id, err)
	}
	return tokenPrefix + id + "_" + secret, key, nil
}

// tokenSecret finds the secret part of anything shaped like a token (a "_" may be escaped as %5F).
var tokenSecret = regexp.MustCompile(`(apk(?:_|%5[Ff])[0-9a-fA-F]{24}(?:_|%5[Ff]))[A-Za-z0-9_%-]+`)

// redactTokens hides the secrets of tokens in s, for logs.
func redactTokens(s string) string { return tokenSecret.ReplaceAllString(s, "${1}REDACTED") }

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ensureIndex creates the keys index on first use.
func (k *Keys) ensureIndex(ctx context.Context) error {
	body := `{"settings":{"index":{"number_of_shards":1,"auto_expand_replicas":"0-1"}},"mappings":` + keysMapping + `}`
	err := k.es.Do(ctx, esapi.IndicesCreateRequest{Index: k.index, Body: strings.NewReader(body)}, nil)
	if err != nil && !(query.IsStatus(err, http.StatusBadRequest) && strings.Contains(err.Error(), "resource_already_exists_exception")) {
		return fmt.Errorf("creating the keys index %s: %w", k.index, err)
	}
	return nil
}

// get reads a key by id (a realtime get: a key works as soon as it is created); ok is false for none.
func (k *Keys) get(ctx context.Context, id string) (key Key, ok bool, err error) {
	var doc struct {
		Found  bool `json:"found"`
		Source Key  `json:"_source"`
	}
	err = k.es.Do(ctx, esapi.GetRequest{Index: k.index, DocumentID: url.PathEscape(id)}, &doc)
	if errors.Is(err, query.ErrNoTeam) || query.IsStatus(err, http.StatusNotFound) {
		return Key{}, false, nil // no keys index yet, or no such key
	}
	if err != nil || !doc.Found {
		return Key{}, false, err
	}
	doc.Source.ID = id
	return doc.Source, true, nil
}

// List returns a team's keys, oldest first.
func (k *Keys) List(ctx context.Context, team string) ([]Key, error) {
	if err := audit.CheckTeamID(team); err != nil {
		return nil, fmt.Errorf("team %w", err)
	}
	body, _ := json.Marshal(map[string]any{
		"size": 10000, "query": map[string]any{"term": map[string]any{"team_id": team}},
		"sort": []any{map[string]any{"created_at": "asc"}},
	})
	var res struct {
		Hits struct {
			Hits []struct {
				ID     string `json:"_id"`
				Source Key    `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	err := k.es.Do(ctx, esapi.SearchRequest{Index: []string{k.index}, Body: bytes.NewReader(body)}, &res)
	if errors.Is(err, query.ErrNoTeam) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys := make([]Key, len(res.Hits.Hits))
	for i, h := range res.Hits.Hits {
		keys[i] = h.Source
		keys[i].ID = h.ID
	}
	return keys, nil
}

// Revoke revokes a team's key, recording it in the team's log first. A key of another team is
// unknown here.
func (k *Keys) Revoke(ctx context.Context, rec *recorder.Recorder, team, id, operator string) (Key, error) {
	if err := audit.CheckTeamID(team); err != nil {
		return Key{}, fmt.Errorf("team %w", err)
	}
	if operator == "" {
		return Key{}, errors.New("the operator is required: revocations are recorded in the team's log")
	}
	key, ok, err := k.get(ctx, id)
	if err != nil {
		return Key{}, err
	}
	if !ok || key.TeamID != team {
		return Key{}, fmt.Errorf("team %s has no key %q", team, id)
	}
	if key.RevokedAt != nil {
		return key, fmt.Errorf("key %s was revoked already, at %s by %s", id, key.RevokedAt.Format(time.RFC3339), key.RevokedBy)
	}
	if _, err := rec.Record(ctx, audit.Event{
		Action: audit.ActionAuditAPIKeyRevoked, TeamID: team, Actor: auditlog.User(operator, "", ""),
		Targets: []audit.Target{{Type: "audit_api_key", ID: id}}, Metadata: map[string]any{"name": key.Name},
	}); err != nil {
		return Key{}, fmt.Errorf("recording the revocation in the team's log failed, so the key was not revoked: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	key.RevokedAt, key.RevokedBy = &now, operator
	body, _ := json.Marshal(map[string]any{"doc": map[string]any{"revoked_at": now, "revoked_by": operator}})
	if err := k.es.Do(ctx, esapi.UpdateRequest{Index: k.index, DocumentID: id, Body: bytes.NewReader(body), Refresh: "wait_for"}, nil); err != nil {
		return Key{}, fmt.Errorf("revoking the key: %w", err)
	}
	return key, nil
}

// Authentication failures, each a 401 whose message says which.
var (
	ErrNoToken      = errors.New("an Authorization: Bearer <key> header is required")
	ErrUnknownToken = errors.New("the key is not valid")
	ErrRevoked      = errors.New("the key was revoked")
	ErrExpired      = errors.New("the key has expired")
)

// Authenticate returns the key a bearer token belongs to. The secret's hash is compared in constant
// time; a malformed token never reaches Elasticsearch.
func (k *Keys) Authenticate(ctx context.Context, token string, now time.Time) (Key, error) {
	if len(token) != tokenLen || !strings.HasPrefix(token, tokenPrefix) || token[len(tokenPrefix)+idLen] != '_' {
		return Key{}, ErrUnknownToken
	}
	id, secret := token[len(tokenPrefix):len(tokenPrefix)+idLen], token[len(tokenPrefix)+idLen+1:]
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return Key{}, ErrUnknownToken
	}
	key, ok, err := k.get(ctx, id)
	if err != nil {
		return Key{}, err
	}
	if !ok || subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(key.Hash)) != 1 || audit.CheckTeamID(key.TeamID) != nil {
		return Key{}, ErrUnknownToken
	}
	if key.RevokedAt != nil {
		return Key{}, ErrRevoked
	}
	if key.ExpiresAt != nil && !now.Before(*key.ExpiresAt) {
		return Key{}, ErrExpired
	}
	return key, nil
}
