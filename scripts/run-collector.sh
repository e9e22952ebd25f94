#!/usr/bin/env bash
# Runs the audit collector distribution with config.example.yaml (used by `make run`).
set -euo pipefail
cd "$(dirname "$0")/.."
export ES_URL=${ES_URL:-http://127.0.0.1:9200}
export AUDIT_STORAGE_DIR=${AUDIT_STORAGE_DIR:-$PWD/_data/queue}
mkdir -p "$AUDIT_STORAGE_DIR"
cat >&2 <<MSG
otelcol-audit: receiving OTLP on ${OTLP_GRPC_ENDPOINT:-127.0.0.1:4317} (gRPC) and http://${OTLP_HTTP_ENDPOINT:-127.0.0.1:4318}/v1/logs (HTTP)
otelcol-audit: writing to $ES_URL: monthly partitions shared by the teams (audit-shared.standard.<yyyy-mm>), problems in audit-quarantine
otelcol-audit: persistent queue in $AUDIT_STORAGE_DIR; health at http://${HEALTH_ENDPOINT:-127.0.0.1:13133}/; profiles at http://${PPROF_ENDPOINT:-127.0.0.1:1777}/debug/pprof/
otelcol-audit: send the specification's sample with \`make demo\`; Ctrl-C stops everything
MSG
exec _build/otelcol-audit --config config.example.yaml
