package auditelasticsearchexporter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exporterhelper/xexporterhelper"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter/internal/metadata"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// Outcomes of otelcol_exporter_audit_documents. There is no "failed": a record that is not stored
// yet stays with exporterhelper, which retries it.
const (
	outcomeIndexed     = "indexed"
	outcomeDuplicate   = "duplicate"
	outcomeQuarantined = "quarantined"
	outcomeIgnored     = "ignored"
)

type auditExporter struct {
	cfg       *Config
	layout    *layout.Layout
	set       exporter.Settings
	catalog   *audit.Catalog
	telemetry *metadata.TelemetryBuilder
	es        *elasticsearch.Client
	http      *http.Client
	host      component.Host
	now       func() time.Time
	bufs      sync.Pool
	// templatesOK is set once the templates are known to be installed.
	templatesOK atomic.Bool
	// stopPurge ends the retention loop (retention.go).
	stopPurge context.CancelFunc
	purgeDone chan struct{}
}

func newExporter(set exporter.Settings, cfg *Config) (*auditExporter, error) {
	lay, err := cfg.layout()
	if err != nil {
		return nil, err
	}
	catalog, err := cfg.Catalog.Load()
	if err != nil {
		return nil, err
	}
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &auditExporter{
		cfg: cfg, layout: lay, set: set, catalog: catalog, telemetry: tb, now: time.Now,
		bufs: sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }},
	}, nil
}

func (e *auditExporter) start(ctx context.Context, host component.Host) error {
	e.host = host
	hc, err := e.cfg.ToClient(ctx, host.GetExtensions(), e.set.TelemetrySettings)
	if err != nil {
		return err
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: e.cfg.endpoints(),
		Username:  e.cfg.User,
		Password:  string(e.cfg.Password),
		APIKey:    string(e.cfg.APIKey),
		Transport: hc.Transport,
		// Retries belong to the exporter (per item) and to exporterhelper (per request).
		DisableRetry: true,
	})
	if err != nil {
		return err
	}
	e.es, e.http = es, hc
	if e.cfg.Template.Install {
		// A cluster that is down at start must not stop the collector: the sending queue keeps the
		// data, and the templates are installed before the first export that reaches the cluster.
		if err := e.installTemplates(ctx); err != nil {
			e.set.Logger.Warn("index templates not installed yet; will retry before exporting", zap.Error(err))
			componentstatus.ReportStatus(host, componentstatus.NewRecoverableErrorEvent(err))
		}
	}
	e.startPurge()
	return nil
}

var errTemplatesPending = errors.New("index templates not installed")

func (e *auditExporter) installTemplates(ctx context.Context) error {
	installed, err := ensureTemplates(ctx, e.es, e.cfg.templates(e.layout))
	if err != nil {
		return err
	}
	// A template applies to new indices only: existing partitions and the quarantine index gain the
	// fields of this version they lack here, or their strict mappings would refuse the new documents.
	if err := addMissingFields(ctx, e.es, e.layout.PartitionPatterns(), document.EventFields()); err != nil {
		return err
	}
	if err := addMissingFields(ctx, e.es, []string{e.cfg.QuarantineIndex}, document.QuarantineFields()); err != nil {
		return err
	}
	if len(installed) > 0 {
		e.set.Logger.Info("installed index templates", zap.Strings("templates", installed))
	}
	e.templatesOK.Store(true)
	return nil
}

func (e *auditExporter) shutdown(context.Context) error {
	e.stopPurgeLoop()
	if e.http != nil {
		e.http.CloseIdleConnections()
	}
	if e.telemetry != nil {
		e.telemetry.Shutdown()
	}
	return nil
}

// item is one document of an export and where it goes. It is what the sending queue holds (queue.go).
type item struct {
	index   string
	id      string // the document _id
	routing string // the team of an event document
	eventID string // event.id
	hash    string // event.hash of an event document
	doc     []byte
	q       *document.Quarantine // set for a quarantine document
	// what Elasticsearch said of a refused document, and the hash stored under its id on a conflict
	errType, errReason string
	storedHash         string
}

// convert encodes a batch of records into their documents, before the sending queue: an event
// document in its partition, or a quarantine document with the reason. It never fails; a record that
// is not an audit record is counted and left out.
func (e *auditExporter) convert(ctx context.Context, ld plog.Logs) (xexporterhelper.Request, error) {
	ingested := e.now()
	n := ld.LogRecordCount()
	all := make([]item, n) // one allocation for the batch's items
	items := make([]*item, 0, n)
	ignored := 0
	// One arena for every document of the batch: each item's doc is a capped slice of it.
	arena := make([]byte, 0, 1024*n)
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				it := &all[len(items)+ignored]
				var ok bool
				if ok, arena = e.prepare(it, source{rl.Resource(), sl.Scope(), lr}, ingested, arena); !ok {
					ignored++
					continue
				}
				items = append(items, it)
			}
		}
	}
	if ignored > 0 {
		e.count(ctx, outcomeIgnored, ignored)
	}
	return newDocsRequest(items), nil
}

// push exports one request of documents. Every document ends indexed, a verified duplicate of an
// indexed one, or quarantined; the documents that cannot reach one of those yet (the cluster is down,
// blocked or full) go back to exporterhelper in a retryable error (notStored), which retries exactly
// those. No path returns a permanent error: the collector would drop the data.
func (e *auditExporter) push(ctx context.Context, req xexporterhelper.Request) error {
	r, ok := req.(*docsRequest)
	if !ok {
		return fmt.Errorf("cannot export a %T as audit documents", req)
	}
	if e.cfg.Template.Install && !e.templatesOK.Load() {
		if err := e.installTemplates(ctx); err != nil {
			e.reportError(err)
			return &notStored{items: r.items, err: fmt.Errorf("%w: %v", errTemplatesPending, err)}
		}
	}
	now := e.now()
	e.quarantinePurged(r.items, now)
	failed, err := e.deliver(ctx, r.items, now)
	if err == nil {
		componentstatus.ReportStatus(e.host, componentstatus.NewEvent(componentstatus.StatusOK))
		return nil
	}
	e.reportError(err)
	return &notStored{items: failed, err: err}
}

func (e *auditExporter) reportError(err error) {
	if e.host != nil {
		componentstatus.ReportStatus(e.host, componentstatus.NewRecoverableErrorEvent(err))
	}
}

// prepare turns a record into its document in it: an event document in the team's partition, or a
// quarantine document. It returns false for a record that is not an audit record.
func (e *auditExporter) prepare(it *item, src source, ingested time.Time, arena []byte) (bool, []byte) {
	lr := src.lr
	status, ok := lr.Attributes().Get(audit.AttrStatus)
	if !ok {
		return false, arena
	}
	if status.Str() != audit.StatusValid {
		var reasons []string
		if p, ok := lr.Attributes().Get(audit.AttrProblems); ok && p.Type() == pcommon.ValueTypeSlice {
			for _, r := range p.Slice().All() {
				reasons = append(reasons, r.AsString())
			}
		}
		if len(reasons) == 0 {
			reasons = []string{audit.FormatProblem(reasonNotNormalized, fmt.Sprintf("audit.status is %q", status.AsString()))}
		}
		e.toQuarantine(it, document.Quarantine{Stage: stageValidation, Reasons: reasons}, src, ingested)
		return true, arena
	}
	ev, reason, detail := e.readEvent(lr)
	if reason != "" {
		e.toQuarantine(it, document.Quarantine{Stage: stageValidation, Reasons: []string{audit.FormatProblem(reason, detail)}}, src, ingested)
		return true, arena
	}
	if code, detail := e.place(it, &ev, lr.Timestamp().AsTime(), ingested); code != "" {
		e.toQuarantine(it, document.Quarantine{Stage: stageValidation, Reasons: []string{audit.FormatProblem(code, detail)}, TeamID: ev.TeamID, Index: it.index}, src, ingested)
		return true, arena
	}
	ev.Service, ev.Ingested = strField(src.res.Attributes(), "service.name"), ingested
	start := len(arena)
	arena = document.AppendEvent(arena, &ev)
	it.doc = arena[start:len(arena):len(arena)]
	if len(it.doc) > e.cfg.MaxDocumentBytes {
		detail := fmt.Sprintf("the document is %d bytes, max_document_bytes is %d", len(it.doc), e.cfg.MaxDocumentBytes)
		e.toQuarantine(it, document.Quarantine{Stage: stageValidation, Reasons: []string{audit.FormatProblem(reasonDocumentTooBig, detail)}, TeamID: ev.TeamID, Index: it.index}, src, ingested)
		arena = arena[:start] // the oversized document is not kept
	}
	return true, arena
}

// deliver sends the items and follows each to its end: stored, verified duplicate, or quarantined.
// Conditions of the cluster are retried here with backoff up to item_retry.max_attempts; the items
// still waiting then are returned with the error, for exporterhelper to retry later.
func (e *auditExporter) deliver(ctx context.Context, items []*item, ingested time.Time) ([]*item, error) {
	pending := items
	attempt := 0
	for len(pending) > 0 {
		r := e.bulk(ctx, pending)
		e.countStored(ctx, r.stored)
		next := r.retry
		waiting := len(r.retry) // documents held back by a condition of the cluster
		e.createMissing(ctx, r.retry)
		var dups, events []*item
		for _, it := range r.conflict {
			if it.q != nil {
				// A quarantine _id is a hash of the team and the record: this record is quarantined.
				dups = append(dups, it)
			} else {
				events = append(events, it)
			}
		}
		if len(events) > 0 {
			d, differ, unverified, err := e.verify(ctx, events)
			dups = append(dups, d...)
			for _, it := range differ {
				e.quarantineRefused(it, document.Quarantine{
					Stage:   stageIndexing,
					Reasons: []string{audit.FormatProblem(audit.ProblemIDConflict, fmt.Sprintf("event id %q is stored with hash %s; this event has hash %s", it.eventID, it.storedHash, it.hash))},
					Index:   it.index, Hash: it.hash, StoredHash: it.storedHash,
				}, ingested)
				next = append(next, it)
			}
			if len(unverified) > 0 {
				next, waiting = append(next, unverified...), waiting+len(unverified)
				if err != nil {
					r.err = err
				}
			}
		}
		e.countDuplicates(ctx, dups)
		for _, it := range r.reject {
			if it.q != nil {
				// The quarantine is the last stop: a refused quarantine document is retried like any
				// other, never dropped, and the operator is told.
				e.set.Logger.Error("the quarantine index refused a document; retrying it",
					zap.String("index", it.index), zap.String("id", it.id), zap.String("error_type", it.errType), zap.String("reason", audit.Truncate(it.errReason, 512)))
				next, waiting = append(next, it), waiting+1
				r.err = fmt.Errorf("the quarantine index %s refused a document: %s: %s", it.index, it.errType, audit.Truncate(it.errReason, 512))
				continue
			}
			e.quarantineRefused(it, document.Quarantine{
				Stage: stageIndexing, Reasons: []string{audit.FormatProblem(reasonRejected, it.errType)},
				ErrorType: it.errType, ErrorReason: it.errReason, Index: it.index,
			}, ingested)
			next = append(next, it)
		}
		if waiting == 0 {
			pending = next // only new quarantine documents: send them at once
			continue
		}
		attempt++
		if r.err == nil {
			r.err = retryError(next)
		}
		if attempt >= e.cfg.ItemRetry.MaxAttempts {
			if r.throttle > 0 {
				return next, exporterhelper.NewThrottleRetry(r.err, r.throttle)
			}
			return next, r.err
		}
		e.telemetry.ExporterAuditRetried.Add(ctx, int64(waiting))
		if err := sleep(ctx, max(backoff(e.cfg.ItemRetry, attempt), r.throttle)); err != nil {
			return next, err
		}
		pending = next
	}
	return nil, nil
}

// retryError describes the documents still waiting after a pass, by the first one's error.
func retryError(items []*item) error {
	for _, it := range items {
		if it.errType != "" {
			return fmt.Errorf("%d documents not stored yet; %s in %s: %s: %s", len(items), it.id, it.index, it.errType, audit.Truncate(it.errReason, 512))
		}
	}
	return fmt.Errorf("%d documents not stored yet", len(items))
}

// backoff is the delay before retry number attempt: exponential, capped, with full jitter in its
// upper half so that many exporters do not retry in step.
func backoff(c ItemRetryConfig, attempt int) time.Duration {
	d := c.InitialInterval << (attempt - 1)
	if d > c.MaxInterval || d <= 0 {
		d = c.MaxInterval
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// countStored counts the documents Elasticsearch wrote: events indexed, records quarantined.
func (e *auditExporter) countStored(ctx context.Context, items []*item) {
	indexed, quarantined := 0, 0
	for _, it := range items {
		if it.q != nil {
			quarantined++
			e.countQuarantine(ctx, it.q)
		} else {
			indexed++
		}
	}
	e.count(ctx, outcomeIndexed, indexed)
	e.count(ctx, outcomeQuarantined, quarantined)
}

// countDuplicates counts documents stored before: events verified by hash, quarantine documents by
// their content-derived id.
func (e *auditExporter) countDuplicates(ctx context.Context, items []*item) {
	dup, quarantined := 0, 0
	for _, it := range items {
		if it.q != nil {
			quarantined++
		} else {
			dup++
		}
	}
	e.count(ctx, outcomeDuplicate, dup)
	e.count(ctx, outcomeQuarantined, quarantined)
}

func (e *auditExporter) count(ctx context.Context, outcome string, n int) {
	if n == 0 {
		return
	}
	e.telemetry.ExporterAuditDocuments.Add(ctx, int64(n), metric.WithAttributes(attribute.String("outcome", outcome)))
}

func (e *auditExporter) countQuarantine(ctx context.Context, q *document.Quarantine) {
	for _, r := range q.Reasons {
		e.telemetry.ExporterAuditQuarantined.Add(ctx, 1, metric.WithAttributes(
			attribute.String("reason", audit.ProblemCode(r)), attribute.String("stage", q.Stage)))
	}
}
