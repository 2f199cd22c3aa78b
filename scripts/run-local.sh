#!/usr/bin/env bash
# Brings the whole system up on a machine without Docker, as the demo: RabbitMQ and the
# MongoDB-compatible server (scripts/setup.sh), COLLECTORS collectors (default 2), the
# monitor, the search API with the dashboard, the retention service, the HTTP ingest gateway,
# the analyzer fan-out (its registration API), and the demo's traffic (docs/demo-timeline.toml: access logs of a small web shop whose
# `auth` service fails in the second minute, raising an alert that resolves a minute later).
#   scripts/run-local.sh          start everything (logs in .data/logs), print the URLs
#   scripts/run-local.sh stop     stop the services it started
# TIMELINE=path names another timeline; RATE=N runs the plain simulator at N logs/s instead.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
RUN_DIR="$ROOT/.data/run"
LOG_DIR="$ROOT/.data/logs"

stop() {
  local stopped=0
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -e "$pidfile" ] || continue
    kill -TERM "$(cat "$pidfile")" 2>/dev/null && stopped=$((stopped + 1))
    rm -f "$pidfile"
  done
  echo "stopped $stopped services"
}

if [ "${1:-}" = "stop" ]; then stop; exit 0; fi
if compgen -G "$RUN_DIR/*.pid" >/dev/null; then
  echo "services of an earlier run are still up; stopping them first"
  stop
fi
mkdir -p "$RUN_DIR" "$LOG_DIR"

scripts/setup.sh
cargo build --release --locked -p collector_service -p source_service -p retention_service \
  -p search_service -p monitoring_service -p analyzer_service

# start NAME ADMIN_PORT COMMAND...: runs a service in the background, its admin server
# (/healthz, /metrics) on ADMIN_PORT.
start() {
  local name=$1 admin_port=$2; shift 2
  LOGAGG__TELEMETRY__ADMIN_LISTEN="127.0.0.1:$admin_port" nohup "$@" >"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
  echo "started $name (pid $!, admin http://127.0.0.1:$admin_port/healthz, log .data/logs/$name.log)"
}

for index in $(seq 1 "${COLLECTORS:-2}"); do
  start "collector-$index" $((9110 + index)) target/release/collector_service
done
start monitor 9140 target/release/monitoring_service
start search 9150 target/release/search_service
LOGAGG__RETENTION__ARCHIVE_DIR="$ROOT/.data/archive" \
  start retention 9130 target/release/retention_service serve
start gateway 9160 target/release/source_service gateway
start analyzers 9170 target/release/analyzer_service
if [ -n "${RATE:-}" ]; then
  start traffic 9120 target/release/source_service simulate --rate "$RATE"
else
  start traffic 9120 target/release/source_service scenario \
    --timeline "${TIMELINE:-docs/demo-timeline.toml}"
fi

# Every service answers /healthz 200 once it reached RabbitMQ and MongoDB: wait for that, at
# most a minute, and name any that did not.
healthy() { curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null; }
waiting=""
for _ in $(seq 1 120); do
  waiting=""
  for port in $(seq 9111 $((9110 + ${COLLECTORS:-2}))) 9140 9150 9130 9160 9170; do
    healthy "$port" || waiting="$waiting $port"
  done
  [ -z "$waiting" ] && break
  sleep 0.5
done
if [ -n "$waiting" ]; then
  echo "not healthy after a minute (admin ports):$waiting; see .data/logs/"
fi

cat <<URLS

  dashboard:  http://127.0.0.1:5000/
  search API: http://127.0.0.1:5000/api/v1/logs   (OpenAPI: /api/v1/openapi.json)
  gateway:    http://127.0.0.1:8080/api/v1/logs   (POST; raw lines: /api/v1/logs/raw?format=combined&service=web)
  monitor:    http://127.0.0.1:9140/api/v1/live   (live access stats)
  analyzers:  http://127.0.0.1:5100/api/v1/analyzers (PUT /api/v1/analyzers/{id} to register one)
  metrics:    http://127.0.0.1:9111/metrics       (collector 1; every admin port serves /metrics)

  stop with: scripts/run-local.sh stop
URLS
