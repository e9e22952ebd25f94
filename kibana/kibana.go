// Package kibana ships the Kibana saved objects of the audit indices (saved_objects.ndjson: a data
// view, a saved search and a dashboard) and imports them through Kibana's saved objects API.
package kibana

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// Ids of the saved objects others link to.
const (
	DataViewID = "auditpipe-audit-events"
	SearchID   = "auditpipe-audit-search"
)

// DiscoverURL links to the saved search "Audit events" filtered to one team, over the last days.
// The team id must be valid (audit.CheckTeamID): it is written into the query unescaped for rison.
// A filter is a convenience for engineers, not a security boundary.
func DiscoverURL(kibanaURL, team string, days int) string {
	a := fmt.Sprintf("(query:(language:kuery,query:'team_id : \"%s\"'))", team)
	g := fmt.Sprintf("(time:(from:now-%dd,to:now))", days)
	return strings.TrimRight(kibanaURL, "/") + "/app/discover#/view/" + SearchID + "?_a=" + url.QueryEscape(a) + "&_g=" + url.QueryEscape(g)
}

// SavedObjects is saved_objects.ndjson, one saved object per line.
//
//go:embed saved_objects.ndjson
var SavedObjects []byte

// Auth is how to authenticate to Kibana: basic auth or an API key, or nothing.
type Auth struct {
	User, Password, APIKey string
}

// Import posts the saved objects to Kibana's _import API, overwriting objects with the same ids (the
// ids are stable, so importing again updates instead of duplicating). It returns how many objects
// Kibana imported.
func Import(ctx context.Context, kibanaURL string, auth Auth, objects []byte) (int, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreateFormFile("file", "saved_objects.ndjson")
	if err != nil {
		return 0, err
	}
	part.Write(objects)
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(kibanaURL, "/")+"/api/saved_objects/_import?overwrite=true", &body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("kbn-xsrf", "true")
	switch {
	case auth.APIKey != "":
		req.Header.Set("Authorization", "ApiKey "+auth.APIKey)
	case auth.User != "":
		req.SetBasicAuth(auth.User, auth.Password)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("Kibana at %s is unreachable: %w", kibanaURL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("Kibana answered %s: %s", res.Status, b)
	}
	var out struct {
		Success      bool            `json:"success"`
		SuccessCount int             `json:"successCount"`
		Errors       json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, err
	}
	if !out.Success {
		return out.SuccessCount, fmt.Errorf("Kibana imported %d objects, with errors: %s", out.SuccessCount, out.Errors)
	}
	return out.SuccessCount, nil
}
