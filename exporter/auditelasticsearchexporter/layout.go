package auditelasticsearchexporter

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/auditpipe/auditpipe/internal/layout"
)

// The layout stage: where an event document goes. The rule itself is internal/layout's; this file
// applies it to an item and keeps the exporter from bringing back a partition the purge deleted.

// place sets the index, _id and routing of an event at t, or returns the problem code of an event
// the layout cannot take (past its retention, or too far in the future).
func (e *auditExporter) place(it *item, ev event, t, now time.Time) (code, detail string) {
	it.index = e.layout.Index(ev.teamID, t)
	it.eventID, it.hash = ev.id, ev.hash
	if code, detail := e.layout.Check(ev.teamID, t, now); code != "" {
		return code, detail
	}
	it.id = layout.DocID(ev.teamID, ev.id)
	it.routing = ev.teamID
	return "", ""
}

// createMissing creates the indices that items were refused for as missing: where automatic index
// creation is restricted, the exporter creates its indices itself (the templates apply as usual).
// An expired partition is never created again: it returns those, each with the reason its events
// cannot be stored any more.
func (e *auditExporter) createMissing(ctx context.Context, items []*item) (expired map[string]string) {
	done := map[string]bool{}
	for _, it := range items {
		if it.errType != "index_not_found_exception" || done[it.index] {
			continue
		}
		done[it.index] = true
		if p, ok := e.layout.Parse(it.index); ok {
			if at, gone := e.layout.Expired(p, e.now()); gone {
				if expired == nil {
					expired = map[string]string{}
				}
				expired[it.index] = fmt.Sprintf("partition %s expired at %s and was deleted", it.index, at.UTC().Format(time.RFC3339))
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
	return expired
}
