#!/usr/bin/env bash
# Runs a local Elasticsearch node, or a cluster of nodes on 127.0.0.1, for development and tests.
#
#   scripts/elasticsearch.sh start|stop|status|url
#   scripts/elasticsearch.sh start-node|stop-node|kill-node|pid I     one node of a cluster (0-based)
#
# With ES_NODES=3, start forms a three-node cluster: node I listens on ES_PORT+I (HTTP) and
# ES_PORT+100+I (transport), all master-eligible data nodes named auditpipe-<port>; its state lives
# in $ES_STATE/node-I. kill-node sends SIGKILL (a crash); start-node brings the node back with its data.
#
# The server is Elastic's integ-test-zip distribution from Maven Central (Elasticsearch is not a Debian
# package here). It is fetched once with Maven, unpacked into a cache, and run on 127.0.0.1 as an
# unprivileged user, because Elasticsearch refuses to run as root.
#
# Environment (all optional):
#   ES_VERSION   distribution version; default 8.19.21, falling back to 8.14.1 if it does not resolve
#   ES_PORT      HTTP port (default 9200); the transport port is ES_PORT+100
#   ES_HEAP      JVM heap (default 1g)
#   ES_CACHE     where the distribution is unpacked (default /var/tmp/auditpipe/es-dist)
#   ES_STATE     where data, logs and the pid live (default /var/tmp/auditpipe/es-$ES_PORT)
#   ES_NODES     nodes of the cluster (default 1: a single-node cluster); heap defaults to 512m each
#                when more than one
#   ES_FRESH     1: start forgets the data of earlier runs (a new cluster)
#   ES_USER      the unprivileged user to run as when invoked as root (default auditpipe-es)
#   ES_JAVA_HOME a JDK 17..23 (ES 8 does not start on 24+); found under /usr/lib/jvm when unset
set -euo pipefail

ES_PORT=${ES_PORT:-9200}
ES_NODES=${ES_NODES:-1}
if [ "$ES_NODES" -gt 1 ]; then ES_HEAP=${ES_HEAP:-512m}; else ES_HEAP=${ES_HEAP:-1g}; fi
ES_CACHE=${ES_CACHE:-/var/tmp/auditpipe/es-dist}
if [ "$ES_NODES" -gt 1 ]; then ES_ROOT=${ES_STATE:-/var/tmp/auditpipe/cluster-$ES_PORT}; else ES_ROOT=${ES_STATE:-/var/tmp/auditpipe/es-$ES_PORT}; fi
ES_USER=${ES_USER:-auditpipe-es}
URL="http://127.0.0.1:$ES_PORT"
ARTIFACT=org.elasticsearch.distribution.integ-test-zip:elasticsearch

# node I: sets NODE_PORT, NODE_STATE, PIDFILE, NODE_URL for node I of the cluster (0 for a single node).
node() {
  NODE_PORT=$((ES_PORT + $1))
  if [ "$ES_NODES" -gt 1 ]; then NODE_STATE="$ES_ROOT/node-$1"; else NODE_STATE="$ES_ROOT"; fi
  PIDFILE="$NODE_STATE/es.pid"
  NODE_URL="http://127.0.0.1:$NODE_PORT"
}
node 0
ES_STATE=$NODE_STATE

log() { echo "elasticsearch.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# fetch VERSION: unpacks the distribution into $ES_CACHE/elasticsearch-VERSION unless it is there.
fetch() {
  local v=$1 home="$ES_CACHE/elasticsearch-$1"
  [ -x "$home/bin/elasticsearch" ] && return 0
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Elasticsearch"
  mkdir -p "$ES_CACHE"
  local tmp; tmp=$(mktemp -d "$ES_CACHE/fetch.XXXXXX")
  log "fetching $ARTIFACT:$v from Maven Central"
  if ! mvn -q -B dependency:copy "-Dartifact=$ARTIFACT:$v:zip" "-DoutputDirectory=$tmp" >"$tmp/mvn.log" 2>&1; then
    tail -5 "$tmp/mvn.log" >&2; rm -rf "$tmp"; return 1
  fi
  unzip -q "$tmp/elasticsearch-$v.zip" -d "$tmp"
  mv "$tmp/elasticsearch-$v" "$home"
  rm -rf "$tmp"
  chmod -R a+rX "$home"
}

es_home() {
  if [ -n "${ES_VERSION:-}" ]; then
    fetch "$ES_VERSION" || die "could not fetch Elasticsearch $ES_VERSION"
    echo "$ES_CACHE/elasticsearch-$ES_VERSION"; return
  fi
  local v
  for v in 8.19.21 8.14.1; do
    if fetch "$v"; then echo "$ES_CACHE/elasticsearch-$v"; return; fi
    log "version $v did not resolve, trying the next"
  done
  die "no Elasticsearch distribution could be fetched"
}

find_java() {
  if [ -n "${ES_JAVA_HOME:-}" ]; then echo "$ES_JAVA_HOME"; return; fi
  local d
  for d in /usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/*-17-* /usr/lib/jvm/*17*; do
    [ -x "$d/bin/java" ] && { echo "$d"; return; }
  done
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME"; return; fi
  die "no JDK 17 found: install openjdk-17-jdk-headless or set ES_JAVA_HOME"
}

# answers [URL]: a node answers there as Elasticsearch (default: node 0).
answers() {
  curl -fsS -o /dev/null -D - --max-time 2 "${1:-$URL}/_cluster/health" 2>/dev/null | grep -qi '^x-elastic-product: *elasticsearch'
}

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

log_tail() {
  local f
  for f in "$NODE_STATE"/logs/*.log "$NODE_STATE/stdout.log"; do
    [ -f "$f" ] || continue
    case "$f" in *gc.log*|*deprecation*|*slowlog*|*audit*) continue;; esac
    echo "--- tail of $f" >&2; tail -n 40 "$f" >&2
  done
}

as_es_user() {
  if [ "$(id -u)" = 0 ]; then
    id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
    chown -R "$ES_USER" "$NODE_STATE"
    runuser -u "$ES_USER" -- "$@"
  else
    "$@"
  fi
}

# start_node I: starts node I (with its data) and returns once its process runs.
start_node() {
  node "$1"
  if answers "$NODE_URL"; then log "a node already answers at $NODE_URL"; return 0; fi
  command -v curl >/dev/null || die "curl is needed"
  local home java; home=$(es_home); java=$(find_java)
  mkdir -p "$NODE_STATE/data" "$NODE_STATE/logs" "$NODE_STATE/tmp" "$NODE_STATE/config"
  # Our own config directory, so the cached distribution stays read-only and shared between ports.
  cp -f "$home/config/jvm.options" "$home/config/log4j2.properties" "$NODE_STATE/config/"
  for f in roles.yml role_mapping.yml users users_roles; do
    [ -f "$home/config/$f" ] && cp -f "$home/config/$f" "$NODE_STATE/config/"
  done
  mkdir -p "$NODE_STATE/config/jvm.options.d"
  printf -- '-Xms%s\n-Xmx%s\n' "$ES_HEAP" "$ES_HEAP" >"$NODE_STATE/config/jvm.options.d/heap.options"
  local discovery
  if [ "$ES_NODES" -gt 1 ]; then
    local i seeds="" names=""
    for i in $(seq 0 $((ES_NODES - 1))); do
      seeds="$seeds${seeds:+, }\"127.0.0.1:$((ES_PORT + 100 + i))\""
      names="$names${names:+, }\"auditpipe-$((ES_PORT + i))\""
    done
    discovery="discovery.seed_hosts: [$seeds]
cluster.initial_master_nodes: [$names]"
  else
    discovery="discovery.type: single-node"
  fi
  cat >"$NODE_STATE/config/elasticsearch.yml" <<YML
cluster.name: auditpipe-dev-$ES_PORT
node.name: auditpipe-$NODE_PORT
path.data: $NODE_STATE/data
path.logs: $NODE_STATE/logs
network.host: 127.0.0.1
http.port: $NODE_PORT
transport.port: $((NODE_PORT + 100))
$discovery
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
YML
  log "starting Elasticsearch ($(basename "$home"), JDK $java) on $NODE_URL"
  as_es_user env ES_PATH_CONF="$NODE_STATE/config" ES_JAVA_HOME="$java" ES_TMPDIR="$NODE_STATE/tmp" \
    "$home/bin/elasticsearch" -d -p "$PIDFILE" >"$NODE_STATE/stdout.log" 2>&1 || {
      log "Elasticsearch failed to start"; log_tail; exit 1; }
}

# wait_ready I: waits for node I to answer and the cluster to be yellow or green with all its nodes.
wait_ready() {
  node "$1"
  local i status
  for i in $(seq 1 240); do
    if answers "$NODE_URL"; then
      status=$(curl -fsS --max-time 5 "$NODE_URL/_cluster/health?wait_for_status=yellow&wait_for_nodes=$ES_NODES&timeout=3s" 2>/dev/null | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p' || true)
      case "$status" in green|yellow) log "ready ($status) at $NODE_URL"; return 0;; esac
    fi
    if [ "$i" -gt 5 ] && ! running_pid >/dev/null; then log "Elasticsearch exited during start-up"; log_tail; exit 1; fi
    sleep 1
  done
  log "Elasticsearch did not become ready within 240 s"; log_tail; return 1
}

start() {
  if answers; then log "an Elasticsearch node already answers at $URL"; echo "$URL"; return 0; fi
  if [ "${ES_FRESH:-0}" = 1 ]; then
    local i
    for i in $(seq 0 $((ES_NODES - 1))); do node "$i"; rm -rf "$NODE_STATE/data"; done
  fi
  local i
  for i in $(seq 0 $((ES_NODES - 1))); do start_node "$i"; done
  for i in $(seq 0 $((ES_NODES - 1))); do wait_ready "$i" || { stop || true; exit 1; }; done
  echo "$URL"
}

# stop_node I [SIGNAL]: stops node I (SIGTERM, then SIGKILL after 60 s), or sends SIGNAL and waits.
stop_node() {
  node "$1"
  local pid sig=${2:-TERM}
  if ! pid=$(running_pid); then log "no Elasticsearch started by this script is running on port $NODE_PORT"; return 0; fi
  kill "-$sig" "$pid"
  local i
  for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { log "stopped (pid $pid, SIG$sig)"; rm -f "$PIDFILE"; return 0; }; sleep 1; done
  log "still running after 60 s, killing pid $pid"; log_tail; kill -9 "$pid" 2>/dev/null || true; rm -f "$PIDFILE"
}

stop() {
  local i
  for i in $(seq 0 $((ES_NODES - 1))); do stop_node "$i"; done
}

status() {
  if answers; then
    curl -fsS --max-time 5 "$URL/_cluster/health?pretty"; echo "$URL"
  else
    log "nothing answers at $URL"; return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) echo "$URL" ;;
  start-node) start_node "${2:?node index}"; wait_ready "$2" ;;
  stop-node) stop_node "${2:?node index}" ;;
  kill-node) stop_node "${2:?node index}" KILL ;;
  pid) node "${2:?node index}"; running_pid || { log "node $2 is not running"; exit 1; } ;;
  *) echo "usage: $0 start|stop|status|url|start-node I|stop-node I|kill-node I|pid I" >&2; exit 2 ;;
esac
