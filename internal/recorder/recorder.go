// Package recorder runs the collector's audit processor and Elasticsearch exporter in process, so
// that the tools' own events (an export, a key, an API read, a replay, an import) are validated,
// normalized, encoded and stored exactly as the collector would store them. It is the one package
// below the commands that imports the components; it also reads the collector's configuration
// (flags.go) so that the tools record and read where, and as, the collector does.
package recorder

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/google/uuid"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/processor"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

// Record writes one audit event into its team's log through the audit processor and the
// Elasticsearch exporter (with the processor's defaults), in process. It returns the event id.
func Record(ctx context.Context, c *query.Client, ev audit.Event) (string, error) {
	ids, err := RecordAll(ctx, c, []audit.Event{ev})
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// RecordAll is Record for many events, sent in one pass through the pipeline.
func RecordAll(ctx context.Context, c *query.Client, events []audit.Event) ([]string, error) {
	r, err := New(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.RecordAll(ctx, events)
}

// Recorder records events through one pipeline that stays up, for a server that records an event
// per request. It is safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex // held by the pass through the pipeline
	pipe *pipeline

	qmu   sync.Mutex
	queue []*waiter // Record calls waiting for a pass
}

// waiter is one Record call's event and, once written, its outcome.
type waiter struct {
	p    prepared
	err  error
	done chan struct{}
}

// New starts a pipeline writing where c reads, with the processor settings pcfg (nil: the
// defaults). Close stops it.
func New(ctx context.Context, c *query.Client, pcfg *auditprocessor.Config) (*Recorder, error) {
	pipe, err := newPipeline(ctx, c, pcfg)
	if err != nil {
		return nil, err
	}
	return &Recorder{pipe: pipe}, nil
}

// Close stops the recorder's pipeline.
func (r *Recorder) Close() { r.pipe.shutdown() }

// Record records one event through this recorder. Concurrent calls share passes through the pipeline
// (a group commit): whoever gets to write takes every event queued by then, so many requests at once
// cost a few bulk requests, not one each in a row.
func (r *Recorder) Record(ctx context.Context, ev audit.Event) (string, error) {
	p, err := prepare(ev)
	if err != nil {
		return "", err
	}
	w := &waiter{p: p, done: make(chan struct{})}
	r.qmu.Lock()
	r.queue = append(r.queue, w)
	r.qmu.Unlock()

	r.mu.Lock()
	r.qmu.Lock()
	batch := r.queue
	r.queue = nil
	r.qmu.Unlock()
	if len(batch) > 0 { // else an earlier pass took this call's event
		ps := make([]prepared, len(batch))
		for i, b := range batch {
			ps[i] = b.p
		}
		err := r.write(ctx, ps)
		for _, b := range batch {
			b.err = err
			close(b.done)
		}
	}
	r.mu.Unlock()
	<-w.done
	return p.id, w.err
}

// RecordAll records events in one pass through this recorder.
func (r *Recorder) RecordAll(ctx context.Context, events []audit.Event) ([]string, error) {
	ps := make([]prepared, len(events))
	ids := make([]string, len(events))
	for i, ev := range events {
		var err error
		if ps[i], err = prepare(ev); err != nil {
			return nil, err
		}
		ids[i] = ps[i].id
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.write(ctx, ps); err != nil {
		return nil, err
	}
	return ids, nil
}

// prepared is an event checked, given an id and a time, and encoded as a record body.
type prepared struct {
	id   string
	at   time.Time
	body []byte
}

// prepare refuses an invalid event here rather than let the pipeline quarantine the tools' own record.
func prepare(ev audit.Event) (prepared, error) {
	if err := auditlog.Validate(ev); err != nil {
		return prepared{}, err
	}
	if ev.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return prepared{}, err
		}
		ev.ID = id.String()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	body, err := json.Marshal(ev)
	return prepared{id: ev.ID, at: ev.Time, body: body}, err
}

// write sends prepared events through the pipeline in one pass; r.mu is held.
func (r *Recorder) write(ctx context.Context, ps []prepared) error {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "auditctl")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for _, p := range ps {
		lr := lrs.AppendEmpty()
		lr.SetEventName(audit.EventName)
		lr.SetTimestamp(pcommon.NewTimestampFromTime(p.at))
		lr.Body().SetStr(string(p.body))
		lr.Attributes().PutStr(audit.AttrID, p.id)
	}
	outs, err := r.pipe.run(ctx, ld)
	if err != nil {
		return fmt.Errorf("recording audit events: %w", err)
	}
	for i, o := range outs {
		if !o.valid {
			return fmt.Errorf("recording audit event %s: the processor refused it: %v", ps[i].id, o.problems)
		}
	}
	return nil
}

// pipeline is the collector's audit processor and Elasticsearch exporter, in process, with a tap
// between them that reports what the processor made of each record.
type pipeline struct {
	proc    processor.Logs
	exp     exporter.Logs
	tap     *tap
	close   []func()
	layout  *layout.Layout
	es      *elasticsearch.Client
	metrics *sdkmetric.ManualReader // the components' own metrics: Store reads the exporter's counts
}

// newPipeline starts the processor (pcfg, or its defaults when nil) and an exporter writing to c's
// indices, without a queue: run returns once every record is stored or quarantined. The exporter
// takes the processor's catalog, as the collector's configuration should give both.
func newPipeline(ctx context.Context, c *query.Client, pcfg *auditprocessor.Config) (*pipeline, error) {
	conn := c.Conn()
	pf := auditprocessor.NewFactory()
	if pcfg == nil {
		pcfg = pf.CreateDefaultConfig().(*auditprocessor.Config)
	}
	metrics := sdkmetric.NewManualReader()
	tel := component.TelemetrySettings{Logger: zap.NewNop(), MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(metrics)), TracerProvider: tracenoop.NewTracerProvider(), Resource: pcommon.NewResource()}
	ef := auditelasticsearchexporter.NewFactory()
	ecfg := ef.CreateDefaultConfig().(*auditelasticsearchexporter.Config)
	ecfg.Endpoints = conn.URLs
	ecfg.User, ecfg.Password, ecfg.APIKey = conn.User, configopaque.String(conn.Password), configopaque.String(conn.APIKey)
	ecfg.TLS.CAFile, ecfg.TLS.InsecureSkipVerify = conn.CAFile, conn.InsecureSkipVerify
	ecfg.IndexPrefix, ecfg.QuarantineIndex = conn.IndexPrefix, conn.QuarantineIndex
	ecfg.Layout = *conn.Layout                    // the collector's layout: an event lands where the collector would put it
	ecfg.Layout.PurgeInterval = 0                 // purging is the collector's
	ecfg.Template.Install = conn.InstallTemplates // the collector owns the templates
	ecfg.Template.Replicas = 0
	ecfg.Catalog = pcfg.Catalog // category, description and action_known as the processor sees them
	ecfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	// A CLI gives up after a while, with an error, rather than wait forever like the collector.
	ecfg.BackOffConfig.MaxElapsedTime = time.Minute
	if err := ecfg.Validate(); err != nil {
		return nil, err
	}
	p := &pipeline{layout: c.Layout(), es: c.ES(), metrics: metrics}
	exp, err := ef.CreateLogs(ctx, exporter.Settings{ID: component.NewID(ef.Type()), TelemetrySettings: tel, BuildInfo: component.NewDefaultBuildInfo()}, ecfg)
	if err != nil {
		return nil, err
	}
	host := nopHost{}
	if err := exp.Start(ctx, host); err != nil {
		return nil, err
	}
	p.exp = exp
	p.close = append(p.close, func() { exp.Shutdown(context.Background()) })
	p.tap = &tap{next: exp, outcome: outcomeFunc(c)}

	proc, err := pf.CreateLogs(ctx, processor.Settings{ID: component.NewID(pf.Type()), TelemetrySettings: tel, BuildInfo: component.NewDefaultBuildInfo()}, pcfg, p.tap)
	if err != nil {
		p.shutdown()
		return nil, err
	}
	if err := proc.Start(ctx, host); err != nil {
		p.shutdown()
		return nil, err
	}
	p.proc = proc
	p.close = append(p.close, func() { proc.Shutdown(context.Background()) })
	return p, nil
}

// run sends ld through the pipeline and returns, in record order, what became of each record.
func (p *pipeline) run(ctx context.Context, ld plog.Logs) ([]outcome, error) {
	n := ld.LogRecordCount()
	p.tap.outs = p.tap.outs[:0]
	if err := p.proc.ConsumeLogs(ctx, ld); err != nil {
		return nil, err
	}
	if len(p.tap.outs) != n {
		return nil, fmt.Errorf("the processor passed on %d of %d records", len(p.tap.outs), n)
	}
	return p.tap.outs, nil
}

func (p *pipeline) shutdown() {
	for i := len(p.close) - 1; i >= 0; i-- {
		p.close[i]()
	}
}

// tap notes the outcome of every record on its way from the processor to the exporter. before, when
// set, sees the records and their outcomes first, and may take records out (Store does).
type tap struct {
	next    consumer.Logs
	outcome func(lr plog.LogRecord, quarantineID bool) outcome
	outs    []outcome
	before  func(ctx context.Context, ld plog.Logs, outs []outcome) error
	lean    bool // no quarantine ids (Store's passes)
}

func (t *tap) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (t *tap) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	start := len(t.outs)
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				t.outs = append(t.outs, t.outcome(lr, !t.lean))
			}
		}
	}
	if t.before != nil {
		if err := t.before(ctx, ld, t.outs[start:]); err != nil {
			return err
		}
	}
	return t.next.ConsumeLogs(ctx, ld)
}

type nopHost struct{}

func (nopHost) GetExtensions() map[component.ID]component.Component { return nil }
