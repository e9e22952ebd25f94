package auditelasticsearchexporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter/internal/metadata"
	"github.com/auditpipe/auditpipe/internal/canonical"
	"github.com/auditpipe/auditpipe/internal/pjson"
)

// Outcomes of otelcol_exporter_audit_documents.
const (
	outcomeIndexed     = "indexed"
	outcomeDuplicate   = "duplicate"
	outcomeQuarantined = "quarantined"
	outcomeFailed      = "failed"
	outcomeIgnored     = "ignored"
)

type auditExporter struct {
	cfg       *Config
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
}

func newExporter(set exporter.Settings, cfg *Config) (*auditExporter, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &auditExporter{
		cfg: cfg, set: set, catalog: audit.DefaultCatalog(), telemetry: tb, now: time.Now,
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
	return nil
}

var errTemplatesPending = errors.New("index templates not installed")

func (e *auditExporter) installTemplates(ctx context.Context) error {
	installed, err := ensureTemplates(ctx, e.es, e.cfg.templates())
	if err != nil {
		return err
	}
	if len(installed) > 0 {
		e.set.Logger.Info("installed index templates", zap.Strings("templates", installed))
	}
	e.templatesOK.Store(true)
	return nil
}

func (e *auditExporter) shutdown(context.Context) error {
	if e.http != nil {
		e.http.CloseIdleConnections()
	}
	if e.telemetry != nil {
		e.telemetry.Shutdown()
	}
	return nil
}

// item is one document of an export: where it goes and which record it came from.
type item struct {
	rl        plog.ResourceLogs
	sl        plog.ScopeLogs
	lr        plog.LogRecord
	index, id string
	doc       []byte
	q         *quarantine // set for a quarantine document
	// the error of a rejected document
	errType, errReason string
}

// pushLogs exports one batch. Every audit record ends indexed, a duplicate of an indexed one,
// quarantined, or in the error returned to exporterhelper, which retries exactly those records.
func (e *auditExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	if e.cfg.Template.Install && !e.templatesOK.Load() {
		if err := e.installTemplates(ctx); err != nil {
			e.reportError(err)
			return fmt.Errorf("%w: %v", errTemplatesPending, err)
		}
	}
	ingested := e.now()
	items := make([]*item, 0, ld.LogRecordCount())
	ignored := 0
	// One arena for every document of the batch: each item's doc is a capped slice of it.
	arena := make([]byte, 0, 1024*ld.LogRecordCount())
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				var it *item
				it, arena = e.prepare(rl, sl, lr, ingested, arena)
				if it == nil {
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
	failed, err := e.deliver(ctx, items, ingested)
	if err == nil {
		componentstatus.ReportStatus(e.host, componentstatus.NewEvent(componentstatus.StatusOK))
		return nil
	}
	e.reportError(err)
	if len(failed) == 0 {
		return err
	}
	return consumererror.NewLogs(err, toLogs(failed))
}

func (e *auditExporter) reportError(err error) {
	if e.host != nil {
		componentstatus.ReportStatus(e.host, componentstatus.NewRecoverableErrorEvent(err))
	}
}

// prepare turns a record into its document: an event document in the team's index, or a quarantine
// document. It returns nil for a record that is not an audit record.
func (e *auditExporter) prepare(rl plog.ResourceLogs, sl plog.ScopeLogs, lr plog.LogRecord, ingested time.Time, arena []byte) (*item, []byte) {
	status, ok := lr.Attributes().Get(audit.AttrStatus)
	if !ok {
		return nil, arena
	}
	it := &item{rl: rl, sl: sl, lr: lr}
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
		e.toQuarantine(it, quarantine{stage: stageValidation, reasons: reasons}, ingested)
		return it, arena
	}
	ev, reason, detail := e.readEvent(lr)
	if reason != "" {
		e.toQuarantine(it, quarantine{stage: stageValidation, reasons: []string{audit.FormatProblem(reason, detail)}, teamID: ev.teamID}, ingested)
		return it, arena
	}
	it.index = e.cfg.IndexPrefix + ev.teamID
	it.id = ev.id
	start := len(arena)
	arena = e.appendEventDoc(arena, ev, lr, rl.Resource(), ingested)
	it.doc = arena[start:len(arena):len(arena)]
	if len(it.doc) > e.cfg.MaxDocumentBytes {
		detail := fmt.Sprintf("the document is %d bytes, max_document_bytes is %d", len(it.doc), e.cfg.MaxDocumentBytes)
		e.toQuarantine(it, quarantine{stage: stageValidation, reasons: []string{audit.FormatProblem(reasonDocumentTooBig, detail)}, teamID: ev.teamID, index: it.index}, ingested)
		arena = arena[:start] // the oversized document is not kept
	}
	return it, arena
}

// toQuarantine makes it a quarantine document. Its id is the event id when there is one, so a
// redelivered bad record is quarantined once.
func (e *auditExporter) toQuarantine(it *item, q quarantine, ingested time.Time) {
	id := it.id
	if id == "" {
		if v, ok := it.lr.Attributes().Get(audit.AttrID); ok && v.Type() == pcommon.ValueTypeStr {
			id = v.Str()
		}
	}
	if id == "" {
		id = canonical.RecordHash(it.lr.Body(), it.lr.Attributes(), it.lr.Timestamp())
	}
	it.id = docID(id, id)
	it.index = e.cfg.QuarantineIndex
	it.q = &q
	it.doc = appendQuarantineDoc(nil, it.id, q, it.lr, it.rl.Resource(), ingested, e.cfg.MaxDocumentBytes)
}

// deliver sends the items in bulk requests, retries items answered 429 or 5xx with backoff, sends
// items Elasticsearch rejected to quarantine, and returns the items still undelivered with the error.
func (e *auditExporter) deliver(ctx context.Context, items []*item, ingested time.Time) ([]*item, error) {
	pending := items
	var lastErr error
	var failedHard []*item // quarantine documents the quarantine index refused
	for attempt := 1; len(pending) > 0; attempt++ {
		var retry, rejected []*item
		retry, rejected, lastErr = e.bulk(ctx, pending)
		// Rejected event documents go to quarantine in the same loop; a rejected quarantine document
		// cannot go anywhere else: it is logged, counted as failed, and fails the export once the
		// other documents are delivered.
		for _, it := range rejected {
			if it.q != nil {
				e.count(ctx, outcomeFailed, 1)
				e.set.Logger.Error("quarantine index refused a document", zap.String("id", it.id), zap.String("error_type", it.errType), zap.String("reason", it.errReason))
				failedHard = append(failedHard, it)
				continue
			}
			e.toQuarantine(it, quarantine{
				stage: stageIndexing, reasons: []string{audit.FormatProblem(reasonRejected, it.errType)},
				errorType: it.errType, errorReason: it.errReason, index: it.index,
			}, ingested)
			retry = append(retry, it)
		}
		if len(retry) == 0 {
			break
		}
		if attempt >= e.cfg.ItemRetry.MaxAttempts {
			if lastErr == nil {
				lastErr = fmt.Errorf("%d documents still failing after %d attempts", len(retry), attempt)
			}
			return retry, lastErr
		}
		e.telemetry.ExporterAuditRetried.Add(ctx, int64(len(retry)))
		if err := sleep(ctx, backoff(e.cfg.ItemRetry, attempt)); err != nil {
			return retry, err
		}
		pending = retry
	}
	if len(failedHard) > 0 {
		return failedHard, consumererror.NewPermanent(fmt.Errorf("the quarantine index %s refused %d documents: %s", e.cfg.QuarantineIndex, len(failedHard), failedHard[0].errReason))
	}
	return nil, nil
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

// bulkResponse is the part of a _bulk answer the exporter reads (see filterPath).
type bulkResponse struct {
	Items []struct {
		Create struct {
			Status int `json:"status"`
			Error  struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"create"`
	} `json:"items"`
}

const filterPath = "items.*.status,items.*.error.type,items.*.error.reason"

// bulk sends items in requests of at most flush.bytes and sorts them by answer: done (counted),
// to retry (429, 5xx, or the whole request failed), or rejected (any other error).
func (e *auditExporter) bulk(ctx context.Context, items []*item) (retry, rejected []*item, err error) {
	bp := e.bufs.Get().(*[]byte)
	defer e.bufs.Put(bp)
	for start := 0; start < len(items); {
		b := (*bp)[:0]
		end := start
		for end < len(items) && (end == start || len(b)+len(items[end].doc)+len(items[end].id)+100 <= e.cfg.Flush.Bytes) {
			it := items[end]
			b = append(b, `{"create":{"_index":`...)
			b = pjson.AppendString(b, it.index)
			b = append(b, `,"_id":`...)
			b = pjson.AppendString(b, it.id)
			b = append(b, "}}\n"...)
			b = append(b, it.doc...)
			b = append(b, '\n')
			end++
		}
		*bp = b
		batch := items[start:end]
		start = end
		r, rj, reqErr := e.send(ctx, b, batch)
		retry = append(retry, r...)
		rejected = append(rejected, rj...)
		if reqErr != nil {
			err = reqErr
		}
	}
	return retry, rejected, err
}

func (e *auditExporter) send(ctx context.Context, body []byte, batch []*item) (retry, rejected []*item, err error) {
	e.telemetry.ExporterAuditBulkBytes.Add(ctx, int64(len(body)))
	began := time.Now()
	res, err := e.es.Bulk(bytes.NewReader(body), e.es.Bulk.WithContext(ctx), e.es.Bulk.WithFilterPath(filterPath))
	e.telemetry.ExporterAuditBulkLatency.Record(ctx, float64(time.Since(began).Microseconds())/1000)
	if err != nil {
		return batch, nil, fmt.Errorf("bulk request: %w", err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return batch, nil, fmt.Errorf("bulk response: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		// The whole request failed (overloaded, unavailable, too large, unauthorized…): keep it all.
		return batch, nil, fmt.Errorf("bulk request: %s: %s", res.Status(), truncateString(string(raw), 512))
	}
	var br bulkResponse
	if err := json.Unmarshal(raw, &br); err != nil || len(br.Items) != len(batch) {
		return batch, nil, fmt.Errorf("bulk response has %d items for %d documents (%v)", len(br.Items), len(batch), err)
	}
	counts := map[string]int{}
	for i, entry := range br.Items {
		it, r := batch[i], entry.Create
		{
			switch {
			case r.Status == http.StatusCreated || r.Status == http.StatusOK:
				if it.q != nil {
					counts[outcomeQuarantined]++
					e.countQuarantine(ctx, it.q)
				} else {
					counts[outcomeIndexed]++
				}
			case r.Status == http.StatusConflict:
				if it.q != nil {
					counts[outcomeQuarantined]++ // quarantined before: already stored
				} else {
					counts[outcomeDuplicate]++
				}
			case r.Status == http.StatusTooManyRequests || r.Status >= 500:
				retry = append(retry, it)
			default:
				it.errType, it.errReason = r.Error.Type, r.Error.Reason
				if it.errType == "" {
					it.errType = fmt.Sprintf("status_%d", r.Status)
				}
				rejected = append(rejected, it)
			}
		}
	}
	for o, n := range counts {
		e.count(ctx, o, n)
	}
	return retry, rejected, nil
}

func (e *auditExporter) count(ctx context.Context, outcome string, n int) {
	e.telemetry.ExporterAuditDocuments.Add(ctx, int64(n), metric.WithAttributes(attribute.String("outcome", outcome)))
}

func (e *auditExporter) countQuarantine(ctx context.Context, q *quarantine) {
	for _, r := range q.reasons {
		e.telemetry.ExporterAuditQuarantined.Add(ctx, 1, metric.WithAttributes(
			attribute.String("reason", audit.ProblemCode(r)), attribute.String("stage", q.stage)))
	}
}

// toLogs copies the records of items into a new batch, for exporterhelper to retry.
func toLogs(items []*item) plog.Logs {
	ld := plog.NewLogs()
	for _, it := range items {
		rl := ld.ResourceLogs().AppendEmpty()
		it.rl.Resource().CopyTo(rl.Resource())
		sl := rl.ScopeLogs().AppendEmpty()
		it.sl.Scope().CopyTo(sl.Scope())
		it.lr.CopyTo(sl.LogRecords().AppendEmpty())
	}
	return ld
}
