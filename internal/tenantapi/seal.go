package tenantapi

// The signed log's endpoints (docs/integrity.md): the key's team's latest checkpoint, an event's
// inclusion proof, a consistency proof from an older size, and the bundle export. Each is recorded
// in the team's log as other reads are.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/seal"
)

// BundleContentType is a bundle's media type: NDJSON, of the bundle format (docs/integrity.md).
const BundleContentType = "application/x-auditpipe-bundle"

var consistencyParams = []param{{"from", 20, 1}}

// sealError maps the prover's errors to answers.
func (s *Server) sealError(what string, err error) *apiError {
	var re *seal.RangeError
	switch {
	case errors.Is(err, seal.ErrNotSealed):
		return &apiError{status: 404, code: "not_sealed", msg: "this team's log has no signed checkpoint yet; events are sealed within a minute of being stored", retryAfter: seal.DefaultInterval}
	case errors.Is(err, seal.ErrUnsealed):
		return &apiError{status: 404, code: "not_sealed", msg: err.Error(), retryAfter: seal.DefaultInterval}
	case errors.Is(err, query.ErrNoEvent):
		return &apiError{status: 404, code: "not_found", msg: "this team has no event with this id"}
	case errors.As(err, &re):
		return badParam("from", "%v", err)
	case errors.Is(err, seal.ErrTampered):
		s.log.Error("the signed log does not match the cluster", "what", what, "error", err)
		return &apiError{status: 500, code: "integrity_error", msg: "the stored events no longer match their signed log; the operator has been told"}
	}
	return s.unavailable(what, err)
}

func (s *Server) noSeal() *apiError {
	return &apiError{status: 404, code: "not_found", msg: "this server signs no logs"}
}

// checkpoint: GET /v1/checkpoint, the latest signed checkpoint note of the key's team.
func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request, _ url.Values, key *Key) *apiError {
	if s.cfg.Seal == nil {
		return s.noSeal()
	}
	id, e := s.recordAccess(r, key, audit.ActionAuditLogRead, map[string]any{"resource": "checkpoint"})
	if e != nil {
		return e
	}
	noteAccess(w, id)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	n, err := s.cfg.Seal.Checkpoint(ctx, key.TeamID)
	if err != nil {
		return s.sealError("reading the checkpoint", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(n)
	return nil
}

// proof: GET /v1/events/{id}/proof, the event's leaf index and inclusion proof in the latest checkpoint.
func (s *Server) proof(w http.ResponseWriter, r *http.Request, _ url.Values, key *Key) *apiError {
	if s.cfg.Seal == nil {
		return s.noSeal()
	}
	id := r.PathValue("id")
	if len(id) > audit.MaxIDBytes || !utf8.ValidString(id) || hasControl(id) {
		return badParam("id", "an event id is UTF-8 text of at most %d bytes", audit.MaxIDBytes)
	}
	readID, e := s.recordAccess(r, key, audit.ActionAuditLogRead, map[string]any{"resource": "inclusion_proof", "event_id": id})
	if e != nil {
		return e
	}
	noteAccess(w, readID)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	p, err := s.cfg.Seal.Proof(ctx, key.TeamID, id)
	if err != nil {
		return s.sealError("proving the event", err)
	}
	writeJSON(w, p)
	return nil
}

// consistency: GET /v1/checkpoint/consistency?from=<size>, proof that the latest checkpoint's tree
// extends the tree of its first from leaves.
func (s *Server) consistency(w http.ResponseWriter, r *http.Request, v url.Values, key *Key) *apiError {
	if s.cfg.Seal == nil {
		return s.noSeal()
	}
	from, err := strconv.ParseInt(v.Get("from"), 10, 64)
	if err != nil || from < 1 {
		return badParam("from", "%q: give the tree size of a checkpoint you hold, a positive integer", v.Get("from"))
	}
	id, e := s.recordAccess(r, key, audit.ActionAuditLogRead, map[string]any{"resource": "consistency_proof", "from": from})
	if e != nil {
		return e
	}
	noteAccess(w, id)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	c, err := s.cfg.Seal.ConsistencyFrom(ctx, key.TeamID, from)
	if err != nil {
		return s.sealError("proving consistency", err)
	}
	writeJSON(w, c)
	return nil
}

// exportBundle: GET /v1/export?format=bundle, the whole log as a bundle, recorded as a data_export
// before the first byte and after the last, as the other formats are.
func (s *Server) exportBundle(w http.ResponseWriter, r *http.Request, l listing, key *Key) *apiError {
	if s.cfg.Seal == nil {
		return s.noSeal()
	}
	if md := l.metadata(); len(md) > 0 {
		return badParam("format", "a bundle is the whole signed log: it takes no filters")
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	if _, err := s.cfg.Seal.Checkpoint(ctx, key.TeamID); err != nil {
		cancel()
		return s.sealError("reading the checkpoint", err)
	}
	cancel()
	h := w.Header()
	x := recorder.Export{
		Metadata: map[string]any{"format": "bundle"},
		Record:   s.recordExport(r, key),
		Started: func(startID string) {
			noteAccess(w, startID)
			h.Set("Content-Type", BundleContentType)
			h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="team-%s-auditlog.bundle.ndjson"`, key.TeamID))
			h.Set("Trailer", "X-Export-Events, X-Export-Status")
			w.WriteHeader(http.StatusOK)
		},
		Write: func(ctx context.Context, out io.Writer) (int64, error) {
			return s.cfg.Seal.WriteBundle(ctx, key.TeamID, out)
		},
	}
	return s.runExport(w, r, key, x)
}
