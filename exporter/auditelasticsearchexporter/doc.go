//go:generate mdatagen metadata.yaml

// Package auditelasticsearchexporter bulk-indexes normalized audit events into per-team Elasticsearch
// indices, idempotently, and quarantines what cannot be indexed, so that nothing is dropped silently.
package auditelasticsearchexporter
