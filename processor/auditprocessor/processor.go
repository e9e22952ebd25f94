package auditprocessor

import (
	"context"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/processor/auditprocessor/internal/metadata"
)

// Outcomes, the values of the outcome attribute of otelcol_processor_audit_records.
const (
	outcomeValid           = "valid"
	outcomeInvalid         = "invalid"
	outcomeNonAuditPassed  = "non_audit_passed"
	outcomeNonAuditDropped = "non_audit_dropped"
)

type auditProcessor struct {
	cfg       *Config
	norm      normalizer
	telemetry *metadata.TelemetryBuilder
	outcomes  map[string]metric.MeasurementOption
}

func newAuditProcessor(set processor.Settings, cfg *Config) (*auditProcessor, error) {
	catalog, err := cfg.LoadCatalog()
	if err != nil {
		return nil, err
	}
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	p := &auditProcessor{
		cfg:       cfg,
		norm:      normalizer{catalog: catalog, rejectUnknown: cfg.UnknownActions == UnknownReject, now: time.Now},
		telemetry: tb,
		outcomes:  map[string]metric.MeasurementOption{},
	}
	for _, o := range []string{outcomeValid, outcomeInvalid, outcomeNonAuditPassed, outcomeNonAuditDropped} {
		p.outcomes[o] = metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", o)))
	}
	return p, nil
}

// isAudit tells whether a record is an audit record: its event name is "audit" or "audit.<action>",
// it carries audit.action, or it matches one of the configured rules.
func (p *auditProcessor) isAudit(lr plog.LogRecord, res pcommon.Resource, scope pcommon.InstrumentationScope) bool {
	if en := lr.EventName(); en == audit.EventName || strings.HasPrefix(en, audit.EventNamePrefix) {
		return true
	}
	if _, ok := lr.Attributes().Get(audit.AttrAction); ok {
		return true
	}
	for _, r := range p.cfg.Rules {
		if r.ScopeName != "" {
			if scope.Name() == r.ScopeName {
				return true
			}
			continue
		}
		v, ok := lr.Attributes().Get(r.Attribute)
		if !ok {
			v, ok = res.Attributes().Get(r.Attribute)
		}
		if ok && v.Type() == pcommon.ValueTypeStr && v.Str() == r.Value {
			return true
		}
	}
	return false
}

func (p *auditProcessor) processLogs(ctx context.Context, ld plog.Logs) (plog.Logs, error) {
	var valid, invalid, passed, dropped, unknown int64
	problems, warnings := map[string]int64{}, map[string]int64{}
	drop := p.cfg.NonAudit == NonAuditDrop
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			sl.LogRecords().RemoveIf(func(lr plog.LogRecord) bool {
				if !p.isAudit(lr, rl.Resource(), sl.Scope()) {
					if drop {
						dropped++
						return true
					}
					// Only the processor may mark a record normalized.
					for _, k := range outputAttrs {
						lr.Attributes().Remove(k)
					}
					passed++
					return false
				}
				r := p.norm.normalize(lr)
				if r.unknown {
					unknown++
				}
				for _, w := range r.warnings {
					warnings[audit.ProblemCode(w)]++
				}
				if len(r.problems) == 0 {
					valid++
					return false
				}
				invalid++
				for _, pr := range r.problems {
					problems[audit.ProblemCode(pr)]++
				}
				return false
			})
		}
		rl.ScopeLogs().RemoveIf(func(sl plog.ScopeLogs) bool { return sl.LogRecords().Len() == 0 })
	}
	ld.ResourceLogs().RemoveIf(func(rl plog.ResourceLogs) bool { return rl.ScopeLogs().Len() == 0 })

	t := p.telemetry
	for o, n := range map[string]int64{outcomeValid: valid, outcomeInvalid: invalid, outcomeNonAuditPassed: passed, outcomeNonAuditDropped: dropped} {
		if n > 0 {
			t.ProcessorAuditRecords.Add(ctx, n, p.outcomes[o])
		}
	}
	for reason, n := range problems {
		t.ProcessorAuditProblems.Add(ctx, n, metric.WithAttributes(attribute.String("reason", reason)))
	}
	for reason, n := range warnings {
		t.ProcessorAuditWarnings.Add(ctx, n, metric.WithAttributes(attribute.String("reason", reason)))
	}
	if unknown > 0 {
		t.ProcessorAuditUnknownActions.Add(ctx, unknown)
	}
	return ld, nil
}

func (p *auditProcessor) shutdown(context.Context) error {
	p.telemetry.Shutdown()
	return nil
}
