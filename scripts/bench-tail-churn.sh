#!/usr/bin/env bash
# Live tails coming and going under publish load (issue 16): the simulator publishes at a
# steady rate while TAILS clients at a time open GET /api/v1/tail and drop it after 0.1-0.9 s,
# over and over. Each tail is an exclusive queue bound to the exchange; RabbitMQ was seen to
# nack a publish routed to one as it went away. Prints the tails opened and the simulator's
# report: `re-sent` counts the messages it had to send again (nacks), the rate what it kept.
#   scripts/bench-tail-churn.sh     # COUNT=50000 logs at RATE=2000/s, TAILS=32 (0: none, the
#                                   # baseline), PROFILE=release (or debug)
# Uses its own exchange, queues and database (deleted afterwards).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
COUNT="${COUNT:-50000}"; RATE="${RATE:-2000}"; TAILS="${TAILS:-32}"; PROFILE="${PROFILE:-release}"
scripts/setup.sh >/dev/null
if [ "$PROFILE" = release ]; then
  cargo build --release --locked -q -p source_service -p search_service
  BIN=target/release
else
  cargo build --locked -q -p source_service -p search_service
  BIN=target/debug
fi
UNIQUE="bench_tail_churn_$$"
PORT="$((20000 + $$ % 20000))"
export LOGAGG__BROKER__EXCHANGE="$UNIQUE.exchange" LOGAGG__BROKER__STORAGE_QUEUE="$UNIQUE.storage" \
  LOGAGG__BROKER__MONITORING_QUEUE="$UNIQUE.monitoring" LOGAGG__BROKER__DEAD_LETTER_EXCHANGE="$UNIQUE.dlx" \
  LOGAGG__BROKER__DEAD_LETTER_QUEUE="$UNIQUE.dlq" LOGAGG__STORE__DATABASE="$UNIQUE" \
  LOGAGG__TELEMETRY__ADMIN_LISTEN=127.0.0.1:0 LOGAGG__SEARCH__MAX_TAIL_CLIENTS="$((TAILS * 2))"
WORK="$(mktemp -d)"
cleanup() {
  for pid in ${SIMULATOR_PID:-} ${SEARCH_PID:-}; do kill "$pid" 2>/dev/null || true; done
  for queue in storage monitoring dlq; do rabbitmqctl -q delete_queue "$UNIQUE.$queue" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

LOGAGG__SEARCH__LISTEN="127.0.0.1:$PORT" LOGAGG__TELEMETRY__LOG_LEVEL=warn \
  "$BIN/search_service" >"$WORK/search.log" 2>&1 &
SEARCH_PID=$!
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/api/v1/services" 2>/dev/null && break
  sleep 0.2
done
LOGAGG__TELEMETRY__LOG_LEVEL=info "$BIN/source_service" simulate --count "$COUNT" --rate "$RATE" \
  >"$WORK/simulator.log" 2>&1 &
SIMULATOR_PID=$!
opened=0
while kill -0 "$SIMULATOR_PID" 2>/dev/null; do
  if [ "$TAILS" -eq 0 ]; then sleep 0.5; continue; fi  # the baseline: no tails
  clients=()
  for _ in $(seq "$TAILS"); do
    curl -s -o /dev/null --max-time "0.$((RANDOM % 9 + 1))" "http://127.0.0.1:$PORT/api/v1/tail" &
    clients+=("$!")
  done
  wait "${clients[@]}" 2>/dev/null || true
  opened=$((opened + TAILS))
done
wait "$SIMULATOR_PID" || true
SIMULATOR_PID=
echo "tails opened and dropped: $opened ($TAILS at a time)"
echo "nack rounds: $(grep -c 'broker nacked it' "$WORK/simulator.log" || true)"
grep -E 'simulator finished' "$WORK/simulator.log" | sed 's/\x1b\[[0-9;]*m//g; s/.*report=//'
