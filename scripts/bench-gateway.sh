#!/usr/bin/env bash
# Gateway benchmark: NDJSON batches POSTed by wrk against the raw publish ceiling (the
# simulator publishing as fast as confirms allow) in the same run, on the same broker; and
# the rates scenario spikes hold against their targets.
#   scripts/bench-gateway.sh            # BATCH=100 records per request, SECONDS_=20, CONNECTIONS=8
#                                       # SCENARIO_BATCH=50 logs per message in the batched scenario runs
# Uses its own exchange and queues (deleted afterwards), so nothing else is disturbed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
BATCH="${BATCH:-100}"; SCENARIO_BATCH="${SCENARIO_BATCH:-50}"; DURATION="${SECONDS_:-20}"; CONNECTIONS="${CONNECTIONS:-8}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
scripts/setup.sh >/dev/null
cargo build --release --locked -q -p source_service
UNIQUE="bench_gateway_$$"
export LOGAGG__BROKER__EXCHANGE="$UNIQUE.exchange" LOGAGG__BROKER__STORAGE_QUEUE="$UNIQUE.storage" \
  LOGAGG__BROKER__MONITORING_QUEUE="$UNIQUE.monitoring" LOGAGG__BROKER__DEAD_LETTER_EXCHANGE="$UNIQUE.dlx" \
  LOGAGG__BROKER__DEAD_LETTER_QUEUE="$UNIQUE.dlq" LOGAGG__TELEMETRY__LOG_LEVEL=warn \
  LOGAGG__GATEWAY__RATE_PER_SECOND=10000000 LOGAGG__GATEWAY__BURST=10000000
WORK="$(mktemp -d)"
cleanup() {
  if [ -n "${GATEWAY_PID:-}" ]; then kill "$GATEWAY_PID" 2>/dev/null || true; fi
  for queue in storage monitoring dlq; do rabbitmqctl -q delete_queue "$UNIQUE.$queue" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== raw publish ceiling: simulator, JSON, as fast as confirms allow"
LOGAGG__TELEMETRY__ADMIN_LISTEN=127.0.0.1:0 target/release/source_service simulate --count 200000 --rate 0 --format json
rabbitmqctl -q purge_queue "$UNIQUE.storage" >/dev/null

for batch in 1 "$SCENARIO_BATCH"; do
  for base in 100 500 1000 2000 5000; do
    echo "== scenario spike, 10 s at $((base * 10)) logs/s (target), $batch log(s) per message"
    LOGAGG__TELEMETRY__ADMIN_LISTEN=127.0.0.1:0 target/release/source_service scenario --kind spike --seconds 10 --rate "$base" --batch "$batch"
    rabbitmqctl -q purge_queue "$UNIQUE.storage" >/dev/null
  done
done

echo "== gateway: $CONNECTIONS connections, $BATCH records per request, ${DURATION}s"
LOGAGG__GATEWAY__LISTEN=127.0.0.1:18080 LOGAGG__TELEMETRY__ADMIN_LISTEN=127.0.0.1:19180 \
  target/release/source_service gateway &
GATEWAY_PID=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && break; sleep 0.1; done
python3 - "$BATCH" > "$WORK/body.ndjson" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"service": "bench", "severity": ["info", "warn", "error"][i % 3],
                      "message": f"request {i} handled in {i % 97} ms by the benchmark",
                      "host": "bench-1", "http": {"method": "GET", "path": f"/item/{i}", "status": 200}}))
PY
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
local file = io.open("$WORK/body.ndjson", "r")
local base = file:read("*a")
file:close()
local counter = 0
request = function()
  counter = counter + 1
  -- A distinct request each time (ids derive from content): a comment-free unique marker.
  local body = base:gsub('"host": "bench%-1"', '"host": "bench-' .. counter .. '"')
  return wrk.format(nil, "/api/v1/logs", nil, body)
end
LUA
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/post.lua" http://127.0.0.1:18080 | tee "$WORK/wrk.txt"
ACCEPTED=$(curl -s http://127.0.0.1:19180/metrics | awk '/^logagg_ingest_records_total\{.*outcome="accepted"/ {sum += $2} END {print sum + 0}')
echo "== gateway accepted ${ACCEPTED:-0} records in ${DURATION}s: $(python3 -c "print(round(${ACCEPTED:-0}/$DURATION))") records/s (202s only, confirmed)"
grep -E "Non-2xx" "$WORK/wrk.txt" || echo "every response was 2xx"
