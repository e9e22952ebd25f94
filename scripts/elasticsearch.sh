#!/usr/bin/env bash
# Runs one local Elasticsearch node for development and tests.
#
#   scripts/elasticsearch.sh start|stop|status|url
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
#   ES_USER      the unprivileged user to run as when invoked as root (default auditpipe-es)
#   ES_JAVA_HOME a JDK 17..23 (ES 8 does not start on 24+); found under /usr/lib/jvm when unset
set -euo pipefail

ES_PORT=${ES_PORT:-9200}
ES_HEAP=${ES_HEAP:-1g}
ES_CACHE=${ES_CACHE:-/var/tmp/auditpipe/es-dist}
ES_STATE=${ES_STATE:-/var/tmp/auditpipe/es-$ES_PORT}
ES_USER=${ES_USER:-auditpipe-es}
URL="http://127.0.0.1:$ES_PORT"
PIDFILE="$ES_STATE/es.pid"
ARTIFACT=org.elasticsearch.distribution.integ-test-zip:elasticsearch

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

# answers: the node answers on its port as Elasticsearch.
answers() {
  curl -fsS -o /dev/null -D - --max-time 2 "$URL/_cluster/health" 2>/dev/null | grep -qi '^x-elastic-product: *elasticsearch'
}

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

log_tail() {
  local f
  for f in "$ES_STATE"/logs/*.log "$ES_STATE/stdout.log"; do
    [ -f "$f" ] || continue
    case "$f" in *gc.log*|*deprecation*|*slowlog*|*audit*) continue;; esac
    echo "--- tail of $f" >&2; tail -n 40 "$f" >&2
  done
}

as_es_user() {
  if [ "$(id -u)" = 0 ]; then
    id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
    chown -R "$ES_USER" "$ES_STATE"
    runuser -u "$ES_USER" -- "$@"
  else
    "$@"
  fi
}

start() {
  if answers; then log "an Elasticsearch node already answers at $URL"; echo "$URL"; return 0; fi
  command -v curl >/dev/null || die "curl is needed"
  local home java; home=$(es_home); java=$(find_java)
  mkdir -p "$ES_STATE/data" "$ES_STATE/logs" "$ES_STATE/tmp" "$ES_STATE/config"
  # Our own config directory, so the cached distribution stays read-only and shared between ports.
  cp -f "$home/config/jvm.options" "$home/config/log4j2.properties" "$ES_STATE/config/"
  for f in roles.yml role_mapping.yml users users_roles; do
    [ -f "$home/config/$f" ] && cp -f "$home/config/$f" "$ES_STATE/config/"
  done
  mkdir -p "$ES_STATE/config/jvm.options.d"
  printf -- '-Xms%s\n-Xmx%s\n' "$ES_HEAP" "$ES_HEAP" >"$ES_STATE/config/jvm.options.d/heap.options"
  cat >"$ES_STATE/config/elasticsearch.yml" <<YML
cluster.name: auditpipe-dev
node.name: auditpipe-dev-$ES_PORT
path.data: $ES_STATE/data
path.logs: $ES_STATE/logs
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $((ES_PORT + 100))
discovery.type: single-node
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
YML
  log "starting Elasticsearch ($(basename "$home"), JDK $java) on $URL"
  as_es_user env ES_PATH_CONF="$ES_STATE/config" ES_JAVA_HOME="$java" ES_TMPDIR="$ES_STATE/tmp" \
    "$home/bin/elasticsearch" -d -p "$PIDFILE" >"$ES_STATE/stdout.log" 2>&1 || {
      log "Elasticsearch failed to start"; log_tail; exit 1; }
  local i
  for i in $(seq 1 180); do
    if answers; then
      local status
      status=$(curl -fsS --max-time 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=3s" 2>/dev/null | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p' || true)
      case "$status" in green|yellow) log "ready ($status) at $URL"; echo "$URL"; return 0;; esac
    fi
    if [ "$i" -gt 5 ] && ! running_pid >/dev/null; then log "Elasticsearch exited during start-up"; log_tail; exit 1; fi
    sleep 1
  done
  log "Elasticsearch did not become ready within 180 s"; log_tail; stop || true; exit 1
}

stop() {
  local pid
  if ! pid=$(running_pid); then log "no Elasticsearch started by this script is running on port $ES_PORT"; return 0; fi
  kill "$pid"
  local i
  for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { log "stopped (pid $pid)"; rm -f "$PIDFILE"; return 0; }; sleep 1; done
  log "still running after 60 s, killing pid $pid"; log_tail; kill -9 "$pid" 2>/dev/null || true; rm -f "$PIDFILE"
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
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
