package auditelasticsearchexporter

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// The layout stage: where an event document goes. The rule itself is internal/shared/layout's; this file
// applies it to an item and keeps the exporter from bringing back a partition the purge deleted.

// place sets the index, _id and routing of an event at t, or returns the problem code of an event
// the layout cannot take (past its retention, or too far in the future).
func (e *auditExporter) place(it *item, ev *document.Input, t, now time.Time) (code, detail string) {
	it.index = e.layout.Index(ev.TeamID, t)
	it.eventID, it.hash = ev.ID, ev.Hash
	if code, detail := e.layout.Check(ev.TeamID, t, now); code != "" {
		return code, detail
	}
	it.id = layout.DocID(ev.TeamID, ev.ID)
	it.routing = ev.TeamID
	return "", ""
}

// quarantinePurged quarantines the events of items whose partition may have been purged by now. The
// layout's checks ran when an event arrived; one that waited in the queue until its partition expired
// (and the grace after it) must not be written, or automatic index creation would bring the deleted
// partition back.
func (e *auditExporter) quarantinePurged(items []*item, now time.Time) {
	var gone map[string]string // partition → why it is gone, "" while it is not
	for _, it := range items {
		if it.q != nil {
			continue
		}
		if gone == nil {
			gone = map[string]string{}
		}
		detail, seen := gone[it.index]
		if !seen {
			if p, ok := e.layout.Parse(it.index); ok {
				if at, expired := e.layout.Expired(p, now); expired {
					detail = fmt.Sprintf("partition %s expired at %s and may be deleted", it.index, at.UTC().Format(time.RFC3339))
				}
			}
			gone[it.index] = detail
		}
		if detail != "" {
			e.quarantineRefused(it, document.Quarantine{Stage: stageIndexing, Reasons: []string{audit.FormatProblem(layout.ProblemExpired, detail)}, Index: it.index}, now)
		}
	}
}

// createMissing creates the indices that items were refused for as missing: where automatic index
// creation is restricted, the exporter creates its indices itself (the templates apply as usual).
// An expired partition is never created again.
func (e *auditExporter) createMissing(ctx context.Context, items []*item) {
	done := map[string]bool{}
	for _, it := range items {
		if it.errType != "index_not_found_exception" || done[it.index] {
			continue
		}
		done[it.index] = true
		if p, ok := e.layout.Parse(it.index); ok {
			if _, expired := e.layout.Expired(p, e.now()); expired {
				continue
			}
		}
		res, err := e.es.Indices.Create(it.index, e.es.Indices.Create.WithContext(ctx))
		if err != nil {
			continue
		}
		res.Body.Close()
		if res.IsError() && res.StatusCode != http.StatusBadRequest { // 400: it exists by now
			e.set.Logger.Warn("could not create a missing index", zap.String("index", it.index), zap.String("status", res.Status()))
		}
	}
}
