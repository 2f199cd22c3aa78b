#!/usr/bin/env bash
# Brings the pipeline up on a machine without Docker: RabbitMQ, the MongoDB-compatible server,
# COLLECTORS collector processes (default 2), a simulator at RATE logs/s (default 200) and the
# retention service (admin port 9130: POST /api/v1/purge?dry_run=true), the monitor (admin
# port 9140: GET /api/v1/live) and the search API (port 5000).
#   scripts/run-local.sh          start everything (logs in .data/logs)
#   scripts/run-local.sh stop     stop the services it started
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
RUN_DIR="$ROOT/.data/run"
mkdir -p "$RUN_DIR" "$ROOT/.data/logs"

stop() {
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -e "$pidfile" ] || continue
    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  echo "stopped"
}

if [ "${1:-}" = "stop" ]; then stop; exit 0; fi

scripts/setup.sh
cargo build --release --locked -p collector_service -p source_service -p retention_service \
  -p search_service -p monitoring_service

start() {
  local name=$1; shift
  nohup "$@" >"$ROOT/.data/logs/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
  echo "started $name (pid $!, log .data/logs/$name.log)"
}

for index in $(seq 1 "${COLLECTORS:-2}"); do
  LOGAGG__TELEMETRY__ADMIN_LISTEN="127.0.0.1:$((9110 + index))" \
    start "collector-$index" target/release/collector_service
done
LOGAGG__TELEMETRY__ADMIN_LISTEN="127.0.0.1:9120" \
  start simulator target/release/source_service simulate --rate "${RATE:-200}"
LOGAGG__TELEMETRY__ADMIN_LISTEN="127.0.0.1:9130" LOGAGG__RETENTION__ARCHIVE_DIR="$ROOT/.data/archive" \
  start retention target/release/retention_service serve
LOGAGG__TELEMETRY__ADMIN_LISTEN="127.0.0.1:9140" \
  start monitor target/release/monitoring_service
LOGAGG__TELEMETRY__ADMIN_LISTEN="127.0.0.1:9150" \
  start search target/release/search_service
echo "search API: http://127.0.0.1:5000/api/v1/logs   live access stats: http://127.0.0.1:9140/api/v1/live"
echo "collector metrics: http://127.0.0.1:9111/metrics   stop with: scripts/run-local.sh stop"
