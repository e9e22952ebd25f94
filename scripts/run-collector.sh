#!/usr/bin/env bash
# Runs the audit collector distribution with config.example.yaml, and beside it the audit log API
# reading the same indices (used by `make run`).
set -euo pipefail
cd "$(dirname "$0")/.."
export ES_URL=${ES_URL:-http://127.0.0.1:9200}
export AUDIT_STORAGE_DIR=${AUDIT_STORAGE_DIR:-$PWD/_data/queue}
export AUDITAPI_LISTEN=${AUDITAPI_LISTEN:-127.0.0.1:8090}
mkdir -p "$AUDIT_STORAGE_DIR" _data
# The key that signs the teams' Merkle log checkpoints (docs/integrity.md): a development key made on
# the first run unless AUDIT_SEAL_KEY names one; its verifier key is served at /v1/verifier-keys.
seal_key=${AUDIT_SEAL_KEY:-_data/seal/audit-seal.key}
verifier_keys=${AUDIT_VERIFIER_KEYS:-_data/seal/verifier-keys}
if [ ! -e "$seal_key" ]; then
  mkdir -p "$(dirname "$seal_key")" "$(dirname "$verifier_keys")"
  go run ./cmd/auditctl seal keygen --name "${AUDIT_SEAL_ORIGIN:-audit.localhost}" --out "$seal_key" >"$verifier_keys"
fi
cat >&2 <<MSG
otelcol-audit: receiving OTLP on ${OTLP_GRPC_ENDPOINT:-127.0.0.1:4317} (gRPC) and http://${OTLP_HTTP_ENDPOINT:-127.0.0.1:4318}/v1/logs (HTTP)
otelcol-audit: writing to $ES_URL: monthly partitions shared by the teams (audit-shared.standard.<yyyy-mm>), problems in audit-quarantine
otelcol-audit: persistent queue in $AUDIT_STORAGE_DIR; health at http://${HEALTH_ENDPOINT:-127.0.0.1:13133}/; profiles at http://${PPROF_ENDPOINT:-127.0.0.1:1777}/debug/pprof/
auditapi:      the audit log API at http://$AUDITAPI_LISTEN/v1/ (see /v1/openapi.json); mint a key with
               go run ./cmd/auditctl keys create --team <team> --scope read --operator <you>; its log in _data/auditapi.log
auditapi:      seals every team's log within a minute (GET /v1/checkpoint, /v1/events/<id>/proof, /v1/export?format=bundle);
               verifier keys at http://$AUDITAPI_LISTEN/v1/verifier-keys, from $verifier_keys;
               the signer key is $seal_key (development; AUDIT_SEAL_KEY names another)
otelcol-audit: send the specification's sample with \`make demo\`; Ctrl-C stops everything
MSG
# The API reads the index names and the layout from the collector's configuration.
_build/auditapi --config config.example.yaml --verifier-keys "$verifier_keys" --seal-key "$seal_key" >>_data/auditapi.log 2>&1 &
api=$!
trap 'kill $api 2>/dev/null || true; wait $api 2>/dev/null || true' EXIT
_build/otelcol-audit --config config.example.yaml
