package recorder

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// Results of a record given to Store.
const (
	Stored      = "stored"      // indexed in its team's log
	Duplicate   = "duplicate"   // its id was stored already, with the same content
	Quarantined = "quarantined" // in the quarantine, for Outcome.Reasons
	Expired     = "expired"     // past its team's retention: not written (a purge would delete it at once)
)

// ProblemExporterQuarantined is the reason Store gives an event the exporter quarantined after the
// processor took it (a document too large, a mapping refusal): the quarantine document has the
// exporter's own reason.
const ProblemExporterQuarantined = "exporter_quarantined"

// Outcome is what became of one record given to Store.
type Outcome struct {
	Result  string
	Team    string   // the team the record named (checked when Result is Stored, Duplicate or Expired)
	EventID string   // the event id the pipeline gave it
	Reasons []string // quarantine reasons, "code: detail"
}

// Store sends records through the processor and the exporter, as the collector would, and says
// what became of each, in order. Unlike the collector it does not write an event past its team's
// retention (Expired), which the collector would quarantine. An error means the pass did not finish:
// records may have been stored or not, and sending them again stores nothing twice.
func (r *Recorder) Store(ctx context.Context, ld plog.Logs) ([]Outcome, error) {
	return r.store(ctx, ld, true)
}

// Check is Store without writing: what Store would do, as the log stands (a dry run).
func (r *Recorder) Check(ctx context.Context, ld plog.Logs) ([]Outcome, error) {
	return r.store(ctx, ld, false)
}

// errChecked ends a pass of Check before the exporter.
var errChecked = errors.New("checked, not written")

func (r *Recorder) store(ctx context.Context, ld plog.Logs, write bool) ([]Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pipe
	n := ld.LogRecordCount()
	p.tap.outs = p.tap.outs[:0]
	outs := make([]Outcome, 0, n)
	// The records the pass is to index: where, their hashes, and their place in outs.
	var refs []document.Ref
	var hashes []string
	var at []int
	p.tap.before = func(ctx context.Context, ld plog.Logs, os []outcome) error {
		now := time.Now()
		i := 0
		for _, rl := range ld.ResourceLogs().All() {
			for _, sl := range rl.ScopeLogs().All() {
				sl.LogRecords().RemoveIf(func(lr plog.LogRecord) bool {
					o := os[i]
					out := Outcome{Team: o.team, EventID: o.eventID}
					drop := false
					switch code, detail := p.layout.Check(o.team, lr.Timestamp().AsTime(), now); {
					case !o.valid:
						out.Result, out.Reasons = Quarantined, o.problems
					case code == layout.ProblemExpired:
						out.Result, drop = Expired, true
					case code != "":
						out.Result, out.Reasons = Quarantined, []string{audit.FormatProblem(code, detail)}
					default:
						out.Result = Stored
						refs, at = append(refs, document.Ref{Index: o.index, ID: o.id, Routing: o.routing}), append(at, len(outs))
						hashes = append(hashes, o.hash)
					}
					outs = append(outs, out)
					i++
					return drop
				})
			}
		}
		if write {
			return nil
		}
		// A dry run asks the log what it holds under the ids: nothing, this event, another one.
		if err := settleStored(ctx, p, refs, hashes, at, outs, time.Time{}); err != nil {
			return err
		}
		return errChecked
	}
	p.tap.lean = true
	defer func() { p.tap.before, p.tap.lean = nil, false }()
	before := p.documents(ctx)
	began := time.Now()
	if err := p.proc.ConsumeLogs(ctx, ld); err != nil && !(errors.Is(err, errChecked) && !write) {
		return nil, err
	}
	if len(outs) != n {
		return nil, fmt.Errorf("the processor passed on %d of %d records", len(outs), n)
	}
	if !write {
		return outs, nil
	}
	// The exporter sorted every 409 into a redelivery (a duplicate) or another event's id (an id
	// conflict, quarantined), and may have quarantined a document it was to index (too large, a
	// mapping refusal). Its counts say whether this pass met any of that; only then are the
	// records read back to tell which.
	after := p.documents(ctx)
	want := 0
	for _, o := range outs {
		if o.Result == Quarantined {
			want++
		}
	}
	if after["duplicate"] > before["duplicate"] || after["quarantined"]-before["quarantined"] > int64(want) {
		if err := settleStored(ctx, p, refs, hashes, at, outs, began); err != nil {
			return nil, fmt.Errorf("reading back the stored events: %w", err)
		}
	}
	return outs, nil
}

// settleStored reads what the log holds under the ids of the records a pass was to index and says
// what each became: stored by this pass (ingested at or after began), a duplicate of an event stored
// before, quarantined as another event's id, or quarantined by the exporter (not found). Before a
// pass (began zero) a record found is a duplicate and one not found is to be stored.
func settleStored(ctx context.Context, p *pipeline, refs []document.Ref, hashes []string, at []int, outs []Outcome, began time.Time) error {
	docs, err := document.Hashes(ctx, p.es, refs)
	if err != nil {
		return fmt.Errorf("reading what is stored under the events' ids: %w", err)
	}
	for j, d := range docs {
		k := at[j]
		switch {
		case d.ErrorType != "" && d.ErrorType != "index_not_found_exception":
			return fmt.Errorf("reading what is stored under event %s: %s", outs[k].EventID, d.ErrorType)
		case !d.Found && began.IsZero():
			outs[k].Result = Stored
		case !d.Found:
			outs[k].Result, outs[k].Reasons = Quarantined, []string{audit.FormatProblem(ProblemExporterQuarantined, "the exporter quarantined the document; auditctl quarantine list --team "+outs[k].Team+" says why")}
		case d.Hash != hashes[j]:
			outs[k].Result, outs[k].Reasons = Quarantined, []string{audit.FormatProblem(audit.ProblemIDConflict, fmt.Sprintf("event id %q is stored with hash %s", outs[k].EventID, d.Hash))}
		case began.IsZero() || ingestedBefore(d.Ingested, began):
			outs[k].Result = Duplicate
		default:
			outs[k].Result = Stored
		}
	}
	return nil
}

// ingestedBefore tells an event stored before t (a duplicate now) from one this pass stored.
func ingestedBefore(ingested string, t time.Time) bool {
	at, err := time.Parse(time.RFC3339Nano, ingested)
	return err == nil && at.Before(t)
}

// Refuse quarantines records that are not events (a row of a file that does not parse), each with
// the reasons in its audit.problems attribute and the team in audit.quarantine.team_id, as the
// collector quarantines a record the processor refused. The processor does not see them: it would
// put its own reasons in place of the caller's.
func (r *Recorder) Refuse(ctx context.Context, ld plog.Logs) error {
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				lr.Attributes().PutStr(audit.AttrStatus, audit.StatusInvalid)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pipe.exp.ConsumeLogs(ctx, ld)
}

// documents is the exporter's count so far of the documents it handled, by outcome (indexed,
// duplicate, quarantined): its otelcol_exporter_audit_documents metric.
func (p *pipeline) documents(ctx context.Context) map[string]int64 {
	out := map[string]int64{}
	var rm metricdata.ResourceMetrics
	if err := p.metrics.Collect(ctx, &rm); err != nil {
		return out
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != "otelcol_exporter_audit_documents" || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				if v, ok := dp.Attributes.Value("outcome"); ok {
					out[v.AsString()] += dp.Value
				}
			}
		}
	}
	return out
}
