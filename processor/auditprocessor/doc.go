//go:generate mdatagen metadata.yaml

// Package auditprocessor recognizes audit-tagged log records and rewrites them into the canonical
// audit event shape, validated against the action catalog.
package auditprocessor
