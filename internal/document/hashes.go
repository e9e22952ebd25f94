package document

// Hashes reads back the event.hash Elasticsearch holds under document ids: what tells a redelivery
// of a stored event from a different event under the same id. The exporter asks it of every 409,
// the quarantine replay of every record it re-drove; one _mget answers a whole batch.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// Ref names one document.
type Ref struct {
	Index, ID, Routing string // Routing empty: none
}

// Doc is what the cluster answered for one Ref: found, with the event.hash and event.ingested
// stored under it (empty for a document without them); not found; or, with ErrorType, nothing
// either way (a shard could not answer, or the index is missing).
type Doc struct {
	Found     bool
	Hash      string
	Ingested  string
	ErrorType string
}

// Hashes reads the stored event.hash (and event.ingested) of every ref in one _mget, in the order
// of refs.
func Hashes(ctx context.Context, es *elasticsearch.Client, refs []Ref) ([]Doc, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	var b []byte
	b = append(b, `{"docs":[`...)
	for i, r := range refs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"_index":`...)
		b = pjson.AppendString(b, r.Index)
		b = append(b, `,"_id":`...)
		b = pjson.AppendString(b, r.ID)
		if r.Routing != "" {
			b = append(b, `,"routing":`...)
			b = pjson.AppendString(b, r.Routing)
		}
		b = append(b, `,"_source":["`+EventHash+`","`+EventIngested+`"]}`...)
	}
	b = append(b, `]}`...)
	res, err := es.Mget(bytes.NewReader(b), es.Mget.WithContext(ctx), es.Mget.WithFilterPath("docs.found,docs._source,docs.error.type"))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("_mget: %d: %s (%v)", res.StatusCode, audit.Truncate(string(raw), 512), err)
	}
	var mr struct {
		Docs []struct {
			Found  bool `json:"found"`
			Source struct {
				Event struct {
					Hash     string `json:"hash"`
					Ingested string `json:"ingested"`
				} `json:"event"`
			} `json:"_source"`
			Error *struct {
				Type string `json:"type"`
			} `json:"error"`
		} `json:"docs"`
	}
	if err := json.Unmarshal(raw, &mr); err != nil || len(mr.Docs) != len(refs) {
		return nil, fmt.Errorf("_mget: %d answers for %d documents (%v)", len(mr.Docs), len(refs), err)
	}
	out := make([]Doc, len(refs))
	for i, d := range mr.Docs {
		out[i] = Doc{Found: d.Found, Hash: d.Source.Event.Hash, Ingested: d.Source.Event.Ingested}
		if d.Error != nil {
			out[i].ErrorType = d.Error.Type
			if out[i].ErrorType == "" {
				out[i].ErrorType = "error"
			}
		}
	}
	return out, nil
}
