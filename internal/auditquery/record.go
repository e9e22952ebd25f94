package auditquery

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

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
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter"
	"github.com/auditpipe/auditpipe/processor/auditprocessor"
)

// Record writes one audit event into its team's index through the audit processor and the
// Elasticsearch exporter, in process: the event is validated, normalized, encoded and stored exactly
// as the collector would, so the CLI's own events (such as "this log was exported") look like any other.
// It returns the event id.
func (c *Client) Record(ctx context.Context, ev audit.Event) (string, error) {
	ids, err := c.RecordAll(ctx, []audit.Event{ev})
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// RecordAll is Record for many events, sent in one pass through the pipeline.
func (c *Client) RecordAll(ctx context.Context, events []audit.Event) ([]string, error) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "auditctl")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	ids := make([]string, len(events))
	for i, ev := range events {
		// Refuse an invalid event here rather than let the pipeline quarantine the CLI's own record.
		if err := auditlog.Validate(ev); err != nil {
			return nil, err
		}
		if ev.ID == "" {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, err
			}
			ev.ID = id.String()
		}
		if ev.Time.IsZero() {
			ev.Time = time.Now()
		}
		body, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		lr := lrs.AppendEmpty()
		lr.SetEventName(audit.EventName)
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ev.Time))
		lr.Body().SetStr(string(body))
		lr.Attributes().PutStr(audit.AttrID, ev.ID)
		ids[i] = ev.ID
	}

	tel := component.TelemetrySettings{Logger: zap.NewNop(), MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider(), Resource: pcommon.NewResource()}
	ef := auditelasticsearchexporter.NewFactory()
	ecfg := ef.CreateDefaultConfig().(*auditelasticsearchexporter.Config)
	ecfg.Endpoints = c.conn.URLs
	ecfg.User, ecfg.Password, ecfg.APIKey = c.conn.User, configopaque.String(c.conn.Password), configopaque.String(c.conn.APIKey)
	ecfg.TLS.CAFile, ecfg.TLS.InsecureSkipVerify = c.conn.CAFile, c.conn.InsecureSkipVerify
	ecfg.IndexPrefix, ecfg.QuarantineIndex = c.conn.IndexPrefix, c.conn.QuarantineIndex
	ecfg.Template.Install = c.installTemplates // the collector owns the templates
	ecfg.Template.Replicas = 0
	ecfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	ecfg.BackOffConfig.MaxElapsedTime = time.Minute
	if err := ecfg.Validate(); err != nil {
		return nil, err
	}
	exp, err := ef.CreateLogs(ctx, exporter.Settings{ID: component.NewID(ef.Type()), TelemetrySettings: tel, BuildInfo: component.NewDefaultBuildInfo()}, ecfg)
	if err != nil {
		return nil, err
	}
	host := nopHost{}
	if err := exp.Start(ctx, host); err != nil {
		return nil, err
	}
	defer exp.Shutdown(context.Background())

	pf := auditprocessor.NewFactory()
	proc, err := pf.CreateLogs(ctx, processor.Settings{ID: component.NewID(pf.Type()), TelemetrySettings: tel, BuildInfo: component.NewDefaultBuildInfo()}, pf.CreateDefaultConfig(), consumer.Logs(exp))
	if err != nil {
		return nil, err
	}
	if err := proc.Start(ctx, host); err != nil {
		return nil, err
	}
	defer proc.Shutdown(context.Background())
	if err := proc.ConsumeLogs(ctx, ld); err != nil {
		return nil, fmt.Errorf("recording audit events: %w", err)
	}
	return ids, nil
}

type nopHost struct{}

func (nopHost) GetExtensions() map[component.ID]component.Component { return nil }
