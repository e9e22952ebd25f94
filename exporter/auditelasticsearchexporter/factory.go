package auditelasticsearchexporter

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exporterhelper/xexporterhelper"

	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter/internal/metadata"
)

// NewFactory returns the factory of the audit Elasticsearch exporter (type "auditelasticsearch").
func NewFactory() exporter.Factory {
	return exporter.NewFactory(
		metadata.Type,
		func() component.Config { return createDefaultConfig() },
		exporter.WithLogs(createLogs, metadata.LogsStability),
	)
}

func createLogs(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Logs, error) {
	c := cfg.(*Config)
	e, err := newExporter(set, c)
	if err != nil {
		return nil, err
	}
	// Records become documents before the sending queue (queue.go): the queue, the batcher and the
	// retries handle documents ready for _bulk.
	return xexporterhelper.NewLogsRequest(ctx, set, e.convert, e.push,
		exporterhelper.WithStart(e.start),
		exporterhelper.WithShutdown(e.shutdown),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		// The HTTP client's timeout bounds each bulk request; no extra context deadline on top.
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{}),
		xexporterhelper.WithQueueBatch(c.QueueConfig, xexporterhelper.QueueBatchSettings{Encoding: queueEncoding{e}}),
		exporterhelper.WithRetry(c.BackOffConfig),
	)
}
