#!/usr/bin/env bash
# with-elasticsearch.sh CMD...: runs CMD with an Elasticsearch answering at $ES_URL
# (default http://127.0.0.1:9200). If none answers, it starts the local node with
# scripts/elasticsearch.sh on that port and stops it again when CMD ends, whatever the outcome.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ES_URL=${ES_URL:-http://127.0.0.1:9200}

if curl -fsS -o /dev/null --max-time 3 "$ES_URL/_cluster/health" 2>/dev/null; then
  echo "with-elasticsearch: using the node at $ES_URL" >&2
  exec "$@"
fi
case "$ES_URL" in
  http://127.0.0.1:*|http://localhost:*) ;;
  *) echo "with-elasticsearch: nothing answers at $ES_URL and only a local node can be started" >&2; exit 1 ;;
esac
port=${ES_URL##*:}; port=${port%%/*}
export ES_PORT=$port
trap '"$here/elasticsearch.sh" stop' EXIT
"$here/elasticsearch.sh" start >/dev/null
"$@"
